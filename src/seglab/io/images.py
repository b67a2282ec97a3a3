"""Read microscopy images (TIFF, PNG, JPEG, BMP) with the axes, pixel size and unit they declare."""

from __future__ import annotations

import math
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile

from seglab.axes import guess_channel_axis as guess_axes_channel
from seglab.errors import SeglabError, SeglabWarning

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = TIFF_SUFFIXES + (".png", ".jpg", ".jpeg", ".bmp")
#: TIFFs larger than this (bytes on disk) are read lazily (memory-mapped or page by page) and
#: segmented out of core; the environment variable ``SEGLAB_LARGE_TIFF_BYTES`` overrides it
LARGE_TIFF_BYTES = 1 << 30


def large_tiff_bytes() -> int:
    """The size above which TIFFs are read lazily (:data:`LARGE_TIFF_BYTES` or the environment's)."""
    try:
        return int(os.environ.get("SEGLAB_LARGE_TIFF_BYTES", LARGE_TIFF_BYTES))
    except ValueError:
        return LARGE_TIFF_BYTES


def is_large_input(path: str | os.PathLike, out_of_core: bool | None = None) -> bool:
    """Whether ``path`` is read lazily and segmented out of core: a zarr store always, a TIFF when
    ``out_of_core`` says so or (None) when it is larger than :func:`large_tiff_bytes`."""
    from seglab.io.zarr_io import is_zarr_path

    p = Path(path)
    if is_zarr_path(p):
        return True
    if p.suffix.lower() not in TIFF_SUFFIXES or not p.is_file():
        return False
    return bool(out_of_core) if out_of_core is not None else p.stat().st_size > large_tiff_bytes()


def image_stem(path: str | os.PathLike) -> str:
    """The name outputs are named after (``big.ome.zarr``, ``big.zarr`` and ``big.ome.tif`` -> ``big``)."""
    from seglab.io.zarr_io import is_zarr_path, zarr_stem

    if is_zarr_path(path):
        return zarr_stem(path)
    stem = Path(path).stem
    return stem[: -len(".ome")] if stem.lower().endswith(".ome") and len(stem) > 4 else stem


@dataclass
class ImageData:
    """An image and what its file declares about it.

    ``axes``: one letter per axis (tifffile's: ``Y``, ``X``, ``C`` channels, ``S`` colour
    samples, ``Z``, ``T``; ``Q``/``I`` for axes the file does not declare).
    ``pixel_size``: (y, x) size of a pixel in ``unit`` (None when the file gives none);
    ``unit``: a length unit (``"µm"``, ``"nm"``, ``"mm"``, ``"cm"``, ``"m"``, ``"inch"``) or
    None when unknown; ``z_spacing``: distance between Z planes in ``unit``.
    ``rgb``: the channels are colour (RGB/RGBA), not separate stains.
    ``frame_interval``: time between T planes in ``time_unit`` (the file's spelling, e.g. ``"s"``,
    ``"sec"``), both None when the file gives none.
    """

    array: np.ndarray
    axes: str
    pixel_size: tuple[float, float] | None = None
    unit: str | None = None
    rgb: bool = False
    z_spacing: float | None = None
    frame_interval: float | None = None
    time_unit: str | None = None

    @property
    def channel_axis(self) -> int | None:
        """Index of the ``C`` or ``S`` axis, or None."""
        return next((i for i, a in enumerate(self.axes) if a in "CS"), None)


# spellings of length units in ImageJ, OME and TIFF metadata -> one name each
_UNITS = {
    "um": "µm", "µm": "µm", "μm": "µm", "micron": "µm", "microns": "µm", "micrometer": "µm",
    "micrometre": "µm", "nm": "nm", "nanometer": "nm", "mm": "mm", "millimeter": "mm",
    "cm": "cm", "centimeter": "cm", "m": "m", "meter": "m", "inch": "inch", "in": "inch",
}
_PER_CM = {"µm": 1e4, "nm": 1e7, "mm": 10.0, "cm": 1.0, "m": 0.01, "inch": 1 / 2.54}


# spellings of time units in ImageJ, OME and napari (pint) metadata -> one name each
_TIME_UNITS = {
    "s": "s", "sec": "s", "second": "s", "seconds": "s", "ms": "ms", "msec": "ms", "millisecond": "ms",
    "milliseconds": "ms", "min": "min", "minute": "min", "minutes": "min", "h": "h", "hr": "h", "hour": "h",
    "hours": "h", "µs": "µs", "us": "µs", "usec": "µs", "microsecond": "µs", "microseconds": "µs",
}


def normalize_time_unit(unit: object) -> str | None:
    """One spelling per time unit (``sec``/``second`` -> ``s``; ``ms``, ``min``, ``h``, ``µs``); None
    for none or a unit that is not time (e.g. napari's ``pixel``)."""
    return _TIME_UNITS.get(str(unit).strip().lower()) if unit else None


def normalize_unit(unit: str | None) -> str | None:
    """One spelling per length unit (``micron``/``um`` -> ``µm``); None for none or unknown units."""
    if not unit or not isinstance(unit, str):
        return None
    return _UNITS.get(unit.strip().lower().replace("\\u00b5", "µ"))  # "\\u00B5m": ImageJ's escaped µm


def unit_factor(unit_from: str, unit_to: str) -> float:
    """Multiply a length in ``unit_from`` by this to get it in ``unit_to``."""
    return _PER_CM[unit_to] / _PER_CM[unit_from]


def pixel_size_um(pixel_size: tuple[float, float] | None, unit: str | None) -> float | None:
    """A (y, x) pixel size in ``unit`` as one size in micrometres (their geometric mean); None when
    either is missing or the unit is not a known length."""
    unit = normalize_unit(unit)
    if pixel_size is None or unit is None:
        return None
    y, x = (float(v) for v in pixel_size)
    if not (math.isfinite(y) and math.isfinite(x) and y > 0 and x > 0):
        return None
    return math.sqrt(y * x) * unit_factor(unit, "µm")


def _positive(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


#: pixel size (y, x), its unit and the Z spacing (in that unit), each None when unknown
Calibration = tuple[tuple[float, float] | None, str | None, float | None]


def _tiff_geometry(tif: tifffile.TiffFile, series: int) -> dict:
    """:class:`ImageData`'s calibration fields for image ``series`` of a TIFF (none when its
    metadata is malformed: calibration is optional and must not stop reading)."""
    try:
        px = _ome_pixels(tif, series)  # (the OME-XML read once for both)
        pixel_size, unit, z_spacing = _tiff_calibration(tif, series, px)
        frame_interval, time_unit = _tiff_timing(tif, px)
    except Exception:
        return {}
    return {"pixel_size": pixel_size, "unit": unit, "z_spacing": z_spacing, "frame_interval": frame_interval,
            "time_unit": time_unit}


def _tiff_timing(tif: tifffile.TiffFile, px: ET.Element | None) -> tuple[float | None, str | None]:
    """Time between frames (T) and its unit: OME's ``TimeIncrement`` (unit s unless it says) of the
    image's OME ``<Pixels>`` ``px``, else ImageJ's ``finterval`` and ``tunit`` (ImageJ's default: sec)."""
    if px is not None and (dt := _positive(px.get("TimeIncrement"))):
        return dt, px.get("TimeIncrementUnit") or "s"
    ij = tif.imagej_metadata or {}
    dt = _positive(ij.get("finterval"))
    return dt, (str(ij.get("tunit") or "sec") if dt else None)


def _tiff_calibration(tif: tifffile.TiffFile, series: int, px: ET.Element | None) -> Calibration:
    """Pixel size (y, x), unit and Z spacing of image ``series`` from OME (its ``<Pixels>`` ``px``),
    ImageJ or TIFF resolution metadata."""
    if px is not None:
        found = _ome_calibration(px)
        if found[0]:
            return found
    page = tif.series[series].keyframe if tif.series else tif.pages[0]
    tags = page.tags
    ij = tif.imagej_metadata or {}
    spacing = _positive(ij.get("spacing"))
    if "XResolution" not in tags or "YResolution" not in tags:
        return None, normalize_unit(ij.get("unit")), spacing
    try:
        (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
        sx, sy = _positive(xd / xn), _positive(yd / yn)
    except (TypeError, ValueError, ZeroDivisionError):
        return None, None, spacing
    if not sx or not sy:
        return None, None, spacing
    resunit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    unit = normalize_unit(ij.get("unit"))
    if sx == 1 and sy == 1:
        return None, unit, spacing  # 1 pixel per unit: tifffile's and many writers' "no resolution"
    if unit is None:  # plain TIFF: resolution in pixels per ResolutionUnit, kept in that unit
        unit = {2: "inch", 3: "cm", 4: "mm", 5: "µm"}.get(resunit)
        if unit == "inch" and round(1 / sx, 6) in (72, 96, 300):
            return None, None, spacing  # a screen or print default, not a calibration
    return (sy, sx), unit, spacing


def _ome_pixels(tif: tifffile.TiffFile, series: int) -> ET.Element | None:
    """The OME ``<Pixels>`` of tifffile's series ``series`` (None: not an OME-TIFF, or malformed
    OME-XML): one per ``<Image>``, in order, when tifffile made a series of each; else the
    ``<Image>`` of the series' name, if only one has it."""
    if not (tif.is_ome and tif.ome_metadata):
        return None
    try:
        root = ET.fromstring(tif.ome_metadata)
    except ET.ParseError:
        return None
    images = [el for el in root if el.tag.rsplit("}", 1)[-1] == "Image"]
    if len(images) == len(tif.series) and 0 <= series < len(images):
        image = images[series]
    else:
        name = tif.series[series].name if 0 <= series < len(tif.series) else None
        named = [el for el in images if name and el.get("Name") == name]
        image = named[0] if len(named) == 1 else (images[0] if len(images) == 1 else None)
    if image is None:
        return None
    return next((el for el in image if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)


def _ome_calibration(px: ET.Element) -> Calibration:
    """Pixel size (y, x) and Z spacing of an OME ``<Pixels>``, all in the unit of its
    ``PhysicalSizeX`` (each size has its own unit attribute; OME's default unit is µm)."""
    sizes = {a: _positive(px.get(f"PhysicalSize{a}")) for a in "XYZ"}
    units = {a: normalize_unit(px.get(f"PhysicalSize{a}Unit") or "µm") for a in "XYZ"}
    if not (sizes["X"] and sizes["Y"]):
        return None, None, None
    unit = units["X"]
    if unit is None or units["Y"] is None:  # not a length unit we know: sizes as they are, no unit
        return (sizes["Y"], sizes["X"]), None, None
    sy = sizes["Y"] * unit_factor(units["Y"], unit)
    sz = sizes["Z"] * unit_factor(units["Z"], unit) if sizes["Z"] and units["Z"] else None
    return (sy, sizes["X"]), unit, sz


def _tiff_axes(tif, series, arr: np.ndarray) -> tuple[str, bool]:
    """The series' axes; ``S`` counts as RGB colour when the file stores RGB pixels the
    usual way (photometric RGB, interleaved or 8-bit). Separate 16/32-bit sample planes
    (what tifffile writes for a bare (3, H, W) array) are not called colour: ``Q``."""
    axes = series.axes
    if len(axes) != arr.ndim:  # squeezed differently; fall back to undeclared leading axes
        axes = "Q" * (arr.ndim - 2) + "YX"
    if "S" not in axes:
        if axes[-3:-2] in ("Q", "I") and guess_axes_channel(arr.shape) == arr.ndim - 1:
            # a plain (H, W, C) array that tifffile stores as H pages of (W, C): C is channels
            return axes[:-3] + "YXC", False
        return axes, False
    page = tif.pages[0]
    photometric = int(getattr(page, "photometric", 1))
    n = arr.shape[axes.index("S")]
    is_colour = photometric in (2, 6) and n in (3, 4)  # RGB, YCbCr (decoded to RGB)
    if is_colour and int(getattr(page, "planarconfig", 1)) == 2 and arr.dtype != np.uint8:
        return axes.replace("S", "Q"), False
    if not is_colour:
        return axes.replace("S", "C"), False
    return axes.replace("C", "Q"), True  # one channel axis: RGB samples; other "channels" undeclared


#: names of a slide file's side images (scanners store them as extra series), never the data
SIDE_IMAGE_WORDS = ("thumbnail", "label", "macro", "overview", "preview")


def data_series(tif: tifffile.TiffFile) -> list[int]:
    """The indices (tifffile's ``series``) of the images a TIFF holds: the positions of a
    multi-position OME-TIFF, the images appended to one file. A slide's thumbnail, label and
    macro images are left out; the pyramid levels of one image are one series."""
    return [i for i, s in enumerate(tif.series) if not any(w in (s.name or "").lower() for w in SIDE_IMAGE_WORDS)]


def image_series(path: str | os.PathLike) -> list[int]:
    """The series indices of the images in ``path`` (``[0]`` for every file but a TIFF; a clear
    :class:`SeglabError` for a TIFF that cannot be read)."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        return [0]
    try:
        with tifffile.TiffFile(path) as tif:
            found = data_series(tif)
    except Exception as e:
        raise SeglabError(f"cannot read {path.name}: {type(e).__name__}: {e}") from None
    return found or [0]


def series_stem(stem: str, series: int | None) -> str:
    """The name one image of a file of several is written under (``well_s2``); ``stem`` for None."""
    return stem if series is None else f"{stem}_s{series}"


def warn_other_images(tif: tifffile.TiffFile, name: str) -> None:
    """Say so when a TIFF holds more images than its first series (e.g. the positions of a
    multi-position OME-TIFF) and only the first is read: never silently. A slide's thumbnail,
    label and macro images and the pyramid levels of one image are not counted."""
    images = [tif.series[i] for i in data_series(tif)]
    if len(images) > 1:
        shapes = ", ".join("x".join(str(n) for n in s.shape) for s in images[:4]) + (", ..." if len(images) > 4 else "")
        warnings.warn(f"{name} holds {len(images)} images ({images[0].kind} series: {shapes}); only the first is "
                      "read: `seglab segment --series all` segments each into its own outputs (or save each as "
                      "its own file, e.g. Fiji's Bio-Formats, 'open all series')", SeglabWarning, stacklevel=3)


def _pick_series(tif: tifffile.TiffFile, name: str, series: int | None) -> tuple[int, tifffile.TiffPageSeries]:
    """The index and series to read: for None the first image (a slide's side images skipped;
    warning when there are more), else ``series``."""
    if not tif.series:
        raise SeglabError(f"{name} holds no image")
    if series is None:
        warn_other_images(tif, name)
        series = (data_series(tif) or [0])[0]
    elif not 0 <= series < len(tif.series):
        raise SeglabError(f"{name} has no image (series) {series}: it holds {len(tif.series)} "
                          f"(0 to {len(tif.series) - 1})")
    return series, tif.series[series]


def read_image_data(path: str | os.PathLike, lazy: bool | None = False, series: int | None = None, *,
                    indexed: bool = False) -> ImageData:
    """Read an image file with its axes and calibration; a clear :class:`SeglabError` when it
    is missing, unsupported, corrupt or empty.

    ``series``: which image of a TIFF that holds several (:func:`image_series`); None reads the
    first and warns when there are others. Other files hold one image (series 0).
    ``indexed``: a palette (indexed colour) PNG/BMP gives its indices (label images), not its colours.

    A zarr or OME-Zarr store is always opened lazily (``array`` is a zarr array). A TIFF is read
    lazily when ``lazy`` is true, or when None and it is large (:func:`is_large_input`): memory-mapped
    when its pixels are stored uncompressed in one piece, else as a zarr array over its tiles or
    strips (tifffile's ``aszarr``)."""
    path = Path(path)
    from seglab.io.zarr_io import is_zarr_path, read_zarr_image

    is_tiff = path.suffix.lower() in TIFF_SUFFIXES
    if series not in (None, 0) and not is_tiff:
        raise SeglabError(f"{path.name} holds one image; there is no series {series}")
    if is_zarr_path(path):
        return read_zarr_image(path)
    if lazy is None:
        lazy = is_large_input(path)
    if lazy and path.is_file() and is_tiff:
        return _read_tiff_lazy(path, series)
    if not path.is_file():
        raise SeglabError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise SeglabError(f"unsupported file type {suffix or '(none)'} for {path.name}; supported: {', '.join(IMAGE_SUFFIXES)}")
    geometry: dict = {}
    try:
        if suffix in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                index, chosen = _pick_series(tif, path.name, series)
                arr = np.asarray(chosen.asarray())
                axes, rgb = _tiff_axes(tif, chosen, arr)
                geometry = _tiff_geometry(tif, index)
        else:
            arr = _read_other(path, indexed)
            rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
            axes = {2: "YX", 3: "YXS" if rgb else "YXC"}.get(arr.ndim, "Q" * (arr.ndim - 2) + "YX")
    except SeglabError:
        raise
    except Exception as e:  # decoders raise many types for corrupt files
        raise SeglabError(f"cannot read {path.name}: {type(e).__name__}: {e}") from None
    if arr.size == 0:
        raise SeglabError(f"{path.name} holds an empty image")
    return ImageData(arr, axes, rgb=rgb, **geometry)


#: Pillow's colour modes that are not RGB (decoded to RGB: never mistaken for channels or alpha)
_OTHER_COLOUR_MODES = ("CMYK", "YCbCr", "LAB", "HSV")


def _read_other(path: Path, indexed: bool = False) -> np.ndarray:
    """A PNG, JPEG or BMP as an array: 16-bit PNGs at full depth (imagecodecs: Pillow reads
    16-bit colour as 8 bits), other colour spaces (CMYK, YCbCr, LAB) and palettes as RGB(A),
    a palette's indices instead when ``indexed``."""
    if _png_bit_depth(path) == 16:
        import imagecodecs

        return np.asarray(imagecodecs.png_decode(path.read_bytes()))
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(_pillow_rgb(im, indexed))


def _png_bit_depth(path: Path) -> int | None:
    """The bit depth in a PNG's header (IHDR), or None for other files."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24]


def _pillow_rgb(im: PILImage, indexed: bool = False) -> PILImage:
    """A Pillow image whose pixels are grey, RGB(A) or a palette's indices (``indexed``)."""
    if im.mode in _OTHER_COLOUR_MODES:
        return im.convert("RGB")
    if im.mode in ("P", "PA") and not indexed:
        return im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    if im.mode == "PA":
        return im.getchannel("P")
    return im


def _read_tiff_lazy(path: Path, series: int | None = None) -> ImageData:
    """A TIFF's series (None: the first) without loading it: ``np.memmap`` or a zarr array over its pages."""
    try:
        tif = tifffile.TiffFile(path)
    except Exception as e:
        raise SeglabError(f"cannot read {path.name}: {type(e).__name__}: {e}") from None
    try:
        index, chosen = _pick_series(tif, path.name, series)
        try:
            arr = tifffile.memmap(path, series=index, mode="r")
        except Exception:  # compressed or scattered pixels: chunk by tile/strip through zarr
            import zarr

            arr = zarr.open(chosen.aszarr(level=0), mode="r")
        if tuple(arr.shape) != tuple(chosen.shape):
            raise SeglabError(f"{path.name}: cannot map the image lazily (shape {arr.shape} vs {chosen.shape})")
        axes, rgb = _tiff_axes(tif, chosen, _ShapeOnly(arr.shape, arr.dtype))
        geometry = _tiff_geometry(tif, index)
    except SeglabError:
        tif.close()
        raise
    except Exception as e:
        tif.close()
        raise SeglabError(f"cannot read {path.name}: {type(e).__name__}: {e}") from None
    if isinstance(arr, np.memmap):
        tif.close()  # the map keeps its own handle; the zarr view needs the file open
    return ImageData(arr, axes, rgb=rgb, **geometry)


class _ShapeOnly:
    """What :func:`_tiff_axes` looks at of an array (shape, ndim, dtype), without its pixels."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape, self.ndim, self.dtype = tuple(shape), len(shape), np.dtype(dtype)


def read_image(path: str | os.PathLike, *, indexed: bool = False) -> np.ndarray:
    """Read an image file as an array (see :func:`read_image_data` for its axes and pixel size)."""
    return read_image_data(path, indexed=indexed).array


def guess_channel_axis(arr: np.ndarray) -> int | None:
    """Channel axis of a freshly read RGB(A) image: last axis when it has 3 or 4 entries.

    Used for annotated training/evaluation folders (RGB PNGs); segmentation input goes
    through :func:`read_image_data` and :mod:`seglab.axes` instead."""
    if arr.ndim >= 3 and arr.shape[-1] in (3, 4):
        return arr.ndim - 1
    return None


def list_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (their image files, sorted) into a list of image paths."""
    from seglab.io.zarr_io import is_zarr_path

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if is_zarr_path(p):  # a zarr store is one image, not a folder of images
            out.append(p)
        elif p.is_dir():
            found = sorted(q for q in p.iterdir() if (q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
                           or (q.is_dir() and q.suffix.lower() == ".zarr"))
            if not found:
                raise SeglabError(f"folder {p} holds no image files ({', '.join(IMAGE_SUFFIXES)}, .zarr)")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise SeglabError(f"no such file or folder: {p}")
    return out
