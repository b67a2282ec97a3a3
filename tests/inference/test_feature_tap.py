"""The size model's input read from the factor-1 probe's own pass (seglab.inference.feature_tap)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seglab.inference import diameter as dm
from seglab.inference import size_model as szm
from seglab.inference.engine import place_network
from seglab.inference import feature_tap
from seglab.inference.feature_tap import EncoderTap
from seglab.models.registry import get_model
from seglab.progress import run_to_end
from tests_helpers import disc_grid

CPU = torch.device("cpu")


def _plane(model, shape, seed=0):
    img, _ = disc_grid(18.0, n=14, seed=seed)
    img = np.asarray(img, np.float32)[: shape[0], : shape[1]]
    x = (img - img.min()) / float(np.ptp(img))
    return np.repeat(x[None], model.config.input_channels, axis=0)


@pytest.mark.parametrize("family", ["unet-nuclei", "stardist-nuclei", "maskrcnn-nuclei"])
@pytest.mark.parametrize("shape", [(200, 300), (390, 380)], ids=["probed-whole", "probed-in-a-window"])
def test_the_tap_reads_what_the_fit_reads(family, shape):
    """The encoder levels' summaries hooked from the probe pass equal the encoder run on
    :func:`probe_tile`'s tile (what the size model is fitted on), for every family, for a plane
    probed whole (the run's own pass, full tile context) and one probed through a window."""
    model = get_model(family)
    place_network(model, CPU)
    x = _plane(model, shape)
    th = model.thresholds(None)
    whole = shape[0] * shape[1] <= dm.WHOLE_PROBE_AREA
    if whole:
        tap = EncoderTap(model, *dm.probe_window(x, 1.0))
        run_to_end(dm.scaled_plane_iter(model, x, th, 1.0, device=CPU, tap=tap))
    else:
        rows, cols = dm.probe_window(x, 1.0)
        win = x[:, rows, cols]
        tap = EncoderTap(model, slice(0, win.shape[-2]), slice(0, win.shape[-1]))
        run_to_end(dm._window_prediction(model, win, th, 1.0, tap=tap, device=CPU))
    expected = szm.run_features(model, *dm.probe_tile(model, x, whole))
    assert tap.features is not None and tap.features.shape == (szm.n_features(model.network),)
    np.testing.assert_allclose(tap.features, expected, rtol=1e-4, atol=1e-4)
    assert all(not m._forward_hooks for m in tap.modules)  # hooks removed after the run


def test_a_window_no_tile_holds_is_not_read_and_auto_reads_it_again(monkeypatch):
    """Hooked from tiles that do not hold the whole window, the tap reads nothing; ``auto`` then runs
    the encoder on :func:`probe_tile`'s tile and gets the reading the tap would have given."""
    model = get_model("stardist-nuclei")
    assert model.size_model is not None
    place_network(model, CPU)
    x = _plane(model, (300, 300))
    tile, rows, cols = dm.probe_tile(model, x)
    net = feature_tap.running_network(model)
    tap = EncoderTap(model, slice(0, 256), slice(0, 256))
    t = torch.from_numpy(tile[None]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), tap.recording([(0, 0, 200, 200)]):  # a tile smaller than the window
        net.encoder_features(t)
    assert tap.features is None
    read = run_to_end(dm.estimate_diameter_iter(model, [x], model.thresholds(None), device=CPU))
    monkeypatch.setattr(EncoderTap, "features", property(lambda self: None))
    again = run_to_end(dm.estimate_diameter_iter(model, [x], model.thresholds(None), device=CPU))
    assert read.regressed is not None and read.regressed == pytest.approx(again.regressed, rel=1e-3)


def test_a_tap_on_a_window_under_the_smallest_side_reads_nothing():
    model = get_model("unet-nuclei")
    place_network(model, CPU)
    x = _plane(model, (20, 200))
    tap = EncoderTap(model, slice(0, 20), slice(0, 200))
    run_to_end(dm.scaled_plane_iter(model, x, model.thresholds(None), 1.0, device=CPU, tap=tap))
    assert tap.features is None and szm.window_features(model.network, *dm.probe_tile(model, x)) is None
