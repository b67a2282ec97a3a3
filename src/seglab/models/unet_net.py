"""A compact U-Net: encoder-decoder with skip connections, in plain PyTorch."""

from __future__ import annotations

from collections.abc import Generator

import torch
from torch import nn
from torch.nn import functional as F


def _block(cin: int, cout: int, n_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [
            nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net with ``len(widths) - 1`` down-sampling steps.

    Input height and width must be multiples of ``2 ** (len(widths) - 1)``; the
    inference engine pads to that. The output has the input's spatial size divided by
    ``out_stride`` (a power of two): the decoder stops that many levels early, as
    StarDist's ``grid=(2, 2)`` does.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        widths: tuple[int, ...] | list[int] = (16, 32, 64, 128),
        convs_per_block: int = 2,
        out_stride: int = 1,
    ) -> None:
        super().__init__()
        widths = list(widths)
        self.divisor = 2 ** (len(widths) - 1)
        skip_levels = int(out_stride).bit_length() - 1
        if out_stride < 1 or 2**skip_levels != out_stride or skip_levels >= len(widths):
            raise ValueError(f"out_stride must be a power of two below {self.divisor * 2}, got {out_stride}")
        self.out_stride = int(out_stride)
        self.encoders = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.encoders.append(_block(cin, w, convs_per_block))
            cin = w
        self.reducers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w_skip, w_deep in list(zip(reversed(widths[:-1]), reversed(widths[1:])))[: len(widths) - 1 - skip_levels]:
            self.reducers.append(nn.Conv2d(w_deep, w_skip, 1))
            self.decoders.append(_block(2 * w_skip, w_skip, convs_per_block))
        self.out_features = widths[skip_levels]
        self.head = nn.Conv2d(self.out_features, out_channels, 1)

    def encoder_levels(self) -> list[str]:
        """Parameter-name prefixes of the encoder's levels, from the input down."""
        return [f"encoders.{i}." for i in range(len(self.encoders))]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features at ``1 / out_stride`` of the input size, before the head."""
        skips = []
        for i, enc in enumerate(self.encoders):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = enc(x)
            skips.append(x)
        skips.pop()
        for red, dec in zip(self.reducers, self.decoders):
            x = F.interpolate(red(x), scale_factor=2, mode="nearest")
            x = dec(torch.cat([skips.pop(), x], dim=1))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def receptive_radius(self) -> int:
        """Input pixels an output needs on either side of its own pixels (the tile context
        that makes tiled maps equal untiled ones), from the layers as :meth:`forward` uses them."""
        from seglab.models import receptive_field as rf

        n = 64 * self.divisor
        x = rf.Span.input(n)
        skips = []
        for i, enc in enumerate(self.encoders):
            if i > 0:
                x = rf.conv(x, 2, 2, 0)  # max_pool2d(x, 2)
            x = rf.through(x, enc)
            skips.append(x)
        skips.pop()
        for red, dec in zip(self.reducers, self.decoders):
            x = rf.upsample_nearest(rf.through(x, red), 2 * len(x))
            x = rf.through(rf.union(skips.pop(), x), dec)
        x = rf.through(x, self.head)
        return rf.radius(x, self.out_stride)


@torch.no_grad()
def fold_batchnorm(net: nn.Module) -> nn.Module:
    """An inference copy of ``net`` with every Conv2d -> BatchNorm2d pair folded into the conv.

    Same outputs in eval mode (up to rounding), one op fewer per layer.
    """
    import copy

    out = copy.deepcopy(net).eval()
    for module in out.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                  conv.padding, conv.dilation, conv.groups, bias=True)
                fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
                fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
                module[i] = fused
                module[i + 1] = nn.Identity()
    convs = [p for p in net.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    if convs and convs[0].is_contiguous(memory_format=torch.channels_last):
        out.to(memory_format=torch.channels_last)
    return out


class BatchNormFolding:
    """Mixin for models whose ``network`` is a conv/batch-norm net: inference runs a copy
    with batch norm folded, rebuilt whenever the weights change."""

    network: nn.Module

    def _inference_network(self) -> nn.Module:
        net = self.network
        if net.training:
            return net
        tensors = list(net.parameters()) + list(net.buffers())
        key = (id(net), tuple(t._version for t in tensors), tuple(t.data_ptr() for t in tensors))
        if getattr(self, "_fused_key", None) != key:
            self._fused = fold_batchnorm(net)
            self._fused_key = key
        return self._fused


def features_iter(net: UNet, x: torch.Tensor) -> Generator[None, None, torch.Tensor]:
    """``net.features(x)`` level by level, yielding after each encoder and decoder level (so
    that a run over large tiles can be cancelled between levels)."""
    skips = []
    for i, enc in enumerate(net.encoders):
        if i > 0:
            x = F.max_pool2d(x, 2)
        x = enc(x)
        skips.append(x)
        yield
    skips.pop()
    for red, dec in zip(net.reducers, net.decoders):
        x = F.interpolate(red(x), scale_factor=2, mode="nearest")
        x = dec(torch.cat([skips.pop(), x], dim=1))
        yield
    return x
