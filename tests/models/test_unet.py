import numpy as np
import torch

from seglab.models.unet import instances_from_maps
from seglab.models.unet_net import UNet


def test_unet_shapes_and_skips():
    net = UNet(3, 2, (4, 8, 16), 1)
    assert net.divisor == 4
    assert net(torch.zeros(2, 3, 32, 48)).shape == (2, 2, 32, 48)


def test_watershed_splits_touching_objects_by_seeds():
    prob = np.zeros((20, 40), np.float32)
    prob[5:15, 5:35] = 1.0  # one foreground blob ...
    dist = np.zeros_like(prob)
    dist[8:12, 8:14] = 1.0  # ... with two seeds
    dist[8:12, 26:32] = 1.0
    lab = instances_from_maps(prob, dist, 0.5, 0.5, 1)
    assert lab.max() == 2
    assert (lab[5:15, 5:35] > 0).all()


def test_seedless_components_kept_and_small_ones_dropped():
    prob = np.zeros((20, 20), np.float32)
    prob[2:8, 2:8] = 1  # no seed, 36 px: kept
    prob[15:17, 15:17] = 1  # 4 px: dropped
    lab = instances_from_maps(prob, np.zeros_like(prob), 0.5, 0.5, 10)
    assert lab.max() == 1 and (lab[2:8, 2:8] == 1).all() and lab[15, 15] == 0


def test_folded_batchnorm_matches_and_follows_weight_changes(tiny_model):
    from seglab.models.unet_net import fold_batchnorm

    net = tiny_model.network
    net.train()
    for _ in range(3):  # give batch norm non-trivial running statistics
        net(torch.randn(2, 1, 32, 32) * 3 + 1)
    net.eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        ref = net(x)
        assert torch.allclose(fold_batchnorm(net)(x), ref, atol=1e-4)
        a = tiny_model.forward_tiles(x)
    with torch.no_grad():
        next(net.parameters()).mul_(2.0)  # an optimizer step changes weights in place
    with torch.inference_mode():
        b = tiny_model.forward_tiles(x)
        assert torch.allclose(b, torch.sigmoid(net(x)), atol=1e-4)
    assert not torch.allclose(a, b)


def test_h_maxima_seeds_split_two_peaks_but_not_a_shoulder():
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima

    from seglab.models.unet import h_maxima_in_components

    yy, xx = np.mgrid[:40, :80]
    two = np.maximum(1 - np.hypot(yy - 20, xx - 25) / 15, 1 - np.hypot(yy - 20, xx - 55) / 15).clip(0)
    fg = two > 0.05
    peaks = h_maxima_in_components(two, fg, 0.1, 0.3)
    assert ndi.label(peaks)[1] == 2
    np.testing.assert_array_equal(peaks, h_maxima(two, 0.1).astype(bool) & fg & (two > 0.3))
    # peaks joined by a saddle less than h below them make one seed
    close = np.maximum(1 - np.hypot(yy - 20, xx - 25) / 15, 0.9 - np.hypot(yy - 20, xx - 40) / 15).clip(0)
    assert ndi.label(h_maxima_in_components(close, close > 0.05, 0.1, 0.3))[1] == 2
    assert ndi.label(h_maxima_in_components(close, close > 0.05, 0.6, 0.3))[1] == 1
    lab = instances_from_maps(fg.astype(np.float32), two.astype(np.float32), 0.5, 0.3, 5, seed_h=0.1)
    assert lab.max() == 2


def test_border_weight_raises_the_loss_only_where_objects_touch(tiny_model):
    lab = np.zeros((32, 32), np.int32)
    lab[4:20, 4:16] = 1
    lab[4:20, 16:28] = 2  # touches 1 along column 16
    t = {k: torch.from_numpy(v)[None] for k, v in tiny_model.make_targets(lab).items()}
    assert t["border"][0, :, 15:17].sum() > 0 and t["border"][0, 25:, :].sum() == 0
    out = torch.zeros(1, 2, 32, 32)
    valid = torch.ones(1, 1, 32, 32)
    plain, _ = tiny_model.loss(out, t, valid)
    tiny_model.config.loss = {"border_weight": 5.0}
    weighted, _ = tiny_model.loss(out, t, valid)
    assert weighted > plain
    t_far = {k: v.clone() for k, v in t.items()}
    t_far["border"].zero_()
    assert torch.isclose(tiny_model.loss(out, t_far, valid)[0], plain)


def _whole_plane_watershed(prob, dist, prob_thresh, seed_thresh, min_area, seed_h):
    """The previous implementation: one watershed of the whole plane (reference)."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    from seglab.models.unet import h_maxima_in_components

    fg = prob > prob_thresh
    if seed_h > 0:
        dist = ndi.gaussian_filter(dist.astype(np.float32), 1.0)
        seeds, n_seeds = ndi.label(h_maxima_in_components(dist, fg, seed_h, seed_thresh))
    else:
        seeds, n_seeds = ndi.label(fg & (dist > seed_thresh))
    labels = watershed(-dist, seeds, mask=fg) if n_seeds else np.zeros(prob.shape, dtype=np.int32)
    rest, n_rest = ndi.label(fg & (labels == 0))
    labels = np.where(rest > 0, rest + n_seeds, labels)
    area = np.bincount(labels.ravel())
    labels[area[labels] < max(min_area, 1)] = 0
    return labels


def _same_partition(a, b):
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return (a > 0).sum() == (b > 0).sum() and len(np.unique(pairs[0])) == len(pairs[0]) == len(np.unique(pairs[1]))


def test_watershed_per_component_equals_one_watershed_of_the_plane():
    from scipy import ndimage as ndi

    from seglab.models.unet import instances_from_maps_iter
    from tests_helpers import blob_image

    rng = np.random.default_rng(4)
    _, truth = blob_image((300, 320), n=60, seed=4, rmin=3, rmax=14)
    fg = ndi.binary_dilation(truth > 0, iterations=2)  # neighbours merge into multi-seed components
    dist = ndi.distance_transform_edt(fg).astype(np.float32)
    dist = dist / dist.max() + rng.normal(0, 0.02, dist.shape).astype(np.float32)
    prob = fg.astype(np.float32)
    for seed_h, seed_thresh in [(0.1, 0.3), (0.0, 0.4), (0.05, 0.05)]:
        steps = []
        gen = instances_from_maps_iter(prob, dist, 0.5, seed_thresh, 6, seed_h)
        while True:
            try:
                steps.append(next(gen))
            except StopIteration as stop:
                ours = stop.value
                break
        ref = _whole_plane_watershed(prob, dist, 0.5, seed_thresh, 6, seed_h)
        assert ours.max() > 40 and _same_partition(ours, ref), (seed_h, seed_thresh)
        assert np.array_equal(np.unique(ours), np.arange(ours.max() + 1))  # ids 1..n
        assert len(steps) >= 3
