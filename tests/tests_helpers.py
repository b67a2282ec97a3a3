"""Synthetic data builders shared by tests (importable as ``tests_helpers``)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


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


def threshold_net(invert: bool = False):
    """A fixed U-Net stand-in: foreground = bright pixels (``invert``: dark ones, as brightfield
    nuclei); 'distance' = local mean of brightness (peaks inside blobs), so segmentation results are
    known without training."""
    import torch
    from torch import nn

    class ThresholdNet(nn.Module):
        divisor = 8

        def __init__(self):
            super().__init__()
            self.blur = nn.Conv2d(1, 1, 9, padding=4, bias=False)
            nn.init.constant_(self.blur.weight, 1 / 81)

        def forward(self, x):
            if invert:
                x = 1 - x
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


def disc_grid(d: float, n: int = 5, seed: int = 0):
    """Discs of diameter ``d`` on a jittered grid (at least 160 px square), blurred, with noise."""
    sp = int(round(1.7 * d))
    size = max(160, sp * n)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    lab = np.zeros((size, size), np.int32)
    k = 0
    for cy in np.arange(sp / 2, size - sp / 3, sp):
        for cx in np.arange(sp / 2, size - sp / 3, sp):
            k += 1
            dy, dx = rng.uniform(-0.1, 0.1, 2) * d
            lab[(yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 <= (d / 2) ** 2] = k
    img = ndi.gaussian_filter((lab > 0) * 180.0, max(0.7, d / 40)) + rng.normal(30, 6, lab.shape)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def fake_dsb(root, n_train=12, n_val=2):
    """A DSB2018-layout folder (images, labels, manifest) of blob images, ``n_train`` then ``n_val``."""
    import csv

    import tifffile

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "split", "height", "width", "channels", "objects"])
        for i in range(n_train + n_val):
            img, lab = blob_image((96, 96), n=8, seed=i)
            rid = f"im{i:02d}"
            tifffile.imwrite(root / "images" / f"{rid}.tif", img)
            tifffile.imwrite(root / "labels" / f"{rid}.tif", lab.astype("uint16"))
            w.writerow([rid, "train" if i < n_train else "val", 96, 96, 1, int(lab.max())])


def record_finish(worker) -> list:
    """The monotonic times at which ``worker.finished`` fires. Connect it before cancelling: a
    cancelled thread may end before a later ``qtbot.waitSignal`` has connected, and that missed
    signal then reads as a timeout."""
    import time

    ended: list = []
    worker.finished.connect(lambda: ended.append(time.monotonic()))
    return ended


def cells_image(bright_background: bool, shape=(96, 96)) -> np.ndarray:
    """Three round cells (radius 10) on a background with a little noise: dark on bright
    (brightfield, 90 on 210) or bright on dark (fluorescence, 200 on 12); float32."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cells = np.zeros(shape, bool)
    for cy, cx in ((20, 20), (50, 70), (75, 30)):
        cells |= (yy - cy) ** 2 + (xx - cx) ** 2 < 100
    noise = np.random.default_rng(0).normal(0, 3, shape)
    img = np.where(cells, 90.0, 210.0) if bright_background else np.where(cells, 200.0, 12.0)
    return (img + noise).astype(np.float32)


def nuclei_field(shape=(256, 256), n=40, seed=0, debris=0):
    """Bright Gaussian nuclei (radius ~6, heights 100-200 above 10) on a dark noisy background,
    with ``debris`` flat discs of radius 7 at 1000 (saturated dust: ~1 % of the area for 5)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = rng.normal(10, 2, shape)
    for cy, cx, a in zip(rng.integers(8, shape[0] - 8, n), rng.integers(8, shape[1] - 8, n), rng.uniform(100, 200, n)):
        img += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0 ** 2))
    for cy, cx in zip(rng.integers(0, shape[0], debris), rng.integers(0, shape[1], debris)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 49] = 1000.0
    return img.astype(np.float32)


def textured(shape, seed=0) -> np.ndarray:
    """Random float32 pixels with structure (white noise smoothed by a 1 px Gaussian): an image
    whose content does not matter, which the engine does not take for an empty view (white noise
    is blank: ``seglab.inference.denoise.is_blank``)."""
    return ndi.gaussian_filter(np.random.default_rng(seed).random(shape), 1.0).astype(np.float32)
