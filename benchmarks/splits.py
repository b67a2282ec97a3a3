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
