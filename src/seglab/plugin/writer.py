"""napari writer: a Labels layer as a compressed uint16/uint32 TIFF with its pixel size."""

from __future__ import annotations

from typing import Any

import numpy as np

from seglab.errors import SeglabError
from seglab.io.images import normalize_unit
from seglab.io.labels import write_labels as _write


def layer_unit(meta: dict) -> str | None:
    """The length unit of a layer's Y/X axes (napari ``units``), or None for pixels or none."""
    units = meta.get("units")
    if not units or len(units) < 2:
        return None
    y, x = (normalize_unit(str(u)) for u in units[-2:])
    return y if y is not None and y == x else None


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer; returns the written path (napari shows errors as notifications)."""
    try:
        scale = meta.get("scale")
        arr = np.asarray(data[0] if meta.get("multiscale") else data)
        out = _write(path, arr, scale=list(scale) if scale is not None else None, unit=layer_unit(meta))
    except SeglabError as e:
        raise ValueError(str(e)) from None
    return [str(out)]


def write_rois(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Shapes layer of polygons/rectangles as an ImageJ ROI set (.zip) for Fiji."""
    from seglab.io.rois import write_roi_zip

    try:
        shapes = [np.asarray(d, dtype=np.float64) for d in data]
        types = meta.get("shape_type") or ["polygon"] * len(shapes)
        bad = sorted({t for t in types if t not in ("polygon", "rectangle")})
        if bad:
            raise SeglabError(f"only polygons and rectangles can be saved as ImageJ ROIs, not {', '.join(bad)}")
        ndim = shapes[0].shape[1] if shapes else 2
        if ndim > 3:
            raise SeglabError("ROI sets hold 2D outlines or outlines on the slices of one stack axis")
        features = meta.get("features")
        labels = None
        if features is not None and "label" in features:
            labels = [int(v) for v in np.asarray(features["label"])]
        if labels is None or len(labels) != len(shapes):
            labels = list(range(1, len(shapes) + 1))
        positions = [int(round(s[0, 0])) for s in shapes] if ndim == 3 else None
        out = write_roi_zip(path, [s[:, -2:] for s in shapes], labels, positions)
    except SeglabError as e:
        raise ValueError(str(e)) from None
    return [str(out)]
