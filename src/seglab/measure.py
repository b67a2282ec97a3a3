"""Per-object measurements: shape, position, intensity per channel, physical sizes (no Qt).

:func:`measure` builds one row per object and plane: solidity with scikit-image's
``regionprops_table``, the other shape columns with its formulas applied to all objects at
once (per-label sums; equal to ``regionprops_table``, see tests/test_measure.py, and 2x
faster), intensities and the physical perimeter likewise. Stacks (labels with leading Z/T axes) are measured **plane by plane in 2D**, as
seglab segments them; the ``plane`` column is the flat index of the leading axes (the same
as the object table's), and an id present in several planes gets one row per plane.

Columns (pixels unless a unit is named):

- ``label``, ``plane`` (stacks only), ``area`` (pixel count), ``perimeter`` (scikit-image's
  4-connected perimeter), ``centroid_y``, ``centroid_x``, ``bbox_min_y``, ``bbox_min_x``,
  ``bbox_max_y``, ``bbox_max_x`` (max exclusive: pixel k spans [k, k+1)),
  ``equivalent_diameter`` (of the disc of the same area), ``eccentricity`` (0 for a disc),
  ``solidity`` (area / convex hull area), ``orientation`` (radians, scikit-image's: angle
  between the rows axis and the major axis). Eccentricity and orientation are those of the
  object on the pixel grid (solidity does not change with the pixel size).
- with a pixel size and a length unit, e.g. µm: ``area_um2``, ``perimeter_um`` (the same
  perimeter with each step weighted by its physical length, so anisotropic pixels are
  handled), ``equivalent_diameter_um``, ``centroid_y_um``, ``centroid_x_um``.
- with an image: ``mean_intensity_ch{c}``, ``min_intensity_ch{c}``, ``max_intensity_ch{c}``,
  ``sum_intensity_ch{c}`` for every channel ``c`` of the image as given (never normalised;
  integer images give exact integer min, max and sum).
- from a segmentation's table: ``score`` and ``class`` where the model gives them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from seglab.errors import SeglabError

#: scikit-image's ``regionprops_table`` properties -> our column names
REGIONPROPS_NAMES = {"label": "label", "area": "area", "perimeter": "perimeter", "centroid-0": "centroid_y",
                     "centroid-1": "centroid_x", "bbox-0": "bbox_min_y", "bbox-1": "bbox_min_x",
                     "bbox-2": "bbox_max_y", "bbox-3": "bbox_max_x", "equivalent_diameter_area": "equivalent_diameter",
                     "eccentricity": "eccentricity", "solidity": "solidity", "orientation": "orientation"}
SHAPE_COLUMNS = ("label", "area", "perimeter", "centroid_y", "centroid_x", "bbox_min_y", "bbox_min_x",
                 "bbox_max_y", "bbox_max_x", "equivalent_diameter", "eccentricity", "solidity", "orientation")
INTENSITY_STATS = ("mean", "min", "max", "sum")
#: columns a segmentation's table adds (when it has them)
TABLE_COLUMNS = ("score", "class")
#: how a length unit is written in column names (ASCII)
_UNIT_TOKENS = {"µm": "um", "nm": "nm", "mm": "mm", "cm": "cm", "m": "m", "inch": "in"}


def unit_token(unit: str) -> str:
    """The ASCII name of a length unit in column names: ``µm``/``um``/``micron`` -> ``um``."""
    from seglab.io.images import normalize_unit

    norm = normalize_unit(unit)
    if norm is None:
        raise SeglabError(f"unknown length unit {unit!r}; use one of µm (um, micron), nm, mm, cm, m, inch")
    return _UNIT_TOKENS[norm]


def physical_columns(unit: str) -> tuple[str, ...]:
    """The names of the physical columns for ``unit``."""
    t = unit_token(unit)
    return (f"area_{t}2", f"perimeter_{t}", f"equivalent_diameter_{t}", f"centroid_y_{t}", f"centroid_x_{t}")


def _pixel_size(pixel_size: float | Sequence[float] | None) -> tuple[float, float] | None:
    if pixel_size is None:
        return None
    values = np.atleast_1d(np.asarray(pixel_size, dtype=np.float64)).ravel()
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise SeglabError(f"pixel size must be one or two (y, x) positive numbers, got {pixel_size!r}")
    return float(values[0]), float(values[1])


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim < 2:
        raise SeglabError(f"labels must have at least 2 axes (Y, X), got shape {labels.shape}")
    if labels.dtype.kind == "b":
        labels = labels.astype(np.uint8)
    elif labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(np.mod(labels, 1) != 0):
            raise SeglabError(f"labels must be integers, got {labels.dtype} values with fractions")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iu":
        raise SeglabError(f"labels must be integers, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise SeglabError("label images cannot hold negative ids")
    return labels


def _channels_last(image: np.ndarray, labels_shape: tuple[int, ...], channel_axis: int | None) -> np.ndarray:
    """The image as ``labels_shape + (C,)``; a SeglabError when the shapes do not fit."""
    image = np.asarray(image)
    if image.dtype.kind not in "iufb":
        raise SeglabError(f"cannot measure intensities of a {image.dtype} image")
    if channel_axis is None:
        if image.shape == labels_shape:
            return image[..., None]
        if image.ndim == len(labels_shape) + 1 and image.shape[:-1] == labels_shape:
            return image
        raise SeglabError(f"image {image.shape} and labels {labels_shape} differ in shape"
                          + (" (give the image's channel axis)" if image.ndim == len(labels_shape) + 1 else ""))
    if not -image.ndim <= channel_axis < image.ndim:
        raise SeglabError(f"channel axis {channel_axis} does not exist for an image of shape {image.shape}")
    moved = np.moveaxis(image, channel_axis, -1)
    if moved.shape[:-1] != labels_shape:
        raise SeglabError(f"image {image.shape} (channels on axis {channel_axis}) and labels {labels_shape} "
                          "differ in shape")
    return moved


def anisotropic_perimeter(labels: np.ndarray, ids: np.ndarray, pixel_size: tuple[float, float]) -> np.ndarray:
    """Perimeter of each object ``ids`` of a 2D label image in physical units.

    scikit-image's 4-connected perimeter (Benkrid et al.: each border pixel weighted by the
    pattern of its border neighbours: 1 for a straight run, sqrt(2) for a diagonal, their mean
    at a bend) with every step weighted by its physical length: a vertical step by the pixel
    height, a horizontal one by its width, a diagonal by hypot(height, width). With square
    pixels of size s this is exactly ``s`` times ``regionprops``' perimeter.
    """
    sy, sx = pixel_size
    padded = np.pad(labels, 1)
    h, w = labels.shape
    c = padded[1:-1, 1:-1]

    def shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
        return a[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    # border: an object pixel with a 4-neighbour outside the object (outside the image counts)
    border_p = np.zeros_like(padded, dtype=bool)
    inner = c > 0
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        inner &= shifted(padded, dy, dx) == c
    border_p[1:-1, 1:-1] = (c > 0) & ~inner
    border = border_p[1:-1, 1:-1]

    def count(offsets) -> np.ndarray:
        n = np.zeros(labels.shape, dtype=np.int8)
        for dy, dx in offsets:
            n += shifted(border_p, dy, dx) & (shifted(padded, dy, dx) == c)
        return n

    v = count(((-1, 0), (1, 0)))[border]
    hz = count(((0, -1), (0, 1)))[border]
    nd = count(((-1, -1), (-1, 1), (1, -1), (1, 1)))[border]
    n4 = v + hz
    code = 1 + 2 * n4.astype(np.int16) + 10 * nd
    diag = math.hypot(sy, sx)
    weight = np.zeros(code.shape, dtype=np.float64)
    straight = np.isin(code, (5, 7, 15, 17, 25, 27))
    weight[straight] = (v[straight] * sy + hz[straight] * sx) / n4[straight]
    weight[np.isin(code, (21, 33))] = diag
    bend = np.isin(code, (13, 23))
    weight[bend] = (np.where(v[bend] > 0, sy, sx) + diag) / 2
    values = c[border]
    sums = np.bincount(np.searchsorted(ids, values), weights=weight, minlength=len(ids)) if len(ids) else np.zeros(0)
    return sums[: len(ids)]


def _shape_columns(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The shape columns of one 2D plane, as ``regionprops_table`` gives them.

    Solidity (a convex hull per object) comes from ``regionprops_table`` itself; the columns
    that are sums over pixels (area, centroid, bounding box, equivalent diameter, the second
    moments behind eccentricity and orientation) and the perimeter (the same pattern weights
    as scikit-image's) are computed for all objects at once, with scikit-image's formulas:
    2.5x faster on 10,000 objects, and equal to ``regionprops_table`` (tests/test_measure.py).
    """
    from skimage.measure import regionprops_table

    ys, xs = np.nonzero(labels)
    values = labels[ys, xs]
    order = np.argsort(values, kind="stable")
    values, ys, xs = values[order], ys[order], xs[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ids = values[starts].astype(np.int64)
    codes = np.repeat(np.arange(len(ids)), np.diff(np.r_[starts, len(values)]))
    area = np.diff(np.r_[starts, len(values)]).astype(np.int64)
    y0, x0 = np.minimum.reduceat(ys, starts), np.minimum.reduceat(xs, starts)
    y1, x1 = np.maximum.reduceat(ys, starts) + 1, np.maximum.reduceat(xs, starts) + 1
    # moments in coordinates local to each box: exact integer sums in float64
    yl, xl = (ys - y0[codes]).astype(np.float64), (xs - x0[codes]).astype(np.float64)
    n = area.astype(np.float64)

    def total(w: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=w, minlength=len(ids))

    sy, sx = total(yl), total(xl)
    # n^2 times the variances and covariance (exact while the sums fit 53 bits)
    vyy, vxx, vxy = n * total(yl * yl) - sy * sy, n * total(xl * xl) - sx * sx, n * total(yl * xl) - sy * sx
    a, b, c = vxx / (n * n), -vxy / (n * n), vyy / (n * n)  # scikit-image's inertia tensor [[a, b], [b, c]]
    root = np.sqrt(((a - c) / 2) ** 2 + b * b)
    l1, l2 = np.maximum((a + c) / 2 + root, 0), np.maximum((a + c) / 2 - root, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ecc = np.where(l1 == 0, 0.0, np.sqrt(np.clip(1 - l2 / np.where(l1 == 0, 1, l1), 0, 1)))
    diff = vxx - vyy  # a - c, exactly
    orientation = np.where(diff == 0, np.where(b < 0, np.pi / 4, -np.pi / 4), 0.5 * np.arctan2(2 * vxy, vyy - vxx))
    solidity = regionprops_table(labels, properties=("label", "solidity"))
    if not np.array_equal(np.asarray(solidity["label"]), ids):  # never: both list the ids in order
        raise AssertionError("regionprops_table and the per-pixel sums list different objects")
    return {
        "label": ids, "area": area, "perimeter": anisotropic_perimeter(labels, ids, (1.0, 1.0)),
        "centroid_y": y0 + sy / n, "centroid_x": x0 + sx / n,
        "bbox_min_y": y0.astype(np.int64), "bbox_min_x": x0.astype(np.int64),
        "bbox_max_y": y1.astype(np.int64), "bbox_max_x": x1.astype(np.int64),
        "equivalent_diameter": np.sqrt(4 * n / np.pi), "eccentricity": ecc,
        "solidity": np.asarray(solidity["solidity"], dtype=np.float64), "orientation": orientation,
    }


def _measure_plane(labels: np.ndarray, image: np.ndarray | None, pixel_size: tuple[float, float] | None,
                   unit: str | None) -> dict[str, np.ndarray]:
    """All columns for one 2D plane (``image``: (H, W, C) or None)."""
    out = _shape_columns(labels)
    ids = out["label"]
    if pixel_size is not None:
        sy, sx = pixel_size
        a, p, d, cy, cx = physical_columns(unit)
        out[a] = out["area"] * (sy * sx)
        out[p] = (out["perimeter"] * sy if sy == sx else anisotropic_perimeter(labels, ids, pixel_size))
        out[d] = np.sqrt(4.0 * out[a] / np.pi)
        out[cy] = out["centroid_y"] * sy
        out[cx] = out["centroid_x"] * sx
    if image is not None:
        out.update(_intensities(labels, image, ids, out["area"]))
    return out


def _intensities(labels: np.ndarray, image: np.ndarray, ids: np.ndarray, area: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, min, max and sum of every channel over each object (exact sums for integers)."""
    out: dict[str, np.ndarray] = {}
    flat = labels.ravel()
    inside = flat > 0
    codes = np.searchsorted(ids, flat[inside])
    for ch in range(image.shape[-1]):
        values = image[..., ch].ravel()[inside]
        exact = values.dtype.kind in "iub"
        if exact:
            wide = values.astype(np.int64)
            total = np.zeros(len(ids), dtype=np.int64)
            _int_sums(total, codes, wide)
        else:
            wide = values.astype(np.float64)
            total = np.bincount(codes, weights=wide, minlength=len(ids))
        if len(ids):
            lo = ndi.minimum(wide, codes, np.arange(len(ids)))
            hi = ndi.maximum(wide, codes, np.arange(len(ids)))
        else:
            lo = hi = np.zeros(0)
        dtype = np.int64 if exact else np.float64
        out[f"mean_intensity_ch{ch}"] = total.astype(np.float64) / np.maximum(area, 1)
        out[f"min_intensity_ch{ch}"] = np.asarray(lo, dtype=dtype)
        out[f"max_intensity_ch{ch}"] = np.asarray(hi, dtype=dtype)
        out[f"sum_intensity_ch{ch}"] = total
    return out


def _int_sums(total: np.ndarray, codes: np.ndarray, values: np.ndarray) -> None:
    """Exact int64 sums per code (``np.add.at`` is slow for many pixels): sort, then reduce."""
    if not codes.size:
        return
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    total[sorted_codes[starts]] = np.add.reduceat(values[order], starts)


def _empty(columns: list[str], int_columns: set[str]) -> dict[str, np.ndarray]:
    return {c: np.zeros(0, dtype=np.int64 if c in int_columns else np.float64) for c in columns}


def measure(labels: np.ndarray, image: np.ndarray | None = None, *, channel_axis: int | None = None,
            pixel_size: float | Sequence[float] | None = None, unit: str | None = None,
            table: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Measure every object of ``labels`` (Y, X) or a stack (..., Y, X), plane by plane.

    ``image``: the intensities (same shape as ``labels``, or with one more axis of channels:
    the last one, or ``channel_axis``). ``pixel_size`` (one number or (y, x)) in ``unit``
    (µm, um, micron, nm, mm, ...) adds the physical columns. ``table``: a segmentation's
    object table (``label`` plus ``score``/``class``): those columns are joined by label.
    Returns columns as arrays (see the module's docstring), rows sorted by plane and label.
    """
    labels = _check_labels(labels)
    size = _pixel_size(pixel_size)
    if size is not None and unit is None:
        raise SeglabError("a pixel size needs its unit (e.g. µm)")
    if size is not None:
        unit_token(unit)
    img = None if image is None else _channels_last(image, labels.shape, channel_axis)
    stack = labels.ndim > 2
    planes = labels.reshape((-1, *labels.shape[-2:]))
    img_planes = None if img is None else img.reshape((-1, *img.shape[-3:]))
    parts = []
    for i, plane in enumerate(planes):
        if not plane.any():
            continue
        part = _measure_plane(plane, None if img_planes is None else img_planes[i], size, unit)
        if stack:
            part = {"label": part["label"], "plane": np.full(len(part["label"]), i, dtype=np.int64),
                    **{k: v for k, v in part.items() if k != "label"}}
        parts.append(part)
    columns = _columns(stack, size is not None, unit, None if img is None else img.shape[-1], img)
    if parts:
        out = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    else:
        ints = {"label", "plane", "area", "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x"}
        if img is not None and img.dtype.kind in "iub":
            ints |= {c for c in columns if c.startswith(("min_", "max_", "sum_"))}
        out = _empty(columns, ints)
    if table is not None:
        out.update(_joined(table, out["label"]))
    return out


def _columns(stack: bool, physical: bool, unit: str | None, n_channels: int | None, img) -> list[str]:
    cols = ["label"] + (["plane"] if stack else []) + list(SHAPE_COLUMNS[1:])
    if physical:
        cols += list(physical_columns(unit))
    for ch in range(n_channels or 0):
        cols += [f"{s}_intensity_ch{ch}" for s in INTENSITY_STATS]
    return cols


def _joined(table: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, np.ndarray]:
    """``score`` and ``class`` of ``table`` for each of ``labels`` (NaN / -1 where missing)."""
    if "label" not in table:
        raise SeglabError("the object table has no 'label' column")
    ids = np.asarray(table["label"]).astype(np.int64)
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids[order], labels)
    pos = np.minimum(pos, max(len(ids) - 1, 0))
    found = (ids[order][pos] == labels) if len(ids) else np.zeros(len(labels), dtype=bool)
    out = {}
    for c in TABLE_COLUMNS:
        if c not in table:
            continue
        values = np.asarray(table[c])[order] if len(ids) else np.asarray(table[c])
        if values.dtype.kind in "iu":
            fill, dtype = -1, np.int64
        elif values.dtype.kind == "f":
            fill, dtype = np.nan, np.float64
        else:
            fill, dtype = None, object
        col = np.full(len(labels), fill, dtype=dtype)
        if len(ids):
            col[found] = values[pos[found]]
        out[c] = col
    return out
