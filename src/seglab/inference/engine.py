"""One inference engine for all families.

:func:`segment_iter` is a generator: it yields :class:`ProgressEvent` objects as it
works (``'tile'`` after every batch of tiles, ``'postprocess'`` many times per plane,
so that a cancel takes effect within a fraction of a second) and returns a
:class:`Segmentation`. What is particular to a family (its raw output per plane and its
postprocessing) is the model's: the engine calls ``model.raw_output_iter(x, thresholds,
run)`` with a :class:`TileRun` and ``model.postprocess_iter``. The CLI drives it with a progress bar, napari's
``thread_worker`` with ``napari.utils.progress``; stopping iteration (or calling
``close()`` on the generator) cancels the run. :func:`segment` runs it to the end.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seglab.axes import arrange
from seglab.errors import SeglabError
from seglab.inference.appearance import colour_check_needed, warn_if_colour_unsuited
from seglab.inference.denoise import AUTO as DENOISE_AUTO, Smoothing, parse_denoise, prepared_plane
from seglab.inference.device import resolve_device, retry_on_oom
from seglab.inference.diameter import choose_scale_iter, scaled_plane_iter
from seglab.inference.dihedral import augmented_maps_iter, check_augment
from seglab.inference.feature_tap import EncoderTap
from seglab.inference.tiling import Surround, TileGrid, model_grid, pad_plane, tile_context
from seglab.models.base import Prediction, SegmentationModel
from seglab.objects import concat_tables
from seglab.progress import run_to_end  # noqa: F401 - also seglab.inference.engine.run_to_end
from seglab.torch_env import autocast

#: a 2048x2048 image is one tile (its context computed once, not four times: ~20 % fewer pixels
#: through the network than four 1024 px tiles, docs/benchmarks.md "Speed per 2048x2048")
DEFAULT_TILE_SIZE = 2048
#: on the CPU, a batch holds at most this many tile pixels (at least one tile), so that one
#: network step stays well under the 2 s a cancel may take
CPU_BATCH_PIXELS = 1_300_000


@dataclass
class ProgressEvent:
    """Where a run stands: ``done`` of ``total`` steps of ``stage`` in plane ``plane`` of ``n_planes``."""

    stage: str
    done: int
    total: int
    plane: int = 0
    n_planes: int = 1

    @property
    def fraction(self) -> float:
        """Overall fraction done, counting planes as equal shares."""
        within = self.done / self.total if self.total else 1.0
        if self.stage == "tile":
            within *= 0.9
        elif self.stage == "postprocess":
            within = 0.9 + 0.1 * within
        return (self.plane + within) / max(self.n_planes, 1)


@dataclass
class Segmentation:
    """Labels of the whole input (stack axes kept, channels dropped) and the object table."""

    labels: np.ndarray
    table: dict[str, np.ndarray]
    thresholds: dict[str, float] = field(default_factory=dict)
    extras: list[dict[str, Any]] = field(default_factory=list)
    #: object diameter (original pixels) the run assumed (given or estimated; None: unknown)
    diameter: float | None = None
    #: factor each plane was rescaled by before the model (1.0: not rescaled)
    scale_factor: float = 1.0
    #: the image's pixel size (micrometres) that ``"auto"`` took the diameter from, when it did
    pixel_size: float | None = None
    #: per plane, the smoothing it got before the model (``denoise``; low light)
    smoothing: list[Smoothing] = field(default_factory=list)

    @property
    def n_objects(self) -> int:
        """Distinct objects (a linked stack's table has a row per object and plane)."""
        return int(np.unique(self.table["label"]).size)


def predict_maps_iter(
    model: SegmentationModel,
    x: np.ndarray,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    batch_size: int = 4,
    device: torch.device,
    amp: bool = True,
    plane: int = 0,
    n_planes: int = 1,
    context: int | None = None,
    surround: Surround | None = None,
    tap: EncoderTap | None = None,
    augment: bool = False,
) -> Generator[ProgressEvent, None, np.ndarray]:
    """Dense maps ``(K, ceil(H / s), ceil(W / s))`` for a normalised ``(C, H, W)`` plane, tile
    by tile (``s`` is the model's output stride; a view of channel-last memory for a model whose
    ``maps_channel_last`` is set); ``context``: pixels around each tile (default
    :func:`~seglab.inference.tiling.tile_context`, what makes tiled and untiled runs agree);
    ``surround``: the plane's real surroundings, which tiles take their context from; ``tap``:
    reads the encoder's features of a window from the tiles as they pass (the size model's input);
    ``augment``: each tile's maps averaged over its eight orientations (:mod:`~seglab.inference.dihedral`)."""
    if augment and tap is not None:
        raise SeglabError("the size model reads one pass of the tiles, not an augmented one")
    _, h, w = x.shape
    context = tile_context(model) if context is None else int(context)
    s = int(model.output_stride)
    if context % s or model.size_divisor % s:
        raise SeglabError(f"tile context {context} and size divisor {model.size_divisor} must be multiples of the output stride {s}")
    out: np.ndarray | None = None
    dst: torch.Tensor | None = None  # out, as torch sees it
    last = bool(getattr(model, "maps_channel_last", False))
    total, batches = _tile_batches(model, x, tile_size, batch_size, device, channels_last=True, context=context,
                                   surround=surround)
    done = 0
    yield ProgressEvent("tile", 0, total, plane, n_planes)
    for grid, chunk, batch in batches:
        steps = augmented_maps_iter(model, batch) if augment else model.forward_tiles_iter(batch)
        try:
            while True:  # each step of the network under inference mode and autocast, events between
                with torch.inference_mode(), autocast(device, amp), _recording(tap, grid, chunk):
                    try:
                        next(steps)
                    except StopIteration as stop:
                        maps = stop.value
                        break
                yield ProgressEvent("tile", done, total, plane, n_planes)
        finally:
            steps.close()
        if out is None:  # (K, h, w): in (h, w, K) memory for a channel-last model (StarDist), else planar
            k, hw = maps.shape[1], (-(-h // s), -(-w // s))
            out = np.zeros((*hw, k), np.float32).transpose(2, 0, 1) if last else np.zeros((k, *hw), np.float32)
            dst = torch.from_numpy(out)
        for (y, xx), m in zip(chunk, maps):
            oy, ox, ty, tx = (_strided(sl, s) for sl in grid.core(y, xx))
            # each tile's core converted to float32 straight into the plane's maps (one pass, by
            # torch's threads; not a float32 copy of the whole tile first, then a second copy)
            dst[:, oy, ox].copy_(m[:, ty, tx])  # type: ignore[index]
        done += len(chunk)
        yield ProgressEvent("tile", done, total, plane, n_planes)
    assert out is not None and dst is not None
    model.activate_maps(dst)
    return out


def _tile_batches(
    model: SegmentationModel, x: np.ndarray, tile_size: int, batch_size: int, device: torch.device,
    channels_last: bool, context: int, surround: Surround | None = None,
) -> tuple[int, Iterator[tuple[TileGrid, list[tuple[int, int]], torch.Tensor]]]:
    """The plane's tiles (each with ``context``: from ``surround`` where given, else reflected) in
    batches on ``device``: the number of tiles, and an iterator of (grid, tile corners, batch)."""
    _, h, w = x.shape
    grid = model_grid(model, h, w, tile_size, context, surround)
    padded = pad_plane(x, grid, surround)
    windows = grid.windows()
    step = max(1, int(batch_size))
    if device.type == "cpu":  # a batch of large tiles takes seconds on a CPU: cancel waits for it
        step = min(step, max(1, CPU_BATCH_PIXELS // (grid.tile_h * grid.tile_w)))

    def batches() -> Iterator[tuple[TileGrid, list[tuple[int, int]], torch.Tensor]]:
        for start in range(0, len(windows), step):
            chunk = windows[start : start + step]
            tiles = np.stack([padded[:, y : y + grid.tile_h, xx : xx + grid.tile_w] for y, xx in chunk])
            batch = torch.from_numpy(tiles).to(device)
            if channels_last and device.type == "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            yield grid, chunk, batch

    return len(windows), batches()


def _recording(tap: EncoderTap | None, grid: TileGrid,
               chunk: Sequence[tuple[int, int]]) -> contextlib.AbstractContextManager:
    """``tap`` reading a batch of the tiles at padded corners ``chunk`` (their ``(top, left, height,
    width)`` in plane pixels), or nothing when there is no tap."""
    if tap is None:
        return contextlib.nullcontext()
    return tap.recording([(*grid.origin(y, xx), grid.tile_h, grid.tile_w) for y, xx in chunk])


def _strided(sl: slice, s: int) -> slice:
    """A pixel slice starting at a multiple of ``s`` as a slice of maps sampled every ``s`` pixels."""
    return slice(sl.start // s, -(-sl.stop // s))


@dataclass(frozen=True)
class Tile:
    """Where one tile lies in its plane: its core (half-open ranges; the cores partition the
    plane), the plane coordinate ``origin`` (y, x) of the tile's pixel (0, 0), and sizes."""

    core_y: tuple[int, int]
    core_x: tuple[int, int]
    origin: tuple[int, int]
    shape: tuple[int, int]
    plane_shape: tuple[int, int]


@dataclass
class TileRun:
    """How the engine runs a network over one plane's tiles; families' plane paths use it."""

    device: torch.device
    tile_size: int = DEFAULT_TILE_SIZE
    batch_size: int = 4
    amp: bool = True
    plane: int = 0
    n_planes: int = 1
    #: pixels around each tile; None: the model's :func:`~seglab.inference.tiling.tile_context`
    #: (less only where tiles need not agree with an untiled run, e.g. the size estimate's probes)
    tile_context: int | None = None
    #: the plane's real surroundings (a block cut out of a larger image): tiles take their context
    #: from them instead of reflecting the plane at its edges
    surround: Surround | None = None
    #: reads the encoder's features of a window from the tiles as they pass (``diameter="auto"``'s
    #: factor-1 probe: its size model then needs no second pass)
    tap: EncoderTap | None = None
    #: test-time augmentation: dense maps averaged over the eight orientations of each tile
    augment: bool = False

    def context_of(self, model: SegmentationModel) -> int:
        """The context this run gives each tile of ``model``."""
        return tile_context(model) if self.tile_context is None else int(self.tile_context)

    def event(self, stage: str, done: int, total: int) -> ProgressEvent:
        return ProgressEvent(stage, done, total, self.plane, self.n_planes)

    def dense_maps(self, model: SegmentationModel, x: np.ndarray) -> Generator[ProgressEvent, None, np.ndarray]:
        """Maps stitched from tile cores (see :func:`predict_maps_iter`)."""
        return (yield from predict_maps_iter(model, x, tile_size=self.tile_size, batch_size=self.batch_size,
                                             device=self.device, amp=self.amp, plane=self.plane,
                                             n_planes=self.n_planes, context=self.context_of(model),
                                             surround=self.surround, tap=self.tap, augment=self.augment))

    def context(self) -> contextlib.ExitStack:
        """Inference mode and autocast for one step of a network on this run's device."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(autocast(self.device, self.amp))
        return stack

    def tile_outputs(
        self,
        model: SegmentationModel,
        x: np.ndarray,
        forward: Callable[[torch.Tensor], Any],
        keep: Callable[[Tile, Any], Any],
        *,
        batch_size: int | None = None,
        channels_last: bool = False,
    ) -> Generator[ProgressEvent, None, list[Any]]:
        """Run ``forward(batch)`` (one output per tile) over the plane's tiles under inference
        mode and autocast; returns ``keep(tile, output)`` of every tile, in tile order.

        ``forward`` may return a generator (yielding between stages of the network, returning
        the outputs): each of its steps then runs under inference mode and autocast, with a
        ``'tile'`` event between steps, so that a long batch can be cancelled. ``batch_size``
        overrides the run's (a family whose batches take long on this device)."""
        check_augment(model, self.augment)
        _, h, w = x.shape
        context = self.context_of(model)
        total, batches = _tile_batches(model, x, self.tile_size, batch_size or self.batch_size, self.device,
                                       channels_last=channels_last, context=context, surround=self.surround)
        kept: list[Any] = []
        done = 0
        yield self.event("tile", 0, total)
        for grid, chunk, batch in batches:
            with self.context(), _recording(self.tap, grid, chunk):
                outputs = forward(batch)
            if isinstance(outputs, Generator):
                steps = outputs
                try:
                    while True:
                        with self.context(), _recording(self.tap, grid, chunk):
                            try:
                                next(steps)
                            except StopIteration as stop:
                                outputs = stop.value
                                break
                        yield self.event("tile", done, total)
                finally:
                    steps.close()
            del batch
            for (y, xx), out in zip(chunk, outputs):
                oy, ox, _, _ = grid.core(y, xx)
                tile = Tile((oy.start, oy.stop), (ox.start, ox.stop), grid.origin(y, xx),
                            (grid.tile_h, grid.tile_w), (h, w))
                kept.append(keep(tile, out))
            del outputs
            done += len(chunk)
            yield self.event("tile", done, total)
        return kept


def place_network(model: SegmentationModel, device: torch.device) -> None:
    """Move the model's network to ``device`` (channels-last on the CPU, as the tiles are); a
    network already there is left alone (moving it walks every module: ~6 ms a call)."""
    if _placed(model.network, device):
        return
    model.network.to(device)
    if device.type == "cpu":
        model.network.to(memory_format=torch.channels_last)


def _placed(net: torch.nn.Module, device: torch.device) -> bool:
    """Whether every parameter and buffer is on ``device`` (4D ones channels-last on the CPU)."""
    for t in itertools.chain(net.parameters(), net.buffers()):
        if t.device.type != device.type or (device.index is not None and t.device.index != device.index):
            return False
        if device.type == "cpu" and t.dim() == 4 and not t.is_contiguous(memory_format=torch.channels_last):
            return False
    return True


def postprocess_events(
    model: SegmentationModel, raw: Any, thresholds: dict[str, float], shape: tuple[int, int], run: TileRun
) -> Generator[ProgressEvent, None, Prediction]:
    """``model.postprocess_iter`` with its ``(done, total)`` steps as ``'postprocess'`` events."""
    gen = model.postprocess_iter(raw, thresholds, shape)
    del raw
    try:
        while True:
            try:
                done, total = next(gen)
            except StopIteration as stop:
                return stop.value
            yield run.event("postprocess", done, total)
    finally:
        gen.close()


def plane_prediction_iter(
    model: SegmentationModel, x: np.ndarray, thresholds: dict[str, float], run: TileRun
) -> Generator[ProgressEvent, None, Prediction]:
    """One normalised plane ``(C, H, W)`` through the family's path: raw output, then postprocess."""
    raw = yield from model.raw_output_iter(x, thresholds, run)
    return (yield from postprocess_events(model, raw, thresholds, x.shape[-2:], run))


def check_image(image: np.ndarray, channel_axis: int | None) -> None:
    """Clear errors for inputs no model can take."""
    if not isinstance(image, np.ndarray):
        raise SeglabError(f"expected an image array, got {type(image).__name__}")
    spatial = image.ndim - (0 if channel_axis is None else 1)
    if spatial < 2:
        raise SeglabError(f"image of shape {image.shape} has fewer than two spatial axes (Y, X)")
    if spatial > 4:
        raise SeglabError(
            f"image of shape {image.shape} has {spatial} spatial axes; at most T, Z, Y, X are supported"
        )
    if image.size == 0:
        raise SeglabError(f"image is empty (shape {image.shape})")
    if not np.issubdtype(image.dtype, np.number) and image.dtype != bool:
        raise SeglabError(f"image has unsupported data type {image.dtype}")
    if np.iscomplexobj(image):
        raise SeglabError("complex-valued images are not supported")


def segment_iter(
    model: SegmentationModel,
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    channels: Sequence[int] | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    batch_size: int = 4,
    device: str | torch.device | None = "auto",
    amp: bool = True,
    thresholds: dict[str, float] | None = None,
    axes: str | None = None,
    rgb: bool | None = None,
    diameter: float | str | None = "auto",
    pixel_size: float | None = None,
    denoise: str | bool = DENOISE_AUTO,
    augment: bool = False,
) -> Generator[ProgressEvent, None, Segmentation]:
    """Segment a 2D image or a stack of planes (leading Z/T axes), yielding progress.

    ``diameter`` (pixels; ``"auto"``: estimated once per stack; None: no rescaling) rescales each
    plane so that objects arrive at the model's ``object_diameter``; results come back on the
    original pixel grid (:mod:`seglab.inference.diameter`). ``pixel_size``: the image's pixel
    size in micrometres, where known; with a model that records the pixel size it was trained
    at, ``"auto"`` rescales by their ratio instead of estimating. ``denoise`` (``"auto"``: where
    the plane is noisy by the model's rule; True; False) smooths planes before the model
    (:mod:`seglab.inference.denoise`; low light). ``augment``: test-time augmentation, each
    tile's maps averaged over its eight flips and rotations (U-Net and StarDist families; about
    eight times the network's time; :mod:`seglab.inference.dihedral`).

    ``image`` has Y and X as its last two non-channel axes; every other
    non-channel axis is a stack axis, segmented plane by plane with object ids
    unique across the whole stack. The table has a ``plane`` column for stacks.
    Which axis holds channels, and whether they are RGB colour: ``axes`` (e.g. ``"ZCYX"``),
    else ``channel_axis`` and ``rgb``, else the rule of :func:`seglab.axes.arrange`.
    """
    image = np.asarray(image)
    image, channel_axis, rgb = arrange(image, axes=axes, channel_axis=channel_axis, rgb=rgb)
    check_image(image, channel_axis)
    check_augment(model, augment)
    spatial_shape = image.shape if channel_axis is None else image.shape[:-1]
    stack_shape = spatial_shape[:-2]
    if colour_check_needed(model.config, channels, rgb, None if channel_axis is None else image.shape[-1]):
        # an H&E model given fluorescence (RGB, three channels it takes as R, G, B, or grey) finds little
        warn_if_colour_unsuited(model.config, image[tuple(n // 2 for n in stack_shape)])
    n_planes = int(np.prod(stack_shape)) if stack_shape else 1
    dev = resolve_device(device)
    th = model.thresholds(thresholds)
    place_network(model, dev)
    labels_out = np.zeros(spatial_shape, dtype=np.int32)  # int64 only if ids ever pass 2**31 - 1
    tables: list[dict[str, np.ndarray]] = []
    extras: list[dict[str, Any]] = []
    offset = 0
    run: dict[str, Any] = {"tile_size": tile_size, "batch_size": batch_size, "device": dev, "amp": amp}
    indices = list(itertools.product(*[range(s) for s in stack_shape])) if stack_shape else [()]
    first: dict[int, np.ndarray] = {}  # plane 0 as the estimate normalised it, for the loop (not made twice)
    mode = parse_denoise(denoise)
    smoothing: dict[int, Smoothing] = {}

    def plane_input(i: int) -> np.ndarray:
        x = first.pop(i, None)
        if x is not None:
            return x
        x, smoothing[i] = prepared_plane(model.config, image[indices[i]], mode, channel_axis, channels, rgb)
        return x

    def estimate_input(i: int) -> np.ndarray:
        x = plane_input(i)
        if i == 0:
            first[0] = x
        return x

    size = yield from choose_scale_iter(model, diameter, estimate_input, len(indices), th, pixel_size, **run)
    if augment:  # the estimate's passes are single ones: what they segmented is segmented again
        size.reusable.clear()
        run["augment"] = True
    for p, idx in enumerate(indices):
        pred: Prediction | None = size.reusable.pop(p, None)
        if pred is None:  # (a plane the estimate's own pass segmented needs no input)
            x = plane_input(p)
            if smoothing[p].blank:  # white noise or constant: an empty view, no objects
                pred = model.blank_prediction(x.shape[-2:], th)
            else:
                pred = yield from retry_on_oom(functools.partial(
                    scaled_plane_iter, model, x, th, size.factor, p, n_planes), model, run)
            del x
        first.clear()
        lab = pred.labels
        top = int(lab.max()) if lab.size else 0
        if offset + top >= 2**31 - 1 and labels_out.dtype != np.int64:
            labels_out = labels_out.astype(np.int64)
        if offset and top:
            lab = lab.astype(np.int64)
            lab[lab > 0] += offset
        labels_out[idx] = lab
        t = dict(pred.table)
        t["label"] = t["label"] + offset
        tables.append(t)
        extras.append(_offset_extras(pred.extras, offset))
        offset += top
        yield ProgressEvent("postprocess", 1, 1, p, n_planes)
    table = concat_tables(tables, {"plane": list(range(len(tables)))} if stack_shape else None)
    return Segmentation(labels=labels_out, table=table, thresholds=th, extras=extras,
                        diameter=size.diameter, scale_factor=size.factor, pixel_size=size.pixel_size,
                        smoothing=[smoothing.get(i, Smoothing()) for i in range(len(indices))])


def _offset_extras(extras: dict[str, Any], offset: int) -> dict[str, Any]:
    """Shift the object ids that extras refer to (``shapes["label"]``) like the plane's labels."""
    if not offset or "shapes" not in extras:
        return extras
    shapes = dict(extras["shapes"])
    shapes["label"] = np.asarray(shapes["label"]) + offset
    return {**extras, "shapes": shapes}


def segment(model: SegmentationModel, image: np.ndarray, **kwargs: Any) -> Segmentation:
    """Segment without progress reporting; see :func:`segment_iter` for arguments."""
    return run_to_end(segment_iter(model, image, **kwargs))
