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


def _stack_axes(meta: dict, n_stack: int) -> str:
    """Letters (Z, T, or Q for unknown) of a layer's stack axes from its axis labels."""
    from seglab.linking import stack_letters

    labels = list(meta.get("axis_labels") or ())[:n_stack]
    return stack_letters(labels) if len(labels) == n_stack else "Q" * n_stack


def _features_table(meta: dict, id_column: str) -> dict[str, np.ndarray] | None:
    """A layer's features as an object table keyed by ``label`` (numeric columns only)."""
    features = meta.get("features")
    if features is None or id_column not in features or len(features) == 0:
        return None
    table = {"label": np.asarray(features[id_column])}
    for key in features:
        if key in (id_column, "label"):
            continue
        col = np.asarray(features[key])
        if col.dtype.kind in "iufb":
            table[str(key)] = col
    return table


def _geojson_path(path: str) -> str:
    from pathlib import Path

    p = Path(path)
    return str(p if p.suffix.lower() in (".geojson", ".json") else p.with_name(p.name + ".geojson"))


def write_labels_geojson(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer as GeoJSON polygons (pixel-edge outlines, one per object and plane)
    with the layer's numeric features as measurements, for QuPath's *Import objects*."""
    from seglab.io.geojson import labels_features, write_geojson

    try:
        arr = np.asarray(data[0] if meta.get("multiscale") else data)
        table = _features_table(meta, "index")
        if table is not None and arr.ndim > 2 and "plane" not in table:
            table = None if np.unique(table["label"]).size != table["label"].size else table
        feats = labels_features(arr, table=table, stack_axes=_stack_axes(meta, arr.ndim - 2))
        out = write_geojson(_geojson_path(path), feats)
    except SeglabError as e:
        raise ValueError(str(e)) from None
    return [str(out)]


def write_shapes_geojson(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Shapes layer (polygons, rectangles, ellipses) as GeoJSON polygons for QuPath; the
    features' ``label`` is each object's id (else 1..n), numeric features become measurements."""
    from seglab.io.geojson import make_feature, outline_geometry, qupath_plane, write_geojson

    try:
        shapes = [np.asarray(d, dtype=np.float64) for d in data]
        types = list(meta.get("shape_type") or ["polygon"] * len(shapes))
        bad = sorted({t for t in types if t not in ("polygon", "rectangle", "ellipse")})
        if bad:
            raise SeglabError(f"only polygons, rectangles and ellipses can be saved as GeoJSON, not {', '.join(bad)}")
        table = _features_table(meta, "label")
        if table is None or len(table["label"]) != len(shapes):
            table = {"label": np.arange(1, len(shapes) + 1)}
        cols = [k for k in table if k != "label"]
        ndim = shapes[0].shape[1] if shapes else 2
        axes = _stack_axes(meta, ndim - 2)
        feats = []
        for i, (verts, kind) in enumerate(zip(shapes, types)):
            if kind == "ellipse":
                verts, kind = _ellipse_polygon(verts), "polygon"
            geom = outline_geometry(verts, kind)
            if geom is None:
                continue
            lead = [int(round(v)) for v in shapes[i][0, :-2]]  # the shape's plane in a stack
            row = {c: table[c][i] for c in cols}
            feats.append(make_feature(geom, int(table["label"][i]), plane=lead[0] if len(lead) == 1 else None,
                                      qupath_plane=qupath_plane(lead, axes) if lead else None, row=row))
        out = write_geojson(_geojson_path(path), feats)
    except SeglabError as e:
        raise ValueError(str(e)) from None
    return [str(out)]


def _ellipse_polygon(corners: np.ndarray, n: int = 64) -> np.ndarray:
    """napari's ellipse (the 4 corners of its bounding box, possibly rotated) as an n-gon."""
    c = corners.mean(axis=0)
    a, b = (corners[1] - corners[0]) / 2, (corners[3] - corners[0]) / 2
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]
    return c + np.cos(th) * a + np.sin(th) * b
