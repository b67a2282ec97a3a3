"""Training annotations from folders on disk (``seglab train``): images, labels and region masks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seglab.datasets import load_annotated, pair_folders, pick_channels
from seglab.errors import SeglabError
from seglab.io.images import IMAGE_SUFFIXES, image_stem, read_image
from seglab.training.finetune import Annotation


def region_mask_file(regions_dir: Path, stem: str) -> Path:
    """The mask for image ``stem``: ``<stem>.*`` or ``<stem>_regions.*`` in ``regions_dir``."""
    found = [p for p in sorted(regions_dir.iterdir())
             if p.suffix.lower() in IMAGE_SUFFIXES and image_stem(p) in (stem, f"{stem}_regions")]
    if not found:
        raise SeglabError(f"no region mask for {stem} in {regions_dir} (expected {stem}.tif or {stem}_regions.tif)")
    return found[0]


def read_region_mask(path: Path) -> np.ndarray:
    """A region mask as booleans: non-zero pixels (in any colour channel) are annotated."""
    mask = np.asarray(read_image(path))
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        mask = mask[..., :3].any(axis=-1)
    if mask.ndim != 2:
        raise SeglabError(f"region mask {path.name} has shape {mask.shape}; expected a 2D image")
    return mask != 0


def load_annotations(
    images_dir: str | os.PathLike, labels_dir: str | os.PathLike, regions_dir: str | os.PathLike | None = None,
    channels: Sequence[int] | None = None,
) -> list[Annotation]:
    """Pairs of images and labels (by file name), with region masks when ``regions_dir`` is given;
    ``channels``: the channels of multichannel images to train on (:func:`~seglab.datasets.pick_channels`)."""
    out = []
    if regions_dir is not None and not Path(regions_dir).is_dir():
        raise SeglabError(f"no such folder: {regions_dir}")
    for image_path, labels_path in pair_folders(images_dir, labels_dir):
        item = load_annotated(image_path, labels_path)
        regions = None
        if regions_dir is not None:
            regions = read_region_mask(region_mask_file(Path(regions_dir), image_stem(image_path)))
        image, channel_axis = pick_channels(item.image, item.channel_axis, channels, image_path.name)
        out.append(Annotation(image, item.labels, channel_axis, regions, name=image_path.name,
                              labels_name=labels_path.name))
    return out
