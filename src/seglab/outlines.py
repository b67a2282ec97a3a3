"""Object outlines (polygons or boxes) of a whole segmentation, for Shapes layers and ROI sets."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from seglab.inference.engine import Segmentation


@dataclass
class Outlines:
    """Outlines of every plane: vertices with stack coordinates in front of (y, x)."""

    shape_type: str  # "polygon" or "rectangle"
    data: list[np.ndarray]
    label: np.ndarray
    plane: np.ndarray  # flat plane index of each outline (0 for 2D)
    features: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.data)


def collect_outlines(seg: Segmentation) -> Outlines | None:
    """The outlines a model gave for ``seg`` (None when its family gives none), joined
    with the object table (score, area, class...) by label id."""
    if not seg.extras or not any("shapes" in e for e in seg.extras):
        return None
    stack_shape = seg.labels.shape[:-2]
    indices = list(itertools.product(*[range(s) for s in stack_shape])) if stack_shape else [()]
    kind, data, labels, planes = None, [], [], []
    for p, (idx, extra) in enumerate(zip(indices, seg.extras)):
        shapes = extra.get("shapes")
        if not shapes:
            continue
        kind = shapes["type"]
        for verts, lab in zip(shapes["data"], shapes["label"]):
            verts = np.asarray(verts, dtype=np.float64)
            if idx:
                verts = np.concatenate([np.broadcast_to(np.asarray(idx, dtype=np.float64), (len(verts), len(idx))),
                                        verts], axis=1)
            data.append(verts)
            labels.append(int(lab))
            planes.append(p)
    label = np.asarray(labels, dtype=np.int64)
    row = {int(v): i for i, v in enumerate(seg.table["label"])}
    rows = np.array([row.get(int(v), -1) for v in label], dtype=np.int64)
    features: dict[str, np.ndarray] = {"label": label}
    for key, col in seg.table.items():
        if key in ("label", "plane") or len(rows) == 0:
            continue
        col = np.asarray(col)
        vals = col[np.maximum(rows, 0)].astype(np.float64 if col.dtype.kind == "f" else col.dtype)
        if col.dtype.kind == "f":
            vals[rows < 0] = np.nan
        features[key] = vals
    return Outlines(kind or "polygon", data, label, np.asarray(planes, dtype=np.int64), features)
