import numpy as np
import pytest

from seglab.models.registry import DEFAULT_MODEL
from seglab.training.finetune import FinetuneSettings

napari = pytest.importorskip("napari")

from seglab.models.storage import load_model, save_model  # noqa: E402
from seglab.plugin import segment_widget as sw  # noqa: E402
from seglab.plugin import train_widget as tw  # noqa: E402
from seglab.plugin.progress_panel import ProgressPanel  # noqa: E402
from tests_helpers import blob_image  # noqa: E402


@pytest.fixture
def errors(monkeypatch):
    seen = []
    monkeypatch.setattr(tw, "show_error", lambda msg: seen.append(msg))
    monkeypatch.setattr(sw, "show_error", lambda msg: seen.append(msg))
    return seen


@pytest.fixture
def setup(make_napari_viewer, models_dir, tiny_model):
    """A viewer with an image, its labels and a rectangle, the tiny model in the user folder, both widgets."""
    save_model(tiny_model, models_dir / "tiny")
    viewer = make_napari_viewer()
    segment = sw.SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment)
    widget = tw.TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    img, lab = blob_image((64, 72), n=6, seed=0, rmin=4, rmax=7)
    image = viewer.add_image(img, name="cells")
    labels = viewer.add_labels(lab, name="cells corrected")
    row = widget.pairs[0]
    row.image.value, row.labels.value = image, labels
    widget.start_model.value = ("model", "tiny")
    widget.budget_unit.value = "epochs"
    widget.budget.value = 1
    widget.device.value = "cpu"
    widget.model_name.value = "my-cells"
    return viewer, widget, segment, image, labels


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)


def test_train_from_layers_then_segment_with_the_new_model(qtbot, setup, errors, models_dir):
    viewer, widget, segment, image, labels = setup
    shapes = viewer.add_shapes([np.array([[-0.5, -0.5], [-0.5, 39.5], [29.5, 39.5], [29.5, -0.5]])],
                               shape_type="rectangle", name="complete here")
    widget.pairs[0].regions.value = shapes
    viewer.layers.selection.active = image
    widget.replay.value = 0.2
    assert "my-cells" not in segment.model.choices
    assert widget.start() is not None
    _wait(qtbot, widget)
    assert not errors
    assert widget.status.value.startswith("saved 'my-cells'")
    model = load_model(models_dir / "my-cells")
    pair = model.config.training["pairs"][0]
    assert (pair["image"], pair["labels"], pair["annotated_pixels"]) == ("cells", "cells corrected", 30 * 40)
    assert model.config.training["parent"]["name"] == "tiny"
    assert model.config.training["settings"]["replay"] == pytest.approx(0.2)
    assert model.config.training["settings"]["freeze_levels"] == FinetuneSettings.freeze_levels  # the default
    # listed at once in the Segment widget, and one click segments the current image with it
    assert "my-cells" in segment.model.choices
    assert widget.segment_button.enabled
    assert widget.segment_with_new_model() is not None
    qtbot.waitUntil(lambda: not segment.running, timeout=60_000)
    assert not errors
    out = viewer.layers["cells [seglab]"]
    assert out.data.shape == (64, 72) and out.metadata["seglab"]["model"] == "my-cells"
    assert viewer.layers["cells corrected"] is labels  # the user's labels are untouched


def test_cancel_saves_the_model_so_far(qtbot, setup, errors, models_dir):
    viewer, widget, *_ = setup
    widget.budget_unit.value = "seconds"
    widget.budget.value = 600
    widget.val_image.value = viewer.layers["cells"]
    widget.val_labels.value = viewer.layers["cells corrected"]
    worker = widget.start()
    with qtbot.waitSignal(worker.yielded, timeout=60_000, check_params_cb=lambda ev: ev.stage == "train"):
        pass
    widget.cancel()
    _wait(qtbot, widget)
    assert not errors
    assert widget.status.value.endswith("(stopped early)")
    assert widget.result.stopped and widget.result.steps < 600
    cfg = load_model(models_dir / "my-cells").config
    assert cfg.training["stopped_early"] is True and "ap50_best_checkpoint" in cfg.scores
    assert widget.plot.loss  # the plot received the loss


def test_bad_inputs_are_notified(qtbot, setup, errors, models_dir):
    viewer, widget, _, image, labels = setup
    widget.model_name.value = ""
    assert widget.start() is None and "type a name" in errors[-1]
    widget.model_name.value = "my-cells"
    ellipse = viewer.add_shapes([np.array([[0, 0], [10, 10]])], shape_type="ellipse", name="oval")
    widget.pairs[0].regions.value = ellipse
    assert widget.start() is None and "shape 1 of Shapes layer 'oval' is a ellipse" in errors[-1]
    far = viewer.add_shapes([np.array([[100, 100], [100, 120], [120, 120], [120, 100]])],
                            shape_type="rectangle", name="far")
    widget.pairs[0].regions.value = far
    assert widget.start() is not None
    _wait(qtbot, widget)
    assert "lies outside the image" in errors[-1] and widget.status.value == "failed"
    widget.pairs[0].regions.value = None
    wrong = viewer.add_labels(np.zeros((10, 10), np.int32), name="wrong size")
    widget.pairs[0].labels.value = wrong
    widget.start()
    _wait(qtbot, widget)
    assert "differ in shape" in errors[-1]
    widget.pairs[0].labels.value = labels
    (models_dir / "my-cells").mkdir()
    widget.start()
    _wait(qtbot, widget)
    assert "already exists" in errors[-1]
    assert not any((models_dir / "my-cells").iterdir())  # never overwritten silently
    widget.val_image.value = image
    assert widget.start() is None and "both a validation image and validation labels" in errors[-1]


def test_pairs_can_be_added_and_removed(setup):
    viewer, widget, _, image, labels = setup
    row = widget.add_pair()
    assert len(widget.pairs) == 2 and widget.remove_pair_button.enabled
    assert image in row.image.choices and labels in row.labels.choices
    widget.remove_pair()
    assert len(widget.pairs) == 1 and not widget.remove_pair_button.enabled


def test_learning_rate_follows_the_start_family_until_the_user_types_one(setup):
    _, widget, *_ = setup
    assert float(widget.lr.value) == tw.family_class("unet").finetune_lr  # tiny is a U-Net
    widget.start_model.value = ("family", "stardist")
    assert float(widget.lr.value) == tw.family_class("stardist").finetune_lr != tw.family_class("unet").finetune_lr
    widget.lr.value = "5e-4"
    widget.start_model.value = ("model", "tiny")
    assert widget.lr.value == "5e-4"  # typed: kept
    assert widget._inputs()[2]["settings"].lr == 5e-4
    widget.lr.value = ""
    assert widget._inputs()[2]["settings"].lr is None  # empty: the family's default, resolved by prepare


def test_widgets_start_from_the_default_builtin(make_napari_viewer):
    viewer = make_napari_viewer()
    assert tw.TrainWidget(viewer).start_model.value == ("model", DEFAULT_MODEL)
    assert sw.SegmentWidget(viewer).model.value == DEFAULT_MODEL


# ---- issue 12 -----------------------------------------------------------------------------
def test_segment_button_twice_docks_one_segment_widget(make_napari_viewer, monkeypatch):
    """napari gives each plugin widget its own viewer proxy: the Train widget must still find
    the Segment widget docked by the plugin menu, and never dock a second one."""
    viewer = make_napari_viewer()
    viewer.window.add_plugin_dock_widget("napari-seglab", "Segment")
    _, train = viewer.window.add_plugin_dock_widget("napari-seglab", "Train")
    image = viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    starts = []
    monkeypatch.setattr(sw.SegmentWidget, "start", lambda self, *a: starts.append(self) or "started")
    train.new_model = "unet-nuclei"
    viewer.layers.selection.active = image
    assert train.segment_with_new_model() == "started"
    assert train.segment_with_new_model() == "started"
    docked = [w for w in viewer.window.dock_widgets.values() if isinstance(w, sw.SegmentWidget)]
    assert len(docked) == 1 and starts == [docked[0], docked[0]]
    assert docked[0].model.value == "unet-nuclei" and docked[0].image.value is image


def test_every_train_field_has_a_tooltip(setup):
    from seglab.plugin.tooltips import fields

    _, widget, *_ = setup
    assert widget.plot.isHidden()  # until the first training
    widget.add_pair()
    missing = [f.label or f.name or f.text for f in fields(widget) if not f.tooltip]
    assert not missing, f"fields without a tooltip: {missing}"
    assert widget.start_info.value.startswith("U-Net")  # the tiny start model's line
    widget.start_model.value = ("family", "stardist")
    assert "untrained stardist" in widget.start_info.value


def test_training_progress_shows_in_the_widget(qtbot, setup, errors, monkeypatch):
    _, widget, *_ = setup
    stages = []
    shown = ProgressPanel.show_event

    def show_event(panel, ev):  # what the panel shows for each event, as it shows it
        info = shown(panel, ev)
        stages.append((ev.stage, panel.text.value))
        return info

    monkeypatch.setattr(ProgressPanel, "show_event", show_event)
    widget.start()
    assert widget.progress.active and not widget.plot.isHidden()
    _wait(qtbot, widget)
    assert not errors and not widget.progress.active
    train_texts = [t for s, t in stages if s == "train"]
    assert train_texts and train_texts[-1].startswith("train ") and "left" in train_texts[-1]
    assert any(s == "save" and t == "save" for s, t in stages)


# The docked widgets must fit a 1080p screen (1920x1080): a maximised napari window there is
# about 1000 px high once a task bar (~40 px) and the window's title bar (~40 px) are taken.
SCREEN_1080P_WINDOW = (1920, 1000)


def test_docked_widgets_fit_a_1080p_screen(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(*SCREEN_1080P_WINDOW)
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    segment = sw.SegmentWidget(viewer)
    train = tw.TrainWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    viewer.window.add_dock_widget(train, name="Train")

    def fitted():  # napari's style sheet polishes the fields after docking: their docks then grow
        return all(w.native.height() >= w.content.sizeHint().height() for w in (segment, train))

    qtbot.waitUntil(fitted, timeout=5000)
    for w in (segment, train):
        assert isinstance(w.native, QScrollArea) and w.native.widget() is w.content
        assert w.native.parent() is not None  # docked with its scroll area
        # every field shows, unscrolled, with the Advanced sections collapsed
        assert w.native.height() >= w.content.sizeHint().height(), type(w).__name__
        # and a dock can always shrink: whatever does not fit scrolls
        assert w.native.minimumSizeHint().height() < 150
    # both together inside the window less its menu and status bars (~50 px) and the two dock
    # title bars (~25 px each); 308 + 543 px with the fonts of the machine that wrote this (~50 px left)
    assert segment.native.height() + train.native.height() <= SCREEN_1080P_WINDOW[1] - 100
    # the advanced sections open on demand: the opened dock grows into the window's height and
    # whatever does not fit scrolls; closed again, both docks show all their fields again
    for w in (segment, train):
        collapsed, shown = w.content.sizeHint().height(), w.native.height()
        w.advanced.expanded = True
        qtbot.waitUntil(lambda: w.native.height() > shown + 100, timeout=5000)
        assert w.content.sizeHint().height() > collapsed + 100
        w.advanced.expanded = False
        qtbot.waitUntil(fitted, timeout=5000)
        assert w.content.sizeHint().height() == collapsed


@pytest.mark.parametrize("geometry, named", [
    (dict(scale=(2, 2)), "scale (1, 1) vs (2, 2)"),
    (dict(translate=(30, 30)), "translate (0, 0) vs (30, 30)"),
    (dict(rotate=30), "rotate"),
    (dict(shear=[0.3]), "shear"),
    (dict(affine=np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.0], [0, 0, 1]])), "affine"),
])
def test_labels_not_lying_over_their_image_are_refused(qtbot, setup, errors, geometry, named):
    """Labels placed elsewhere in the world than their image (same shape) would train the model on
    pairs that do not match as the user saw them: refused, naming both layers and what differs."""
    viewer, widget, _, image, labels = setup
    moved = viewer.add_labels(labels.data.copy(), name="moved labels", **geometry)
    widget.pairs[0].labels.value = moved
    assert widget.start() is None and not widget.running
    assert "labels layer 'moved labels' does not lie over image layer 'cells'" in errors[-1] and named in errors[-1]
    # the same placement on both layers (e.g. a rotated image and its labels) is fine
    errors.clear()
    turned = viewer.add_image(image.data, name="cells turned", **geometry)
    pair = tw.layers_to_annotation(turned, moved)
    assert pair.labels_name == "moved labels" and not errors


def test_regions_that_are_not_upright_rectangles_in_the_image_are_refused(setup, errors):
    """A rectangle drawn (axis-aligned on screen) over a rotated image covers a turned region of its
    pixels: refused instead of training on its bounding box; with the image's rotation it is fine."""
    viewer, widget, _, image, labels = setup
    image.rotate, labels.rotate = 30, 30
    corners = np.array([[0, 0], [0, 20], [20, 20], [20, 0]], float)
    upright = viewer.add_shapes([corners], shape_type="rectangle", name="on screen")
    widget.pairs[0].regions.value = upright
    assert widget.start() is None
    assert "rectangle 1 of Shapes layer 'on screen' is not an upright rectangle in the pixels of image layer " \
           "'cells'" in errors[-1]
    turned = viewer.add_shapes([corners], shape_type="rectangle", name="with the image", rotate=30)
    np.testing.assert_allclose(tw.rectangles_in(turned, image), [(0.5, 0.5, 20.5, 20.5)])
    # a rectangle turned within its own (unrotated) Shapes layer, on an unrotated image
    image.rotate = labels.rotate = 0
    spun = viewer.add_shapes([corners], shape_type="rectangle", name="spun")
    spun.selected_data = {0}
    spun.data = [corners @ np.array([[0.8, -0.6], [0.6, 0.8]]).T + 30]  # (a rectangle turned in place)
    with pytest.raises(tw.SeglabError, match="rectangle 1 of Shapes layer 'spun' is not an upright rectangle"):
        tw.rectangles_in(spun, image)


def test_segment_with_new_model_keeps_the_images_full_transform(qtbot, setup, errors, monkeypatch):
    viewer, widget, segment, image, _ = setup
    labels = np.zeros(image.data.shape, np.int32)
    labels[2:6, 2:6] = 1

    def fake(model_ref, data, kwargs):
        from seglab.inference.engine import Segmentation
        from seglab.objects import object_table

        return "tiny", Segmentation(labels.copy(), object_table(labels), {})
        yield  # (a generator, as the worker body)

    monkeypatch.setattr(sw, "_run_segmentation", fake)
    image.scale, image.translate, image.rotate, image.shear = (0.5, 0.7), (10, -5), 30, [0.4]
    image.affine = np.array([[1.0, 0.2, 3.0], [0.1, 0.9, -2.0], [0.0, 0.0, 1.0]])
    widget.new_model = "tiny"
    viewer.layers.selection.active = image
    assert widget.segment_with_new_model() is not None
    qtbot.waitUntil(lambda: not segment.running, timeout=60_000)
    assert not errors
    out = segment.output_layer
    for p in [(0, 0), (10, 20), (63, 71)]:
        np.testing.assert_allclose(out.data_to_world(p), image.data_to_world(p), atol=1e-9)
