"""Receptive fields computed from the layers agree with the ones measured on the networks.

Measured: every weight set to 1, biases to 0, batch norm to identity, so a single bright
input pixel reaches exactly the outputs whose receptive field holds it (all values stay
positive, so ReLU and max-pooling pass it on). Impulses at every offset of one divisor
period cover every alignment of the pooling grid.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn_helpers import TINY_ARCH
from seglab.models import receptive_field as rf
from seglab.models.config import ModelConfig
from seglab.models.maskrcnn_net import MaskRCNNNet
from seglab.models.stardist import build_star_network
from seglab.models.unet_net import UNet


def _positive(net: nn.Module) -> nn.Module:
    net = copy.deepcopy(net).double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.fill_(1.0)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.eps = 0.0
    return net


def measured_radius(forward, in_channels: int, period: int, height: int, width: int) -> list[tuple[int, int]]:
    """(radius, stride) of each output of ``forward`` from impulses at ``period`` offsets in one row."""
    c0 = width // 2
    x = torch.zeros(period, in_channels, height, width, dtype=torch.float64)
    for b in range(period):
        x[b, :, height // 2, c0 + b] = 1.0
    with torch.no_grad():
        outs = forward(x)
    result = []
    for out in outs:
        s = width // out.shape[-1]
        reached = (out.abs().sum(dim=(1, 2)) > 0).numpy()  # (period, width / s): columns reached
        r = 0
        for b in range(period):
            c = c0 + b
            for j in np.flatnonzero(reached[b]):
                r = max(r, j * s - c, c - (j * s + s - 1))
        result.append((int(r), s))
    return result


@pytest.mark.parametrize("widths,convs,stride", [([2, 2, 2], 1, 1), ([2, 2, 2, 2, 2], 2, 1), ([2, 2, 2, 2], 2, 2)])
def test_unet_radius_matches_measurement(widths, convs, stride):
    net = UNet(1, 2, widths, convs, out_stride=stride)
    measured = measured_radius(lambda x: [_positive(net)(x)], 1, net.divisor, 4 * net.divisor, 512)
    assert measured == [(net.receptive_radius(), stride)]


def test_stardist_head_counts():
    cfg = ModelConfig(name="s", family="stardist", architecture={"widths": [2, 2, 2, 2, 2], "n_rays": 4,
                                                                  "head_width": 2, "grid": 2})
    net = build_star_network(cfg)
    measured = measured_radius(lambda x: [_positive(net)(x)], 1, net.divisor, 64, 512)
    assert measured == [(net.receptive_radius(), 2)]
    plain = UNet(1, 5, [2, 2, 2, 2, 2], 2, out_stride=2)
    assert net.receptive_radius() == plain.receptive_radius() + 2  # the 3x3 head at stride 2


def test_builtin_sized_unet_radius():
    """The shipped U-Net's layout (5 levels, 2 convs per block): 107 px, measured ~94 in the issue by
    the size of the tiled/untiled difference; the old tile context was 32."""
    net = UNet(1, 2, [2, 2, 2, 2, 2], 2)
    assert net.receptive_radius() == 107


def test_maskrcnn_feature_levels_match_measurement():
    arch = {**TINY_ARCH, "stem": 2, "widths": [2, 2, 2, 2], "fpn_channels": 2}
    net = MaskRCNNNet(1, arch)
    positive = _positive(net)
    m = positive.maskrcnn

    def levels(x):
        feats = m.backbone(x)
        return [m.rpn.head.conv(f) for f in feats.values()]

    measured = measured_radius(levels, 1, 64, 128, 1536)
    assert measured == net.level_radii()
    assert [s for _, s in measured] == [4, 8, 16, 32, 64]
    assert net.detection_radius() == max(r + s for r, s in measured) + 48  # half the largest anchor (96)


def test_span_primitives():
    x = rf.Span.input(16)
    y = rf.conv(x, 3)
    assert (y.lo[5], y.hi[5]) == (4, 6) and (y.lo[0], y.hi[0]) == (0, 1)
    p = rf.conv(x, 2, 2, 0)
    assert len(p) == 8 and (p.lo[3], p.hi[3]) == (6, 7) and p.stride == 2
    u = rf.upsample_nearest(p, 16)
    assert (u.lo[7], u.hi[7]) == (6, 7) and u.stride == 1
    assert rf.radius(y) == 1 and rf.radius(p) == 0


@pytest.mark.parametrize("widths,stride,stem,full", [([2, 2, 2], 2, 2, 0), ([2, 2, 2, 2], 4, 2, 0),
                                                      ([2, 2, 2, 2], 1, 2, 2)])
def test_stem_unet_radius_matches_measurement(widths, stride, stem, full):
    """A stride-2 stem (and the full-resolution layer that reads the input) counted as forward uses them."""
    net = UNet(1, 2, widths, 2, out_stride=stride, stem=stem, full=full)
    measured = measured_radius(lambda x: [_positive(net)(x)], 1, net.divisor, 4 * net.divisor, 512)
    assert measured == [(net.receptive_radius(), stride)]
