"""Overlapping tiles over a plane and stitching of their cores.

The plane is padded by a *border* on every side (reflect; by default the context) and at its
end up to a multiple of the network's size divisor. Tiles of ``tile`` pixels (the requested tile
size plus twice the context) step by about ``tile - 2 * context``; the first tile starts at the
padded plane's start and the last one ends at its end. Each tile's *core* is written back; the
cores partition the plane, and every core pixel has ``context`` pixels of the tile around it or
lies as near the padded plane's edge in its tile as in the padded plane. So a network whose
receptive radius is at most the context computes every core pixel as it would over the whole
padded plane: tiled and untiled runs agree, whatever the border. A plane that fits in one tile
is the padded plane itself. A plane cut out of a larger one (a block of an image larger than
memory) may bring its real surroundings (:class:`Surround`): tiles then take their context
from them and reflect only beyond them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np


def _round_up(x: int, m: int) -> int:
    return ((x + m - 1) // m) * m


#: padding (before, after) along one axis
Pad = tuple[int, int]


@dataclass(frozen=True)
class TileGrid:
    """Where tiles lie in the padded plane and where their cores go in the output.

    ``pad_y`` / ``pad_x``: the padding before and after the plane along each axis (the padded
    plane is ``pad[0] + n + pad[1]`` long); ``cuts_y`` / ``cuts_x``: the plane coordinates where
    one tile's core ends and the next one's begins (``0`` first, the plane's length last)."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    context: int
    starts_y: tuple[int, ...]
    starts_x: tuple[int, ...]
    pad_y: Pad
    pad_x: Pad
    cuts_y: tuple[int, ...]
    cuts_x: tuple[int, ...]

    @property
    def n_tiles(self) -> int:
        return len(self.starts_y) * len(self.starts_x)

    def windows(self) -> list[tuple[int, int]]:
        """Top-left corners of every tile in padded coordinates, row-major."""
        return [(y, x) for y in self.starts_y for x in self.starts_x]

    @property
    def padded_shape(self) -> tuple[int, int]:
        return (self.pad_y[0] + self.height + self.pad_y[1], self.pad_x[0] + self.width + self.pad_x[1])

    def origin(self, y0: int, x0: int) -> tuple[int, int]:
        """Plane coordinates of the pixel (0, 0) of the tile at padded corner ``(y0, x0)``."""
        return y0 - self.pad_y[0], x0 - self.pad_x[0]

    def core(self, y0: int, x0: int) -> tuple[slice, slice, slice, slice]:
        """(out_y, out_x, tile_y, tile_x) slices: where a tile's core goes in the plane."""
        iy, ix = self.starts_y.index(y0), self.starts_x.index(x0)
        oy0, ox0 = self.origin(y0, x0)
        y_lo, y_hi = self.cuts_y[iy], self.cuts_y[iy + 1]
        x_lo, x_hi = self.cuts_x[ix], self.cuts_x[ix + 1]
        return (
            slice(y_lo, y_hi),
            slice(x_lo, x_hi),
            slice(y_lo - oy0, y_hi - oy0),
            slice(x_lo - ox0, x_hi - ox0),
        )


def _axis(n: int, border: Pad, tile: int, context: int, divisor: int) -> tuple[int, tuple[int, ...], Pad, tuple[int, ...]]:
    """One axis of a grid: tile length, tile starts (padded coordinates), padding, core cuts."""
    before = border[0]
    length = _round_up(before + n + border[1], divisor)
    pad = (before, length - n - before)
    if length <= tile:
        return length, (0,), pad, (0, n)
    step = ((tile - 2 * context) // divisor) * divisor
    starts = list(range(0, length - tile, step)) + [length - tile]
    # between two tiles the core changes where the later one has its context behind it
    cuts = (0, *(s + context - before for s in starts[1:]), n)
    if any(b <= a for a, b in pairwise(cuts)):
        raise ValueError(f"tiles of {tile} px with {context} px of context do not fit a plane of {n} px "
                         f"with borders {border}")
    return tile, tuple(starts), pad, cuts


def make_grid(height: int, width: int, tile_size: int, context: int, divisor: int,
              border: int | tuple[Pad, Pad] | None = None) -> TileGrid:
    """Tile grid for a plane.

    ``tile_size`` is the largest part of the plane computed at once (a tile's core); each tile
    adds ``context`` on every side and is rounded up to a multiple of ``divisor``. A plane up
    to ``tile_size`` on a side (with its border) is a single tile. ``border``: padding at the
    plane's edges, one number for every side or ``((top, bottom), (left, right))``; default the
    context. Borders and the context must be multiples of the output stride for the cores to
    start on the output's grid (the engine checks the context; borders are used as given).
    """
    if tile_size < divisor:
        raise ValueError(f"tile size {tile_size} is smaller than {divisor}")
    if border is None:
        border = context
    if isinstance(border, int):
        border = ((border, border), (border, border))
    if min(min(border[0]), min(border[1])) < 0 or max(max(border[0]), max(border[1])) > context:
        raise ValueError(f"borders {border} must lie between 0 and the context {context}")
    tile = _round_up(tile_size + 2 * context, divisor)
    th, sy, py, cy = _axis(height, border[0], tile, context, divisor)
    tw, sx, px, cx = _axis(width, border[1], tile, context, divisor)
    return TileGrid(height, width, th, tw, context, sy, sx, py, px, cy, cx)


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


def plane_borders(h: int, w: int, context: int, border: int | None, surround: Surround | None,
                  stride: int = 1) -> tuple[tuple[int, int], tuple[int, int]]:
    """Padding ``((top, bottom), (left, right))`` of an ``h`` x ``w`` plane: ``border`` beyond the
    image's edge (None: the context). Where a ``surround`` holds real pixels beside the plane, as
    many of them as the context asks for, then the border beyond the surround's edge: a block of a
    larger image is padded as the whole image is, so its tiles compute what the whole image's do.
    Each side is rounded up to a multiple of the output ``stride`` and kept within the context."""
    b = context if border is None else min(int(border), context)

    def side(real: int) -> int:
        return min(context, -(-(real + b) // stride) * stride)

    if surround is None:
        return (side(0), side(0)), (side(0), side(0))
    sh, sw = surround.pixels.shape[-2:]
    t, l = surround.top, surround.left
    return (side(t), side(sh - t - h)), (side(l), side(sw - l - w))


def model_grid(model: Any, h: int, w: int, tile_size: int, context: int,
               surround: Surround | None = None) -> TileGrid:
    """The grid the engine runs ``model`` on over an ``h`` x ``w`` plane: tiles of ``tile_size``
    (at least the network's size divisor) with ``context``, and the family's ``image_border`` at
    the plane's edges (:func:`plane_borders`)."""
    div = int(model.size_divisor)
    sides = plane_borders(h, w, context, int(model.image_border), surround, int(model.output_stride))
    return make_grid(h, w, max(int(tile_size), div), context, div, sides)


def pad_plane(x: np.ndarray, grid: TileGrid, surround: Surround | None = None) -> np.ndarray:
    """``(C, H, W)`` padded as ``grid`` says (its borders, and at the end up to the size divisor):
    with the ``surround``'s real pixels where it has them, reflected beyond (at the plane's or
    the surround's edge)."""
    pad_y, pad_x = grid.pad_y, grid.pad_x
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
