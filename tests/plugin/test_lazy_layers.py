"""A dask-backed image layer segmented from the Segment widget out of core, into a lazy Labels layer."""

from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
da = pytest.importorskip("dask.array")

from seglab.plugin.lazy_layers import LAZY_ROLE, TEMP_PREFIX, lazy_axes, temporary_folder  # noqa: E402
from seglab.samples import load_sample  # noqa: E402


def test_lazy_axes():
    assert lazy_axes(2, None) == "YX"
    assert lazy_axes(3, None) == "QYX"
    assert lazy_axes(3, 2) == "YXC" and lazy_axes(4, 1) == "QCYX"


def test_dask_layer_gives_a_zarr_backed_labels_layer_filled_live(qtbot, segment_dock, segment_errors):
    import zarr

    viewer, widget = segment_dock
    image, truth = load_sample("fluorescence")
    layer = viewer.add_image(da.from_array(image, chunks=(128, 128)), name="lazy", scale=(0.5, 0.5))
    widget.image.value = layer
    widget.model.value = "unet-nuclei"
    widget.diameter.value = "none"
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=300_000)
    assert not segment_errors, segment_errors
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
    # the store is temporary: it lives as long as its layer
    from pathlib import Path

    folder = Path(out.metadata["seglab"]["path"]).parent
    assert folder.name.startswith(TEMP_PREFIX) and folder.is_dir() and "temporary store" in widget.status.value
    assert str(folder) in widget.status.tooltip and "Save Selected Layers" in widget.status.tooltip
    viewer.layers.remove(out)
    assert not folder.exists()


def test_store_event_shows_the_partial_store_at_once_and_the_result_reuses_its_layer(segment_dock, tmp_path):
    """The first event of a lazy run carries the store's array: a Labels layer shows it while the
    run goes on, and the finished result takes that layer over (no second layer). Driven directly,
    so that it does not depend on how fast the worker is (a one-block run may end before Qt shows
    anything)."""
    import zarr
    from types import SimpleNamespace

    from seglab.inference.engine import ProgressEvent
    from seglab.inference.lazy import StoreEvent, WrittenEvent

    viewer, widget = segment_dock
    src = viewer.add_image(da.zeros((64, 80), chunks=32), name="lazy", scale=(0.5, 0.5))
    widget._source, widget._source_channel_axis = src, None
    store = zarr.open_array(str(tmp_path / "labels.zarr"), mode="w", shape=(64, 80), chunks=(32, 32), dtype="u4")
    widget._on_progress(StoreEvent("block", 0, 1000, labels=store))
    live = widget._live_layer
    assert live is not None and live.data is store and list(live.scale) == [0.5, 0.5]
    assert live.metadata["seglab"]["role"] == LAZY_ROLE
    refreshed = []
    live.refresh = lambda *a, **k: refreshed.append(1)
    widget._on_progress(ProgressEvent("block", 1000, 2000))  # a block segmented, not yet stored
    assert not refreshed
    store[:32, :32] = 7  # a block written: its WrittenEvent refreshes the layer
    widget._on_progress(WrittenEvent("block", 1000, 2000))
    assert refreshed == [1]
    result = SimpleNamespace(labels=store, path=tmp_path / "labels.zarr", n_objects=1, thresholds={},
                             table={"label": np.array([7]), "area": np.array([1024])}, diameter=None,
                             scale_factor=1.0, pixel_size=None)
    widget._show_lazy_result(src, "unet-nuclei", result)
    labels_layers = [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Labels)]
    assert labels_layers == [live] and widget.output_layer is live and widget._live_layer is None
    assert list(live.features["index"]) == [7]


def test_cancel_removes_the_live_layer_and_its_store(qtbot, segment_dock, segment_errors, tmp_path):
    viewer, widget = segment_dock
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
    qtbot.waitUntil(lambda: not store.parent.exists(), timeout=60_000)  # the temporary folder too
    assert store.parent.name.startswith(TEMP_PREFIX)
    assert not segment_errors


def test_only_temporary_folders_are_removed_with_their_layer(tmp_path):
    import gc
    import tempfile

    from seglab.plugin.lazy_layers import remove_with_layer

    class Layer:  # any object a weak reference can follow, as napari's layers
        pass

    mine = tmp_path / "kept" / "labels.zarr"
    mine.mkdir(parents=True)
    assert temporary_folder(mine) is None and remove_with_layer(Layer(), mine) is None
    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    (temp / "labels.zarr").mkdir()
    layer = Layer()
    assert remove_with_layer(layer, temp / "labels.zarr") is not None and temp.is_dir()
    del layer
    gc.collect()
    assert not temp.exists() and mine.exists()  # a layer gone for good takes its store along


def test_the_lazy_labels_layer_takes_the_image_layers_full_transform(segment_dock, tmp_path):
    """Rotate, shear and affine of a dask layer reach its live labels layer and the finished result."""
    import zarr
    from types import SimpleNamespace

    from seglab.inference.lazy import StoreEvent

    viewer, widget = segment_dock
    src = viewer.add_image(da.zeros((64, 80), chunks=32), name="lazy", scale=(0.5, 0.7), translate=(3, -2),
                           rotate=45, shear=[0.3], affine=np.array([[1.0, 0.1, 2.0], [0.0, 1.2, 0.0], [0, 0, 1]]))
    widget._source, widget._source_channel_axis = src, None
    store = zarr.open_array(str(tmp_path / "labels.zarr"), mode="w", shape=(64, 80), chunks=(32, 32), dtype="u4")
    widget._on_progress(StoreEvent("block", 0, 1000, labels=store))
    live = widget._live_layer
    points = [(0, 0), (10, 20), (63, 79)]
    for p in points:
        np.testing.assert_allclose(live.data_to_world(p), src.data_to_world(p), atol=1e-9)
    result = SimpleNamespace(labels=store, path=tmp_path / "labels.zarr", n_objects=0, thresholds={},
                             table={"label": np.array([], int)}, diameter=None, scale_factor=1.0, pixel_size=None)
    widget._live_layer = None  # the live layer gone (e.g. removed): the result makes its own
    viewer.layers.remove(live)
    widget._show_lazy_result(src, "unet-nuclei", result)
    for p in points:
        np.testing.assert_allclose(widget.output_layer.data_to_world(p), src.data_to_world(p), atol=1e-9)
