import numpy as np
import pytest

from seglab.inference.tiling import Surround, make_grid, pad_plane, plane_borders


@pytest.mark.parametrize("border", [None, 0, 8, ((0, 16), (8, 0))])
@pytest.mark.parametrize("h,w,tile,ctx,div", [(100, 130, 64, 16, 8), (37, 300, 96, 16, 16), (5, 5, 64, 8, 8), (1, 1, 64, 8, 8),
                                              (250, 77, 32, 16, 8)])
def test_cores_cover_every_pixel_once_with_context(h, w, tile, ctx, div, border):
    """Cores partition the plane; a core pixel has the context around it in its tile, or lies
    as near the padded plane's edge in the tile as in the padded plane (the first tile starts
    and the last one ends there), whatever the border."""
    if isinstance(border, int):
        border = min(border, ctx)
    elif border is not None:
        border = tuple(tuple(min(b, ctx) for b in side) for side in border)
    grid = make_grid(h, w, tile, ctx, div, border)
    assert grid.tile_h % div == 0 and grid.tile_w % div == 0
    cover = np.zeros((h, w), dtype=int)
    x = np.arange(h * w, dtype=np.float32).reshape(1, h, w)
    padded = pad_plane(x, grid)
    assert padded.shape[1:] == grid.padded_shape
    out = np.full((h, w), -1.0)
    for y0, x0 in grid.windows():
        oy, ox, ty, tx = grid.core(y0, x0)
        tile_data = padded[0, y0 : y0 + grid.tile_h, x0 : x0 + grid.tile_w]
        assert tile_data.shape == (grid.tile_h, grid.tile_w)
        cover[oy, ox] = 1
        out[oy, ox] = tile_data[ty, tx]
        # every core pixel has context above/left, or the tile starts where the padded plane does
        assert (ty.start >= ctx or y0 == 0) and (tx.start >= ctx or x0 == 0)
        ph, pw = grid.padded_shape
        assert (grid.tile_h - ty.stop >= ctx or y0 + grid.tile_h == ph)
        assert (grid.tile_w - tx.stop >= ctx or x0 + grid.tile_w == pw)
        assert y0 % div == 0 and x0 % div == 0  # the network's pooling sees each tile as the whole plane
    assert cover.all()
    np.testing.assert_array_equal(out, x[0])  # cores map back to the right place


def test_border_pads_the_plane_only_to_the_divisor_beyond_it():
    """With no border a 2048 px plane is one 2048 px tile (no reflected context around it)."""
    grid = make_grid(2048, 2048, 2048, 112, 64, border=0)
    assert grid.n_tiles == 1 and (grid.tile_h, grid.tile_w) == (2048, 2048) and grid.pad_y == (0, 0)
    grid = make_grid(500, 300, 2048, 112, 32, border=0)
    assert grid.padded_shape == (512, 320) and grid.pad_y == (0, 12) and grid.pad_x == (0, 20)
    grid = make_grid(500, 300, 2048, 112, 32, border=((16, 0), (0, 16)))
    assert grid.pad_y == (16, 28) and grid.pad_x == (0, 20)
    assert make_grid(500, 300, 2048, 112, 32).pad_y == (112, 124)  # the default: the context
    with pytest.raises(ValueError, match="between 0 and the context"):
        make_grid(500, 300, 2048, 112, 32, border=200)


def test_small_plane_is_one_tile():
    grid = make_grid(1024, 1024, 1024, 32, 16)
    assert grid.n_tiles == 1 and grid.tile_h == 1088
    assert make_grid(2000, 300, 1024, 32, 16).n_tiles == 2
    assert make_grid(2049, 300, 1024, 32, 16).n_tiles == 3


@pytest.mark.parametrize("top,left,h,w", [(40, 50, 60, 90), (0, 0, 60, 90), (5, 120, 95, 80), (100, 0, 100, 200)])
def test_pad_plane_takes_context_from_the_surround(top, left, h, w):
    """A plane cut out of a larger one pads with the real pixels around it, reflecting only beyond
    them (at the surround's edge, as the whole plane would be reflected)."""
    rng = np.random.default_rng(0)
    big = rng.random((2, 200, 300)).astype(np.float32)
    x = big[:, top : top + h, left : left + w]
    grid = make_grid(h, w, 64, 16, 8)
    padded = pad_plane(x, grid, Surround(big, top, left))
    assert padded.shape[1:] == grid.padded_shape
    far = 64  # reflect the surround once, widely, and cut the plane's padded window out of that
    ref = np.pad(big, ((0, 0), (far, far), (far, far)), mode="reflect")
    c = grid.context
    want = ref[:, far + top - c : far + top - c + grid.padded_shape[0], far + left - c : far + left - c + grid.padded_shape[1]]
    np.testing.assert_array_equal(padded, want)


def test_a_plane_outside_its_surround_is_refused():
    big = np.zeros((1, 50, 50), np.float32)
    with pytest.raises(ValueError, match="does not lie"):
        pad_plane(big[:, :30, :30], make_grid(30, 30, 64, 8, 8), Surround(big, 30, 0))


@pytest.mark.parametrize("border", [0, 16, 48])
def test_block_borders_take_real_pixels_then_the_image_border(border):
    """A block of a larger image gets the context from its real surroundings and, where they run
    out, only what the whole image has beyond its edge: its padded edge is the image's."""
    big = np.zeros((1, 300, 400), np.float32)
    ctx = 32
    b = min(border, ctx)
    assert plane_borders(100, 100, ctx, border, None) == ((b, b), (b, b))
    # a block well inside: the full context of real pixels on every side
    assert plane_borders(100, 100, ctx, border, Surround(big, 100, 100)) == ((ctx, ctx), (ctx, ctx))
    # at the image's top-left corner: the image's border there; 10 real pixels below, 0 right
    (top, bottom), (left, right) = plane_borders(290, 100, ctx, border, Surround(big, 0, 300))
    assert (top, right) == (b, b) and left == ctx and bottom == min(ctx, 10 + b)
    # rounded up to the output stride
    assert plane_borders(100, 100, ctx, 3, None, stride=4) == ((4, 4), (4, 4))
