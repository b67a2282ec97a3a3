"""A dask-backed image layer segmented from the Segment widget out of core, into a lazy Labels layer."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")
da = pytest.importorskip("dask.array")

from seglab.plugin import segment_widget as sw  # noqa: E402
from seglab.plugin.lazy_layers import LAZY_ROLE, lazy_axes  # noqa: E402
from seglab.samples import load_sample  # noqa: E402


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = sw.SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


@pytest.fixture
def errors(monkeypatch):
    seen = []
    monkeypatch.setattr(sw, "show_error", lambda msg: seen.append(msg))
    return seen


def test_lazy_axes():
    assert lazy_axes(2, None) == "YX"
    assert lazy_axes(3, None) == "QYX"
    assert lazy_axes(3, 2) == "YXC" and lazy_axes(4, 1) == "QCYX"


def test_dask_layer_gives_a_zarr_backed_labels_layer_filled_live(qtbot, viewer_widget, errors):
    import zarr

    viewer, widget = viewer_widget
    image, truth = load_sample("fluorescence")
    layer = viewer.add_image(da.from_array(image, chunks=(128, 128)), name="lazy", scale=(0.5, 0.5))
    widget.image.value = layer
    widget.model.value = "unet-nuclei"
    widget.diameter.value = "none"
    seen = []
    original = widget._on_progress

    def spy(event):
        original(event)  # (adding the layer lets Qt deliver the next events inside this call)
        if widget._live_layer is not None:
            seen.append(type(widget._live_layer.data).__name__)

    widget._on_progress = spy
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=300_000)
    assert not errors
    assert seen and set(seen) == {"Array"}  # the partial store's zarr array, while the run went on
    (out,) = [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Labels)]
    assert isinstance(out.data, zarr.Array) and out.data.dtype == np.uint32
    assert out.metadata["seglab"]["role"] == LAZY_ROLE and not out.metadata["seglab"]["path"].endswith(".partial")
    assert list(out.scale) == [0.5, 0.5]
    # one block: the same labels as the in-memory run of the same pixels
    from seglab.inference.engine import segment
    from seglab.models.registry import get_model

    ref = segment(get_model("unet-nuclei"), image, diameter=None).labels
    np.testing.assert_array_equal(np.asarray(out.data), ref)
    assert len(out.features) == ref.max() > 0.6 * truth.max()


def test_cancel_removes_the_live_layer_and_its_store(qtbot, viewer_widget, errors, tmp_path):
    from pathlib import Path

    viewer, widget = viewer_widget
    image, _ = load_sample("fluorescence")
    layer = viewer.add_image(da.from_array(np.tile(image, (3, 3)), chunks=(256, 256)), name="lazy")
    widget.image.value = layer
    widget.model.value = "unet-nuclei"
    widget.diameter.value = "none"
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget._live_layer is not None, timeout=300_000)
    store = Path(widget._live_layer.data.store.root)
    assert store.name.endswith(".partial")
    widget.cancel()
    assert not any(isinstance(lyr, napari.layers.Labels) for lyr in viewer.layers)
    qtbot.waitUntil(lambda: not store.exists(), timeout=60_000)
    assert not errors
