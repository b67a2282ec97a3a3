"""Training pairs: labels are renumbered 1..n so target cost follows the number of objects."""

import numpy as np

from seglab.training.data import PatchSampler, make_pair, relabel_consecutive
from tests_helpers import blob_image

NORM = {"kind": "percentile", "low": 1.0, "high": 99.8}


def test_huge_label_ids_are_renumbered_in_order():
    img, lab = blob_image((96, 96), n=8, seed=0)
    ids = np.unique(lab[lab > 0])
    huge = np.zeros(lab.shape, np.int64)
    for k, i in enumerate(ids):
        huge[lab == i] = 5_000_000 - 1000 * (len(ids) - k)
    pair = make_pair(img, huge, 1, NORM)
    assert pair.labels.dtype == np.int32
    assert pair.labels.max() == len(ids)
    assert np.array_equal(np.unique(pair.labels), np.arange(len(ids) + 1))
    assert np.array_equal(pair.labels, make_pair(img, lab, 1, NORM).labels)  # same objects, same order


def test_relabel_keeps_background_and_handles_no_background():
    a = np.array([[0, 7, 7], [900, 0, 3]])
    assert relabel_consecutive(a).tolist() == [[0, 2, 2], [3, 0, 1]]
    assert relabel_consecutive(np.array([[5, 9]])).tolist() == [[1, 2]]
    assert relabel_consecutive(np.zeros((2, 2), np.uint16)).tolist() == [[0, 0], [0, 0]]


def test_targets_from_huge_ids_equal_those_from_small_ids(tiny_model):
    img, lab = blob_image((64, 64), n=6, seed=1)
    huge = np.where(lab > 0, lab.astype(np.int64) * 700_000, 0)
    a = PatchSampler([make_pair(img, lab, 1, NORM)], 64, seed=3).batch(2, tiny_model)
    b = PatchSampler([make_pair(img, huge, 1, NORM)], 64, seed=3).batch(2, tiny_model)
    for k in a[1]:
        assert np.array_equal(a[1][k].numpy(), b[1][k].numpy()), k


def test_make_pair_smooths_a_noisy_image_as_inference_does():
    """A low-light image is smoothed by the model's steps, as segment() smooths it; a clean one not."""
    from seglab.inference.denoise import prepared_plane
    from seglab.models.base import ModelConfig

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    lab = (((yy - 64) ** 2 + (xx - 40) ** 2) < 15 ** 2).astype(np.int32) + 2 * (((yy - 60) ** 2 + (xx - 95) ** 2) < 12 ** 2)
    clean = (lab > 0) * 0.9 + 0.05
    noisy = rng.poisson(clean * 10).astype(np.uint16)
    steps = [[0.1, 1.0]]
    cfg = ModelConfig(name="t", family="unet", denoise={"steps": steps})
    pair = make_pair(noisy, lab, 1, cfg.normalization, denoise_steps=steps)
    ref, smoothing = prepared_plane(cfg, noisy, "auto")
    assert smoothing.sigma == 1.0
    np.testing.assert_array_equal(pair.image, ref)
    plain = make_pair(noisy, lab, 1, cfg.normalization)
    assert not np.array_equal(plain.image, pair.image)
    clean_pair = make_pair(clean, lab, 1, cfg.normalization, denoise_steps=steps)
    np.testing.assert_array_equal(clean_pair.image, make_pair(clean, lab, 1, cfg.normalization).image)


def test_blur_augmentation_blurs_a_share_of_patches_and_keeps_the_labels():
    from seglab.training.data import Augment

    img, lab = blob_image((96, 96), n=8, seed=2)
    pair = make_pair(img, lab, 1, {"low": 1.0, "high": 99.8})
    plain = dict(flips=False, scale_range=(1.0, 1.0), intensity=False, noise_std=0.0)

    def patches(**kw):  # the first patch of samplers of 40 seeds: the same crops whatever the blur draws
        return [PatchSampler([pair], 64, Augment(**plain, **kw), seed=seed).sample() for seed in range(40)]

    def detail(x):  # mean absolute Laplacian
        x = x[0]
        return np.abs(4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]).mean()

    sharp, always, never = patches(), patches(blur_prob=1.0, blur_sigma=2.0), patches(blur_prob=0.0)
    for (a, la, _), (b, lb, _), (c, _, _) in zip(sharp, always, never):
        np.testing.assert_array_equal(la, lb)  # blurring moves no label
        np.testing.assert_array_equal(a, c)
        assert detail(b) < 0.8 * detail(a)
    some = patches(blur_prob=0.3, blur_sigma=2.0)
    changed = sum(not np.array_equal(a, b) for (a, _, _), (b, _, _) in zip(sharp, some))
    assert 4 <= changed <= 24


def test_saturate_augmentation_flattens_bright_nuclei_of_a_share_of_grey_patches():
    from seglab.training.data import SATURATE_LEVELS, Augment

    img, lab = blob_image((96, 96), n=8, seed=2)
    pair = make_pair(img, lab, 1, {"low": 1.0, "high": 99.8})
    plain = dict(flips=False, scale_range=(1.0, 1.0), intensity=False, noise_std=0.0)

    def patches(pairs=(pair,), **kw):  # the first patch of samplers of 40 seeds
        return [PatchSampler(list(pairs), 64, Augment(**plain, **kw), seed=seed).sample() for seed in range(40)]

    sharp, always = patches(), patches(saturate_prob=1.0)
    for (a, la, _), (b, lb, _) in zip(sharp, always):
        np.testing.assert_array_equal(la, lb)  # saturating moves no label
        # clipped at a level in the range and stretched back: the nuclei flat at 1
        unclipped = (b > 0.05) & (b < 0.95)
        level = float(np.median(a[unclipped] / b[unclipped]))
        assert SATURATE_LEVELS[0] - 1e-3 <= level <= SATURATE_LEVELS[1] + 1e-3
        np.testing.assert_allclose(b, np.minimum(a, level) / level, atol=1e-4)
        assert (b >= 1 - 1e-6).sum() > (a >= 1 - 1e-6).sum()
    changed = sum(not np.array_equal(a, b) for (a, _, _), (b, _, _) in zip(sharp, patches(saturate_prob=0.3)))
    assert 4 <= changed <= 24
    # colour patches are left alone (a camera saturates per channel; not what this mimics)
    colour = make_pair(np.stack([img] * 3, axis=-1), lab, 3, {"low": 1.0, "high": 99.8}, channel_axis=-1)
    for (a, _, _), (b, _, _) in zip(patches([colour]), patches([colour], saturate_prob=1.0)):
        np.testing.assert_array_equal(a, b)
