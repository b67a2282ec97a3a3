import numpy as np
import pytest

from seglab.inference.tiling import make_grid, pad_plane


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
