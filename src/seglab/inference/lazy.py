"""Out-of-core segmentation: images larger than memory, block by block, into a zarr store.

:func:`segment_lazy_iter` takes an image that is never loaded whole (a zarr array, a dask
array, a memory-mapped TIFF, or any array-like that returns numpy pixels when sliced) and
writes uint32 labels into a zarr store (plain array, or OME-Zarr labels with a pyramid; see
:class:`seglab.io.zarr_io.LabelsStore`) block by block:

* **Normalisation** is the in-memory path's: per plane and channel, the model's low/high
  percentiles of the same strided sample (every ``step``-th row and column, ``step`` chosen as
  :func:`~seglab.inference.normalize.percentile_normalize` does), read band by band.
* **Low light**: ``denoise`` as there: the plane's noise is measured on the same central window,
  and a smoothed plane's windows are read with the kernel's halo, so they equal the in-memory
  path's whole-plane smoothing (:mod:`seglab.inference.denoise`).
* **Size**: ``diameter`` as in :func:`~seglab.inference.engine.segment_iter`: a number, None, or
  ``"auto"``, estimated once (:func:`~seglab.inference.diameter.estimate_diameter_iter`) on the
  three most structured of nine windows of 1024 px spread over the image (a few planes of a
  stack), or taken from ``pixel_size`` as there; every block is then rescaled by the same factor.
* **Blocks**: cores of ``block_size`` pixels (a multiple of the 1024 px output chunks, so a block
  writes whole chunks) in raster order. Each is segmented with a margin of two object diameters on
  every side (:func:`block_margin`, for the stitching) through the family's own plane path
  (:func:`~seglab.inference.diameter.scaled_plane_iter`), with a tile size chosen so that it
  takes as many tiles as its core would in memory; the window read around it is wider by the
  model's tile context (:func:`context_margin`), and the tiles take their context from those real
  pixels (:class:`~seglab.inference.tiling.Surround`) instead of reflecting the block, so a block
  costs the network about what its core costs in memory.
* **Stitching**: each block writes its core only; objects crossing into the blocks already
  written take their ids by overlap (:mod:`seglab.inference.stitching`), so an object cut by a
  block border keeps one id; ids are unique over the whole image and stack (uint32).
* **Overlap**: a helper thread reads and normalises the next block's window and writes the last
  block's labels and statistics while the network and postprocessing run on the current one (the
  postprocessing leaves a core idle); a block is stitched once the block before it is stored.
* **Progress and cancel**: ``'normalize'``, ``'estimate'`` and ``'block'`` events, and a
  :class:`WrittenEvent` when a block is in the store (a viewer re-reads it then); closing the
  generator removes the unfinished store (written as ``<path>.partial``, renamed at the end).
"""

from __future__ import annotations

import functools
import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seglab.errors import SeglabError
from seglab.inference.appearance import centre_slices, colour_check_needed, warn_if_colour_unsuited
from seglab.inference.denoise import (
    AUTO as DENOISE_AUTO, STRUCTURE_TILE, Smoothing, StructureMeter, choose_smoothing, grey, is_blank, noise_window,
    parse_denoise, steps_of,
)
from seglab.inference.diameter import (
    AUTO, DiameterEstimate, calibrated_estimate, estimate_diameter_iter, parse_diameter, sample_planes, scale_factor,
    scaled_plane_iter,
)
from seglab.inference.engine import DEFAULT_TILE_SIZE, ProgressEvent, check_augment, place_network
from seglab.inference.normalize import (
    MAX_EDGE_LINES, MIN_MENDED_SIDE, SIDES, BlackPadding, channel_range, edge_depth, edge_lines, mend_edges,
    padding_of, select_channels,
)
from seglab.inference.stitching import IdUnion, ObjectStats, match_seam_objects
from seglab.inference.tiling import Surround, tile_context
from seglab.io.zarr_io import LabelsGeometry, LabelsStore, pyramid_levels
from seglab.models.base import Prediction, SegmentationModel

#: default block core (pixels per side); a multiple of the output chunks
DEFAULT_BLOCK_SIZE = 4096
#: number of pixels of a plane a percentile sample holds (as in ``percentile_normalize``)
SAMPLE_PIXELS = 1_000_000
#: side of the windows the diameter estimate looks at
ESTIMATE_WINDOW = 1024

#: ``block_fn(x, plane_index)``: a generator of progress events returning the Prediction of a
#: normalised ``(C, h, w)`` window (tests use it to run the stitching on known labels)
BlockFn = Callable[[np.ndarray, int], Generator[Any, None, Prediction]]


def is_lazy(array: Any) -> bool:
    """Whether an image must go through the out-of-core engine: anything but an in-memory numpy
    array (zarr and dask arrays, memory-mapped files)."""
    return isinstance(array, np.memmap) or not isinstance(array, np.ndarray)


@dataclass
class LazyPlanes:
    """Windows of the planes of a lazy array: axes letters of the array (``Y``, ``X``; ``C``/``S``
    channels; anything else a stack axis)."""

    array: Any
    axes: str

    def __post_init__(self) -> None:
        if len(self.axes) != len(self.array.shape):
            raise SeglabError(f"axes {self.axes!r} do not fit an image of shape {tuple(self.array.shape)}")
        if "Y" not in self.axes or "X" not in self.axes:
            raise SeglabError(f"axes {self.axes!r} have no Y and X")
        chans = [i for i, a in enumerate(self.axes) if a in "CS"]
        if len(chans) > 1:
            raise SeglabError(f"axes {self.axes!r} have more than one channel axis")
        self.channel = chans[0] if chans else None
        self.stack_axes = [i for i, a in enumerate(self.axes) if a not in "YXCS"]

    @property
    def height(self) -> int:
        return int(self.array.shape[self.axes.index("Y")])

    @property
    def width(self) -> int:
        return int(self.array.shape[self.axes.index("X")])

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return tuple(int(self.array.shape[i]) for i in self.stack_axes)

    def indices(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*[range(s) for s in self.stack_shape])) if self.stack_axes else [()]

    def row_chunk(self) -> int:
        """Rows per stored chunk (zarr ``chunks``, dask ``chunksize``), else 1024."""
        chunks = getattr(self.array, "chunksize", None) or getattr(self.array, "chunks", None)
        try:
            c = int(chunks[self.axes.index("Y")])
        except (TypeError, IndexError, ValueError):
            c = 1024
        return max(1, min(c, 4096))

    def read(self, index: tuple[int, ...], ys: slice, xs: slice) -> np.ndarray:
        """Pixels of plane ``index`` in rows ``ys`` and columns ``xs``: ``(h, w)`` or ``(h, w, C)``."""
        key: list[Any] = []
        it = iter(index)
        for a in self.axes:
            key.append(ys if a == "Y" else xs if a == "X" else slice(None) if a in "CS" else next(it))
        out = np.asarray(self.array[tuple(key)])
        kept = [a for a in self.axes if a in "YXCS"]
        order = [kept.index("Y"), kept.index("X")] + ([kept.index(self.axes[self.channel])]
                                                       if self.channel is not None else [])
        return np.transpose(out, order) if order != list(range(out.ndim)) else out


def default_axes(shape: Sequence[int]) -> str:
    """Axes of an array without metadata: ``YX``, ``YXS`` for a last axis of 3-4, else stacks."""
    n = len(shape)
    if n == 3 and shape[-1] in (3, 4):
        return "YXS"
    return "Q" * (n - 2) + "YX"


@dataclass
class Normalizer:
    """Per-channel ``lo``/``hi`` of a plane: pixels map to ``(v - lo) / (hi - lo)``; ``edges``:
    per channel, the plane's artifact lines (:func:`~seglab.inference.normalize.find_edge_artifacts`)."""

    lo: np.ndarray
    hi: np.ndarray
    edges: list[dict[str, int]] = field(default_factory=list)
    #: the plane's black padding, filled before scaling (models with ``normalization["fill_black"]``)
    padding: BlackPadding | None = None
    #: per channel: clip at 1 (its high percentile was lowered past bright debris)
    clip: np.ndarray | None = None

    def mend(self, x: np.ndarray, ys: slice, xs: slice, height: int, width: int) -> np.ndarray:
        """Mend, in place, the artifact lines of the normalised window ``x`` (rows ``ys``, columns
        ``xs`` of a ``height`` x ``width`` plane) at the plane edges it touches."""
        touches = {"top": ys.start == 0, "bottom": ys.stop == height, "left": xs.start == 0, "right": xs.stop == width}
        for c, found in enumerate(self.edges):
            mend_edges(x[c], {side: k for side, k in found.items() if touches[side]})
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.padding is not None:
            x = self.padding.fill(x)
        out = np.empty(x.shape, np.float32)
        for c in range(x.shape[0]):
            span = float(self.hi[c] - self.lo[c])
            if not math.isfinite(span) or span < 1e-6:
                out[c] = 0.0
                continue
            np.subtract(x[c], self.lo[c], out=out[c])
            out[c] *= 1.0 / span
            if self.clip is not None and self.clip[c]:
                np.minimum(out[c], 1.0, out=out[c])
        out[~np.isfinite(out)] = 0.0
        return out


class NormalizeEvent(ProgressEvent):
    """Reading a plane's percentile sample: counts as nothing of the plane's share of the bar."""

    @property
    def fraction(self) -> float:
        return self.plane / max(self.n_planes, 1)


@dataclass
class StoreEvent(ProgressEvent):
    """Yielded once, when the labels store exists: ``labels`` is its (partial) full-resolution
    zarr array, which fills block by block (a viewer can show it while the run goes on)."""

    labels: Any = None


class WrittenEvent(ProgressEvent):
    """A block's labels are in the store: a viewer showing it may re-read it now."""


@dataclass
class LazyResult:
    """What an out-of-core run gave: the labels store (path and lazy array) and the object table."""

    path: Path
    labels: Any  # the zarr array of full-resolution labels
    table: dict[str, np.ndarray]
    thresholds: dict[str, float] = field(default_factory=dict)
    diameter: float | None = None
    scale_factor: float = 1.0
    extras: list[dict[str, Any]] = field(default_factory=list)
    blocks: int = 0
    merged: int = 0  # ids joined after the fact (an object two finished blocks had given two ids)
    #: the image's pixel size (micrometres) that ``"auto"`` took the diameter from, when it did
    pixel_size: float | None = None
    #: per plane, the smoothing it got before the model (``denoise``; low light)
    smoothing: list[Smoothing] = field(default_factory=list)

    @property
    def n_objects(self) -> int:
        return int(len(self.table["label"]))


class _Input:
    """A lazy image with the model's channel handling, per-plane normalisation and smoothing."""

    def __init__(self, src: LazyPlanes, model: SegmentationModel, channels: Sequence[int] | None, rgb: bool | None,
                 denoise: str | bool = DENOISE_AUTO):
        self.src, self.model, self.channels = src, model, channels
        self.rgb = rgb if rgb is not None else (src.channel is not None and src.axes[src.channel] == "S"
                                                and src.array.shape[src.channel] in (3, 4))
        self.norms: dict[tuple[int, ...], Normalizer] = {}
        self.denoise = parse_denoise(denoise)
        self.smoothing: dict[tuple[int, ...], Smoothing] = {}

    def channels_of(self, pixels: np.ndarray) -> np.ndarray:
        return select_channels(pixels, self.model.config.input_channels, 2 if pixels.ndim == 3 else None,
                               self.channels, self.rgb)

    def normalizer_iter(self, index: tuple[int, ...], p: int, n_planes: int) -> Generator[ProgressEvent, None, Normalizer]:
        """The plane's percentiles from the in-memory path's strided sample, read in bands."""
        if index in self.norms:
            return self.norms[index]
        h, w = self.src.height, self.src.width
        step = int(math.ceil(math.sqrt(h * w / SAMPLE_PIXELS))) if h * w > SAMPLE_PIXELS else 1
        band = max(step, (self.src.row_chunk() // step) * step)
        samples: list[np.ndarray] = []  # (C, rows, columns) of the strided plane, band by band
        n = MAX_EDGE_LINES + 2  # lines at each edge that say whether it has artifact lines
        left, right = [], []
        n_bands = -(-h // band)
        structure = StructureMeter(h, w)  # whether the plane is blank: at full resolution, as in memory
        for i, r0 in enumerate(range(0, h, band)):
            rows = self.src.read(index, slice(r0, min(h, r0 + band)), slice(0, w))
            samples.append(self.channels_of(rows[::step, ::step]))
            for t in range(0, rows.shape[0], STRUCTURE_TILE):  # (a tile row of float channels at a time)
                structure.add(grey(self.channels_of(rows[t : t + STRUCTURE_TILE])))
            left.append(self.channels_of(rows[:, :n]))
            right.append(self.channels_of(rows[:, max(w - n, 0):]))
            yield NormalizeEvent("normalize", i + 1, n_bands, p, n_planes)
        plane = np.concatenate(samples, axis=1)  # the in-memory path's strided plane
        sample = plane.reshape(plane.shape[0], -1)
        norm = self.model.config.normalization
        padding = padding_of(sample, norm)
        counted = np.isfinite(plane)
        if padding is not None:  # left out of the percentiles, as in memory (filled: no image)
            counted &= ~padding.mask(sample).reshape(plane.shape[1:])
        low, high = float(norm.get("low", 1.0)), float(norm.get("high", 99.8))
        lo, hi = np.zeros(plane.shape[0]), np.zeros(plane.shape[0])
        clip = np.zeros(plane.shape[0], bool)  # channels whose debris saturates at 1 (as in memory)
        for c in range(plane.shape[0]):
            ch = plane[c][counted[c]]
            if ch.size:
                outliers, sparse = bool(norm.get("bright_outliers")), bool(norm.get("sparse_objects"))
                plane_at = ((lambda lo_c, c=c: np.where(counted[c], plane[c], lo_c))
                            if outliers or sparse else None)
                lo[c], hi[c], clip[c] = channel_range(ch, low, high, plane_at, outliers=outliers, sparse=sparse)
        normalizer = Normalizer(lo, hi, padding=padding, clip=clip)
        if min(h, w) >= MIN_MENDED_SIDE:  # the in-memory path's test, on the same lines
            edge = {"top": normalizer(self.channels_of(self.src.read(index, slice(0, n), slice(0, w)))),
                    "bottom": normalizer(self.channels_of(self.src.read(index, slice(h - n, h), slice(0, w)))),
                    "left": normalizer(np.concatenate(left, axis=1)), "right": normalizer(np.concatenate(right, axis=1))}
            for c in range(len(lo)):
                depths = {side: edge_depth(edge_lines(edge[side][c], side)) for side in SIDES}
                normalizer.edges.append({side: k for side, k in depths.items() if k})
        self.norms[index] = normalizer
        if is_blank(structure.ratio):  # white noise or constant: no objects (as in memory)
            self.smoothing[index] = Smoothing(blank=True)
        else:  # the in-memory path's choice, on the same central window of the normalised plane
            self.smoothing[index] = choose_smoothing(steps_of(self.model.config),
                                                     self.normalized(index, *noise_window(h, w)), self.denoise)
        return normalizer

    def normalized(self, index: tuple[int, ...], ys: slice, xs: slice) -> np.ndarray:
        """A normalised ``(C, h, w)`` window, its edge artifact lines mended (the plane's
        normaliser must exist)."""
        x = self.norms[index](self.channels_of(self.src.read(index, ys, xs)))
        return self.norms[index].mend(x, ys, xs, self.src.height, self.src.width)

    def window(self, index: tuple[int, ...], ys: slice, xs: slice) -> np.ndarray:
        """What the model sees of a window: normalised, mended, and smoothed where the plane is
        (read with the kernel's halo, so that it equals the in-memory path's whole-plane smoothing)."""
        smoothing = self.smoothing.get(index)
        if smoothing is None or smoothing.sigma <= 0:
            return self.normalized(index, ys, xs)
        r, h, w = smoothing.halo, self.src.height, self.src.width
        oy, ox = slice(max(0, ys.start - r), min(h, ys.stop + r)), slice(max(0, xs.start - r), min(w, xs.stop + r))
        x = smoothing.apply(self.normalized(index, oy, ox))
        top, left = ys.start - oy.start, xs.start - ox.start
        return x[:, top : top + ys.stop - ys.start, left : left + xs.stop - xs.start]


def block_starts(n: int, block: int) -> list[tuple[int, int]]:
    """Half-open ranges of block cores along an axis of ``n`` pixels."""
    return [(s, min(n, s + block)) for s in range(0, n, block)]


def block_margin(model: SegmentationModel, factor: float) -> int:
    """Margin (original pixels) segmented around a block core: two object diameters at the model's
    scale (at least 32 px there), so that objects crossing the core border lie whole in it and take
    their ids from the blocks already written by overlap."""
    d = float(model.config.object_diameter or 16.0)
    return int(math.ceil(max(32.0, 2.0 * d) / max(factor, 1e-6) / 16.0) * 16)


def context_margin(model: SegmentationModel, factor: float) -> int:
    """Real pixels (original) read around a block's segmented part: the model's tile context at its
    scale, plus a pixel for the rescale, so that the block's pixels see what they would in one
    piece."""
    return int(math.ceil((tile_context(model) + 1) / max(factor, 1e-6))) + (0 if factor == 1.0 else 1)


def inner_tile_size(window: tuple[int, int], core: tuple[int, int], factor: float, tile_size: int,
                    divisor: int) -> int:
    """Tile size for a window so that it takes as many tiles per axis as its core would in memory."""
    size = 0
    for n, c in zip(window, core):
        k = max(1, math.ceil(c * factor / tile_size))
        size = max(size, math.ceil(n * factor / k))
    return int(math.ceil(size / divisor) * divisor)


def _estimate_windows(inp: _Input, index: tuple[int, ...]) -> list[tuple[slice, slice]]:
    """The three most structured (standard deviation) of nine windows spread over a plane."""
    h, w = inp.src.height, inp.src.width
    wh, ww = min(h, ESTIMATE_WINDOW), min(w, ESTIMATE_WINDOW)
    cands = []
    for y0 in sorted({int(v) for v in np.linspace(0, h - wh, 3)}):
        for x0 in sorted({int(v) for v in np.linspace(0, w - ww, 3)}):
            win = inp.window(index, slice(y0, y0 + wh), slice(x0, x0 + ww))
            cands.append((float(win[:, ::4, ::4].std()), (slice(y0, y0 + wh), slice(x0, x0 + ww))))
    cands.sort(key=lambda c: -c[0])
    return [c[1] for c in cands[:3]]


def _quiet(gen: Generator[Any, None, Any]) -> Generator[ProgressEvent, None, Any]:
    """Re-yield the size estimate's events as counting nothing of the bar (blocks fill it)."""
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        yield NormalizeEvent(ev.stage, ev.done, ev.total, 0, 1)


def _events(gen: Generator[Any, None, Any], block: int, n_blocks: int, p: int, n_planes: int,
            writing: list[Any]) -> Generator[ProgressEvent, None, Any]:
    """Re-yield a block's inner events as one ``'block'`` stage (1000 steps per block), and the
    previous block's :class:`WrittenEvent` as soon as its write is done."""
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        frac = ProgressEvent(ev.stage, ev.done, ev.total).fraction if isinstance(ev, ProgressEvent) else 0.0
        done = block * 1000 + min(999, int(frac * 1000))
        yield ProgressEvent("block", done, n_blocks * 1000, p, n_planes)
        yield from _written(writing, wait=False, at_least=done)


def _written(writing: list[Any], wait: bool, at_least: int = 0) -> Generator[ProgressEvent, None, None]:
    """Yield the :class:`WrittenEvent` of the block being written once its write is done (``wait``:
    wait for it), its progress no lower than ``at_least`` (the next block may have begun); errors
    of the write are raised here."""
    if writing and (wait or writing[0].done()):
        future, event = writing
        writing.clear()
        future.result()
        event.done = max(event.done, at_least)
        yield event


def _release_freed_memory() -> None:
    """Hand the memory of freed blocks back to the system (glibc keeps freed heap memory per thread
    arena otherwise, so that resident memory crept up block by block); nothing elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _write_block(store: LabelsStore, stats: ObjectStats, index: tuple[int, ...], p: int, origin: tuple[int, int],
                 core_lab: np.ndarray, lut: np.ndarray, scores: np.ndarray | None) -> None:
    """A block's core into the store (final ids) and into the object statistics."""
    store.write(index, origin[0], origin[1], lut[core_lab])
    stats.add_block(core_lab, lut, origin, scores, p)


def _size_iter(model: SegmentationModel, inp: _Input, diameter: float | str | None, pixel_size: float | None,
               th: dict[str, float], run: dict, estimate: bool = True,
               ) -> Generator[ProgressEvent, None, DiameterEstimate]:
    """The run's size (:class:`DiameterEstimate`): a given diameter, the image's calibration, or for
    ``"auto"`` an estimate on the three most structured windows of up to three planes spread over
    the stack (each read in bands for its normaliser; the other planes are never read)."""
    d = parse_diameter(diameter)
    target = model.config.object_diameter
    if isinstance(d, float):
        return DiameterEstimate(d, scale_factor(target, d) if target else 1.0)
    if d == AUTO and target and (calibrated := calibrated_estimate(model, pixel_size)) is not None:
        return calibrated  # from the image's calibration, no estimate
    if not (d == AUTO and target and estimate):
        return DiameterEstimate(None, 1.0)
    indices = inp.src.indices()
    n_planes = len(indices)
    wins = []
    for i in sample_planes(n_planes):
        yield from inp.normalizer_iter(indices[i], i, n_planes)
        if not inp.smoothing[indices[i]].blank:  # (no size to read on an empty view)
            wins += [inp.window(indices[i], *sl) for sl in _estimate_windows(inp, indices[i])]
    if not wins:  # every plane looked at is blank: nothing to rescale for
        return DiameterEstimate(None, 1.0)
    size = yield from _quiet(estimate_diameter_iter(model, wins, th, **run))
    size.reusable = {}
    return size


def checked_planes(image: Any, axes: str | None) -> LazyPlanes:
    """The planes of a lazy ``image`` (``axes`` default :func:`default_axes`); a clear error for an
    empty image or one that does not hold numbers."""
    src = LazyPlanes(image, (axes or default_axes(image.shape)).upper())
    if src.height < 1 or src.width < 1:
        raise SeglabError(f"image is empty (shape {tuple(image.shape)})")
    if not (np.issubdtype(np.dtype(image.dtype), np.number) or np.dtype(image.dtype) == bool):
        raise SeglabError(f"image has unsupported data type {image.dtype}")
    return src


def estimate_lazy_iter(
    model: SegmentationModel,
    image: Any,
    *,
    axes: str | None = None,
    rgb: bool | None = None,
    channels: Sequence[int] | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    batch_size: int = 4,
    device: Any = "auto",
    amp: bool = True,
    thresholds: dict[str, float] | None = None,
    pixel_size: float | None = None,
    denoise: str | bool = DENOISE_AUTO,
) -> Generator[ProgressEvent, None, DiameterEstimate]:
    """``diameter="auto"``'s estimate for a lazy image, exactly as :func:`segment_lazy_iter` makes
    it (the same planes and windows; never the whole image in memory, and only the sampled planes
    read), without segmenting it: the *Estimate* button on a dask or zarr layer. Arguments as for
    :func:`segment_lazy_iter`."""
    from seglab.inference.device import resolve_device

    src = checked_planes(image, axes)
    inp = _Input(src, model, channels, rgb, denoise)
    dev = resolve_device(device)
    if model.config.object_diameter and calibrated_estimate(model, pixel_size) is None:
        place_network(model, dev)  # (only when the network runs)
    run = {"tile_size": tile_size, "batch_size": batch_size, "device": dev, "amp": amp}
    return (yield from _size_iter(model, inp, AUTO, pixel_size, model.thresholds(thresholds), run))


def segment_lazy_iter(
    model: SegmentationModel,
    image: Any,
    out: str | Path,
    *,
    axes: str | None = None,
    rgb: bool | None = None,
    channels: Sequence[int] | None = None,
    ome: LabelsGeometry | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    margin: int | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    batch_size: int = 4,
    device: Any = "auto",
    amp: bool = True,
    thresholds: dict[str, float] | None = None,
    diameter: float | str | None = AUTO,
    pixel_size: float | None = None,
    denoise: str | bool = DENOISE_AUTO,
    augment: bool = False,
    overwrite: bool = True,
    block_fn: BlockFn | None = None,
    before_finish: Callable[[LazyResult], None] | None = None,
) -> Generator[ProgressEvent, None, LazyResult]:
    """Segment a lazy image block by block into the zarr store ``out`` (see the module docstring).

    ``axes``: one letter per axis of ``image`` (default :func:`default_axes`); ``ome``: write
    OME-Zarr labels with this geometry (else a plain zarr array); ``block_size``: block core in
    pixels (a multiple of 1024 unless the image is smaller); ``margin``: pixels segmented around
    each core (default :func:`block_margin`; the tile context is read around that);
    ``before_finish(result)`` runs while the store still has its ``.partial`` name (side outputs,
    written before the labels mark the run finished). Other arguments as for
    :func:`~seglab.inference.engine.segment_iter`.
    """
    from seglab.inference.device import resolve_device

    src = checked_planes(image, axes)
    block_size = int(block_size)
    if block_size < 64:
        raise SeglabError(f"block size {block_size} is too small (at least 64 pixels)")
    check_augment(model, augment)
    inp = _Input(src, model, channels, rgb, denoise)
    indices = src.indices()
    n_planes = len(indices)
    if colour_check_needed(model.config, channels, inp.rgb, None if src.channel is None else image.shape[src.channel]):
        # an H&E model given fluorescence (RGB, three channels it takes as R, G, B, or grey) finds little
        warn_if_colour_unsuited(model.config, src.read(indices[n_planes // 2], *centre_slices(src.height, src.width)))
    th = model.thresholds(thresholds)
    dev = resolve_device(device)
    if block_fn is None:
        place_network(model, dev)
    run = {"tile_size": tile_size, "batch_size": batch_size, "device": dev, "amp": amp}

    # ---- the size, once per image or stack ----
    size = yield from _size_iter(model, inp, diameter, pixel_size, th, run, estimate=block_fn is None)
    factor = size.factor
    m = int(margin) if margin is not None else block_margin(model, factor)
    mc = context_margin(model, factor) if block_fn is None else 0

    h, w = src.height, src.width
    rows, cols = block_starts(h, block_size), block_starts(w, block_size)
    n_blocks = len(rows) * len(cols)  # per plane
    stack_shape = src.stack_shape
    levels = pyramid_levels((h, w), block_size) if ome is not None else 1
    store = LabelsStore(out, stack_shape + (h, w), ome=ome, levels=levels)
    try:
        yield StoreEvent("block", 0, n_blocks * 1000, 0, n_planes, labels=store.array)
    except BaseException:
        store.abort()
        raise
    union = IdUnion()
    stats = ObjectStats()
    next_id = 1
    k = 0
    # one helper thread reads (and normalises) the next block's window and writes the last block's
    # labels and statistics while this thread runs the network and postprocessing; a block is
    # stitched only after the block before it is in the store
    io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seglab-block-io")
    writing: list[Any] = []  # [future, WrittenEvent] of the block being written
    try:
        try:
            for p, index in enumerate(indices):
                yield from inp.normalizer_iter(index, p, n_planes)
                if inp.smoothing[index].blank:  # white noise or constant: no objects; the store's zeros stay
                    yield ProgressEvent("block", n_blocks * 1000, n_blocks * 1000, p, n_planes)
                    continue
                cores = list(itertools.product(rows, cols))
                # the part segmented (core + margin) and the window read (that + the tile context)
                parts = [((max(0, y0 - m), min(h, y1 + m)), (max(0, x0 - m), min(w, x1 + m)))
                         for (y0, y1), (x0, x1) in cores]
                wins = [(slice(max(0, py0 - mc), min(h, py1 + mc)), slice(max(0, px0 - mc), min(w, px1 + mc)))
                        for (py0, py1), (px0, px1) in parts]
                reading = io.submit(inp.window, index, *wins[0])
                for b, ((y0, y1), (x0, x1)) in enumerate(cores):
                    win = reading.result()
                    if b + 1 < len(cores):
                        reading = io.submit(inp.window, index, *wins[b + 1])
                    (wy0, wy1), (wx0, wx1) = parts[b]
                    top, left = wy0 - wins[b][0].start, wx0 - wins[b][1].start
                    x = win[:, top : top + wy1 - wy0, left : left + wx1 - wx0]
                    if block_fn is not None:
                        gen = block_fn(x, p)
                    else:
                        t_in = inner_tile_size((wy1 - wy0, wx1 - wx0), (y1 - y0, x1 - x0), factor, tile_size,
                                               model.size_divisor)
                        gen = scaled_plane_iter(model, x, th, factor, p, n_planes, **{**run, "tile_size": t_in},
                                                surround=Surround(win, top, left), augment=augment)
                    pred = yield from _events(gen, b, n_blocks, p, n_planes, writing)
                    del x, win, gen
                    yield from _written(writing, wait=True, at_least=b * 1000 + 999)
                    _release_freed_memory()
                    lab = np.asarray(pred.labels)
                    core = (slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
                    final = store.read(index, slice(wy0, wy1), slice(wx0, wx1))
                    matches = match_seam_objects(lab, final, core, union)
                    del final
                    n = int(lab.max()) if lab.size else 0
                    lut = np.zeros(n + 1, np.uint32)
                    core_lab = np.ascontiguousarray(lab[core])
                    del lab
                    present = np.flatnonzero(np.bincount(core_lab.ravel(), minlength=n + 1))  # not a sort
                    for l in present[present > 0].tolist():
                        found = matches.get(l)
                        if found:
                            root = found[0]
                            for f in found[1:]:
                                root = union.union(root, f)
                            lut[l] = union.find(root)
                        else:
                            lut[l] = next_id
                            next_id += 1
                    if next_id >= 2**32:
                        raise SeglabError("more than 4,294,967,295 objects: uint32 labels cannot hold them")
                    done = WrittenEvent("block", (b + 1) * 1000, n_blocks * 1000, p, n_planes)
                    writing[:] = [io.submit(_write_block, store, stats, index, p, (y0, x0), core_lab, lut,
                                            _scores(pred.table, n)), done]
                    del core_lab, pred
                    k += 1
                yield from _written(writing, wait=True)  # a plane's events before the next plane's
        finally:
            io.shutdown(wait=True, cancel_futures=True)
        absorbed = union.absorbed()
        for a, root in sorted(absorbed.items()):
            stats._grow(max(a, root))
            box = stats.box[a]
            if stats.area[a] > 0:
                store.relabel(indices[int(stats.plane[a])], box.tolist(), {a: root})
            stats.merge(a, root)
        result = LazyResult(store.partial, store.array, stats.table(stack=bool(stack_shape)), th, size.diameter,
                            factor, blocks=k, merged=len(absorbed), pixel_size=size.pixel_size,
                            smoothing=[inp.smoothing.get(i, Smoothing()) for i in indices])
        if before_finish is not None:
            before_finish(result)
        path = store.finish(overwrite=overwrite)
    except BaseException:
        store.abort()
        raise
    from seglab.io.zarr_io import open_labels

    result.path, result.labels = path, open_labels(path)
    return result


def _scores(table: dict[str, np.ndarray], n: int) -> np.ndarray | None:
    """Per block id score (NaN where none) from a prediction's table."""
    if "score" not in table or "label" not in table:
        return None
    out = np.full(n + 1, np.nan)
    ids = np.asarray(table["label"], dtype=np.int64)
    ok = (ids >= 0) & (ids <= n)
    out[ids[ok]] = np.asarray(table["score"], dtype=np.float64)[ok]
    return out


def segment_lazy(model: SegmentationModel, image: Any, out: str | Path, **kwargs: Any) -> LazyResult:
    """:func:`segment_lazy_iter` run to the end."""
    from seglab.progress import run_to_end

    return run_to_end(segment_lazy_iter(model, image, out, **kwargs))
