"""Colour augmentation for stained (RGB) images and the prefetching sampler (training/data.py)."""

import numpy as np
import pytest
import torch

from seglab.errors import SeglabError
from seglab.models.storage import new_model
from seglab.training.data import Augment, PatchSampler, PrefetchSampler, colour_jitter, make_pair
from tests_helpers import blob_image


def _he_like(seed=0):
    rng = np.random.default_rng(seed)
    # pink background, purple nuclei (normalised RGB about 0..1)
    img = np.empty((3, 32, 32), np.float32)
    img[:] = np.array([0.9, 0.7, 0.85], np.float32)[:, None, None]
    img[:, 8:20, 8:20] = np.array([0.4, 0.2, 0.6], np.float32)[:, None, None]
    return img + rng.normal(0, 0.01, img.shape).astype(np.float32)


def test_colour_jitter_changes_colour_keeps_structure():
    img = _he_like()
    out = colour_jitter(img, np.random.default_rng(1), 0.1)
    assert out.shape == img.shape and out.dtype == np.float32
    assert not np.allclose(out, img, atol=1e-3)
    # nuclei stay darker than the background in every channel
    assert (out[:, 8:20, 8:20].mean(axis=(1, 2)) < out[:, 24:, 24:].mean(axis=(1, 2))).all()
    # different draws give different colours
    out2 = colour_jitter(img, np.random.default_rng(2), 0.1)
    assert not np.allclose(out, out2, atol=1e-3)


def test_colour_jitter_off_or_grey_is_identity():
    img = _he_like()
    assert colour_jitter(img, np.random.default_rng(0), 0.0) is img
    grey = img[:1]
    assert colour_jitter(grey, np.random.default_rng(0), 0.1) is grey


def test_colour_jitter_zero_draws_give_the_image_back():
    class Zero:
        def uniform(self, lo, hi, size=None):
            return np.zeros(size) if size is not None else 0.0

    img = _he_like()
    np.testing.assert_allclose(colour_jitter(img, Zero(), 0.1), img, atol=1e-5)


def _star_sampler(seed=0):
    model = new_model("stardist", "s", architecture={"widths": [4, 8, 16], "convs_per_block": 1, "n_rays": 8,
                                                    "grid": 2, "head_width": 4}, input_channels=3)
    pairs = []
    for s in range(2):
        img, lab = blob_image((96, 96), n=6, seed=s)
        rgb = np.stack([img, img // 2, 255 - img], axis=-1)
        pairs.append(make_pair(rgb, lab, 3, model.config.normalization, channel_axis=-1))
    return model, PatchSampler(pairs, 64, Augment(colour_jitter=0.05), seed=seed)


def test_prefetch_sampler_gives_the_same_batches_as_the_sampler():
    model, plain = _star_sampler()
    _, inner = _star_sampler()
    pre = PrefetchSampler(inner)
    try:
        for _ in range(3):
            a, b = plain.batch(2, model), pre.batch(2, model)
            assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
            assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])
        assert pre.served == 3 and pre.patch_size == 64
        with pytest.raises(SeglabError, match="one batch size"):
            pre.batch(3, model)
    finally:
        pre.close()


def test_prefetch_sampler_surfaces_errors():
    model, sampler = _star_sampler()
    sampler.patch_size = 63  # not a multiple of the output stride
    pre = PrefetchSampler(sampler)
    try:
        with pytest.raises(SeglabError, match="multiple of the output stride"):
            pre.batch(2, model)
    finally:
        pre.close()
