import numpy as np
import pytest

napari = pytest.importorskip("napari")

from seglab.plugin import segment_widget as sw  # noqa: E402
from seglab.samples import load_sample  # noqa: E402
from tests_helpers import blob_image, record_finish  # noqa: E402


def _labels_layers(viewer):
    return [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Labels)]


def _run(qtbot, widget):
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)


def test_segment_sample_gives_labels_layer(qtbot, segment_dock, segment_errors):
    viewer, widget = segment_dock
    image, truth = load_sample("fluorescence")
    layer = viewer.add_image(image, name="nuclei", scale=(0.5, 0.5))
    widget.image.value = layer
    widget.model.value = "unet-nuclei"
    assert set(widget.threshold_values()) == {"prob_thresh", "seed_thresh", "seed_h", "min_area"}
    _run(qtbot, widget)
    assert not segment_errors
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


def test_user_layer_with_same_name_is_never_touched(qtbot, segment_dock, segment_errors):
    viewer, widget = segment_dock
    image, _ = load_sample("large_nuclei")
    layer = viewer.add_image(image, name="img")
    mine = viewer.add_labels(np.zeros(image.shape, np.int32), name="img [seglab]")
    widget.image.value = layer
    _run(qtbot, widget)
    assert not mine.data.any()
    assert len(_labels_layers(viewer)) == 2


def test_cancel_stops_the_run(qtbot, segment_dock, segment_errors):
    viewer, widget = segment_dock
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


def test_bad_layer_gives_notification_not_traceback(qtbot, segment_dock, segment_errors):
    viewer, widget = segment_dock
    layer = viewer.add_image(np.zeros((2, 2, 2, 2, 16, 16), np.float32), name="6d")
    widget.image.value = layer
    assert widget.start() is None
    assert segment_errors and "expected 2 to 4 spatial axes" in segment_errors[-1]
    multi = viewer.add_image(np.zeros((5, 32, 32), np.float32), name="multi")
    widget.image.value = multi
    widget.channel_axis.value = 0
    _run(qtbot, widget)
    assert "pick 1 channel" in segment_errors[-1]
    widget.channels.value = "x"
    assert widget.start() is None and "channels must be integers" in segment_errors[-1]


def test_polygon_model_gives_labels_and_editable_shapes(models_dir, tiny_star_dir, qtbot, segment_dock, segment_errors):
    import shutil

    shutil.copytree(tiny_star_dir, models_dir / "tiny-star")
    viewer, widget = segment_dock
    widget.reset_choices()
    image, truth = blob_image((128, 128), n=10, seed=9)
    layer = viewer.add_image(image, name="nuclei", scale=(0.5, 0.5))
    widget.image.value = layer
    widget.model.value = "tiny-star"
    assert widget.outlines.enabled and "polygons" in widget.outlines.text
    widget.outlines.value = True
    _run(qtbot, widget)
    assert not segment_errors
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


def test_models_without_outlines_disable_the_shapes_option(segment_dock):
    _, widget = segment_dock
    widget.model.value = "unet-nuclei"
    assert not widget.outlines.enabled


def test_box_model_gives_labels_and_rectangles(models_dir, qtbot, segment_dock, segment_errors):
    from maskrcnn_helpers import tiny_maskrcnn

    from seglab.models.storage import save_model

    model = tiny_maskrcnn("tiny-boxes")
    # untrained: keep every detection and its whole box, so there are boxes to show
    model.config.thresholds = {**model.config.thresholds, "score_thresh": 0.0, "mask_thresh": 0.0}
    save_model(model, models_dir / "tiny-boxes")
    viewer, widget = segment_dock
    widget.reset_choices()
    image, _ = blob_image((96, 96), n=5, seed=3)
    widget.image.value = viewer.add_image(image, name="cells")
    widget.model.value = "tiny-boxes"
    assert widget.outlines.enabled and "boxes" in widget.outlines.text
    widget.outlines.value = True
    _run(qtbot, widget)
    assert not segment_errors
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


# ---- issue 12: the widgets' rough edges ------------------------------------------------------
TINY_STAR_ARCH = {"widths": [4, 8, 16], "convs_per_block": 1, "n_rays": 16, "grid": 2, "head_width": 8}


def _fake_run(labels, table=None, steps=1, step_s=0.0):
    """A stand-in for the worker body: yields progress, returns a Segmentation of ``labels``."""
    import time

    from seglab.inference.engine import ProgressEvent, Segmentation
    from seglab.objects import object_table

    def run(model_ref, data, kwargs):
        for i in range(steps):
            time.sleep(step_s)
            yield ProgressEvent("postprocess", i + 1, steps)
        return "fake", Segmentation(labels.copy(), table or object_table(labels), {"prob_thresh": 0.5})

    return run


def test_for_viewer_finds_the_dock_through_any_viewer_proxy(make_napari_viewer):
    from napari.utils._proxies import PublicOnlyProxy

    viewer = make_napari_viewer()
    first = sw.SegmentWidget.for_viewer(PublicOnlyProxy(viewer))
    second = sw.SegmentWidget.for_viewer(PublicOnlyProxy(viewer))  # another widget's proxy
    assert second is first
    docked = [w for w in viewer.window.dock_widgets.values() if isinstance(w, sw.SegmentWidget)]
    assert docked == [first]


def test_cancel_makes_the_widget_idle_at_once_and_adds_nothing(qtbot, segment_dock, segment_errors, monkeypatch):
    import time

    viewer, widget = segment_dock
    monkeypatch.setattr(sw, "_run_segmentation", _fake_run(np.ones((32, 32), np.int32), steps=10_000,
                                                          step_s=0.05))
    widget.image.value = viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    worker = widget.start()
    ended = record_finish(worker)
    with qtbot.waitSignal(worker.yielded, timeout=10_000):
        pass
    assert widget.progress.active and widget.progress.text.value.startswith("postprocess ")
    t0 = time.monotonic()
    widget.cancel()
    assert time.monotonic() - t0 < 0.5
    assert not widget.running and widget.run_button.enabled and not widget.cancel_button.enabled
    assert widget.status.value == "cancelled" and not widget.progress.active and widget._source is None
    qtbot.waitUntil(lambda: bool(ended), timeout=2_000)  # the run itself ends at its next yield
    qtbot.wait(50)
    assert not _labels_layers(viewer) and not segment_errors


def test_progress_panel_follows_the_run(qtbot, segment_dock, segment_errors, monkeypatch):
    viewer, widget = segment_dock
    monkeypatch.setattr(sw, "_run_segmentation", _fake_run(np.ones((32, 32), np.int32), steps=3, step_s=0.05))
    widget.image.value = viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    worker = widget.start()
    texts = []
    worker.yielded.connect(lambda ev: texts.append(widget.progress.text.value))
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert texts[-1].startswith("postprocess 3/3") and not widget.progress.active
    assert widget.status.value == "1 objects (fake)"


def test_polygons_then_labels_only_model(models_dir, tiny_star_dir, tiny_model, qtbot, segment_dock, segment_errors):
    """StarDist with polygons, then a U-Net on the same image: StarDist's outlines go, the box is
    unticked while greyed out, and comes back ticked with a polygon model."""
    import shutil

    from seglab.models.storage import save_model

    shutil.copytree(tiny_star_dir, models_dir / "tiny-star")
    save_model(tiny_model, models_dir / "tiny-unet")
    viewer, widget = segment_dock
    widget.reset_choices()
    image, _ = blob_image((96, 96), n=6, seed=4)
    widget.image.value = viewer.add_image(image, name="nuclei")
    widget.model.value = "tiny-star"
    widget.outlines.value = True
    _run(qtbot, widget)
    labels, shapes = widget.output_layer, widget.outlines_layer
    assert shapes is not None and shapes in viewer.layers
    widget.model.value = "tiny-unet"
    assert not widget.outlines.enabled and not widget.outlines.value
    _run(qtbot, widget)
    assert not segment_errors
    assert widget.output_layer is labels  # updated in place
    assert labels.metadata["seglab"]["model"] == "tiny-unet"
    assert not [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Shapes)]
    widget.model.value = "tiny-star"
    assert widget.outlines.enabled and widget.outlines.value  # the user's wish is remembered


def test_object_table_follows_painting_of_the_result(qtbot, segment_dock, segment_errors, monkeypatch):
    viewer, widget = segment_dock
    lab = np.zeros((40, 40), np.int32)
    lab[5:15, 5:15] = 1
    lab[20:30, 20:30] = 2
    monkeypatch.setattr(sw, "_run_segmentation", _fake_run(lab))
    widget.image.value = viewer.add_image(np.zeros((40, 40), np.float32), name="img")
    _run(qtbot, widget)
    out = widget.output_layer
    assert list(out.features["index"]) == [1, 2]
    out.brush_size = 5
    out.paint((35, 35), 3)
    from seglab.plugin.object_table import keep_table_fresh

    qtbot.waitUntil(lambda: not keep_table_fresh(out).pending, timeout=5_000)
    table = out.features.set_index("index")
    assert list(table.index) == [1, 2, 3] and table.loc[3, "area"] == int((out.data == 3).sum())
    assert table.loc[3, "edited"] and not table.loc[1, "edited"]
    # the plugin's own update of the layer (a re-run) is not an edit: the edited layer is kept,
    # the new result goes to a new layer with a fresh table
    _run(qtbot, widget)
    assert len(_labels_layers(viewer)) == 2 and list(widget.output_layer.features["index"]) == [1, 2]


def _rgb_model(models_dir, name="he-test"):
    from seglab.models.storage import new_model, save_model

    model = new_model("stardist", name, description="StarDist for H&E", architecture=dict(TINY_STAR_ARCH),
                      input_channels=3, tile_context=16, training={"data": "H&E tissue"})
    return save_model(model, models_dir / name)


def _stained(side=None):
    image, _ = load_sample("stained")
    return image if side is None else image[:side, :side]


def _fluorescence_rgb(colours=(2,)):
    """The grey fluorescence sample exported as RGB: in all three channels, or in some colours."""
    grey, _ = load_sample("fluorescence")
    out = np.zeros(grey.shape + (3,), grey.dtype)
    for i, c in enumerate(colours):
        out[..., c] = np.roll(grey, (97 * i, 61 * i), axis=(0, 1))
    return out


def test_rgb_layer_proposes_the_builtin_he_model(segment_dock):
    viewer, widget = segment_dock
    widget.image.value = viewer.add_image(_stained(), name="he", rgb=True)
    assert widget.model.value == "stardist-he"
    assert widget.proposal.value.startswith(
        "RGB image, stained brightfield (bright background, coloured): proposing stardist-he, trained on ")


def test_fluorescence_as_rgb_is_not_given_the_he_model(segment_dock):
    """Fluorescence exported as RGB: the H&E model found almost nothing there (AP@0.5 0.002 on
    DSB2018 val), so it is never proposed, and gives way to the grey default when it was chosen."""
    viewer, widget = segment_dock
    grey, _ = load_sample("fluorescence")
    for i, data in enumerate((np.stack([grey] * 3, -1), _fluorescence_rgb((2,)), np.zeros((32, 32, 3), np.uint8))):
        widget.image.value = viewer.add_image(data, name=f"fluo{i}", rgb=True)
        assert widget.model.value == "stardist-nuclei"
        assert widget.proposal.value.endswith("keeping stardist-nuclei, which reads it as grey; stardist-he is for "
                                              "stained tissue and finds little here")
    widget.image.value = viewer.add_image(_stained(), name="he", rgb=True)
    assert widget.model.value == "stardist-he"
    blue = viewer.add_image(_fluorescence_rgb((2,)), name="blue", rgb=True)
    widget.image.value = blue
    assert widget.model.value == "stardist-nuclei"
    assert widget.proposal.value.startswith("RGB image, fluorescence (dark background) in blue, not stained "
                                            "tissue: proposing stardist-nuclei, which reads it as grey")
    # a composite of two colours keeps the grey model and is told about Channels
    widget.image.value = viewer.add_image(_fluorescence_rgb((1, 2)), name="composite", rgb=True)
    assert widget.model.value == "stardist-nuclei"
    assert "in green and blue" in widget.proposal.value and "under Channels" in widget.proposal.value
    # back on a layer whose proposal is still the choice, its line comes back; a grey layer hides it
    widget.image.value = blue
    assert "fluorescence (dark background) in blue" in widget.proposal.value
    widget.image.value = viewer.add_image(grey, name="grey")
    assert not widget.proposal.value and widget.proposal.native.isHidden()


def test_an_rgb_model_chosen_for_fluorescence_warns_when_it_runs(qtbot, models_dir, segment_dock, segment_errors,
                                                                  monkeypatch):
    """The user's choice wins over the proposal; running it brings the core's warning to napari
    (from the worker thread: napari 0.9's own workers dropped it, seglab.plugin.jobs relays it)."""
    from seglab.plugin import jobs

    _rgb_model(models_dir)
    viewer, widget = segment_dock
    widget.reset_choices()
    seen = []
    monkeypatch.setattr(jobs, "show_warning", seen.append)
    widget.image.value = viewer.add_image(_fluorescence_rgb((2,))[:128, :128], name="blue", rgb=True)
    assert widget.model.value == "stardist-nuclei"
    widget.model.value = "he-test"
    widget.diameter.value = "none"
    _run(qtbot, widget)
    assert not segment_errors
    assert any(m.startswith("seglab: he-test reads RGB colour, as in stained brightfield tissue, but this image looks "
                            "like fluorescence (dark background) in blue") for m in seen), seen
    assert _labels_layers(viewer)  # it still ran: a warning, not a refusal


def test_rgb_layer_proposes_an_rgb_model_once(models_dir, segment_dock, grey_builtins):
    _rgb_model(models_dir)
    viewer, widget = segment_dock
    widget._registry.builtin_dir = grey_builtins
    widget.reset_choices()
    grey = viewer.add_image(np.zeros((32, 32), np.float32), name="grey")
    widget.image.value = grey
    assert widget.model.value == "stardist-nuclei" and not widget.proposal.value
    rgb = viewer.add_image(_stained(), name="he", rgb=True)
    widget.image.value = rgb
    assert widget.model.value == "he-test"
    assert widget.proposal.value == ("RGB image, stained brightfield (bright background, coloured): proposing "
                                     "he-test, trained on H&E tissue; choose another model to override")
    assert not widget.proposal.native.isHidden()
    # the user's choice wins: no re-proposal for this layer
    widget.model.value = "unet-nuclei"
    assert not widget.proposal.value and widget.proposal.native.isHidden()
    widget.image.value = grey
    widget.image.value = rgb
    assert widget.model.value == "unet-nuclei" and not widget.proposal.value
    # another RGB layer gets its own proposal
    widget.image.value = viewer.add_image(_stained(128), name="he2", rgb=True)
    assert widget.model.value == "he-test"


def test_rgb_layer_without_rgb_models_keeps_the_choice(segment_dock, grey_builtins):
    viewer, widget = segment_dock
    widget._registry.builtin_dir = grey_builtins
    widget.reset_choices()
    widget.image.value = viewer.add_image(_stained(), name="he", rgb=True)
    assert widget.model.value == "stardist-nuclei" and not widget.proposal.value


def test_lazy_and_multiscale_rgb_layers_are_looked_at_cheaply(segment_dock):
    """A dask layer is read in one central window; a multiscale one at its smallest level."""
    da = pytest.importorskip("dask.array")
    from seglab.inference.appearance import LOOK_SIDE
    from seglab.plugin.layers import rgb_preview

    viewer, widget = segment_dock
    tiles = np.tile(_stained(256), (12, 12, 1))  # 3072 x 3072
    lazy = viewer.add_image(da.from_array(tiles, chunks=(512, 512, 3)), name="lazy", rgb=True)
    assert rgb_preview(lazy).shape == (LOOK_SIDE, LOOK_SIDE, 3)
    widget.image.value = lazy
    assert widget.model.value == "stardist-he"
    widget.model.value = "stardist-nuclei"
    pyramid = viewer.add_image([tiles, tiles[::4, ::4]], name="pyramid", rgb=True, multiscale=True)
    assert rgb_preview(pyramid).shape == (768, 768, 3)
    widget.image.value = pyramid
    assert widget.model.value == "stardist-he"
    stack = viewer.add_image(np.stack([_stained(64)] * 3), name="stack", rgb=True)
    assert rgb_preview(stack).shape == (64, 64, 3)


def test_model_information_line(segment_dock):
    _, widget = segment_dock
    widget.model.value = "unet-nuclei"
    info = widget.model_info.value
    from seglab.models.registry import get_model

    val = get_model("unet-nuclei").config.scores["thresholds"]["0.50"]["ap"]  # the shipped model's (0.76)
    assert info.startswith("U-Net · trained on DSB2018") and info.endswith(f"val AP@0.5 {val:.2f}")
    assert "DSB2018 stage1" in widget.model_info.tooltip
    widget.model.value = "maskrcnn-nuclei"
    assert widget.model_info.value.startswith("Mask R-CNN")


def test_every_field_has_a_tooltip(segment_dock):
    from seglab.plugin.tooltips import fields

    _, widget = segment_dock
    widget.advanced.expanded = True
    for model in ("unet-nuclei", "stardist-nuclei", "maskrcnn-nuclei"):
        widget.model.value = model
        assert len(widget.thresholds) >= 2
        missing = [f.label or f.name or f.text for f in fields(widget) if not f.tooltip]
        assert not missing, f"fields without a tooltip ({model}): {missing}"


def test_advanced_settings_collapse_and_reach_the_run(qtbot, segment_dock, segment_errors, monkeypatch):
    viewer, widget = segment_dock
    assert not widget.advanced.expanded and widget.advanced.body.native.isHidden()
    assert widget.thresholds in list(widget.advanced.body)
    widget.advanced.header.clicked.emit()  # a click on "▸ Advanced"
    assert widget.advanced.expanded and not widget.advanced.body.native.isHidden()
    seen = {}

    def capture(model_ref, data, kwargs):
        seen.update(kwargs)
        return sw.UserInputProblem("captured")
        yield

    monkeypatch.setattr(sw, "_run_segmentation", capture)
    widget.image.value = viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    widget.batch_size.value, widget.amp.value, widget.tile_size.value = 2, False, 256
    _run(qtbot, widget)
    assert (seen["batch_size"], seen["amp"], seen["tile_size"]) == (2, False, 256)
    assert segment_errors == ["seglab: captured"]


# ---- the output's place in the world, ownership by identity, choices read at start ---------------
def _outlined_run(labels, steps=1, step_s=0.0):
    """:func:`_fake_run` whose result has a polygon per object (as a StarDist run)."""
    import time

    from seglab.inference.engine import ProgressEvent, Segmentation
    from seglab.objects import object_table

    def run(model_ref, data, kwargs):
        for i in range(steps):
            time.sleep(step_s)
            yield ProgressEvent("postprocess", i + 1, steps)
        first = labels.reshape((-1,) + labels.shape[-2:])[0]  # outlines on the first plane only
        table = object_table(first)
        shapes = {"type": "polygon", "label": list(table["label"]),
                  "data": [np.array([[1.0, 1.0], [1.0, 5.0], [5.0, 5.0], [5.0, 1.0]]) + 8 * i
                           for i in range(len(table["label"]))]}
        planes = int(np.prod(labels.shape[:-2]))
        extras = [{"shapes": shapes}] + [{} for _ in range(planes - 1)]
        return "fake", Segmentation(labels.copy(), table, {"prob_thresh": 0.5}, extras=extras)

    return run


def _assert_same_place(a, b):
    rng = np.random.default_rng(0)
    for p in rng.uniform(0, 30, size=(4, a.ndim)):
        np.testing.assert_allclose(a.data_to_world(p), b.data_to_world(p), atol=1e-9)


AFFINE_2D = np.array([[1.0, 0.2, 3.0], [0.1, 0.9, -2.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("ndim", [2, 3])
def test_labels_and_outlines_take_the_image_layers_full_transform(qtbot, segment_dock, segment_errors, monkeypatch,
                                                                   ndim):
    """Scale, translate, rotate, shear and affine of the image all reach the labels and the outlines,
    when they are made and when a re-run updates them in place."""
    viewer, widget = segment_dock
    shape = (32, 32) if ndim == 2 else (3, 32, 32)
    labels = np.zeros(shape, np.int32)
    labels[..., 2:6, 2:6] = 1
    monkeypatch.setattr(sw, "_run_segmentation", _outlined_run(labels))
    if ndim == 2:
        geo = dict(scale=(0.5, 0.7), translate=(10, -5), rotate=30, shear=[0.4], affine=AFFINE_2D)
    else:
        geo = dict(scale=(2.0, 0.5, 0.7), translate=(1, 10, -5), rotate=((1, 0, 0), (0, 0.8, -0.6), (0, 0.6, 0.8)),
                   shear=[0.1, 0.2, 0.3])
    image = viewer.add_image(np.zeros(shape, np.float32), name="img", **geo)
    widget.image.value = image
    widget.model.value = "stardist-nuclei"
    widget.outlines.value = True
    _run(qtbot, widget)
    assert not segment_errors
    out, shapes = widget.output_layer, widget.outlines_layer
    assert shapes is not None
    _assert_same_place(out, image)
    _assert_same_place(shapes, image)
    image.rotate = 10 if ndim == 2 else ((1, 0, 0), (0, 0.6, -0.8), (0, 0.8, 0.6))
    image.shear = [0.2] if ndim == 2 else [0.0, 0.1, 0.0]
    _run(qtbot, widget)
    assert widget.output_layer is out and widget.outlines_layer is shapes  # in place ...
    _assert_same_place(out, image)  # ... and where the image now is
    _assert_same_place(shapes, image)


def test_only_the_widgets_own_unrenamed_unedited_layer_for_that_very_image_is_updated(
        qtbot, segment_dock, segment_errors, monkeypatch):
    """A renamed result, a napari duplicate of it (metadata copied), and the labels of an image that
    was renamed while a new image took its old name are never overwritten."""
    from napari.layers._layer_actions import _duplicate_layer

    viewer, widget = segment_dock
    first_labels = np.zeros((32, 32), np.int32)
    first_labels[2:6, 2:6] = 1
    monkeypatch.setattr(sw, "_run_segmentation", _fake_run(first_labels))
    a = viewer.add_image(np.zeros((32, 32), np.float32), name="A")
    widget.image.value = a
    _run(qtbot, widget)
    out = widget.output_layer
    _run(qtbot, widget)
    assert widget.output_layer is out  # the widget's own unedited layer: updated in place
    # a duplicate (placed before the original, so that a search by name or metadata finds it first)
    viewer.layers.selection = {out}
    _duplicate_layer(viewer.layers)
    copy = viewer.layers["A [seglab] copy"]
    viewer.layers.move(viewer.layers.index(copy), 0)
    other = np.zeros((32, 32), np.int32)
    other[10:20, 10:20] = 1
    monkeypatch.setattr(sw, "_run_segmentation", _fake_run(other))
    _run(qtbot, widget)
    assert widget.output_layer is out and np.array_equal(copy.data, first_labels)
    # renamed by the user: theirs
    out.name = "my final nuclei"
    monkeypatch.setattr(sw, "_run_segmentation", _fake_run(first_labels))
    _run(qtbot, widget)
    assert widget.output_layer is not out and np.array_equal(out.data, other)
    # the first image renamed, a new one named as it was: the labels of "day1" are not the new A's
    latest = widget.output_layer
    a.name = "day1"
    b = viewer.add_image(np.zeros((32, 32), np.float32), name="A")
    widget.image.value = b
    monkeypatch.setattr(sw, "_run_segmentation", _fake_run(other))
    _run(qtbot, widget)
    assert widget.output_layer is not latest and np.array_equal(latest.data, first_labels)
    # and the renamed image's own (unedited, unrenamed) result is still updated in place
    widget.image.value = a
    _run(qtbot, widget)
    assert widget.output_layer is latest and np.array_equal(latest.data, other)
    assert not segment_errors


def test_the_outlines_choice_is_read_when_the_run_starts(qtbot, segment_dock, segment_errors, monkeypatch):
    """Choosing a model without outlines while a run of one with outlines goes on keeps its outlines."""
    viewer, widget = segment_dock
    labels = np.zeros((32, 32), np.int32)
    labels[2:6, 2:6] = 1
    monkeypatch.setattr(sw, "_run_segmentation", _outlined_run(labels, steps=50, step_s=0.02))
    widget.image.value = viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    widget.model.value = "stardist-nuclei"
    widget.outlines.value = True
    worker = widget.start()
    with qtbot.waitSignal(worker.yielded, timeout=10_000):
        pass
    widget.model.value = "unet-nuclei"  # browsing the models while it runs
    assert not widget.outlines.enabled
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert not segment_errors
    assert widget.outlines_layer is not None and widget.outlines_layer in viewer.layers
    assert len(widget.outlines_layer.data) == 1
