"""Write label images as compressed TIFFs that Fiji/ImageJ and tifffile read, atomically."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from seglab.errors import SeglabError, SeglabWarning
from seglab.io.atomic import atomic_file
from seglab.io.images import normalize_time_unit, normalize_unit, read_image, unit_factor

# how ImageJ writes units in its TIFF description (ASCII: "micron" for µm)
_IMAGEJ_UNIT = {"µm": "micron", "nm": "nm", "mm": "mm", "cm": "cm", "m": "m", "inch": "inch"}
# time units (:func:`~seglab.io.images.normalize_time_unit`'s names) as ImageJ writes them
_IMAGEJ_TIME_UNIT = {"s": "sec", "ms": "msec", "min": "min", "h": "hour", "µs": "usec"}


def labels_dtype(labels: np.ndarray) -> type:
    """uint16 when ids fit, else uint32."""
    m = int(labels.max()) if labels.size else 0
    if m < 0 or (labels.size and int(labels.min()) < 0):
        raise SeglabError("label images cannot hold negative ids")
    if m <= np.iinfo(np.uint16).max:
        return np.uint16
    if m <= np.iinfo(np.uint32).max:
        return np.uint32
    raise SeglabError(f"label id {m} does not fit in 32 bits")


def write_labels(
    path: str | os.PathLike,
    labels: np.ndarray,
    *,
    scale: Sequence[float | None] | None = None,
    unit: str | None = None,
    axes: str | None = None,
    software: str | None = None,
    time_unit: str | None = None,
) -> Path:
    """Write an integer label image to ``path`` (.tif), zlib-compressed, ImageJ-compatible.

    More than 65,535 objects need uint32, which ImageJ's own TIFF flavour lacks:
    those are written as plain TIFF (Fiji opens them as 32-bit images).
    ``scale`` is the pixel size per axis (napari's layer scale) in ``unit`` (a length
    such as ``"µm"``/``"um"``/``"micron"``, ``"nm"``, ``"mm"``); its last two entries
    become the TIFF X/Y resolution, a Z entry becomes ImageJ's ``spacing``, a T entry its frame
    interval ``finterval`` in ``time_unit`` (``tunit``); a Z or T entry None is unknown and not
    written. ``axes``: ImageJ's letters of the label axes (default ZYX, TZYX, TZCYX by
    dimension), so that T planes are frames and Z planes slices in Fiji. The unit is
    kept as Fiji reads it: ImageJ files (uint16) get ImageJ's ``unit`` with the
    resolution in pixels per unit (ResolutionUnit CENTIMETER/INCH for those units, else
    NONE, as ImageJ itself writes); plain TIFFs (uint32) get the resolution in pixels
    per centimetre with ResolutionUnit CENTIMETER. The file is written to a temporary name and renamed, so a
    failed write never leaves a half file or destroys an existing one. ``software``: the TIFF
    Software tag (None: tifffile's default), e.g. seglab's mark on the label images it segments.
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        if labels.dtype.kind == "f" and np.all(np.mod(labels, 1) == 0):
            labels = labels.astype(np.int64)
        else:
            raise SeglabError(f"labels must be integers, got {labels.dtype}")
    if labels.ndim < 2:
        raise SeglabError(f"labels must have at least 2 dimensions, got shape {labels.shape}")
    if labels.ndim > 5:
        raise SeglabError(f"labels with {labels.ndim} dimensions cannot be written as ImageJ TIFF")
    data = labels.astype(labels_dtype(labels), copy=False)
    if path.suffix.lower() not in (".tif", ".tiff"):
        path = path.with_suffix(".tif")
    kwargs: dict = {}
    plain_kwargs: dict = {}
    metadata: dict = {}
    norm_unit = normalize_unit(unit)
    if unit and norm_unit is None:
        raise SeglabError(f"unknown length unit {unit!r}; use one of µm (um, micron), nm, mm, cm, m, inch")
    if axes is None:
        axes = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}[data.ndim]
    metadata["axes"] = axes
    if scale is not None:
        scale = [None if s is None else float(s) for s in scale]
        if len(scale) != data.ndim:
            raise SeglabError(f"scale has {len(scale)} entries but labels have {data.ndim} dimensions")
        if None in scale[-2:] or any(s is not None and (not np.isfinite(s) or s <= 0) for s in scale):
            raise SeglabError(f"pixel sizes must be positive numbers, got {scale}")
        sy, sx = scale[-2], scale[-1]
        kwargs["resolution"] = (1.0 / sx, 1.0 / sy)
        plain_kwargs = dict(kwargs)
        if norm_unit is not None:
            metadata["unit"] = _IMAGEJ_UNIT[norm_unit]
            kwargs["resolutionunit"] = {"cm": "CENTIMETER", "inch": "INCH"}.get(norm_unit, "NONE")
            f = unit_factor(norm_unit, "cm")  # unit -> cm
            plain_kwargs = {"resolution": (1.0 / (sx * f), 1.0 / (sy * f)), "resolutionunit": "CENTIMETER"}
        metadata.update(_stack_calibration(axes, scale, time_unit))
    if software is not None:
        kwargs["software"] = plain_kwargs["software"] = software
    try:
        with atomic_file(path) as tmp:
            if data.dtype == np.uint16:
                tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, compression="zlib", **kwargs)
            else:
                # ImageJ hyperstacks cannot hold 32-bit integers; a plain TIFF can (Fiji opens it as 32-bit)
                tifffile.imwrite(tmp, data, metadata={"axes": axes}, compression="zlib", **plain_kwargs)
    except ValueError as e:
        raise SeglabError(f"cannot write {path}: {e}") from None
    return path


def imagej_time_unit(unit: str | None) -> str | None:
    """ImageJ's spelling of a time unit (``"s"``/``"second"`` -> ``"sec"``), or None for none or
    a unit that is not time (e.g. napari's ``"pixel"``)."""
    return _IMAGEJ_TIME_UNIT.get(normalize_time_unit(unit))


def _stack_calibration(axes: str, scale: list[float | None], time_unit: str | None) -> dict:
    """ImageJ metadata for the stack axes' scale entries: ``spacing`` (Z), ``finterval`` and
    ``tunit`` (T); entries that are None (unknown) are left out."""
    out: dict = {}
    z = scale[axes.index("Z")] if "Z" in axes and len(axes) == len(scale) else None
    t = scale[axes.index("T")] if "T" in axes and len(axes) == len(scale) else None
    if z is not None:
        out["spacing"] = z
    if t is not None:
        out["finterval"] = t
        if tunit := imagej_time_unit(time_unit):
            out["tunit"] = tunit
    return out


def imagej_axes(axes: str) -> str | None:
    """``axes`` when an ImageJ hyperstack holds them in its order (T, Z, Y, X), else None."""
    order = "TZYX"
    ok = all(a in order for a in axes) and list(axes) == sorted(axes, key=order.index)
    return axes if ok else None


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a label image and check that it holds non-negative integer ids (a palette PNG's
    indices are its ids)."""
    arr = read_image(path, indexed=True)
    if arr.dtype.kind not in "iub":
        raise SeglabError(f"{Path(path).name} is not a label image: pixels are {arr.dtype}, not integers")
    if (pieces := mask_pieces(arr)) > 1:
        warnings.warn(f"{Path(path).name} holds one id in {pieces} separate pieces: a binary mask, not a label image "
                      "(each object its own id)? It counts as one object; label its objects (e.g. Fiji's "
                      "Analyze Particles, skimage.measure.label) to score or train per object",
                      SeglabWarning, stacklevel=2)
    return arr


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Object ids renumbered 1..n in their order (0 stays background), as int32.

    Training targets cost grows with the largest id (per-id lookups), not the number of
    objects, so labels with ids up to millions are renumbered once when a pair is made.
    """
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids.size and ids[0] != 0:
        inverse = inverse + 1
    return inverse.reshape(labels.shape).astype(np.int32)


def int32_ids(labels: np.ndarray) -> np.ndarray:
    """Non-negative integer ``labels`` as int32 (what training and scoring take), the same array of ids
    when they fit; ids beyond int32 (uint32 or int64 label images of billions) renumbered
    (:func:`relabel_consecutive`) instead, so that none wraps negative or merges with another."""
    labels = np.asarray(labels)
    if labels.size == 0 or int(labels.max()) <= np.iinfo(np.int32).max:
        return labels.astype(np.int32)
    return relabel_consecutive(labels)


def mask_pieces(labels: np.ndarray) -> int:
    """How many separate pieces (8-connected, 26 in 3D) the objects of ``labels`` form when all of
    them share one id (a binary mask such as 0/255 saved as labels); 0 when it holds other ids or none."""
    fg = labels > 0
    if not fg.any():
        return 0
    values = labels[fg]
    if (values != values[0]).any():
        return 0
    from scipy import ndimage

    return int(ndimage.label(fg, structure=np.ones((3,) * labels.ndim, dtype=bool))[1])


def read_resolution(path: str | os.PathLike) -> tuple[float, float] | None:
    """Pixel size (y, x) stored in a TIFF's resolution tags, or None."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tags = page.tags
        if "XResolution" not in tags or "YResolution" not in tags:
            return None
        xn, xd = tags["XResolution"].value
        yn, yd = tags["YResolution"].value
        if xn == 0 or yn == 0:
            return None
        return (yd / yn, xd / xn)
