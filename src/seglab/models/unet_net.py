"""A compact U-Net: encoder-decoder with skip connections, in plain PyTorch."""

from __future__ import annotations

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
    inference engine pads to that. Output has the input's spatial size.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        widths: tuple[int, ...] | list[int] = (16, 32, 64, 128),
        convs_per_block: int = 2,
    ) -> None:
        super().__init__()
        widths = list(widths)
        self.divisor = 2 ** (len(widths) - 1)
        self.encoders = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.encoders.append(_block(cin, w, convs_per_block))
            cin = w
        self.reducers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w_skip, w_deep in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.reducers.append(nn.Conv2d(w_deep, w_skip, 1))
            self.decoders.append(_block(2 * w_skip, w_skip, convs_per_block))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
        return self.head(x)


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
