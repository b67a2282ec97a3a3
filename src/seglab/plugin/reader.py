"""napari reader: image files as Image layers, ``*_labels``/``*_masks`` files as Labels layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seglab.errors import SeglabError
from seglab.io.images import IMAGE_SUFFIXES, guess_channel_axis, read_image
from seglab.io.labels import read_resolution

LABEL_SUFFIXES = ("_labels", "_masks", "_label", "_mask")


def get_reader(path: str | list[str]):
    """Return a reader function for files this plugin handles, else None."""
    if isinstance(path, list):
        if not all(isinstance(p, str) and Path(p).suffix.lower() in IMAGE_SUFFIXES for p in path):
            return None
        return read_files
    if not isinstance(path, str) or Path(path).suffix.lower() not in IMAGE_SUFFIXES:
        return None
    return read_files


def read_one(path: str) -> tuple[Any, dict, str]:
    """One layer tuple (data, kwargs, type) for a file."""
    p = Path(path)
    data = read_image(p)
    kwargs: dict = {"name": p.stem}
    if p.suffix.lower() in (".tif", ".tiff"):
        try:
            res = read_resolution(p)
        except Exception:  # resolution tags are optional and sometimes malformed
            res = None
        if res is not None and all(r > 0 for r in res):
            kwargs["scale"] = list(res)
    is_labels = p.stem.lower().endswith(LABEL_SUFFIXES) and data.dtype.kind in "iu"
    if is_labels:
        if "scale" in kwargs:
            kwargs["scale"] = [1.0] * (data.ndim - 2) + kwargs["scale"]
        return data, kwargs, "labels"
    ca = guess_channel_axis(data)
    if ca is not None:
        kwargs["rgb"] = True
    spatial_ndim = data.ndim - (1 if ca is not None else 0)
    if "scale" in kwargs:
        kwargs["scale"] = [1.0] * (spatial_ndim - 2) + kwargs["scale"]
    return data, kwargs, "image"


def read_files(path: str | list[str]) -> list[tuple[Any, dict, str]]:
    paths = path if isinstance(path, list) else [path]
    try:
        return [read_one(p) for p in paths]
    except SeglabError as e:
        # napari shows reader errors as a notification; keep the message to one clear line
        raise ValueError(str(e)) from None
