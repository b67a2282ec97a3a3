"""napari sample data: real DSB2018 images (CC0) with their ground-truth labels."""

from __future__ import annotations

from typing import Any

from seglab.samples import SAMPLES, load_sample


def _layers(key: str) -> list[tuple[Any, dict, str]]:
    image, labels = load_sample(key)
    sid = SAMPLES[key][0][:12]
    return [
        (image, {"name": f"dsb2018-{sid}", "rgb": image.ndim == 3}, "image"),
        (labels, {"name": f"dsb2018-{sid} ground truth", "visible": False, "opacity": 0.5}, "labels"),
    ]


def fluorescence():
    return _layers("fluorescence")


def stained():
    return _layers("stained")


def brightfield():
    return _layers("brightfield")


def large_nuclei():
    return _layers("large_nuclei")
