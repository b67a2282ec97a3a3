import numpy as np
import pytest

napari = pytest.importorskip("napari")

from seglab.plugin import segment_widget as sw  # noqa: E402
from seglab.samples import load_sample  # noqa: E402
from tests_helpers import blob_image  # noqa: E402


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


def _labels_layers(viewer):
    return [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Labels)]


def _run(qtbot, widget):
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)


def test_segment_sample_gives_labels_layer(qtbot, viewer_widget, errors):
    viewer, widget = viewer_widget
    image, truth = load_sample("fluorescence")
    layer = viewer.add_image(image, name="nuclei", scale=(0.5, 0.5))
    widget.image.value = layer
    widget.model.value = "unet-nuclei"
    assert set(widget.threshold_values()) == {"prob_thresh", "seed_thresh", "seed_h", "min_area"}
    _run(qtbot, widget)
    assert not errors
    out = _labels_layers(viewer)
    assert len(out) == 1
    lab = out[0]
    assert lab.data.shape == image.shape
    assert list(lab.scale) == [0.5, 0.5]
    n = len(np.unique(lab.data)) - 1
    assert n > 0.6 * truth.max()
    assert len(lab.features) == n and {"score", "area", "centroid_y"} <= set(lab.features.columns)
    # re-running replaces the plugin's own (unedited) layer ...
    widget.thresholds["prob_thresh"].value = 0.6
    _run(qtbot, widget)
    assert _labels_layers(viewer) == [lab]
    # ... but once the user has edited it, a new layer is made and the edit is kept
    edited = lab.data.copy()
    edited[:10, :10] = 999
    lab.data = edited
    _run(qtbot, widget)
    assert len(_labels_layers(viewer)) == 2
    assert (lab.data[:10, :10] == 999).all()


def test_user_layer_with_same_name_is_never_touched(qtbot, viewer_widget, errors):
    viewer, widget = viewer_widget
    image, _ = load_sample("large_nuclei")
    layer = viewer.add_image(image, name="img")
    mine = viewer.add_labels(np.zeros(image.shape, np.int32), name="img [seglab]")
    widget.image.value = layer
    _run(qtbot, widget)
    assert not mine.data.any()
    assert len(_labels_layers(viewer)) == 2


def test_cancel_stops_the_run(qtbot, viewer_widget, errors):
    viewer, widget = viewer_widget
    image, _ = load_sample("brightfield")
    layer = viewer.add_image(np.stack([image] * 6), name="stack")
    widget.image.value = layer
    widget.tile_size.value = 256
    worker = widget.start()
    with qtbot.waitSignal(worker.yielded, timeout=60_000):
        pass
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.status.value == "cancelled"
    assert not _labels_layers(viewer)
    assert widget.run_button.enabled


def test_bad_layer_gives_notification_not_traceback(qtbot, viewer_widget, errors):
    viewer, widget = viewer_widget
    layer = viewer.add_image(np.zeros((2, 2, 2, 2, 16, 16), np.float32), name="6d")
    widget.image.value = layer
    assert widget.start() is None
    assert errors and "expected 2 to 4 spatial axes" in errors[-1]
    multi = viewer.add_image(np.zeros((5, 32, 32), np.float32), name="multi")
    widget.image.value = multi
    widget.channel_axis.value = 0
    _run(qtbot, widget)
    assert "pick 1 channel" in errors[-1]
    widget.channels.value = "x"
    assert widget.start() is None and "channels must be integers" in errors[-1]


def test_polygon_model_gives_labels_and_editable_shapes(models_dir, tiny_star_dir, qtbot, viewer_widget, errors):
    import shutil

    shutil.copytree(tiny_star_dir, models_dir / "tiny-star")
    viewer, widget = viewer_widget
    widget.reset_choices()
    image, truth = blob_image((128, 128), n=10, seed=9)
    layer = viewer.add_image(image, name="nuclei", scale=(0.5, 0.5))
    widget.image.value = layer
    widget.model.value = "tiny-star"
    assert widget.outlines.enabled and "polygons" in widget.outlines.text
    widget.outlines.value = True
    _run(qtbot, widget)
    assert not errors
    labels = widget.output_layer
    shapes = widget.outlines_layer
    assert isinstance(shapes, napari.layers.Shapes)
    n = len(np.unique(labels.data)) - 1
    assert n == truth.max() and len(shapes.data) == n
    assert set(shapes.shape_type) == {"polygon"}
    assert {"label", "score", "area"} <= set(shapes.features.columns)
    assert list(shapes.scale) == [0.5, 0.5]
    # re-running replaces the own, unedited Shapes layer in place ...
    _run(qtbot, widget)
    assert [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Shapes)] == [widget.outlines_layer]
    # ... but a user's edit (deleting a polygon) is kept, and the new outlines go to a new layer
    edited = widget.outlines_layer
    edited.selected_data = {0}
    edited.remove_selected()
    _run(qtbot, widget)
    shapes_layers = [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Shapes)]
    assert len(shapes_layers) == 2 and edited in shapes_layers and len(edited.data) == n - 1
    # the outlines save as an ImageJ ROI set through the plugin's writer
    import roifile

    from seglab.plugin.writer import write_rois

    out = write_rois(str(models_dir / "cells.zip"), *_writer_args(widget.outlines_layer))
    assert len(roifile.roiread(out[0])) == n


def _writer_args(layer):
    data, state, _ = layer.as_layer_data_tuple()
    return data, state


def test_models_without_outlines_disable_the_shapes_option(viewer_widget):
    _, widget = viewer_widget
    widget.model.value = "unet-nuclei"
    assert not widget.outlines.enabled


def test_box_model_gives_labels_and_rectangles(models_dir, qtbot, viewer_widget, errors):
    from maskrcnn_helpers import tiny_maskrcnn

    from seglab.models.storage import save_model

    model = tiny_maskrcnn("tiny-boxes")
    # untrained: keep every detection and its whole box, so there are boxes to show
    model.config.thresholds = {**model.config.thresholds, "score_thresh": 0.0, "mask_thresh": 0.0}
    save_model(model, models_dir / "tiny-boxes")
    viewer, widget = viewer_widget
    widget.reset_choices()
    image, _ = blob_image((96, 96), n=5, seed=3)
    widget.image.value = viewer.add_image(image, name="cells")
    widget.model.value = "tiny-boxes"
    assert widget.outlines.enabled and "boxes" in widget.outlines.text
    widget.outlines.value = True
    _run(qtbot, widget)
    assert not errors
    labels, shapes = widget.output_layer, widget.outlines_layer
    ids = set(np.unique(labels.data)) - {0}
    assert ids and isinstance(shapes, napari.layers.Shapes)
    assert set(shapes.shape_type) == {"rectangle"} and len(shapes.data) == len(ids)
    assert {"label", "score", "class"} <= set(shapes.features.columns)
    # every object's pixels lie inside its box
    for box, lab in zip(shapes.data, shapes.features["label"]):
        ys, xs = np.nonzero(labels.data == lab)
        assert ys.min() >= box[:, 0].min() - 0.5 and ys.max() <= box[:, 0].max() + 0.5
        assert xs.min() >= box[:, 1].min() - 0.5 and xs.max() <= box[:, 1].max() + 0.5
