"""RoIAlign by separable products: torchvision's values and gradient, within float rounding."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import roi_align as tv_roi_align

from seglab.models.roi_align import SeparableRoIAlign, roi_align, roi_align_grad


def _rois(n_images: int, n: int, extent: float, seed: int = 0) -> torch.Tensor:
    """Regions of 0.3-60 px, some reaching past the image's edges (which the kernel clips)."""
    g = torch.Generator().manual_seed(seed)
    b = torch.randint(0, n_images, (n, 1), generator=g).float()
    xy = torch.rand(n, 2, generator=g) * (extent + 20) - 10
    wh = torch.rand(n, 2, generator=g) * 60 + 0.3
    return torch.cat([b, xy, xy + wh], 1)


@pytest.mark.parametrize("out", [7, 14])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradient_is_torchvisions(out, channels_last):
    torch.manual_seed(0)
    x = torch.randn(3, 8, 40, 52)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    rois = _rois(3, 300, 200.0)
    g = torch.randn(len(rois), 8, out, out)
    tv_roi_align(x, rois, out, 0.25, 2).backward(g)
    expected, x.grad = x.grad.clone(), None
    y = roi_align(x, rois, (out, out), 0.25, 2)
    torch.testing.assert_close(y, tv_roi_align(x, rois, out, 0.25, 2), rtol=1e-5, atol=1e-5)
    y.backward(g)
    assert x.grad.shape == x.shape
    torch.testing.assert_close(x.grad, expected, rtol=1e-5, atol=1e-4)


def test_edge_cases_no_regions_and_regions_outside():
    x = torch.randn(1, 4, 16, 16)
    assert roi_align_grad(torch.zeros(0, 4, 7, 7), torch.zeros(0, 5), x.shape, 1.0, 2).abs().sum() == 0
    # wholly outside the map: the kernel samples nothing, so the gradient is zero
    far = torch.tensor([[0.0, 100.0, 100.0, 120.0, 130.0]])
    assert roi_align_grad(torch.ones(1, 4, 7, 7), far, x.shape, 1.0, 2).abs().sum() == 0
    # a region on the last row and column (the kernel clamps to the edge pixel)
    edge = torch.tensor([[0.0, 14.0, 14.0, 16.5, 16.5]])
    xg = x.clone().requires_grad_(True)
    tv_roi_align(xg, edge, 7, 1.0, 2).backward(torch.ones(1, 4, 7, 7))
    torch.testing.assert_close(roi_align_grad(torch.ones(1, 4, 7, 7), edge, x.shape, 1.0, 2), xg.grad)


def test_multiscale_pooler_matches_torchvision_in_values_and_gradients():
    torch.manual_seed(1)
    sizes = {"0": 64, "1": 32, "2": 16, "3": 8}
    feats = OrderedDict((k, torch.randn(2, 6, s, s, requires_grad=True)) for k, s in sizes.items())
    boxes = [_rois(1, 80, 256.0, seed=s)[:, 1:].clamp(0, 255) for s in (2, 3)]
    boxes = [torch.cat([b[:, :2], torch.maximum(b[:, 2:], b[:, :2] + 1)], 1) for b in boxes]
    boxes[0][:5, 2:] += 150  # large regions go to the coarser levels
    shapes = [(256, 256)] * 2
    ours, theirs = SeparableRoIAlign(list(sizes), 14, 2), MultiScaleRoIAlign(list(sizes), 14, 2)
    assert not list(ours.parameters()) and ours.state_dict() == theirs.state_dict() == {}
    g = torch.randn(160, 6, 14, 14)
    y_ref = theirs(feats, boxes, shapes)
    y_ref.backward(g)
    expected = {k: v.grad.clone() for k, v in feats.items()}
    for v in feats.values():
        v.grad = None
    y = ours(feats, boxes, shapes)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    y.backward(g)
    assert any(expected[k].abs().sum() > 0 for k in ("1", "2", "3"))  # more than one level used
    for k, v in feats.items():
        torch.testing.assert_close(v.grad, expected[k], rtol=1e-5, atol=1e-4)


def test_values_without_gradient_on_a_large_map_and_bfloat16():
    """Inference: no graph, torchvision's values on a map larger than the caches (where its kernel
    is slowest), for NCHW and channels-last input; bfloat16 features give bfloat16 output."""
    torch.manual_seed(2)
    x = torch.randn(1, 16, 300, 260)
    rois = torch.cat([torch.zeros(400, 1), _rois(1, 400, 1000.0, seed=5)[:, 1:]], 1)
    expected = tv_roi_align(x, rois, 7, 0.25, 2)
    for fmt in (torch.contiguous_format, torch.channels_last):
        with torch.no_grad():
            y = roi_align(x.contiguous(memory_format=fmt).requires_grad_(True), rois, (7, 7), 0.25, 2)
        assert y.grad_fn is None
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        yb = roi_align(x.to(torch.bfloat16), rois, (7, 7), 0.25, 2)
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb.float(), tv_roi_align(x.to(torch.bfloat16).float(), rois, 7, 0.25, 2),
                               rtol=1e-2, atol=1e-2)


def test_sampling_ratio_zero_falls_back_to_torchvision():
    x = torch.randn(1, 4, 16, 16)
    rois = torch.tensor([[0.0, 1.0, 2.0, 9.0, 12.0]])
    assert torch.equal(roi_align(x, rois, (7, 7), 1.0, 0), tv_roi_align(x, rois, 7, 1.0, 0))
