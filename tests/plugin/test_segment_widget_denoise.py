"""The Segment widget's Smoothing option and the line about a noisy image after a run (low light)."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from seglab.samples import load_sample  # noqa: E402


def test_a_noisy_layer_is_smoothed_and_the_widget_says_so(qtbot, segment_dock, segment_errors, segment_run_kwargs):
    viewer, widget = segment_dock
    image, _ = load_sample("fluorescence")
    dim = np.random.default_rng(0).poisson(image / image.max() * 10).astype(np.uint16)  # 10 photons at the brightest
    widget.image.value = viewer.add_image(dim, name="low light")
    widget.model.value = "stardist-nuclei"
    assert widget.denoise.value == "auto"
    seen = segment_run_kwargs
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)
    assert not segment_errors and seen["denoise"] == "auto"
    first, second = widget.diameter_used.value.split("\n")
    assert first.startswith("diameter ") and second.startswith("noisy image (noise 0.")
    assert "smoothed, sigma" in second and len(second) <= 50  # one line in the dock
    widget.denoise.value = "off"
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)
    assert not segment_errors and seen["denoise"] is False
    assert "\n" not in widget.diameter_used.value and "smoothed" not in widget.diameter_used.value
