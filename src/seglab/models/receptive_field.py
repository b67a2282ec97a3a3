"""Receptive fields of convolutional networks, computed from their layers (1-D interval arithmetic).

Height and width behave alike in the networks seglab builds (square kernels, strides and
pools), so one axis is enough. A :class:`Span` holds, for every position of a feature map,
the first and last input pixel that position depends on. Layers map spans to spans:
convolutions and pools take the union over the inputs they read (zero padding adds no
input), nearest upsampling copies, concatenation and sums take the union. A network
mirrors its ``forward`` with these functions (``receptive_radius()`` on each network).

:func:`radius` turns the output span into the tile context the engine needs: the most
input pixels any output pixel reaches beyond its own block of ``stride`` pixels, on either
side. With at least that much context (and tiles aligned to the network's divisor, as the
engine makes them), every output in a tile's core is computed from real (or the same
reflect-padded) pixels, so tiled and untiled maps are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """Input pixels ``lo[i]..hi[i]`` that position ``i`` of a map at ``stride`` depends on."""

    lo: np.ndarray
    hi: np.ndarray
    stride: int = 1

    @classmethod
    def input(cls, n: int) -> Span:
        """The input itself: position i depends on pixel i."""
        i = np.arange(n, dtype=np.int64)
        return cls(i, i.copy(), 1)

    def __len__(self) -> int:
        return len(self.lo)


def conv(x: Span, kernel: int, stride: int = 1, padding: int | None = None, dilation: int = 1) -> Span:
    """A convolution (or pool) with zero padding: the union of the inputs it reads."""
    pad = (kernel - 1) // 2 * dilation if padding is None else padding
    n_out = (len(x) + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    j = np.arange(n_out, dtype=np.int64)[:, None]
    taps = j * stride - pad + np.arange(kernel, dtype=np.int64)[None, :] * dilation
    inside = (taps >= 0) & (taps < len(x))
    idx = np.clip(taps, 0, len(x) - 1)
    big = np.iinfo(np.int64).max
    lo = np.where(inside, x.lo[idx], big).min(1)
    hi = np.where(inside, x.hi[idx], -big).max(1)
    return Span(lo, hi, x.stride * stride)


def upsample_nearest(x: Span, size: int) -> Span:
    """Nearest-neighbour resampling to ``size`` positions (``F.interpolate(mode="nearest")``)."""
    src = np.minimum(np.floor(np.arange(size) * (len(x) / size)).astype(np.int64), len(x) - 1)
    factor = size // len(x) if size >= len(x) else 1
    return Span(x.lo[src], x.hi[src], max(1, x.stride // factor))


def union(*spans: Span) -> Span:
    """Maps added or concatenated position by position."""
    if len({len(s) for s in spans}) != 1:
        raise ValueError("spans of different lengths cannot be combined")
    lo = np.minimum.reduce([s.lo for s in spans])
    hi = np.maximum.reduce([s.hi for s in spans])
    return Span(lo, hi, min(s.stride for s in spans))


def radius(x: Span, stride: int | None = None) -> int:
    """Context (pixels) that output position ``i`` (pixels ``i*s .. i*s+s-1``) needs on either side."""
    s = x.stride if stride is None else stride
    start = np.arange(len(x), dtype=np.int64) * s
    return int(max(0, (start - x.lo).max(), (x.hi - (start + s - 1)).max()))


def conv_layers(module) -> list[tuple[int, int, int, int]]:
    """(kernel, stride, padding, dilation) of the Conv2d/MaxPool2d layers of ``module``, in order."""
    from torch import nn

    out = []
    for m in module.modules() if isinstance(module, nn.Module) else []:
        if isinstance(m, nn.Conv2d):
            k, s, p, d = m.kernel_size[0], m.stride[0], m.padding, m.dilation[0]
            out.append((k, s, p[0] if isinstance(p, tuple) else (k - 1) // 2 * d, d))
        elif isinstance(m, nn.MaxPool2d):
            k, s, p, d = (v if isinstance(v, int) else v[0] for v in (m.kernel_size, m.stride, m.padding, m.dilation))
            out.append((k, s, p, d))
    return out


def through(x: Span, module) -> Span:
    """A span after the convolutions and pools of a plain sequential ``module``."""
    for k, s, p, d in conv_layers(module):
        x = conv(x, k, s, p, d)
    return x
