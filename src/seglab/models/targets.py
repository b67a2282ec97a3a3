"""Training targets computed from instance label images (shared by families)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def touching_boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels of an object that touch a *different* object (4-neighbourhood)."""
    b = np.zeros(labels.shape, dtype=bool)
    for axis in (0, 1):
        a = np.swapaxes(labels, 0, axis)
        d = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        bb = np.swapaxes(b, 0, axis)
        bb[1:] |= d
        bb[:-1] |= d
    return b


def normalized_distance(labels: np.ndarray) -> np.ndarray:
    """Distance to the object's border, divided by its maximum within each object (0..1).

    Objects that touch are separated first, so every object has its own peak.
    """
    labels = np.asarray(labels)
    fg = (labels > 0) & ~touching_boundaries(labels)
    if not fg.any():
        return np.zeros(labels.shape, dtype=np.float32)
    dist = ndi.distance_transform_edt(np.pad(fg, 1)).astype(np.float32)[1:-1, 1:-1]
    n = int(labels.max())
    peak = np.zeros(n + 1, dtype=np.float32)
    ids = np.arange(1, n + 1)
    peak[1:] = ndi.maximum(dist, labels, ids)
    peak[peak <= 0] = 1.0
    return np.where(labels > 0, dist / peak[labels], 0.0).astype(np.float32)
