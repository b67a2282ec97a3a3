"""Annotated image folders: pairing images with labels by name, and the DSB2018 manifest."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seglab.errors import SeglabError
from seglab.evaluation import AnnotatedImage
from seglab.io.images import IMAGE_SUFFIXES, image_stem, read_image_data
from seglab.io.labels import int32_ids, read_labels


#: name endings of label files beside their images (Cellpose: ``x.tif`` with ``x_masks.tif``)
LABEL_FILE_ENDINGS = ("_labels", "_masks")


def pair_folders(images_dir: str | os.PathLike, labels_dir: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Pairs (image, labels) by name: ``x.tif`` with ``x_labels.*`` or ``x_masks.*`` (these first),
    else, in another folder, with ``x.*``; names compared without ``.ome`` (:func:`image_stem`).
    When both are one folder, its ``*_labels``/``*_masks`` files are labels, never images, and
    no file pairs with itself. Images without labels are an error."""
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            raise SeglabError(f"no such folder: {d}")
    same = images_dir.resolve() == labels_dir.resolve()
    labels = {image_stem(p): p for p in _image_files(labels_dir)}
    pairs: list[tuple[Path, Path]] = []
    missing: list[tuple[str, list[str]]] = []
    for p in _image_files(images_dir):
        stem = image_stem(p)
        if same and stem.endswith(LABEL_FILE_ENDINGS):
            continue
        names = _label_names(stem, exact=not same)
        match = next((labels[n] for n in names if n in labels), None)
        if match is None:
            missing.append((p.name, names))
        else:
            pairs.append((p, match))
    if missing:
        name, names = missing[0]
        raise SeglabError(f"{len(missing)} image(s) have no label file in {labels_dir}, e.g. {name} "
                          f"(looked for {', '.join(n + '.*' for n in names)})")
    if not pairs:
        raise SeglabError(f"no images in {images_dir}")
    return pairs


def _image_files(folder: Path) -> list[Path]:
    """The image files of ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _label_names(stem: str, exact: bool) -> list[str]:
    """The names (without extension) a label file of image ``stem`` may have, the first found
    wins: ``<stem>_labels``, ``<stem>_masks``, then (``exact``) ``<stem>``."""
    return [stem + e for e in LABEL_FILE_ENDINGS] + [stem] * exact


def load_annotated(image_path: Path, labels_path: Path) -> AnnotatedImage:
    """Read one pair; the labels' shape says which image axis holds the channels."""
    data = read_image_data(image_path)
    labels = read_labels(labels_path)
    ca = channel_axis_for(data.array.shape, labels.shape, data.axes, image_path.name)
    return AnnotatedImage(image=np.asarray(data.array), labels=int32_ids(labels), channel_axis=ca,
                          name=image_path.stem)


def pick_channels(image: np.ndarray, channel_axis: int | None, channels: Sequence[int] | None,
                  name: str = "image") -> tuple[np.ndarray, int | None]:
    """The raw pixels of ``channels`` (indices along ``channel_axis``) and the channel axis they
    keep: one channel leaves a plain image (None), several a first channel axis (never read as RGB
    colour, unless they are all of an image's channels in their order). ``channels`` None or
    ``[0]`` on an image without channels leave it as it is."""
    if channels is None:
        return image, channel_axis
    channels = [int(c) for c in channels]
    if not channels:
        raise SeglabError("no channels picked")
    if channel_axis is None:
        if channels == [0]:
            return image, None
        bad = [c for c in channels if c not in (0, -1)]
        if not bad:
            raise SeglabError(f"{name} has one channel; pick it once (channel 0), not {len(channels)} times")
        raise SeglabError(f"{name} has one channel; channel(s) {bad} do not exist")
    n = image.shape[channel_axis]
    bad = [c for c in channels if not -n <= c < n]
    if bad:
        raise SeglabError(f"{name}: channel(s) {bad} do not exist; it has {n} channel(s) (0..{n - 1})")
    if [c % n for c in channels] == list(range(n)):
        return image, channel_axis
    picked = np.take(image, channels, axis=channel_axis)
    if len(channels) == 1:
        return np.squeeze(picked, axis=channel_axis), None
    return np.moveaxis(picked, channel_axis, 0), 0


def channel_axis_for(image_shape: tuple[int, ...], labels_shape: tuple[int, ...], axes: str | None = None,
                     name: str = "image") -> int | None:
    """The image axis that the labels lack (its channels), or None when the shapes are equal.

    A (2, H, W) image with (H, W) labels has its channels first, an (H, W, 3) one last, whatever the
    file declares; where several axes could be it (e.g. (3, 3, 3) with (3, 3)), the declared C/S
    axis decides. Any other pair is a clear error.
    """
    image_shape, labels_shape = tuple(image_shape), tuple(labels_shape)
    if image_shape == labels_shape:
        return None
    if len(image_shape) == len(labels_shape) + 1:
        fits = [k for k in range(len(image_shape)) if image_shape[:k] + image_shape[k + 1:] == labels_shape]
        if len(fits) > 1 and axes:
            fits = [k for k in fits if axes[k] in "CS"] or fits
        if fits:
            return fits[-1]  # still several: the last, where RGB keeps its colours
    raise SeglabError(f"{name}: image {image_shape} and labels {labels_shape} differ in shape "
                      "(labels must have the image's shape without its channel axis)")


def image_kind(item: AnnotatedImage) -> str:
    """Coarse kind of a DSB2018 image: colour (stained), or grey with a dark or bright background."""
    if item.channel_axis is not None:
        return "colour (stained)"
    return "grey, bright background" if np.median(item.image) > 128 else "grey, dark background"


def read_manifest(root: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a DSB2018-style ``manifest.csv`` (id, split, height, width, channels, objects)."""
    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise SeglabError(f"no manifest.csv in {root}")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_split(root: str | os.PathLike, split: str, ids: list[str] | None = None) -> list[AnnotatedImage]:
    """All images of ``split`` from a DSB2018-style folder (images/, labels/, manifest.csv)."""
    root = Path(root)
    rows = [r for r in read_manifest(root) if r["split"] == split and (ids is None or r["id"] in ids)]
    if not rows:
        raise SeglabError(f"split {split!r} is empty in {root}")
    return [load_annotated(root / "images" / f"{r['id']}.tif", root / "labels" / f"{r['id']}.tif") for r in rows]
