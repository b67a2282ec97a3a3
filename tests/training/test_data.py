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
