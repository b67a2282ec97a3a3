"""RoIAlign for Mask R-CNN on a CPU: torchvision's values, computed by separable products.

torchvision's CPU ``roi_align`` backward walks every region, channel, bin and sample and adds
four bilinear weights into the feature map one float at a time, on one core: in a training step
of ``maskrcnn-nuclei`` (4 patches of 256x256, 1,024 box-head regions and the mask head's
positives) it took over a third of the step (docs/benchmarks.md, "Mask R-CNN training: RoIAlign's
gradient"). Bilinear sampling on a regular grid is separable: for one region,

    out[c] = Ay @ F[c, window] @ Ax.T / (sampling_ratio ** 2)

with ``Ay`` (bins x window rows) and ``Ax`` (bins x window columns) holding each bin's sampling
weights. The gradient is therefore ``Ay.T @ g[c] @ Ax`` over a small window around the region:
two batched matrix products per group of regions and one ``index_add_`` of window rows into the
channels-last feature gradient. The forward is the same products the other way round, over
windows gathered from the channels-last map: at inference on a 2048x2048 image (a 512x512 map
of 64 channels) torchvision's kernel walks every channel plane of the map for every region and
was the slowest part of the model. Both equal torchvision's within float rounding
(tests/models/test_roi_align.py); :func:`roi_align` uses them on a CPU with ``aligned=False``
and a fixed ``sampling_ratio > 0`` (what Mask R-CNN's poolers use), torchvision elsewhere.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seglab.triton_guard import guard_triton

guard_triton()  # torchvision.ops imports torch._dynamo, which imports Triton: not after Mesa's LLVM

from torchvision.ops import MultiScaleRoIAlign  # noqa: E402
from torchvision.ops import roi_align as tv_roi_align  # noqa: E402
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales  # noqa: E402

#: windows are rounded up to a multiple of this many pixels, so regions of similar size share a product
WINDOW_STEP = 4


def _axis_weights(start: Tensor, length: Tensor, pooled: int, ratio: int, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sampling weights of one axis, as torchvision's CPU kernel computes them (``aligned=False``).

    ``start`` and ``length`` (R,) are the regions' start and extent on this axis in feature pixels.
    Returns the weights ``(R, pooled, K)`` over a window of ``K`` pixels, the window's first pixel
    per region (R,) and the window length each region needs (R,)."""
    length = length.clamp(min=1.0)
    bin_size = length / pooled
    i = torch.arange(pooled * ratio, device=start.device)
    p, s = i // ratio, i % ratio
    # the kernel's float arithmetic, in its order: start + p * bin + (s + 0.5) * bin / ratio
    y = start[:, None] + p.to(start.dtype) * bin_size[:, None] + (s.to(start.dtype) + 0.5) * bin_size[:, None] / ratio
    valid = (y >= -1.0) & (y <= size)
    y = y.clamp(min=0.0)
    low = y.to(torch.long)
    top = low >= size - 1
    low = torch.where(top, torch.full_like(low, size - 1), low)
    high = torch.where(top, low, low + 1)
    y = torch.where(top, low.to(y.dtype), y)
    frac = y - low.to(y.dtype)
    w_low = (1.0 - frac) * valid / ratio
    w_high = frac * valid / ratio
    origin = low.min(dim=1).values
    need = high.max(dim=1).values - origin + 1
    k = int(need.max()) if need.numel() else 1
    weights = torch.zeros(start.shape[0], pooled, k, dtype=start.dtype, device=start.device)
    region, bins = torch.arange(len(low), device=low.device)[:, None].expand_as(low), p.expand_as(low)
    weights.index_put_((region, bins, low - origin[:, None]), w_low, accumulate=True)
    weights.index_put_((region, bins, high - origin[:, None]), w_high, accumulate=True)
    return weights, origin, need


#: one group of regions with the same window size ``k``: their indices, their sampling weights per
#: axis ``(m, bins, k)`` and the flat (N*H*W) indices of their ``k x k`` windows
Windows = list[tuple[Tensor, Tensor, Tensor, Tensor]]


def _windows(rois: Tensor, shape: torch.Size, pooled: tuple[int, int], scale: float, ratio: int) -> Windows:
    """The regions grouped by window size (see :data:`Windows`; window pixels past the map's edge
    are clamped onto it: they carry zero weight). Shared by a forward and its gradient."""
    n, c, h, w = shape
    r = rois.to(torch.float32)
    x0, y0 = r[:, 1] * scale, r[:, 2] * scale
    ay, oy, ky = _axis_weights(y0, r[:, 4] * scale - y0, pooled[0], ratio, h)
    ax, ox, kx = _axis_weights(x0, r[:, 3] * scale - x0, pooled[1], ratio, w)
    batch = r[:, 0].to(torch.long)
    bucket = (torch.maximum(ky, kx) + WINDOW_STEP - 1) // WINDOW_STEP * WINDOW_STEP
    groups = []
    for k in torch.unique(bucket).tolist():
        idx = torch.nonzero(bucket == k).flatten()
        rows = (oy[idx, None] + torch.arange(k, device=rois.device)).clamp(max=h - 1)
        cols = (ox[idx, None] + torch.arange(k, device=rois.device)).clamp(max=w - 1)
        flat = (batch[idx, None, None] * h + rows[:, :, None]) * w + cols[:, None, :]
        groups.append((idx, _window(ay[idx], k), _window(ax[idx], k), flat))
    return groups


def roi_align_forward(x: Tensor, rois: Tensor, output_size: tuple[int, int], scale: float, ratio: int,
                      windows: Windows | None = None) -> Tensor:
    """torchvision's ``roi_align(x, rois, output_size, scale, ratio, aligned=False)`` (equal within
    float rounding) as ``Ay @ window @ Ax.T`` per region: each region's window gathered from the
    channels-last map (64 contiguous channels per pixel, instead of a walk through every channel
    plane of a large map), two batched products per group of regions. Float32 result.
    ``windows``: :func:`_windows` of these arguments, when already computed."""
    n, c, h, w = x.shape
    ph, pw = output_size
    out = torch.empty(len(rois), c, ph, pw, dtype=torch.float32, device=x.device)
    if len(rois):
        flat_map = x.permute(0, 2, 3, 1).reshape(n * h * w, c).to(torch.float32)  # a view if channels-last
        for idx, wy, wx, flat in windows if windows is not None else _windows(rois, x.shape, (ph, pw), scale, ratio):
            m, k = len(idx), wy.shape[-1]
            t = torch.bmm(wy, flat_map[flat.reshape(-1)].view(m, k, k * c))  # rows: (m, ph, k * c)
            t = t.view(m, ph, k, c).transpose(2, 3).reshape(m, ph * c, k)
            t = torch.bmm(t, wx.transpose(1, 2))  # columns: (m, ph * c, pw)
            out[idx] = t.view(m, ph, c, pw).transpose(1, 2)
    return out


def roi_align_grad(grad: Tensor, rois: Tensor, shape: torch.Size, scale: float, ratio: int,
                   windows: Windows | None = None) -> Tensor:
    """Gradient of torchvision's ``roi_align(x, rois, grad.shape[-2:], scale, ratio, aligned=False)``
    with respect to ``x`` of ``shape`` (N, C, H, W), returned channels-last, float32. ``windows``:
    the forward's :func:`_windows`, when it computed them."""
    n, c, h, w = shape
    out = torch.zeros(n * h * w, c, dtype=torch.float32, device=grad.device)
    if len(rois):
        ph, pw = grad.shape[-2:]
        g = grad.to(torch.float32)
        for idx, wy, wx, flat in windows if windows is not None else _windows(rois, shape, (ph, pw), scale, ratio):
            m, k = len(idx), wy.shape[-1]
            # g @ Ax over the columns, then Ay.T @ (.) over the rows: (m, k, k, c)
            t = torch.bmm(g[idx].reshape(m, c * ph, pw), wx).view(m, c, ph, k)
            t = torch.bmm(wy.transpose(1, 2), t.permute(0, 2, 1, 3).reshape(m, ph, c * k))
            out.index_add_(0, flat.reshape(-1), t.view(m, k, c, k).permute(0, 1, 3, 2).reshape(-1, c))
    return out.view(n, h, w, c).permute(0, 3, 1, 2)


def _window(weights: Tensor, k: int) -> Tensor:
    """``weights`` (m, bins, K) over a window of ``k`` pixels: zero columns added, or trailing
    columns dropped (they are zero for regions whose window fits in ``k``)."""
    extra = k - weights.shape[-1]
    return weights[..., :k] if extra <= 0 else torch.nn.functional.pad(weights, (0, extra))


class _SeparableRoIAlign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, rois: Tensor, output_size: tuple[int, int], scale: float, ratio: int) -> Tensor:
        windows = _windows(rois, x.shape, output_size, scale, ratio)  # the backward's too
        ctx.save_for_backward(rois)
        ctx.meta = (x.shape, x.dtype, scale, ratio, windows)
        return roi_align_forward(x, rois, output_size, scale, ratio, windows).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (rois,) = ctx.saved_tensors
        shape, dtype, scale, ratio, windows = ctx.meta
        return roi_align_grad(grad, rois, shape, scale, ratio, windows).to(dtype), None, None, None, None


def roi_align(x: Tensor, rois: Tensor, output_size: tuple[int, int], scale: float, ratio: int) -> Tensor:
    """torchvision's ``roi_align(..., aligned=False)``: on a CPU with ``ratio > 0``, computed by
    :func:`roi_align_forward` (and, when a gradient is needed, :func:`roi_align_grad`); elsewhere
    torchvision's kernel."""
    if x.device.type != "cpu" or ratio <= 0:
        return tv_roi_align(x, rois, output_size, scale, ratio, False)
    if x.requires_grad and torch.is_grad_enabled():
        return _SeparableRoIAlign.apply(x, rois, tuple(output_size), float(scale), int(ratio))
    return roi_align_forward(x, rois, tuple(output_size), scale, ratio).to(x.dtype)


class SeparableRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` (same levels, the same values within float rounding;
    no parameters, so state dicts are unchanged) whose per-level RoIAlign is :func:`roi_align`."""

    #: the feature layout it reads fastest (Mask R-CNN's detection converts its maps once)
    memory_format = torch.channels_last

    def __init__(self, featmap_names: list[str], output_size: int, sampling_ratio: int, *,
                 out_memory_format: torch.memory_format = torch.contiguous_format) -> None:
        super().__init__(featmap_names, output_size, sampling_ratio)
        #: the layout of the pooled regions: channels-last for a convolutional head (the mask
        #: head's convolutions, its 2x2 transposed one above all, run several times faster on
        #: channels-last input on a CPU), NCHW for a head that flattens them (the box head)
        self.out_memory_format = out_memory_format

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        feats = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(feats, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        rois = _convert_to_roi_format(boxes)
        if len(feats) == 1:
            out = roi_align(feats[0], rois, self.output_size, self.scales[0], self.sampling_ratio)
            return out.contiguous(memory_format=self.out_memory_format)
        levels = self.map_levels(boxes)
        result = feats[0].new_zeros((len(rois), feats[0].shape[1], *self.output_size)).contiguous(
            memory_format=self.out_memory_format)
        for level, (feat, scale) in enumerate(zip(feats, self.scales)):
            idx = torch.where(levels == level)[0]
            result[idx] = roi_align(feat, rois[idx], self.output_size, scale, self.sampling_ratio).to(result.dtype)
        return result


def use_torchvision_poolers(roi_heads) -> None:
    """Put torchvision's own ``MultiScaleRoIAlign`` in place of seglab's poolers in a Mask R-CNN's
    ``roi_heads`` (same levels, sizes and sampling): for TorchScript (which does not compile
    seglab's Python) and for comparisons with torchvision's kernel."""
    for name in ("box_roi_pool", "mask_roi_pool"):
        pool = getattr(roi_heads, name)
        setattr(roi_heads, name, MultiScaleRoIAlign(pool.featmap_names, pool.output_size, pool.sampling_ratio))
