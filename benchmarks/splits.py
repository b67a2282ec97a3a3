"""The DSB2018 images a benchmark reads: ``tune`` (the recipes' held-out part of ``train``, for
choosing) or ``val`` (for the report)."""

from __future__ import annotations

from pathlib import Path

from seglab.datasets import image_kind, load_split
from seglab.training.recipes import split_train_tune


def split_items(data: str, split: str) -> list:
    """The annotated images of ``split`` ("tune", or a manifest split such as "val")."""
    if split == "tune":
        return load_split(data, "train", ids=split_train_tune(Path(data))[1])
    return load_split(data, split)


def fluorescence_items(data: str, split: str) -> list:
    """The grey images on a dark background (fluorescence) of ``split``."""
    return [it for it in split_items(data, split) if image_kind(it) == "grey, dark background"]


def scores_by_kind(items: list, preds: list, **evaluate_kwargs) -> dict:
    """``seglab.metrics.evaluate`` of the predictions of each kind of image among ``items``
    (``seglab.datasets.image_kind``), from predictions already made (the model runs once)."""
    from seglab.metrics import evaluate

    kinds = [image_kind(it) for it in items]
    return {k: evaluate([(it.labels, p) for it, p, kk in zip(items, preds, kinds) if kk == k], **evaluate_kwargs)
            for k in sorted(set(kinds))}
