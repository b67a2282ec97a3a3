"""The sample images shipped with the package (real DSB2018 images, CC0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seglab.errors import SeglabError
from seglab.io.images import read_image

SAMPLE_DIR = Path(__file__).parent / "sample_data"

#: key -> (dataset id, description)
SAMPLES: dict[str, tuple[str, str]] = {
    "fluorescence": ("8efed2e62c919e6d70a2ab548b1a33014877fe8a23f177ef25a9dee25ffe8842", "fluorescence, dense"),
    "stained": ("cbca32daaae36a872a11da4eaff65d1068ff3f154eedc9d3fc0c214a4e5d32bd", "H&E-like stain, RGB"),
    "brightfield": ("1b44d22643830cd4f23c9deadb0bd499fb392fb2cd9526d81547d93077d983df", "brightfield 1024x1024"),
    "large_nuclei": ("50a7ea80dd73232a17f98b5c83f62ec89989e892fe25b79b36f99b3872a7d182", "fluorescence, large nuclei"),
}


def sample_paths(key: str) -> tuple[Path, Path]:
    """(image, labels) paths of a sample."""
    if key not in SAMPLES:
        raise SeglabError(f"unknown sample {key!r}; known: {', '.join(SAMPLES)}")
    sid = SAMPLES[key][0]
    return SAMPLE_DIR / "images" / f"{sid}.tif", SAMPLE_DIR / "labels" / f"{sid}.tif"


def load_sample(key: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, ground-truth labels) of a sample."""
    img, lab = sample_paths(key)
    return read_image(img), read_image(lab)
