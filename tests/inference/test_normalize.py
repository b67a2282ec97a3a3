import numpy as np
import pytest

from seglab.errors import SeglabError
from seglab.inference.normalize import percentile_normalize, select_channels


def test_percentiles_map_to_unit_range():
    x = np.linspace(0, 1000, 10000, dtype=np.float32).reshape(1, 100, 100)
    y = percentile_normalize(x, 1, 99)
    assert np.percentile(y, 1) == pytest.approx(0, abs=1e-3)
    assert np.percentile(y, 99) == pytest.approx(1, abs=1e-3)


def test_constant_and_nan_images_are_safe():
    assert not percentile_normalize(np.full((1, 8, 8), 7.0)).any()
    x = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    x[0, :4] = np.nan
    y = percentile_normalize(x)
    assert np.isfinite(y).all() and (y[0, :4] == 0).all()
    assert not percentile_normalize(np.full((1, 4, 4), np.nan)).any()


def test_channels_grey_rgb_multichannel():
    grey = np.ones((6, 7), np.uint8)
    assert select_channels(grey, 1).shape == (1, 6, 7)
    assert select_channels(grey, 3).shape == (3, 6, 7)
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 1] = 100
    g = select_channels(rgb, 1, channel_axis=2)
    assert g.shape == (1, 6, 7) and g[0, 0, 0] == pytest.approx(58.7)
    multi = np.stack([np.full((6, 7), i) for i in range(5)])
    picked = select_channels(multi, 1, channel_axis=0, channels=[3])
    assert (picked == 3).all()
    with pytest.raises(SeglabError, match="pick 1 channel"):
        select_channels(multi, 1, channel_axis=0)
    with pytest.raises(SeglabError, match="do not exist"):
        select_channels(multi, 1, channel_axis=0, channels=[9])
    with pytest.raises(SeglabError, match="2D image plane"):
        select_channels(np.zeros((2, 3, 4)), 1)
    with pytest.raises(SeglabError, match="data type"):
        select_channels(np.array([["a"]]), 1)
