"""Overlapping tiles over a plane and stitching of their cores.

The plane is padded by ``context`` pixels on every side (reflect). Tiles of
``tile`` pixels (the requested tile size plus the context) step by about ``tile - 2 * context``; each tile's *core* (its centre
minus the context) is written back, so the cores partition the plane and every
output pixel was computed with at least ``context`` pixels of real surroundings.
A plane that fits in one tile is the same scheme with one tile, so tiled and
untiled runs see the same padding. A plane cut out of a larger one (a block of an image
larger than memory) may bring its real surroundings (:class:`Surround`): tiles then take
their context from them and reflect only beyond them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np


def _round_up(x: int, m: int) -> int:
    return ((x + m - 1) // m) * m


@dataclass(frozen=True)
class TileGrid:
    """Where tiles lie in the padded plane and where their cores go in the output."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    context: int
    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]

    @property
    def n_tiles(self) -> int:
        return len(self.starts_y) * len(self.starts_x)

    def windows(self) -> list[tuple[int, int]]:
        """Top-left corners of every tile in padded coordinates, row-major."""
        return [(y, x) for y in self.starts_y for x in self.starts_x]

    @property
    def padded_shape(self) -> tuple[int, int]:
        return (self.starts_y[-1] + self.tile_h, self.starts_x[-1] + self.tile_w)

    def core(self, y0: int, x0: int) -> tuple[slice, slice, slice, slice]:
        """(out_y, out_x, tile_y, tile_x) slices: where a tile's core goes in the plane."""
        c = self.context
        core_h, core_w = self.tile_h - 2 * c, self.tile_w - 2 * c
        oy0, ox0 = y0, x0  # padded coords of core start minus context == plane coords of core
        oy1, ox1 = min(oy0 + core_h, self.height), min(ox0 + core_w, self.width)
        return (
            slice(oy0, oy1),
            slice(ox0, ox1),
            slice(c, c + oy1 - oy0),
            slice(c, c + ox1 - ox0),
        )


def make_grid(height: int, width: int, tile_size: int, context: int, divisor: int) -> TileGrid:
    """Tile grid for a plane.

    ``tile_size`` is the largest part of the plane computed at once (a tile's core);
    each tile adds ``context`` on every side and is rounded up to a multiple of
    ``divisor``. A plane up to ``tile_size`` on a side is a single tile.
    """
    if tile_size < divisor:
        raise ValueError(f"tile size {tile_size} is smaller than {divisor}")
    tile_size = _round_up(tile_size + 2 * context, divisor)

    def axis(n: int) -> tuple[int, tuple[int, ...]]:
        need = _round_up(n + 2 * context, divisor)
        if need <= tile_size:
            return need, (0,)
        step = tile_size - 2 * context
        step = (step // divisor) * divisor
        count = -(-n // step)
        return tile_size, tuple(i * step for i in range(count))

    th, sy = axis(height)
    tw, sx = axis(width)
    return TileGrid(height, width, th, tw, context, sy, sx)


@dataclass(frozen=True)
class Surround:
    """Real pixels around a plane: the plane is ``pixels[:, top:top + H, left:left + W]``."""

    pixels: np.ndarray
    top: int
    left: int

    def check(self, x: np.ndarray) -> None:
        """Fail unless ``x`` is the part of :attr:`pixels` this surround says it is."""
        h, w = x.shape[-2:]
        sh, sw = self.pixels.shape[-2:]
        if self.top < 0 or self.left < 0 or self.top + h > sh or self.left + w > sw:
            raise ValueError(f"a {h}x{w} plane at ({self.top}, {self.left}) does not lie in {sh}x{sw} surroundings")


def pad_plane(x: np.ndarray, grid: TileGrid, surround: Surround | None = None) -> np.ndarray:
    """``(C, H, W)`` padded by the context, and at the end to cover the last tile: with the
    ``surround``'s real pixels where it has them, reflected beyond (at the plane's or the
    surround's edge)."""
    c = grid.context
    ph, pw = grid.padded_shape
    pad_y = (c, ph - grid.height - c)
    pad_x = (c, pw - grid.width - c)
    if surround is not None:
        surround.check(x)
        s, t, l = surround.pixels, surround.top, surround.left
        sh, sw = s.shape[-2:]
        take_y = (min(pad_y[0], t), min(pad_y[1], sh - t - grid.height))
        take_x = (min(pad_x[0], l), min(pad_x[1], sw - l - grid.width))
        x = s[:, t - take_y[0] : t + grid.height + take_y[1], l - take_x[0] : l + grid.width + take_x[1]]
        pad_y = (pad_y[0] - take_y[0], pad_y[1] - take_y[1])
        pad_x = (pad_x[0] - take_x[0], pad_x[1] - take_x[1])
    mode = "reflect" if min(x.shape[-2:]) > 1 else "edge"
    # reflect padding cannot exceed the size of the axis; repeat it in steps if needed
    out = x
    while pad_y[0] > 0 or pad_y[1] > 0 or pad_x[0] > 0 or pad_x[1] > 0:
        h, w = out.shape[-2:]
        sy = (min(pad_y[0], h - 1), min(pad_y[1], h - 1)) if mode == "reflect" else pad_y
        sx = (min(pad_x[0], w - 1), min(pad_x[1], w - 1)) if mode == "reflect" else pad_x
        out = np.pad(out, ((0, 0), sy, sx), mode=mode)
        pad_y = (pad_y[0] - sy[0], pad_y[1] - sy[1])
        pad_x = (pad_x[0] - sx[0], pad_x[1] - sx[1])
    return out


def tile_context(model: Any) -> int:
    """The context (pixels per side) the engine gives each tile of ``model``.

    At least the network's receptive radius (``network.receptive_radius()``, computed from
    its layers), rounded up to the network's size divisor, so that tiled and untiled runs
    agree; ``config.tile_context`` can only raise it.
    """
    need = 0
    net = model.network
    radius = getattr(net, "receptive_radius", None)
    if callable(radius):
        r = _RADII.get(net)
        if r is None:  # walks the layers: once per network (every tile run and probe asks)
            r = _RADII[net] = int(radius())
        need = _round_up(r, max(int(model.size_divisor), int(model.output_stride), 1))
    return max(int(model.config.tile_context), need)


#: receptive radius per network (a network's layers do not change once built)
_RADII: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
