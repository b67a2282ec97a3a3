"""Score a model on annotated images, and tune its thresholds on them.

Both run the inference engine's per-plane path (:class:`~seglab.inference.engine.TileRun`,
the family's ``raw_output_iter`` and ``postprocess_iter``) with the caller's device,
tile size, batch size and precision; nothing here knows a family's thresholds.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seglab.inference.device import resolve_device
from seglab.inference.engine import (
    DEFAULT_TILE_SIZE,
    ProgressEvent,
    TileRun,
    check_augment,
    place_network,
    plane_prediction_iter,
    run_to_end,
)
from seglab.inference.denoise import prepared_plane
from seglab.metrics import evaluate
from seglab.models.base import SegmentationModel


@dataclass
class AnnotatedImage:
    """A raw image plane (as read) with its ground-truth labels."""

    image: np.ndarray
    labels: np.ndarray
    channel_axis: int | None = None
    name: str = ""

    def crop(self, rows: slice, cols: slice, name: str | None = None) -> AnnotatedImage:
        """The window ``(rows, cols)`` of image and labels (the channel axis stays where it is)."""
        ca = self.channel_axis
        img = self.image[rows, cols] if ca is None else np.moveaxis(
            np.moveaxis(self.image, ca, -1)[rows, cols], -1, ca)
        return AnnotatedImage(img, self.labels[rows, cols], ca, self.name if name is None else name)


def _plane_input(model: SegmentationModel, item: AnnotatedImage, denoise: str | bool = "auto") -> np.ndarray:
    """What the model sees of an item in inference (smoothed where noisy, by the model's rule)."""
    return prepared_plane(model.config, item.image, denoise, item.channel_axis)[0]


def _run(model: SegmentationModel, device: Any, tile_size: int, batch_size: int, amp: bool,
         plane: int = 0, n_planes: int = 1, augment: bool = False) -> TileRun:
    dev = resolve_device(device)
    place_network(model, dev)
    return TileRun(dev, tile_size, batch_size, amp, plane, n_planes, augment=augment)


def raw_output_iter(
    model: SegmentationModel,
    item: AnnotatedImage,
    thresholds: dict[str, float],
    run: TileRun,
) -> Generator[ProgressEvent, None, Any]:
    """The family's raw output for one annotated image (what ``postprocess_iter`` takes)."""
    return (yield from model.raw_output_iter(_plane_input(model, item), thresholds, run))


def predict_maps(
    model: SegmentationModel,
    item: AnnotatedImage,
    *,
    device="auto",
    tile_size: int = DEFAULT_TILE_SIZE,
    batch_size: int = 4,
    amp: bool = True,
    thresholds: dict[str, float] | None = None,
) -> Any:
    """The model's raw output for one annotated image, what ``postprocess`` takes (dense maps,
    or a detection family's detections found at ``thresholds``)."""
    run = _run(model, device, tile_size, batch_size, amp)
    return run_to_end(raw_output_iter(model, item, model.thresholds(thresholds), run))


def evaluate_model_iter(
    model: SegmentationModel,
    items: Sequence[AnnotatedImage],
    *,
    thresholds: dict[str, float] | None = None,
    device="auto",
    tile_size: int = DEFAULT_TILE_SIZE,
    batch_size: int = 4,
    amp: bool = True,
    denoise: str | bool = "auto",
    augment: bool = False,
) -> Generator[ProgressEvent, None, tuple[dict, list[np.ndarray]]]:
    """Segment every item through the engine and score against its labels; returns (metrics,
    predictions). Yields the engine's events with ``plane``/``n_planes`` counting images.
    ``denoise``: the low-light smoothing, ``augment``: test-time augmentation, as
    :func:`~seglab.inference.engine.segment_iter`'s."""
    from seglab.inference.denoise import parse_denoise

    check_augment(model, augment)
    th = model.thresholds(thresholds)
    mode = parse_denoise(denoise)
    preds = []
    for i, item in enumerate(items):
        run = _run(model, device, tile_size, batch_size, amp, i, len(items), augment)
        pred = yield from plane_prediction_iter(model, _plane_input(model, item, mode), th, run)
        preds.append(pred.labels)
        yield ProgressEvent("image", i + 1, len(items))
    metrics = evaluate(zip([it.labels for it in items], preds))
    metrics["model_thresholds"] = th
    return metrics, preds


def evaluate_model(model: SegmentationModel, items: Sequence[AnnotatedImage], **kwargs) -> dict:
    """Metrics of ``model`` on ``items`` (see :func:`seglab.metrics.evaluate`)."""
    return run_to_end(evaluate_model_iter(model, items, **kwargs))[0]


def ap50(model: SegmentationModel, items: Sequence[AnnotatedImage], **kwargs) -> float:
    """Pooled AP at IoU 0.5, the score used to pick the best weights in training."""
    return float(evaluate_model(model, items, **kwargs)["thresholds"]["0.50"]["ap"])


def grid_points(base: dict[str, float], grid: dict[str, Sequence[float]]) -> list[dict[str, float]]:
    """The current thresholds, then every other point of ``grid`` (other thresholds as in ``base``)."""
    names = list(grid)
    points = [dict(base)]
    for combo in itertools.product(*[grid[n] for n in names]):
        th = {**base, **dict(zip(names, map(float, combo)))}
        if th != base:
            points.append(th)
    return points


def tune_thresholds_iter(
    model: SegmentationModel,
    items: Sequence[AnnotatedImage],
    grid: dict[str, Sequence[float]],
    *,
    device="auto",
    tile_size: int = DEFAULT_TILE_SIZE,
    batch_size: int = 4,
    amp: bool = True,
    score_key: str = "0.50",
    keep: Sequence[AnnotatedImage] = (),
    keep_tolerance: float = 0.01,
    deadline: float | None = None,
    augment: bool = False,
) -> Generator[ProgressEvent, None, tuple[dict[str, float], float, list[dict]]]:
    """Grid search over the family's thresholds; returns best, its AP, and all trials.

    Yields ``'tune'`` events (``done`` of ``total`` steps: raw outputs computed and
    grid points scored) often, also within each network run and postprocessing, so that
    closing the generator cancels it at once.

    The raw output (maps) is computed once per distinct ``model.raw_thresholds(point,
    grid)`` (once for dense families; Mask R-CNN: once per ``nms_thresh``), and every grid
    point only postprocesses it. The model's current thresholds are tried first and kept
    unless a grid point beats them.

    With ``keep`` (images the thresholds must go on suiting, e.g. a replay set) only points
    whose AP on ``keep`` is at most ``keep_tolerance`` below that of the current thresholds
    compete; among them the best AP on ``items`` wins, ties going to the better AP on ``keep``.
    The AP returned is on ``items``.

    With a ``deadline`` (a :func:`time.perf_counter` time) the points after the current
    thresholds are tried in a fixed random order (so a cut-off search still spans the
    grid) and the search ends at the deadline with the best point so far.
    """
    base = model.thresholds()
    grid = {k: list(v) for k, v in grid.items()}
    everything, n_items = list(items) + list(keep), len(items)
    points = grid_points(base, grid)
    if deadline is not None:
        rest = points[1:]
        random.Random(0).shuffle(rest)
        points = [points[0], *rest]
    raw_keys = [tuple(sorted(model.raw_thresholds(th, grid).items())) for th in points]
    total = len(set(raw_keys)) * len(everything) + len(points)
    done = 0
    cache: dict[Any, list[Any]] = {}

    def event() -> ProgressEvent:
        return ProgressEvent("tune", done, total)

    def ap(preds: list[np.ndarray], group: Sequence[AnnotatedImage]) -> float:
        return float(evaluate(zip([it.labels for it in group], preds), thresholds=(0.5,))["thresholds"][score_key]["ap"])

    yield event()
    trials: list[dict] = []
    for th, key in zip(points, raw_keys):
        if deadline is not None and trials and time.perf_counter() > deadline:
            break
        if key not in cache:
            run = _run(model, device, tile_size, batch_size, amp, augment=augment)
            raws = []
            for it in everything:
                gen = raw_output_iter(model, it, {**th, **dict(key)}, run)
                raws.append((yield from _as_tune_events(gen, event)))
                done += 1
                yield event()
            cache[key] = raws
        preds = []
        for raw, it in zip(cache[key], everything):
            pred = yield from _as_tune_events(model.postprocess_iter(raw, th, it.labels.shape), event)
            preds.append(pred.labels)
        trial = {**th, "ap50": ap(preds[:n_items], items)}
        if keep:
            trial["ap50_keep"] = ap(preds[n_items:], keep)
        trials.append(trial)
        done += 1
        yield event()
    if done < total:  # ended at the deadline: the search is over
        done = total
        yield event()
    floor = trials[0]["ap50_keep"] - keep_tolerance - 1e-9 if keep else -1.0
    # the first best point wins (the current thresholds come first), so ties keep them
    best_i = max((i for i, t in enumerate(trials) if t.get("ap50_keep", 0.0) >= floor),
                 key=lambda i: (trials[i]["ap50"], trials[i].get("ap50_keep", 0.0), -i))
    return points[best_i], trials[best_i]["ap50"], trials


def _as_tune_events(gen: Generator[Any, None, Any], event: Any) -> Generator[ProgressEvent, None, Any]:
    """Drive ``gen`` (engine events or postprocessing steps), yielding the tuning's current event
    for each of its steps; returns its result."""
    try:
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value
            yield event()
    finally:
        gen.close()


def tune_thresholds(
    model: SegmentationModel,
    items: Sequence[AnnotatedImage],
    grid: dict[str, Sequence[float]],
    **kwargs: Any,
) -> tuple[dict[str, float], float, list[dict]]:
    """:func:`tune_thresholds_iter` run to the end (same arguments)."""
    return run_to_end(tune_thresholds_iter(model, items, grid, **kwargs))
