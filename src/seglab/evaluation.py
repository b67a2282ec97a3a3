"""Score a model on annotated images, and tune its thresholds on them."""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from seglab.inference.engine import DEFAULT_TILE_SIZE, ProgressEvent, predict_maps_iter, run_to_end
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


def predict_maps(
    model: SegmentationModel,
    item: AnnotatedImage,
    *,
    device="auto",
    tile_size: int = DEFAULT_TILE_SIZE,
    amp: bool = True,
) -> np.ndarray:
    """The model's dense maps for one annotated image."""
    dev = resolve_device(device)
    model.network.to(dev)
    x = model_input(item.image, model.config.input_channels, model.config.normalization, item.channel_axis)
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
        maps = predict_maps(model, item, device=device, tile_size=tile_size)
        preds.append(model.postprocess(maps, th).labels)
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
) -> tuple[dict[str, float], float, list[dict]]:
    """Grid search over thresholds (maps computed once); returns best, its AP, and all trials.

    The model's current thresholds are tried first and kept unless a grid point beats them.
    """
    maps = [predict_maps(model, it, device=device) for it in items]
    base = model.thresholds()
    names = list(grid)
    trials = []
    best, best_score = dict(base), -1.0
    candidates = [dict(base)]
    for combo in itertools.product(*[grid[n] for n in names]):
        th = {**base, **dict(zip(names, map(float, combo)))}
        if th != base:
            candidates.append(th)
    for th in candidates:
        preds = [model.postprocess(m, th).labels for m in maps]
        score = float(evaluate(zip([it.labels for it in items], preds), thresholds=(0.5,))["thresholds"][score_key]["ap"])
        trials.append({**th, "ap50": score})
        if score > best_score:
            best, best_score = th, score
    return best, best_score, trials
