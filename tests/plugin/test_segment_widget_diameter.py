"""The Segment widget's Diameter field, Estimate button and the size shown after a run (issue 11)."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from seglab.samples import load_sample  # noqa: E402


def _sample(viewer, widget, factor=1):
    image, truth = load_sample("fluorescence")
    if factor != 1:
        image = np.kron(image, np.ones((factor, factor), dtype=image.dtype))
    layer = viewer.add_image(image, name="nuclei")
    widget.image.value = layer
    widget.model.value = "stardist-nuclei"
    return image, truth


def test_diameter_field_goes_to_the_run_and_the_size_is_shown(qtbot, segment_dock, segment_errors, segment_run_kwargs):
    viewer, widget = segment_dock
    assert widget.diameter.value == "auto"
    image, _ = _sample(viewer, widget, factor=2)
    seen = segment_run_kwargs
    widget.diameter.value = "40"
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)
    assert not segment_errors and seen["diameter"] == 40.0
    out = [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Labels)][0]
    assert out.data.shape == image.shape  # back on the layer's own grid
    assert widget.diameter_used.value.startswith("diameter 40.0 px (rescaled x0.4")
    widget.diameter.value = "none"
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)
    assert seen["diameter"] is None and "not rescaled" in widget.diameter_used.value


def test_bad_diameter_is_a_notification(segment_dock, segment_errors):
    viewer, widget = segment_dock
    _sample(viewer, widget)
    widget.diameter.value = "huge"
    assert widget.start() is None
    assert "diameter" in segment_errors[-1]


def test_estimate_button_fills_the_field(qtbot, segment_dock, segment_errors):
    viewer, widget = segment_dock
    _, truth = _sample(viewer, widget, factor=3)
    from seglab.inference.diameter import equivalent_diameters

    true = 3 * float(np.median(equivalent_diameters(truth)))
    worker = widget.estimate()
    assert worker is not None and not widget.estimate_button.enabled
    qtbot.waitUntil(lambda: widget._estimate_worker is None, timeout=180_000)
    assert not segment_errors and widget.estimate_button.enabled
    assert float(widget.diameter.value) == pytest.approx(true, rel=0.25)
    assert widget.diameter_used.value.startswith("estimated diameter")


def test_a_calibrated_layer_gives_auto_its_pixel_size(qtbot, segment_dock, segment_errors):
    """An H&E layer at 0.5 um per pixel (20x) and ``stardist-he`` (trained at 0.25 um): the run
    and the Estimate button take the pixel size, rescale by 2 and say where the size came from."""
    viewer, widget = segment_dock
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
    layer = viewer.add_image(image, name="tissue", rgb=True, scale=(0.5, 0.5), units=("micrometer", "micrometer"))
    widget.image.value = layer
    widget.model.value = "stardist-he"
    _, _, kwargs = widget._run_inputs(layer)
    assert kwargs["pixel_size"] == pytest.approx(0.5)
    worker = widget.estimate()
    assert worker is not None
    qtbot.waitUntil(lambda: widget._estimate_worker is None, timeout=60_000)
    assert not segment_errors
    assert widget.diameter_used.value.startswith("from the layer's calibration: diameter 9.3 px from the pixel size 0.5")
    assert "rescaled x2" in widget.diameter_used.value
    plain = viewer.add_image(image, name="uncalibrated", rgb=True)
    assert widget._run_inputs(plain)[2]["pixel_size"] is None


def test_estimate_on_a_lazy_layer_reads_only_what_the_out_of_core_run_would(qtbot, segment_dock, segment_errors):
    """*Estimate* on a dask stack looks at the planes the out-of-core run's ``auto`` samples (first,
    middle, last), block by block: the other planes' blocks are never computed, and the layer is
    never loaded whole."""
    da = pytest.importorskip("dask.array")
    from seglab.inference.diameter import equivalent_diameters

    viewer, widget = segment_dock
    image, truth = load_sample("fluorescence")
    computed = []

    def count(block, block_info=None):
        computed.append(tuple(block_info[0]["chunk-location"]))
        return block

    h, w = image.shape
    stack = da.from_array(np.stack([image] * 5), chunks=(1, h // 2, w // 2)).map_blocks(count, dtype=image.dtype)
    widget.image.value = viewer.add_image(stack, name="lazy stack", axis_labels=("z", "y", "x"))
    widget.model.value = "stardist-nuclei"
    computed.clear()  # (napari may have looked at the layer when it was added)
    worker = widget.estimate()
    assert worker is not None
    qtbot.waitUntil(lambda: widget._estimate_worker is None, timeout=180_000)
    assert not segment_errors and widget.diameter_used.value.startswith("estimated diameter")
    assert computed and {c[0] for c in computed} <= {0, 2, 4}  # the sampled planes only
    assert len(set(computed)) < stack.npartitions
    true = float(np.median(equivalent_diameters(truth)))
    assert float(widget.diameter.value) == pytest.approx(true, rel=0.25)
