"""Score a model on annotated images, and tune its thresholds on them."""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seglab.inference.engine import DEFAULT_TILE_SIZE, ProgressEvent, detect_plane_iter, predict_maps_iter, run_to_end
from seglab.inference.device import resolve_device
from seglab.inference.normalize import model_input
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


def predict_maps(
    model: SegmentationModel,
    item: AnnotatedImage,
    *,
    device="auto",
    tile_size: int = DEFAULT_TILE_SIZE,
    amp: bool = True,
    thresholds: dict[str, float] | None = None,
) -> Any:
    """The model's raw output for one annotated image, what ``postprocess`` takes: dense maps,
    or for instance families the plane's detections (found at ``thresholds``)."""
    dev = resolve_device(device)
    model.network.to(dev)
    x = model_input(item.image, model.config.input_channels, model.config.normalization, item.channel_axis)
    if model.output_kind == "instances":
        th = model.thresholds(thresholds)
        return run_to_end(detect_plane_iter(model, x, th, tile_size=tile_size, device=dev, amp=amp))
    return run_to_end(predict_maps_iter(model, x, tile_size=tile_size, device=dev, amp=amp))


def evaluate_model_iter(
    model: SegmentationModel,
    items: Sequence[AnnotatedImage],
    *,
    thresholds: dict[str, float] | None = None,
    device="auto",
    tile_size: int = DEFAULT_TILE_SIZE,
) -> Generator[ProgressEvent, None, tuple[dict, list[np.ndarray]]]:
    """Segment every item and score against its labels; returns (metrics, predictions)."""
    th = model.thresholds(thresholds)
    preds = []
    for i, item in enumerate(items):
        maps = predict_maps(model, item, device=device, tile_size=tile_size, thresholds=th)
        preds.append(model.postprocess(maps, th, shape=item.labels.shape).labels)
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


def tune_thresholds(
    model: SegmentationModel,
    items: Sequence[AnnotatedImage],
    grid: dict[str, Sequence[float]],
    *,
    device="auto",
    score_key: str = "0.50",
    keep: Sequence[AnnotatedImage] = (),
    keep_tolerance: float = 0.01,
) -> tuple[dict[str, float], float, list[dict]]:
    """Grid search over thresholds (maps computed once); returns best, its AP, and all trials.

    With ``keep`` (images the thresholds must go on suiting, e.g. a replay set) only points
    whose AP on ``keep`` is at most ``keep_tolerance`` below that of the current thresholds
    compete; among them the best AP on ``items`` wins, ties going to the better AP on ``keep``.
    The AP returned is on ``items``.

    For instance families the detections are computed once per ``nms_thresh`` at the
    lowest ``score_thresh`` of the grid; the other thresholds only filter and paste them.
    The model's current thresholds are tried first and kept unless a grid point beats them.
    """
    base = model.thresholds()
    names = list(grid)
    cache: dict[Any, list[Any]] = {}

    def raw(th: dict[str, float]) -> list[Any]:
        if model.output_kind != "instances":
            key, run_th = None, th
        else:
            key = th.get("nms_thresh")
            low = min([base["score_thresh"], *map(float, grid.get("score_thresh", []))])
            run_th = {**th, "score_thresh": low}
        if key not in cache:
            cache[key] = [predict_maps(model, it, device=device, thresholds=run_th) for it in everything]
        return cache[key]

    def ap(preds: list[np.ndarray], group: Sequence[AnnotatedImage]) -> float:
        return float(evaluate(zip([it.labels for it in group], preds), thresholds=(0.5,))["thresholds"][score_key]["ap"])

    everything, n_items = list(items) + list(keep), len(items)
    trials = []
    candidates = [dict(base)]
    for combo in itertools.product(*[grid[n] for n in names]):
        th = {**base, **dict(zip(names, map(float, combo)))}
        if th != base:
            candidates.append(th)
    for th in candidates:
        preds = [model.postprocess(m, th, shape=it.labels.shape).labels for m, it in zip(raw(th), everything)]
        trial = {**th, "ap50": ap(preds[:n_items], items)}
        if keep:
            trial["ap50_keep"] = ap(preds[n_items:], keep)
        trials.append(trial)
    floor = trials[0]["ap50_keep"] - keep_tolerance - 1e-9 if keep else -1.0
    # the first best point wins (the current thresholds come first), so ties keep them
    best_i = max((i for i, t in enumerate(trials) if t.get("ap50_keep", 0.0) >= floor),
                 key=lambda i: (trials[i]["ap50"], trials[i].get("ap50_keep", 0.0), -i))
    return candidates[best_i], trials[best_i]["ap50"], trials
