"""The faster inference paths (issue 11, speed) give what the plain ones gave.

Fused conv+ReLU and the strided 2x2 max pool in the U-Net/StarDist networks, and the
compiled greyscale reconstruction in the U-Net's h-maxima: the same maps and the same
labels as before, on real images with the shipped models.
"""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from seglab.inference.engine import segment
from seglab.models import unet as unet_module
from seglab.models import unet_net
from seglab.models.grey_reconstruction import reconstruction_dilation
from seglab.models.registry import get_model
from seglab.samples import load_sample


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 5, 9, 14), (1, 12, 31, 30)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pool2_equals_max_pool2d(shape, dtype):
    x = torch.randn(shape).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.equal(unet_net.pool2(x), F.max_pool2d(x, 2))


def test_pool2_with_gradients_is_max_pool2d():
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)  # all ties: max_pool2d sends each gradient to one pixel
    unet_net.pool2(x).sum().backward()
    assert x.grad.sum() == 4 and int((x.grad > 0).sum()) == 4


def test_fuse_conv_relu_replaces_pairs_and_keeps_outputs(tiny_model):
    net = tiny_model.network
    net.train()
    for _ in range(2):
        net(torch.randn(2, 1, 32, 32) * 3 + 1)
    net.eval()
    folded = unet_net.fold_batchnorm(net)
    fused = unet_net.fuse_conv_relu(unet_net.fold_batchnorm(net))
    n_relu = sum(isinstance(m, torch.nn.ReLU) for m in folded.modules())
    assert n_relu > 0
    assert sum(isinstance(m, unet_net.ConvReLU) for m in fused.modules()) == n_relu
    assert not any(isinstance(m, torch.nn.ReLU) for m in fused.modules())
    x = torch.randn(1, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.allclose(fused(x), folded(x), atol=1e-5)  # float32: the modules themselves
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a, b = fused(x), folded(x)
    assert unet_net._fused_conv_available()
    assert a.dtype == b.dtype == torch.bfloat16
    assert torch.equal(a, b)  # the ReLU on the accumulator, then rounding: the same values


def test_model_inference_network_is_fused_and_follows_weight_changes(tiny_model):
    net = tiny_model._inference_network()
    assert any(isinstance(m, unet_net.ConvReLU) for m in net.modules())
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        a = tiny_model.forward_tiles(x)
    with torch.no_grad():
        next(tiny_model.network.parameters()).mul_(2.0)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        b = tiny_model.forward_tiles(x)
    assert not torch.equal(a, b)  # the cached bfloat16 weights were rebuilt


def _skimage_reconstruction(seed, mask):
    from skimage.morphology import reconstruction

    return reconstruction(seed, mask, method="dilation")


def test_reconstruction_equals_skimage_on_random_inputs():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = ndi.gaussian_filter(rng.random((h, w)), rng.uniform(0, 3))
        if rng.random() < 0.3:
            mask = np.round(mask * 5) / 5  # plateaus
        mask[rng.random((h, w)) < 0.2] = 0
        seed = mask - rng.uniform(0, 0.3)
        if rng.random() < 0.3:
            seed = np.minimum(seed, rng.random((h, w)))
        np.testing.assert_array_equal(reconstruction_dilation(seed, mask), _skimage_reconstruction(seed, mask))


def test_reconstruction_refuses_a_seed_above_the_mask():
    with pytest.raises(ValueError, match="must not exceed"):
        reconstruction_dilation(np.ones((3, 3)), np.zeros((3, 3)))


def _reference_paths(monkeypatch):
    """The paths as they were before: no fused ReLU, max_pool2d, skimage's reconstruction."""
    monkeypatch.setattr(unet_net, "fuse_conv_relu", lambda net: net)
    monkeypatch.setattr(unet_net, "pool2", lambda x: F.max_pool2d(x, 2))
    monkeypatch.setattr(unet_module, "reconstruction_dilation", _skimage_reconstruction)


@pytest.mark.parametrize("name", ["unet-nuclei", "stardist-nuclei"])
@pytest.mark.parametrize("sample", ["fluorescence", "large_nuclei"])
def test_fast_paths_give_the_same_labels_on_real_images(name, sample, monkeypatch):
    image, _ = load_sample(sample)
    fast = segment(get_model(name), image, device="cpu", diameter=None)
    with monkeypatch.context() as m:
        _reference_paths(m)
        plain = segment(get_model(name), image, device="cpu", diameter=None)
    assert fast.n_objects > 10
    np.testing.assert_array_equal(fast.labels, plain.labels)
    for key in plain.table:
        np.testing.assert_array_equal(fast.table[key], plain.table[key])
