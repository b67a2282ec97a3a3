"""Rescaling a plane for the model and bringing its prediction back to the original pixel grid.

Coordinates: the rescaled plane of ``(h, w)`` pixels covers the same field as the original
``(H, W)``; with ``sy = h / H`` and ``sx = w / W``, a point at ``(y, x)`` in coordinates where
pixel centres are whole numbers (polygon vertices, napari rectangles, centroids) lies at
``((y + 0.5) / sy - 0.5, (x + 0.5) / sx - 0.5)`` in the original plane, and a coordinate in
the edge convention (pixel ``k`` spans ``[k, k + 1)``: Mask R-CNN boxes, the table's
``bbox_*`` columns) at ``(y / sy, x / sx)``.

Labels come back by nearest neighbour (each original pixel takes the label under its centre);
instance families' detections are scaled instead and pasted at full resolution by the family
(``Detections.rescaled``, through the family's ``raw_to_original``), which keeps their mask outlines smooth.
"""

from __future__ import annotations


import numpy as np
import torch
from torch.nn import functional as F

from seglab.inference.tiling import Surround
from seglab.models.base import Prediction
from seglab.objects import TABLE_COLUMNS, object_table

#: table columns in the edge convention, scaled by ``1 / sy`` (``_y``) or ``1 / sx`` (``_x``)
_BOX_COLUMNS = {"bbox_y0": 0, "bbox_y1": 0, "bbox_x0": 1, "bbox_x1": 1}


def scaled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """``(h, w)`` of a plane of ``shape`` rescaled by ``factor`` (at least one pixel)."""
    return tuple(max(1, int(round(int(n) * float(factor)))) for n in shape[-2:])  # type: ignore[return-value]


def resize_image(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """A ``(C, H, W)`` float plane resized to ``out_hw``: bilinear, antialiased when shrinking."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(out_hw):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    shrink = out_hw[0] < h or out_hw[1] < w
    out = F.interpolate(t, size=tuple(int(v) for v in out_hw), mode="bilinear", align_corners=False,
                        antialias=shrink)
    return out[0].numpy()


def rescale_with_surround(surround: Surround, shape: tuple[int, int], factor: float
                          ) -> tuple[np.ndarray, Surround]:
    """A plane of ``shape`` inside ``surround``, rescaled by ``factor`` together with its
    surroundings: the rescaled plane (a view of them) and the rescaled surround. The plane's
    edges land on the rescaled pixel edges nearest to where they fall (within half a pixel)."""
    src = surround.pixels
    big = resize_image(src, scaled_shape(src.shape, factor))
    sy, sx = big.shape[-2] / src.shape[-2], big.shape[-1] / src.shape[-1]
    t, l = int(round(surround.top * sy)), int(round(surround.left * sx))
    b = min(big.shape[-2], max(t + 1, int(round((surround.top + shape[0]) * sy))))
    r = min(big.shape[-1], max(l + 1, int(round((surround.left + shape[1]) * sx))))
    return big[:, t:b, l:r], Surround(big, t, l)


def nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """For each of ``n_out`` output pixels, the input pixel under its centre (same field of view)."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def resize_labels(labels: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Labels (or any per-pixel class image) resized by nearest neighbour; ids are kept."""
    h, w = labels.shape[-2:]
    if (h, w) == tuple(out_hw):
        return labels
    return labels[np.ix_(nearest_index(out_hw[0], h), nearest_index(out_hw[1], w))]


def points_to_original(points: np.ndarray, sy: float, sx: float) -> np.ndarray:
    """``(..., 2)`` (y, x) points (pixel centres at whole numbers) of the rescaled plane in original pixels."""
    p = np.asarray(points, dtype=np.float64)
    out = np.empty_like(p)
    out[..., 0] = (p[..., 0] + 0.5) / sy - 0.5
    out[..., 1] = (p[..., 1] + 0.5) / sx - 0.5
    return out


def restore_prediction(pred: Prediction, shape: tuple[int, int]) -> Prediction:
    """A prediction made on a rescaled plane, on the original plane of ``shape``.

    Labels by nearest neighbour; the table is measured again on them (centroid, area in
    original pixels), other columns follow their object id, box columns are scaled; outlines
    in ``extras["shapes"]`` are moved to original coordinates. An object too small to keep a
    pixel at the original size (only when the plane was enlarged) is dropped everywhere.
    """
    small = pred.labels
    sy, sx = small.shape[0] / shape[0], small.shape[1] / shape[1]
    labels = resize_labels(small, tuple(shape))
    old = pred.table
    ids_old = np.asarray(old["label"], dtype=np.int64)
    n = int(max(ids_old.max(initial=0), labels.max(initial=0))) + 1
    score_by_id = np.full(n, np.nan)
    if "score" in old and len(ids_old):
        score_by_id[ids_old] = np.asarray(old["score"], dtype=np.float64)
    table = object_table(labels, score_by_id)
    row = np.full(n, -1, dtype=np.int64)
    row[ids_old] = np.arange(len(ids_old))
    rows = row[table["label"]]
    for key, col in old.items():
        if key in TABLE_COLUMNS:
            continue
        col = np.asarray(col)
        vals = col[rows] if len(col) else col[:0]
        if key in _BOX_COLUMNS:
            vals = vals.astype(np.float64) / (sy if _BOX_COLUMNS[key] == 0 else sx)
        table[key] = vals
    extras = dict(pred.extras)
    if "shapes" in extras and extras["shapes"]:
        keep = set(int(v) for v in table["label"])
        shapes = extras["shapes"]
        data, lab = [], []
        for verts, k in zip(shapes["data"], shapes["label"]):
            if int(k) in keep:
                data.append(points_to_original(verts, sy, sx).astype(np.asarray(verts).dtype))
                lab.append(int(k))
        extras["shapes"] = {**shapes, "data": data, "label": np.asarray(lab, dtype=np.int64)}
    return Prediction(labels=labels.astype(small.dtype, copy=False), table=table, extras=extras)
