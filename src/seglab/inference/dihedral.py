"""Test-time augmentation: each tile through the network in the eight orientations of the
square grid (flips and transposes: the dihedral group D4), each output turned back and averaged.

A family says how its map channels follow the image (:meth:`~seglab.models.base.SegmentationModel.dihedral_channels`):
a U-Net's foreground and distance maps stay where they are, a StarDist model's rays trade places
(a ray pointing right points left in a left-right flipped tile). Maps sampled every ``s > 1``
pixels (StarDist's grid) hold pixel ``s * j``; a flipped tile is shifted by one pixel so that its
samples fall on the same pixels (their mirror images), and the maps are shifted back. That one
pixel row or column comes from the tile's context, never from its core.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from seglab.errors import SeglabError

if TYPE_CHECKING:
    from seglab.models.base import SegmentationModel


@dataclass(frozen=True)
class Orientation:
    """Flip Y, then flip X, then swap Y and X (the order :meth:`apply` takes them in)."""

    flip_y: bool = False
    flip_x: bool = False
    transpose: bool = False

    def apply(self, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """The orientation of a batch ``(B, C, H, W)`` (for maps sampled every ``stride`` pixels)."""
        for flip, dim in ((self.flip_y, 2), (self.flip_x, 3)):
            if flip:
                x = torch.flip(x, (dim,))
                if stride > 1:  # pixel p of the flipped tile shows pixel size - p: s * j -> s * (m - j)
                    x = torch.roll(x, 1, dim)
        return x.transpose(2, 3) if self.transpose else x

    def restore(self, maps: torch.Tensor, stride: int = 1) -> torch.Tensor:
        """Maps ``(B, K, h, w)`` of an oriented batch back in the batch's own orientation (their
        pixels only; the family's :meth:`dihedral_channels` reorders the channels)."""
        if self.transpose:
            maps = maps.transpose(2, 3)
        for flip, dim in ((self.flip_x, 3), (self.flip_y, 2)):
            if flip:
                maps = torch.flip(maps, (dim,))
                if stride > 1:
                    maps = torch.roll(maps, 1, dim)
        return maps

    def direction(self, dy: np.ndarray, dx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where a direction ``(dy, dx)`` of the oriented tile points in the original one."""
        if self.transpose:
            dy, dx = dx, dy
        if self.flip_x:
            dx = -dx
        if self.flip_y:
            dy = -dy
        return dy, dx


def check_augment(model: SegmentationModel, augment: bool) -> None:
    """A clear error when test-time augmentation is asked of a family whose output does not turn
    with the image (Mask R-CNN's boxes and masks)."""
    if augment and not model.supports_augment():
        raise SeglabError(f"test-time augmentation is for U-Net and StarDist models; {model.config.name!r} is a "
                          f"{model.config.family} model")


#: all eight, the identity first
ORIENTATIONS: tuple[Orientation, ...] = tuple(
    Orientation(fy, fx, t) for t in (False, True) for fy in (False, True) for fx in (False, True)
)


def ray_channels(n_rays: int, orientation: Orientation, first: int = 1) -> list[int]:
    """For maps whose channels ``first ...`` hold distances along ``n_rays`` evenly spaced rays
    (``(dy, dx) = (sin, cos)`` of ``2 pi k / n``), the channel of an oriented tile's maps that
    holds each original channel (channels before ``first`` stay)."""
    if n_rays % 4:
        raise SeglabError(f"rays turn with the image only when their number is a multiple of 4, not {n_rays}")
    phi = 2 * np.pi * np.arange(n_rays) / n_rays
    dy, dx = orientation.direction(np.sin(phi), np.cos(phi))
    original = np.round(np.arctan2(dy, dx) / (2 * np.pi / n_rays)).astype(int) % n_rays
    source = np.empty(n_rays, dtype=int)
    source[original] = np.arange(n_rays)  # original ray original[k] is the oriented tile's ray k
    return list(range(first)) + [first + int(k) for k in source]


def augmented_maps_iter(model: SegmentationModel, batch: torch.Tensor,
                        orientations: Sequence[Orientation] = ORIENTATIONS) -> Generator[None, None, torch.Tensor]:
    """The mean of ``model.forward_tiles_iter``'s maps over ``orientations`` of ``batch``, each
    turned back (float32, ``(B, K, h, w)``; each orientation's steps yielded as they run)."""
    check_augment(model, True)
    stride = int(model.output_stride)
    total: torch.Tensor | None = None
    for o in orientations:
        channels = model.dihedral_channels(o)
        x = o.apply(batch, stride)
        if batch.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        maps = yield from model.forward_tiles_iter(x)
        del x
        maps = o.restore(maps, stride)
        if total is None:  # channel-last float32, so that rays are reordered by one small matrix product
            b, k, h, w = maps.shape
            total = torch.zeros((b, h, w, k), dtype=torch.float32, device=maps.device).permute(0, 3, 1, 2)
        _accumulate(total, maps, channels)
        del maps
    assert total is not None
    return total.div_(len(orientations))


def _accumulate(total: torch.Tensor, maps: torch.Tensor, channels: Sequence[int]) -> None:
    """``total += maps[:, channels]`` for channel-last ``total``. Reordered channels go through a
    product with a 0/1 permutation matrix (exact; a gather along the channels of
    channel-last maps takes 5x as long)."""
    k = maps.shape[1]
    if list(channels) == list(range(k)):
        total.add_(maps)
        return
    perm = torch.zeros((k, k), dtype=torch.float32, device=maps.device)
    perm[torch.as_tensor(list(channels)), torch.arange(k)] = 1.0  # column c picks channel channels[c]
    flat = maps.permute(0, 2, 3, 1).reshape(-1, k).float()
    total.permute(0, 2, 3, 1).view(-1, k).addmm_(flat, perm)
