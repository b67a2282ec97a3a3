"""Read microscopy images (TIFF, PNG, JPEG, BMP) into numpy arrays."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile

from seglab.errors import SeglabError

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = TIFF_SUFFIXES + (".png", ".jpg", ".jpeg", ".bmp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file; a clear :class:`SeglabError` when it is missing, unsupported or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise SeglabError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise SeglabError(f"unsupported file type {suffix or '(none)'} for {path.name}; supported: {', '.join(IMAGE_SUFFIXES)}")
    try:
        if suffix in TIFF_SUFFIXES:
            arr = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            arr = iio.imread(path)
    except Exception as e:  # decoders raise many types for corrupt files
        raise SeglabError(f"cannot read {path.name}: {type(e).__name__}: {e}") from None
    arr = np.asarray(arr)
    if arr.size == 0:
        raise SeglabError(f"{path.name} holds an empty image")
    return arr


def guess_channel_axis(arr: np.ndarray) -> int | None:
    """Channel axis of a freshly read image: last axis when it has 3 or 4 entries (RGB/RGBA)."""
    if arr.ndim >= 3 and arr.shape[-1] in (3, 4):
        return arr.ndim - 1
    return None


def list_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (their image files, sorted) into a list of image paths."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SeglabError(f"folder {p} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise SeglabError(f"no such file or folder: {p}")
    return out
