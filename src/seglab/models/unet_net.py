"""A compact U-Net: encoder-decoder with skip connections, in plain PyTorch."""

from __future__ import annotations

from collections.abc import Generator

import torch
from torch import nn
from torch.nn import functional as F

from seglab.progress import run_to_end


def pool2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)``; without gradients, the maximum of the four strided views (the same
    values, several times faster on the CPU than max_pool2d's index-keeping kernel in bfloat16
    channels-last). With gradients, max_pool2d itself (its gradient picks one pixel among ties)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return F.max_pool2d(x, 2)
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


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

    Input height and width must be multiples of :attr:`divisor`; the inference engine pads to
    that. The output has the input's spatial size divided by ``out_stride`` (a power of two):
    the decoder stops that many levels early, as StarDist's ``grid=(2, 2)`` does.

    ``stem`` > 0 puts a stride-2 3x3 convolution of that many channels in front, so that every
    level runs at half the resolution (about a quarter of the work per level: capacity moves off
    full resolution). The output stride is then at least 2, unless ``full`` > 0: a
    sub-pixel layer gives ``full`` channels at full resolution: at half resolution, a 3x3
    convolution reads the decoder's features beside the input's 2x2 pixel blocks
    (``pixel_unshuffle``) and gives ``4 * full`` channels, rearranged by ``pixel_shuffle`` (so
    boundaries can follow the input's pixels, at half-resolution cost).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        widths: tuple[int, ...] | list[int] = (16, 32, 64, 128),
        convs_per_block: int = 2,
        out_stride: int = 1,
        stem: int = 0,
        full: int = 0,
    ) -> None:
        super().__init__()
        widths = list(widths)
        stem, full = int(stem), int(full)
        if stem < 0 or full < 0:
            raise ValueError(f"stem and full must be >= 0, got {stem} and {full}")
        if full and not stem:
            raise ValueError("a full-resolution layer (full) needs a stride-2 stem (stem)")
        if stem and out_stride == 1 and not full:
            raise ValueError("with a stride-2 stem, output stride 1 needs a full-resolution layer (full > 0)")
        if full and out_stride != 1:
            raise ValueError(f"a full-resolution layer gives output stride 1, not {out_stride}")
        first = 2 if stem else 1  # the stride of the first level
        self.divisor = first * 2 ** (len(widths) - 1)
        level_stride = max(int(out_stride), first) // first
        skip_levels = int(level_stride).bit_length() - 1
        if (out_stride < 1 or 2 ** (int(out_stride).bit_length() - 1) != out_stride
                or skip_levels >= len(widths)):
            raise ValueError(f"out_stride must be a power of two below {self.divisor * 2}, got {out_stride}")
        self.out_stride = int(out_stride)
        self.stem: nn.Sequential | None = None
        cin = in_channels
        if stem:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, stride=2, padding=1, bias=False),
                                      nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
            cin = stem
        self.encoders = nn.ModuleList()
        for w in widths:
            self.encoders.append(_block(cin, w, convs_per_block))
            cin = w
        self.reducers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w_skip, w_deep in list(zip(reversed(widths[:-1]), reversed(widths[1:])))[: len(widths) - 1 - skip_levels]:
            self.reducers.append(nn.Conv2d(w_deep, w_skip, 1))
            self.decoders.append(_block(2 * w_skip, w_skip, convs_per_block))
        self.out_features = widths[skip_levels]
        self.full: nn.Sequential | None = None
        if full:
            # sub-pixel: at half resolution, the decoder's features and the input's 2x2 pixel blocks
            # give 4 * full channels, rearranged into full channels at full resolution
            self.full = nn.Sequential(
                nn.Conv2d(4 * in_channels + self.out_features, 4 * full, 3, padding=1, bias=False),
                nn.BatchNorm2d(4 * full), nn.ReLU(inplace=True), nn.PixelShuffle(2))
            self.out_features = full
        self.head = nn.Conv2d(self.out_features, out_channels, 1)

    def encoder_levels(self) -> list[str]:
        """Parameter-name prefixes of the encoder's levels, from the input down (the stem first)."""
        return (["stem."] if self.stem is not None else []) + [f"encoders.{i}." for i in range(len(self.encoders))]

    def encoder_modules(self) -> list[nn.Module]:
        """The modules whose outputs :meth:`encoder_features` returns, in its order (a run's hooks read them)."""
        return list(self.encoders)

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each encoder level's output, from the input down (what a size model reads)."""
        outs = []
        if self.stem is not None:
            x = self.stem(x)
        for i, enc in enumerate(self.encoders):
            x = enc(pool2(x) if i > 0 else x)
            outs.append(x)
        return outs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features at ``1 / out_stride`` of the input size, before the head."""
        return run_to_end(features_iter(self, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def receptive_radius(self) -> int:
        """Input pixels an output needs on either side of its own pixels (the tile context
        that makes tiled maps equal untiled ones), from the layers as :meth:`forward` uses them."""
        from seglab.models import receptive_field as rf

        n = 64 * self.divisor
        image = x = rf.Span.input(n)
        if self.stem is not None:
            x = rf.through(x, self.stem)
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
        if self.full is not None:  # pixel_unshuffle(image, 2) beside x, a 3x3 conv, pixel_shuffle(2)
            x = rf.through(rf.union(rf.conv(image, 2, 2, 0), x), self.full)
            x = rf.upsample_nearest(x, n)
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
                module[i] = fold_conv_bn(conv, bn)
                module[i + 1] = nn.Identity()
    return same_memory_format(out, net)


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution computing ``bn(conv(x))`` in eval mode (batch norm's running statistics)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    fused.to(conv.weight.device)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def same_memory_format(out: nn.Module, net: nn.Module) -> nn.Module:
    """``out`` in channels-last memory format when ``net``'s convolution weights are."""
    convs = [p for p in net.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    if convs and convs[0].is_contiguous(memory_format=torch.channels_last):
        out.to(memory_format=torch.channels_last)
    return out


def _fused_conv_available() -> bool:
    """Whether oneDNN's convolution with a fused ReLU (``torch.ops.mkldnn._convolution_pointwise``,
    what torch.compile's CPU backend calls) exists and gives the unfused result on a small input."""
    global _FUSED_OK
    if _FUSED_OK is None:
        try:
            ok = bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            if ok:
                g = torch.Generator().manual_seed(0)
                x = torch.randn(1, 3, 8, 8, generator=g).to(torch.bfloat16)
                w = torch.randn(4, 3, 3, 3, generator=g).to(torch.bfloat16)
                b = torch.randn(4, generator=g).to(torch.bfloat16)
                with torch.inference_mode(), torch.autocast("cpu", enabled=False):
                    got = torch.ops.mkldnn._convolution_pointwise(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
                    ref = F.relu(F.conv2d(x.float(), w.float(), b.float(), padding=1))
                ok = got.shape == ref.shape and bool(torch.allclose(got.float(), ref, atol=0.1, rtol=0.02))
        except Exception:  # noqa: BLE001 - any failure means: use the unfused path
            ok = False
        _FUSED_OK = ok
    return _FUSED_OK


_FUSED_OK: bool | None = None


class ConvReLU(nn.Module):
    """An inference-only ``ReLU(Conv2d(x))``: under CPU bfloat16 autocast, one oneDNN call with the
    ReLU fused and the weights kept in bfloat16 (what autocast computes, without casting the
    weights on every call or a second pass over the output); otherwise the two modules."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self._bf16: tuple[torch.Tensor, torch.Tensor] | None = None

    def _fast(self, x: torch.Tensor) -> bool:
        return (x.device.type == "cpu" and not torch.is_grad_enabled() and torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16 and self.conv.padding_mode == "zeros"
                and isinstance(self.conv.padding, tuple) and _fused_conv_available())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast(x):
            return F.relu(self.conv(x), inplace=True)
        c = self.conv
        if self._bf16 is None or self._bf16[0].device != x.device:
            bias = c.bias if c.bias is not None else torch.zeros(c.out_channels, device=x.device)
            self._bf16 = (c.weight.detach().to(torch.bfloat16).contiguous(memory_format=torch.channels_last),
                          bias.detach().to(torch.bfloat16))
        w, b = self._bf16
        return torch.ops.mkldnn._convolution_pointwise(
            x.to(torch.bfloat16), w, b, list(c.padding), list(c.stride), list(c.dilation), c.groups, "relu", [], "")


def fuse_conv_relu(net: nn.Module) -> nn.Module:
    """``net`` (an inference copy, batch norm folded) with every ``Conv2d, Identity, ReLU`` or
    ``Conv2d, ReLU`` run inside an ``nn.Sequential`` replaced by one :class:`ConvReLU` (and
    Identities), in place. Parameter names change, so only use it on a copy for inference."""
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for i, conv in enumerate(children):
            if not isinstance(conv, nn.Conv2d):
                continue
            j = i + 1
            while j < len(children) and isinstance(children[j], nn.Identity):
                j += 1
            if j < len(children) and isinstance(children[j], nn.ReLU):
                module[i] = ConvReLU(conv)
                module[j] = nn.Identity()
    return net


class BatchNormFolding:
    """Mixin for models whose ``network`` is a conv/batch-norm net: inference runs a copy
    with batch norm folded and ReLUs fused into their convolutions (:func:`fuse_conv_relu`;
    :meth:`_inference_copy`), rebuilt whenever the weights change."""

    network: nn.Module

    @staticmethod
    def _inference_copy(net: nn.Module) -> nn.Module:
        return fuse_conv_relu(fold_batchnorm(net))

    def _inference_network(self) -> nn.Module:
        net = self.network
        if net.training:
            return net
        tensors = list(net.parameters()) + list(net.buffers())
        key = (id(net), tuple(t._version for t in tensors), tuple(t.data_ptr() for t in tensors))
        if getattr(self, "_fused_key", None) != key:
            self._fused = self._inference_copy(net)
            self._fused_key = key
        return self._fused


def features_iter(net: UNet, x: torch.Tensor) -> Generator[None, None, torch.Tensor]:
    """``net.features(x)`` level by level, yielding after each encoder and decoder level (so
    that a run over large tiles can be cancelled between levels)."""
    image = x
    if net.stem is not None:
        x = net.stem(x)
    skips = []
    for i, enc in enumerate(net.encoders):
        if i > 0:
            x = pool2(x)
        x = enc(x)
        skips.append(x)
        yield
    skips.pop()
    for red, dec in zip(net.reducers, net.decoders):
        x = F.interpolate(red(x), scale_factor=2, mode="nearest")
        x = dec(torch.cat([skips.pop(), x], dim=1))
        yield
    if net.full is not None:
        blocks = F.pixel_unshuffle(image, 2).to(x.dtype).contiguous(memory_format=torch.channels_last)
        x = net.full(torch.cat([blocks, x], dim=1))
        yield
    return x
