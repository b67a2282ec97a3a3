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


def test_an_empty_view_gives_no_objects_and_the_widget_says_why(qtbot, segment_dock, segment_errors):
    """A layer of camera noise (no cells) is blank: no objects, and the line under the diameter
    says it was taken for an empty view (so a user who expected cells knows why)."""
    viewer, widget = segment_dock
    noise = (np.random.default_rng(0).poisson(3, (512, 512)) + 100).astype(np.uint16)
    widget.image.value = viewer.add_image(noise, name="empty well")
    widget.model.value = "unet-nuclei"
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)
    assert not segment_errors
    assert widget.diameter_used.value.split("\n")[-1] == "white noise or blank (an empty view): no objects"
    labels = [layer for layer in viewer.layers if layer.name != "empty well"]
    assert all(int(np.asarray(layer.data).max()) == 0 for layer in labels)
