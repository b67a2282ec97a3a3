"""The package's cover: the test input next to the instances seglab finds in it (numpy + imageio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _to_rgb(x: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` image -> ``(H, W, 3)`` uint8, each channel stretched to its 1st-99.8th percentiles."""
    x = np.asarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.float32)
    for c in range(x.shape[0]):
        lo, hi = np.percentile(x[c], [1.0, 99.8])
        out[c] = np.clip((x[c] - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(out[:1], 3, axis=0) if out.shape[0] != 3 else out
    return (np.moveaxis(rgb, 0, -1) * 255).round().astype(np.uint8)


def _label_colours(labels: np.ndarray) -> np.ndarray:
    """Labels -> ``(H, W, 3)`` uint8: each object a fixed pseudo-random colour, background black,
    object borders white."""
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    rng = np.random.default_rng(0)
    palette = np.concatenate([[[0, 0, 0]], rng.integers(60, 256, size=(max(n, 0), 3))]).astype(np.uint8)
    rgb = palette[labels]
    border = np.zeros(labels.shape, dtype=bool)
    border[1:] |= labels[1:] != labels[:-1]
    border[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    rgb[border & (labels > 0)] = 255
    return rgb


def render_cover(image: np.ndarray, labels: np.ndarray, path: str | Path) -> Path:
    """Write a PNG: ``image`` ``(C, H, W)`` on the left, ``labels`` ``(H, W)`` on the right (2:1)."""
    import imageio.v3 as iio

    left = _to_rgb(image)
    right = _label_colours(labels)
    if right.shape[:2] != left.shape[:2]:  # labels at another scale: nearest-neighbour to the image's size
        ys = np.minimum(np.arange(left.shape[0]) * right.shape[0] // left.shape[0], right.shape[0] - 1)
        xs = np.minimum(np.arange(left.shape[1]) * right.shape[1] // left.shape[1], right.shape[1] - 1)
        right = right[ys][:, xs]
    cover = np.concatenate([left, right], axis=1)
    path = Path(path)
    iio.imwrite(path, cover, extension=".png")
    return path
