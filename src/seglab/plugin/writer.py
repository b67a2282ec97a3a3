"""napari writers: a Labels layer as a compressed uint16/uint32 TIFF or as OME-Zarr labels with its pixel
size; a Shapes layer as an ImageJ ROI set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seglab.errors import SeglabError
from seglab.io.images import normalize_time_unit, normalize_unit
from seglab.io.labels import imagej_axes
from seglab.io.labels import write_labels as _write


def layer_unit(meta: dict) -> str | None:
    """The length unit of a layer's Y/X axes (napari ``units``), or None for pixels or none."""
    units = meta.get("units")
    if not units or len(units) < 2:
        return None
    y, x = (normalize_unit(str(u)) for u in units[-2:])
    return y if y is not None and y == x else None


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer; returns the written path (napari shows errors as notifications).
    Its ``axis_labels`` say which stack axes are T (ImageJ frames, with the frame interval) and
    Z (slices, with their spacing)."""
    try:
        arr = np.asarray(data[0] if meta.get("multiscale") else data)
        letters = _stack_axes(meta, arr.ndim - 2)
        out = _write(path, arr, scale=_layer_scale(meta, letters), unit=layer_unit(meta),
                     axes=imagej_axes(letters + "YX"), time_unit=_axis_unit(meta, letters.find("T")))
    except SeglabError as e:
        raise ValueError(str(e)) from None
    return [str(out)]


def _axis_unit(meta: dict, axis: int) -> str | None:
    """The napari unit of stack axis ``axis`` as a string (None: no such axis or no units)."""
    units = list(meta.get("units") or ())
    return str(units[axis]) if 0 <= axis < len(units) else None


def _layer_scale(meta: dict, letters: str) -> list[float | None] | None:
    """The layer's scale for :func:`~seglab.io.labels.write_labels`: a stack axis left at napari's
    default (scale 1 without a unit of its kind: length for Z, time for T) is uncalibrated, None,
    and so is every stack axis when Z and T come in an order ImageJ cannot hold (Z before T)."""
    scale = meta.get("scale")
    if scale is None:
        return None
    out: list[float | None] = [float(s) for s in scale]
    placed = imagej_axes(letters + "YX") is not None or not set(letters) & set("ZT")
    for i, letter in enumerate(letters):
        unit = _axis_unit(meta, i)
        calibrated = normalize_unit(unit) if letter == "Z" else normalize_time_unit(unit) if letter == "T" else None
        if not placed or (out[i] == 1.0 and calibrated is None):
            out[i] = None
    return out


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
#: file names the OME-Zarr labels writer accepts (napari picks the writer by the longest match)
OME_ZARR_EXTENSIONS = (".ome.zarr", ".zarr")
#: rows and columns read from the layer and written at a time (a multiple of the store's chunk)
ZARR_WRITE_BLOCK = 1024


def _ome_stack_axes(meta: dict, n: int) -> str:
    """Letters of the ``n`` leading (stack) axes of a Labels layer: from its axis labels where they
    name t, c or z, else z for one axis, t, z for two, t, c, z for three."""
    names = [str(a).strip().lower() for a in (meta.get("axis_labels") or ())][:n]
    named = {"t": "T", "time": "T", "c": "C", "channel": "C", "z": "Z"}
    letters = [named.get(a) for a in names] if len(names) == n else [None] * n
    if None in letters or len(set(letters)) != n:
        return {0: "", 1: "Z", 2: "TZ", 3: "TCZ"}[n]
    if letters != sorted(letters, key="TCZ".index):
        raise SeglabError(f"OME-Zarr axes go in the order t, c, z, y, x; this layer's axes are "
                          f"{', '.join(names)}, y, x: transpose it first")
    return "".join(letters)  # type: ignore[arg-type]


def _ome_geometry(meta: dict, ndim: int) -> Any:
    """The :class:`~seglab.io.zarr_io.LabelsGeometry` of a Labels layer: its axes, its Y/X scale
    as the pixel size, its unit, (for a z axis) its z spacing, (for a t axis with a time unit) the
    frame interval, and its translate as the OME translation."""
    from seglab.io.zarr_io import LabelsGeometry

    if ndim < 2 or ndim > 5:
        raise SeglabError(f"OME-Zarr labels have 2 to 5 axes; this layer has {ndim}")
    axes = _ome_stack_axes(meta, ndim - 2) + "YX"
    scale = meta.get("scale")
    scale = [float(s) for s in scale] if scale is not None and len(scale) == ndim else [1.0] * ndim
    if any(not np.isfinite(s) or s <= 0 for s in scale):
        raise SeglabError(f"the layer scale {tuple(scale)} is not positive")
    z = scale[axes.index("Z")] if "Z" in axes else None
    t_unit = _axis_unit(meta, axes.find("T")) if "T" in axes else None
    t = scale[axes.index("T")] if normalize_time_unit(t_unit) else None  # a T scale without a time unit: unknown
    translate = meta.get("translate")
    shift = tuple(float(v) for v in translate) if translate is not None and len(translate) == ndim else None
    return LabelsGeometry(axes, (scale[-2], scale[-1]), layer_unit(meta), z, t, t_unit, shift)


def _check_ome_zarr_target(path: Path) -> None:
    """Refuse a bad name, and any existing file or folder but an OME-Zarr labels store (which the
    save dialog asked to replace)."""
    if not path.name.lower().endswith(OME_ZARR_EXTENSIONS):
        raise SeglabError(f"OME-Zarr labels are saved under a name ending in .ome.zarr or .zarr, not {path.name!r}")
    if not path.exists():
        return
    if not path.is_dir():
        raise SeglabError(f"{path} exists and is a file, not an OME-Zarr store; choose another name")
    import zarr

    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # not a group: a plain zarr array (an image, or labels of another kind), or no zarr
        attrs = {}
    ome = attrs.get("ome", attrs)
    if not (isinstance(ome, dict) and ome.get("labels")):
        raise SeglabError(f"{path} exists and is not an OME-Zarr labels store; it is left as it is, "
                          "choose another name")


def write_ome_zarr(path: str, data: Any, meta: dict, block: int = ZARR_WRITE_BLOCK) -> list[str]:
    """Write one Labels layer as OME-Zarr labels (uint32, multiscale pyramid, the layer's scale and
    unit as the pixel size) with :class:`seglab.io.zarr_io.LabelsStore`: block by block, so a dask-
    or zarr-backed layer is never loaded whole, into ``<path>.partial`` renamed at the end."""
    import itertools

    from seglab.io.zarr_io import LabelsStore, pyramid_levels

    try:
        if meta.get("multiscale"):  # napari's MultiScaleData (or a list): its full-resolution level
            data = data[0]
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            data = np.asarray(data)
        dtype = np.dtype(data.dtype)
        if not (np.issubdtype(dtype, np.integer) or dtype == bool):
            raise SeglabError(f"labels must hold integer ids, not {dtype}")
        target = Path(path)
        _check_ome_zarr_target(target)
        shape = tuple(int(s) for s in data.shape)
        geometry = _ome_geometry(meta, len(shape))
        store = LabelsStore(target, shape, ome=geometry, levels=pyramid_levels(shape, block))
        try:
            for index in itertools.product(*[range(s) for s in shape[:-2]]):
                for y0 in range(0, shape[-2], block):
                    for x0 in range(0, shape[-1], block):
                        part = np.asarray(data[index + (slice(y0, y0 + block), slice(x0, x0 + block))])
                        if part.size and ((dtype.kind == "i" and part.min() < 0)
                                          or (dtype.itemsize > 4 and part.max() >= 2**32)):
                            raise SeglabError("OME-Zarr labels hold ids from 0 to 4,294,967,295")
                        store.write(tuple(index), y0, x0, part)
            out = store.finish(overwrite=True)
        except OSError as e:
            store.abort()
            raise SeglabError(f"cannot write {target}: {e.strerror or e}") from None
        except BaseException:
            store.abort()
            raise
    except SeglabError as e:
        raise ValueError(str(e)) from None
    return [str(out)]
