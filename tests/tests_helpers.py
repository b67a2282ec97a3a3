"""Synthetic data builders shared by tests (importable as ``tests_helpers``)."""

from __future__ import annotations

import numpy as np


def blob_image(shape=(256, 256), n=30, seed=0, rmin=5, rmax=12):
    """Non-overlapping bright discs of random sizes with their labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.int32)
    k = 0
    for _ in range(n * 20):
        if k == n:
            break
        r = rng.integers(rmin, rmax + 1)
        cy, cx = rng.integers(r, shape[0] - r), rng.integers(r, shape[1] - r)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 2) ** 2
        if labels[disc].any():
            continue
        k += 1
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = k
    image = (labels > 0) * 180.0 + rng.normal(30, 6, shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def threshold_net():
    """A fixed U-Net stand-in: foreground = bright pixels; 'distance' = local mean of brightness
    (peaks inside blobs), so segmentation results are known without training."""
    import torch
    from torch import nn

    class ThresholdNet(nn.Module):
        divisor = 8

        def __init__(self):
            super().__init__()
            self.blur = nn.Conv2d(1, 1, 9, padding=4, bias=False)
            nn.init.constant_(self.blur.weight, 1 / 81)

        def forward(self, x):
            return torch.cat([(x - 0.5) * 20, (self.blur(self.blur(x)) - 0.5) * 20], 1)

    return ThresholdNet()


def drain(gen):
    """Run a progress generator to its end: ``(events, returned value)``."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value
