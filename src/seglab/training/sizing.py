"""Object size in training: the user's objects brought to the start model's size (issue 11).

Fine-tuning first rescales the user's images, labels and regions by
``start.object_diameter / user's median diameter`` (outside the no-rescale band), so that a
model trained on 16 px nuclei learns from 100 px nuclei at its own scale and keeps its
``object_diameter``; segmentation with ``diameter="auto"`` then brings the user's images to
that scale too. A model trained from scratch records the user's object size instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seglab.evaluation import AnnotatedImage
from seglab.inference.diameter import equivalent_diameters, scale_factor, weighted_median
from seglab.inference.rescale import resize_image, resize_labels, scaled_shape
from seglab.training.data import TrainPair


def annotated_diameter(annotations: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> float | None:
    """Median equivalent diameter of the annotated objects (labels, valid mask or None); objects
    count when most of their pixels lie in the valid regions. None without objects."""
    values = []
    for labels, valid in annotations:
        labels = np.asarray(labels)
        if valid is not None:
            inside = np.bincount(labels[valid].ravel(), minlength=int(labels.max()) + 1)
            total = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
            drop = np.flatnonzero(inside * 2 < total)
            labels = np.where(np.isin(labels, drop), 0, labels)
        values.append(equivalent_diameters(labels))
    d = np.concatenate(values) if values else np.zeros(0)
    return weighted_median(d) if d.size else None


def training_factor(model_diameter: float | None, user_diameter: float | None) -> float:
    """The factor the user's pairs are rescaled by (1 within the no-rescale band or when unknown)."""
    return scale_factor(model_diameter, user_diameter)


def rescale_pair(pair: TrainPair, factor: float) -> TrainPair:
    """A training pair (normalised image, labels, valid mask) rescaled by ``factor``."""
    if factor == 1.0:
        return pair
    hw = scaled_shape(pair.labels.shape, factor)
    valid = None if pair.valid is None else resize_labels(pair.valid, hw)
    return TrainPair(resize_image(pair.image, hw), resize_labels(pair.labels, hw), valid, pair.weight, pair.name)


def rescale_item(item: AnnotatedImage, factor: float) -> AnnotatedImage:
    """An annotated raw image (any channel axis) rescaled by ``factor``; labels by nearest neighbour."""
    if factor == 1.0:
        return item
    hw = scaled_shape(item.labels.shape, factor)
    img = np.asarray(item.image, dtype=np.float32)
    ca = item.channel_axis
    chw = img[None] if ca is None else np.moveaxis(img, ca, 0)
    out = resize_image(chw, hw)
    out = out[0] if ca is None else np.moveaxis(out, 0, ca)
    return AnnotatedImage(out, resize_labels(item.labels, hw), ca, item.name)
