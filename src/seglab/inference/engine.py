"""One inference engine for all families.

:func:`segment_iter` is a generator: it yields :class:`ProgressEvent` objects as it
works (``'tile'`` after every batch of tiles, ``'postprocess'`` per plane) and
returns a :class:`Segmentation`. The CLI drives it with a progress bar, napari's
``thread_worker`` with ``napari.utils.progress``; stopping iteration (or calling
``close()`` on the generator) cancels the run. :func:`segment` runs it to the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from seglab.errors import SeglabError
from seglab.inference.device import resolve_device
from seglab.inference.diameter import choose_scale_iter, scaled_plane_iter
from seglab.inference.instances import Detections, keep_in_core, suppress_duplicates
from seglab.inference.normalize import model_input
from seglab.inference.tiling import TileGrid, make_grid, pad_plane
from seglab.models.base import Prediction, SegmentationModel
from seglab.objects import concat_tables
from seglab.torch_env import autocast

DEFAULT_TILE_SIZE = 1024


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

    @property
    def n_objects(self) -> int:
        return int(len(self.table["label"]))


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
) -> Generator[ProgressEvent, None, np.ndarray]:
    """Dense maps ``(K, ceil(H / s), ceil(W / s))`` for a normalised ``(C, H, W)`` plane, tile
    by tile (``s`` is the model's output stride)."""
    _, h, w = x.shape
    context = int(model.config.tile_context)
    s = int(model.output_stride)
    if context % s or model.size_divisor % s:
        raise SeglabError(f"tile context {context} and size divisor {model.size_divisor} must be multiples of the output stride {s}")
    out: np.ndarray | None = None
    total, batches = _tile_batches(model, x, tile_size, batch_size, device, channels_last=True)
    done = 0
    yield ProgressEvent("tile", 0, total, plane, n_planes)
    for grid, chunk, batch in batches:
        with torch.inference_mode(), autocast(device, amp):
            maps = model.forward_tiles(batch)
        maps = maps.float().cpu().numpy()
        if out is None:
            out = np.zeros((maps.shape[1], -(-h // s), -(-w // s)), dtype=np.float32)
        for (y, xx), m in zip(chunk, maps):
            oy, ox, ty, tx = (_strided(sl, s) for sl in grid.core(y, xx))
            out[:, oy, ox] = m[:, ty, tx]
        done += len(chunk)
        yield ProgressEvent("tile", done, total, plane, n_planes)
    assert out is not None
    return out


def _tile_batches(
    model: SegmentationModel, x: np.ndarray, tile_size: int, batch_size: int, device: torch.device,
    channels_last: bool,
) -> tuple[int, Iterator[tuple[TileGrid, list[tuple[int, int]], torch.Tensor]]]:
    """The plane's tiles (each with the model's context, reflect-padded) in batches on
    ``device``: the number of tiles, and an iterator of (grid, tile corners, batch)."""
    _, h, w = x.shape
    grid = make_grid(h, w, max(int(tile_size), model.size_divisor), int(model.config.tile_context),
                     model.size_divisor)
    padded = pad_plane(x, grid)
    windows = grid.windows()
    step = max(1, int(batch_size))

    def batches() -> Iterator[tuple[TileGrid, list[tuple[int, int]], torch.Tensor]]:
        for start in range(0, len(windows), step):
            chunk = windows[start : start + step]
            tiles = np.stack([padded[:, y : y + grid.tile_h, xx : xx + grid.tile_w] for y, xx in chunk])
            batch = torch.from_numpy(tiles).to(device)
            if channels_last and device.type == "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            yield grid, chunk, batch

    return len(windows), batches()


def _strided(sl: slice, s: int) -> slice:
    """A pixel slice starting at a multiple of ``s`` as a slice of maps sampled every ``s`` pixels."""
    return slice(sl.start // s, -(-sl.stop // s))


def detect_plane_iter(
    model: SegmentationModel,
    x: np.ndarray,
    thresholds: dict[str, float],
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    batch_size: int = 4,
    device: torch.device,
    amp: bool = True,
    plane: int = 0,
    n_planes: int = 1,
) -> Generator[ProgressEvent, None, Detections]:
    """Detections of an instance family over a normalised ``(C, H, W)`` plane, tile by tile.

    Same tiles as the dense path; each tile keeps the detections whose box centre lies
    in its core (so every object is found in exactly one tile, whole when the tile
    context exceeds the largest object), moved to plane coordinates; duplicates across
    tile borders are then suppressed at the model's ``nms_thresh``.
    """
    _, h, w = x.shape
    context = int(model.config.tile_context)
    parts: list[Detections] = []
    total, batches = _tile_batches(model, x, tile_size, batch_size, device, channels_last=False)
    done = 0
    yield ProgressEvent("tile", 0, total, plane, n_planes)
    for grid, chunk, batch in batches:
        with torch.inference_mode(), autocast(device, amp):
            per_tile = model.forward_tiles(batch, thresholds=thresholds)
        for (y, xx), d in zip(chunk, per_tile):
            oy, ox, _, _ = grid.core(y, xx)
            dets = d if isinstance(d, Detections) else Detections.from_torch(d, (grid.tile_h, grid.tile_w))
            parts.append(keep_in_core(dets, (oy.start, oy.stop), (ox.start, ox.stop), (y - context, xx - context), (h, w)))
        done += len(chunk)
        yield ProgressEvent("tile", done, total, plane, n_planes)
    merged = Detections.concat(parts, (h, w))
    return suppress_duplicates(merged, thresholds.get("nms_thresh", 1.0)) if total > 1 else merged


def _plane_prediction_iter(
    model: SegmentationModel, x: np.ndarray, th: dict[str, float], p: int, n_planes: int, **run: Any
) -> Generator[ProgressEvent, None, Prediction]:
    """One plane through the family's path: dense maps or instance detections, then postprocess."""
    if model.output_kind == "instances":
        out: Any = yield from detect_plane_iter(model, x, th, plane=p, n_planes=n_planes, **run)
    else:
        out = yield from predict_maps_iter(model, x, plane=p, n_planes=n_planes, **run)
    yield ProgressEvent("postprocess", 0, 1, p, n_planes)
    return model.postprocess(out, th, shape=x.shape[-2:])


def _plane_axes(image: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, int | None]:
    """Move the channel axis last; return the image and the new channel axis (or None)."""
    if channel_axis is None:
        return image, None
    if not -image.ndim <= channel_axis < image.ndim:
        raise SeglabError(f"channel axis {channel_axis} does not exist for an image of shape {image.shape}")
    return np.moveaxis(image, channel_axis, -1), -1


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
    diameter: float | str | None = "auto",
) -> Generator[ProgressEvent, None, Segmentation]:
    """Segment a 2D image or a stack of planes (leading Z/T axes), yielding progress.

    ``diameter`` (pixels; ``"auto"``: estimated once per stack; None: no rescaling) rescales each
    plane so that objects arrive at the model's ``object_diameter``; results come back on the
    original pixel grid (:mod:`seglab.inference.diameter`).

    ``image`` has Y and X as its last two non-channel axes; every other
    non-channel axis is a stack axis, segmented plane by plane with object ids
    unique across the whole stack. The table has a ``plane`` column for stacks.
    """
    image = np.asarray(image)
    check_image(image, channel_axis)
    image, channel_axis = _plane_axes(image, channel_axis)
    spatial_shape = image.shape if channel_axis is None else image.shape[:-1]
    stack_shape = spatial_shape[:-2]
    n_planes = int(np.prod(stack_shape)) if stack_shape else 1
    dev = resolve_device(device)
    th = model.thresholds(thresholds)
    if model.output_kind not in ("dense", "instances"):
        raise SeglabError(f"model family {model.family!r} has unknown output kind {model.output_kind!r}")
    model.network.to(dev)
    if dev.type == "cpu":
        model.network.to(memory_format=torch.channels_last)
    labels_out = np.zeros(spatial_shape, dtype=np.int64)
    tables: list[dict[str, np.ndarray]] = []
    extras: list[dict[str, Any]] = []
    offset = 0
    indices = list(itertools.product(*[range(s) for s in stack_shape])) if stack_shape else [()]
    run = dict(tile_size=tile_size, batch_size=batch_size, device=dev, amp=amp)
    size = yield from choose_scale_iter(model, diameter, lambda i: model_input(
        image[indices[i]], model.config.input_channels, model.config.normalization, channel_axis, channels),
        len(indices), th, **run)
    for p, idx in enumerate(indices):
        plane = image[idx]
        x = model_input(plane, model.config.input_channels, model.config.normalization, channel_axis, channels)
        pred: Prediction = size.reusable.pop(p, None) or (
            yield from scaled_plane_iter(model, x, th, size.factor, p, n_planes, **run))
        lab = pred.labels.astype(np.int64)
        if offset:
            lab[lab > 0] += offset
        labels_out[idx] = lab
        t = dict(pred.table)
        t["label"] = t["label"] + offset
        tables.append(t)
        extras.append(_offset_extras(pred.extras, offset))
        offset = int(lab.max()) if lab.size and lab.max() > offset else offset
        yield ProgressEvent("postprocess", 1, 1, p, n_planes)
    table = concat_tables(tables, {"plane": list(range(len(tables)))} if stack_shape else None)
    out_dtype = np.int32 if offset < 2**31 - 1 else np.int64
    return Segmentation(labels=labels_out.astype(out_dtype), table=table, thresholds=th, extras=extras,
                        diameter=size.diameter, scale_factor=size.factor)


def _offset_extras(extras: dict[str, Any], offset: int) -> dict[str, Any]:
    """Shift the object ids that extras refer to (``shapes["label"]``) like the plane's labels."""
    if not offset or "shapes" not in extras:
        return extras
    shapes = dict(extras["shapes"])
    shapes["label"] = np.asarray(shapes["label"]) + offset
    return {**extras, "shapes": shapes}


def run_to_end(gen: Generator[Any, None, Any], on_event: Callable[[Any], Any] | None = None) -> Any:
    """Exhaust a progress generator and return its result; ``on_event`` sees each event."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)


def segment(model: SegmentationModel, image: np.ndarray, **kwargs: Any) -> Segmentation:
    """Segment without progress reporting; see :func:`segment_iter` for arguments."""
    return run_to_end(segment_iter(model, image, **kwargs))
