import numpy as np
import pytest

from seglab.inference.tiling import Surround, make_grid, pad_plane


@pytest.mark.parametrize("h,w,tile,ctx,div", [(100, 130, 64, 16, 8), (37, 300, 96, 16, 16), (5, 5, 64, 8, 8), (1, 1, 64, 8, 8)])
def test_cores_cover_every_pixel_once_with_context(h, w, tile, ctx, div):
    grid = make_grid(h, w, tile, ctx, div)
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
        assert ty.start >= ctx and tx.start >= ctx  # every core pixel has context above/left
        assert grid.tile_h - ty.stop >= ctx and grid.tile_w - tx.stop >= ctx
    assert cover.all()
    np.testing.assert_array_equal(out, x[0])  # cores map back to the right place


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
