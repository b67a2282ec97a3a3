"""Zarr and OME-Zarr: reading images lazily, and writing label images block by block.

Reading (:func:`read_zarr_image`): a zarr array, or an OME-Zarr image (NGFF 0.4 on zarr v2, 0.5
on zarr v3), opened without loading pixels; axes, pixel size, unit and Z spacing come from the
OME ``multiscales`` metadata (its first, full-resolution dataset).

Writing (:class:`LabelsStore`): uint32 labels in chunks of 1024, written into
``<path>.partial`` and renamed to ``<path>`` by :meth:`LabelsStore.finish`, so a store under
its final name is always complete. Two layouts: a plain zarr array, or an OME-Zarr labels group
(``<path>`` holds the ``labels`` attribute and one label image with ``image-label`` metadata and
a ``multiscales`` pyramid, each level half the size of the previous one, nearest neighbour) with
the input's pixel size; ``ome_zarr``'s reader and napari-ome-zarr open it as a Labels layer.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seglab.errors import SeglabError

LABEL_CHUNK = 1024
ZARR_SUFFIXES = (".zarr",)
#: OME-Zarr axis unit names for the units :mod:`seglab.io.images` uses
_OME_UNITS = {"µm": "micrometer", "nm": "nanometer", "mm": "millimeter", "cm": "centimeter", "m": "meter",
              "inch": "inch"}
#: time units (:func:`~seglab.io.images.normalize_time_unit`'s names) as OME-NGFF names them (UDUNITS-2)
_OME_TIME_UNITS = {"s": "second", "ms": "millisecond", "min": "minute", "h": "hour", "µs": "microsecond"}
_AXIS_LETTER = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}


def is_zarr_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a zarr store (a folder ending in ``.zarr``, or holding zarr metadata)."""
    p = Path(path)
    if not p.is_dir():
        return False
    return p.suffix.lower() in ZARR_SUFFIXES or any((p / f).is_file() for f in ("zarr.json", ".zgroup", ".zarray"))


def zarr_stem(path: str | os.PathLike) -> str:
    """The name outputs are named after: ``big.ome.zarr`` -> ``big``, ``big.zarr`` -> ``big``."""
    name = Path(path).name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def is_ome_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an OME-Zarr image (``multiscales`` metadata), by name or content."""
    if Path(path).name.lower().endswith(".ome.zarr"):
        return True
    try:
        return _ome_attrs(_open(path)) is not None
    except SeglabError:
        return False


def _open(path: str | os.PathLike) -> Any:
    import zarr

    try:
        return zarr.open(str(path), mode="r")
    except Exception as e:  # zarr raises many types for broken stores
        raise SeglabError(f"cannot open {Path(path).name} as zarr: {type(e).__name__}: {e}") from None


def _ome_attrs(node: Any) -> dict | None:
    """The OME attributes of a group (0.5: under ``ome``; 0.4: at the top), or None."""
    import zarr

    if not isinstance(node, zarr.Group):
        return None
    attrs = dict(node.attrs)
    ome = attrs.get("ome", attrs)
    return ome if isinstance(ome, dict) and "multiscales" in ome else None


def read_zarr_image(path: str | os.PathLike) -> Any:
    """An :class:`~seglab.io.images.ImageData` whose ``array`` is the (lazy) zarr array of the
    store's full-resolution image, with the axes and calibration the OME metadata declares."""
    import zarr

    from seglab.io.images import ImageData, normalize_unit

    path = Path(path)
    node = _open(path)
    pixel_size = unit = z_spacing = None
    if isinstance(node, zarr.Array):
        arr = node
        axes = "YX" if arr.ndim == 2 else "Q" * (arr.ndim - 2) + "YX"
    else:
        ome = _ome_attrs(node)
        if ome is None:
            arrays = [k for k, v in node.members() if isinstance(v, zarr.Array)]
            if len(arrays) != 1:
                raise SeglabError(f"{path.name} is a zarr group without OME multiscales metadata "
                                  f"and {len(arrays)} arrays; give the path of one array")
            arr = node[arrays[0]]
            axes = "YX" if arr.ndim == 2 else "Q" * (arr.ndim - 2) + "YX"
        else:
            ms = ome["multiscales"][0]
            ds = ms["datasets"][0]
            try:
                arr = node[ds["path"]]
            except KeyError:
                raise SeglabError(f"{path.name}: the OME multiscales dataset {ds['path']!r} is missing") from None
            names = [(a if isinstance(a, str) else a.get("name", "")).lower() for a in ms.get("axes", [])]
            if len(names) != arr.ndim:
                names = ["q"] * (arr.ndim - 2) + ["y", "x"]
            axes = "".join(_AXIS_LETTER.get(n, "Q") for n in names)
            if "Y" not in axes or "X" not in axes:
                raise SeglabError(f"{path.name}: OME axes {names} have no y and x")
            scale = _dataset_scale(ms, ds, arr.ndim)
            if scale is not None:
                sy, sx = scale[axes.index("Y")], scale[axes.index("X")]
                if sy > 0 and sx > 0:
                    pixel_size = (float(sy), float(sx))
                    yaxis = ms["axes"][axes.index("Y")]
                    unit = normalize_unit(yaxis.get("unit")) if isinstance(yaxis, dict) else None
                    if "Z" in axes:
                        z_spacing = float(scale[axes.index("Z")])
    if arr.size == 0:
        raise SeglabError(f"{path.name} holds an empty image")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise SeglabError(f"{path.name} has unsupported data type {arr.dtype}")
    return ImageData(arr, axes, pixel_size, unit, False, z_spacing)


def _dataset_scale(ms: dict, ds: dict, ndim: int) -> list[float] | None:
    """The scale of a dataset (its own ``scale`` transform times the multiscale's, if any)."""
    def scale_of(transforms: Any) -> list[float] | None:
        for t in transforms or []:
            if isinstance(t, dict) and t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
                return [float(v) for v in t["scale"]]
        return None

    own = scale_of(ds.get("coordinateTransformations"))
    top = scale_of(ms.get("coordinateTransformations"))
    if own is None:
        return top
    return own if top is None else [a * b for a, b in zip(own, top)]


@dataclass(frozen=True)
class LabelsGeometry:
    """What an OME-Zarr label image says about its axes: one letter per axis (stack axes, then
    ``YX``), the pixel size (y, x) and unit, the Z spacing, the time between T planes and its
    unit, and where its first pixel lies (``translation``, one entry per axis, in the axes' units)."""

    axes: str
    pixel_size: tuple[float, float] | None = None
    unit: str | None = None
    z_spacing: float | None = None
    frame_interval: float | None = None
    time_unit: str | None = None
    translation: tuple[float, ...] | None = None


def ome_time_unit(unit: str | None) -> str | None:
    """OME-NGFF's name of a time unit (``"sec"`` -> ``"second"``), None for none or an unknown one."""
    from seglab.io.images import normalize_time_unit

    return _OME_TIME_UNITS.get(normalize_time_unit(unit))


def pyramid_levels(shape: Sequence[int], block: int, smallest: int = 256) -> int:
    """How many levels a pyramid of ``shape`` (last two axes Y, X) gets: halve while the larger
    side exceeds ``smallest`` and ``block`` (the write granularity) stays divisible."""
    n, side = 1, max(shape[-2:])
    while side > smallest and block % (2 ** n) == 0 and n < 12:
        side = math.ceil(side / 2)
        n += 1
    return n


def _chunks(shape: tuple[int, ...], chunk: int) -> tuple[int, ...]:
    """One plane of ``chunk`` x ``chunk`` pixels per chunk."""
    return tuple([1] * (len(shape) - 2) + [max(1, min(chunk, shape[-2])), max(1, min(chunk, shape[-1]))])


class LabelsStore:
    """uint32 labels of shape ``(stack..., Y, X)`` written region by region into ``<path>.partial``.

    ``ome`` (a :class:`LabelsGeometry`) makes it an OME-Zarr labels group with a pyramid of
    ``levels`` levels, else a plain zarr array. :meth:`write` fills level 0 and the matching
    pixels of every level (regions must start at multiples of ``2 ** (levels - 1)``);
    :meth:`finish` writes the metadata and renames the store to ``path``; :meth:`abort` removes it.
    """

    def __init__(self, path: str | os.PathLike, shape: Sequence[int], *, ome: LabelsGeometry | None = None,
                 levels: int = 1, name: str | None = None, chunk: int = LABEL_CHUNK) -> None:
        import zarr

        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.shape = tuple(int(s) for s in shape)
        self.ome = ome
        self.name = name or zarr_stem(self.path).removesuffix("_labels") or "labels"
        self.levels = max(1, int(levels)) if ome is not None else 1
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.arrays = []
        try:
            if ome is None:  # a plain array: the store itself is the array
                self.arrays.append(zarr.create_array(store=str(self.partial), shape=self.shape,
                                                     chunks=_chunks(self.shape, chunk), dtype="uint32", fill_value=0))
            else:
                root = zarr.open_group(str(self.partial), mode="w")
                image = root.create_group(self.name)
                for k in range(self.levels):
                    f = 2 ** k
                    lvl = self.shape[:-2] + (math.ceil(self.shape[-2] / f), math.ceil(self.shape[-1] / f))
                    self.arrays.append(self._create(image, str(k), lvl, chunk, [a.lower() for a in ome.axes]))
        except OSError as e:
            raise SeglabError(f"cannot write {self.partial}: {e.strerror or e}") from None

    @staticmethod
    def _create(group: Any, name: str, shape: tuple[int, ...], chunk: int, dims: list[str]) -> Any:
        if len(dims) != len(shape):
            raise SeglabError(f"labels axes {''.join(dims)!r} do not fit the shape {shape}")
        return group.create_array(name, shape=shape, chunks=_chunks(shape, chunk), dtype="uint32", fill_value=0,
                                  dimension_names=dims)

    @property
    def array(self) -> Any:
        """The full-resolution zarr array (being written)."""
        return self.arrays[0]

    def write(self, index: tuple[int, ...], y0: int, x0: int, block: np.ndarray) -> None:
        """Write ``block`` (uint32) at plane ``index``, rows from ``y0``, columns from ``x0``, into
        every level."""
        block = np.asarray(block, dtype=np.uint32)
        for k, arr in enumerate(self.arrays):
            f = 2 ** k
            part = block[::f, ::f] if f > 1 else block
            ys, xs = slice(y0 // f, y0 // f + part.shape[0]), slice(x0 // f, x0 // f + part.shape[1])
            arr[index + (ys, xs)] = part

    def read(self, index: tuple[int, ...], ys: slice, xs: slice) -> np.ndarray:
        """Level 0 pixels of plane ``index`` written so far (0 elsewhere)."""
        return np.asarray(self.arrays[0][index + (ys, xs)])

    def relabel(self, index: tuple[int, ...], box: Sequence[int], mapping: dict[int, int]) -> None:
        """Replace ids ``mapping`` keys by values inside ``box`` (y0, x0, y1, x1) of plane ``index``."""
        keys = np.array(sorted(mapping), dtype=np.uint32)
        values = np.array([mapping[int(k)] for k in keys], dtype=np.uint32)
        for k, arr in enumerate(self.arrays):
            f = 2 ** k
            ys = slice(box[0] // f, -(-box[2] // f))
            xs = slice(box[1] // f, -(-box[3] // f))
            region = np.asarray(arr[index + (ys, xs)])
            pos = np.searchsorted(keys, region)
            hit = (pos < keys.size) & (keys[np.minimum(pos, keys.size - 1)] == region)
            if hit.any():
                region[hit] = values[pos[hit]]
                arr[index + (ys, xs)] = region

    def finish(self, overwrite: bool = True) -> Path:
        """Write the metadata and move the store to its final name."""
        if self.ome is not None:
            self._write_ome_metadata()
        if self.path.exists():
            if not overwrite:
                raise SeglabError(f"{self.path} already exists")
            old = self.path.with_name(self.path.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.path, old)
            os.replace(self.partial, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Remove the unfinished store."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def _write_ome_metadata(self) -> None:
        import zarr

        g = self.ome
        assert g is not None
        root = zarr.open_group(str(self.partial), mode="r+")
        image = root[self.name]
        time_unit = ome_time_unit(g.time_unit) if g.frame_interval else None
        axes = []
        for a in g.axes:
            entry: dict[str, Any] = {"name": a.lower(), "type": "time" if a == "T" else ("channel" if a == "C" else "space")}
            unit = _OME_UNITS.get(g.unit or "") if a in "ZYX" else (time_unit if a == "T" else None)
            if unit and (a != "Z" or g.z_spacing):
                entry["unit"] = unit
            axes.append(entry)
        base = [1.0] * (len(g.axes) - 2) + list(g.pixel_size or (1.0, 1.0))
        if "Z" in g.axes and g.z_spacing:
            base[g.axes.index("Z")] = float(g.z_spacing)
        if "T" in g.axes and g.frame_interval:
            base[g.axes.index("T")] = float(g.frame_interval)
        # every level starts at level 0's first pixel (stride-2 sampling from it): one translation
        shift = ([{"type": "translation", "translation": [float(v) for v in g.translation]}]
                 if g.translation is not None and len(g.translation) == len(g.axes) and any(g.translation) else [])
        datasets = []
        for k in range(self.levels):
            scale = base[:-2] + [base[-2] * 2 ** k, base[-1] * 2 ** k]
            datasets.append({"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}, *shift]})
        multiscales = [{"name": self.name, "axes": axes, "datasets": datasets,
                        "type": "nearest", "metadata": {"method": "stride 2 (nearest neighbour)"}}]
        image_label = {"version": "0.5"}
        if image.metadata.zarr_format == 3:
            image.attrs["ome"] = {"version": "0.5", "multiscales": multiscales, "image-label": image_label}
            root.attrs["ome"] = {"version": "0.5", "labels": [self.name]}
        else:  # pragma: no cover - stores are created as zarr v3
            for m in multiscales:
                m["version"] = "0.4"
            image.attrs.update({"multiscales": multiscales, "image-label": {**image_label, "version": "0.4"}})
            root.attrs["labels"] = [self.name]


def open_labels(path: str | os.PathLike) -> Any:
    """The full-resolution label array of a store written by :class:`LabelsStore` (lazy)."""
    import zarr

    node = _open(path)
    if isinstance(node, zarr.Array):
        return node
    attrs = dict(node.attrs)
    ome = attrs.get("ome", attrs)
    names = ome.get("labels") if isinstance(ome, dict) else None
    if names:
        image = node[names[0]]
        ms = _ome_attrs(image)
        return image[ms["multiscales"][0]["datasets"][0]["path"]] if ms else image["0"]
    raise SeglabError(f"{Path(path).name} holds no label image")


def write_ome_zarr_labels(path: str | os.PathLike, labels: np.ndarray, geometry: LabelsGeometry,
                          overwrite: bool = True) -> Path:
    """Write an in-memory label image as OME-Zarr labels (see :class:`LabelsStore`), atomically:
    into ``<path>.partial``, renamed at the end."""
    import itertools

    labels = np.asarray(labels)
    if labels.ndim < 2 or len(geometry.axes) != labels.ndim:
        raise SeglabError(f"labels of shape {labels.shape} do not fit the axes {geometry.axes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= 2**32):
        raise SeglabError("OME-Zarr labels hold ids from 0 to 4,294,967,295")
    if Path(path).exists() and not overwrite:
        raise SeglabError(f"{path} already exists")
    store = LabelsStore(path, labels.shape, ome=geometry, levels=pyramid_levels(labels.shape, 1 << 12))
    try:
        for index in itertools.product(*[range(s) for s in labels.shape[:-2]]):
            store.write(tuple(index), 0, 0, labels[index])
        return store.finish(overwrite=overwrite)
    except BaseException:
        store.abort()
        raise
