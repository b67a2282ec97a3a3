"""The bad-input suite through the Segment and Train widgets (issue 12; table in docs/bad-inputs.md):
each layer ends in a correct Labels layer or one notification, and the widget is ready again."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from seglab.plugin import segment_widget as sw  # noqa: E402
from seglab.plugin import train_widget as tw  # noqa: E402
from tests_helpers import blob_image  # noqa: E402

IMG, LAB = blob_image((64, 72), n=6, seed=0, rmin=4, rmax=7)
NOISE = np.random.default_rng(3).integers(0, 255, IMG.shape).astype(np.uint8)


@pytest.fixture
def notes(monkeypatch):
    seen = {"error": [], "info": []}
    for mod in (sw, tw):
        monkeypatch.setattr(mod, "show_error", lambda msg: seen["error"].append(msg))
    monkeypatch.setattr(sw, "show_info", lambda msg: seen["info"].append(msg))
    return seen


@pytest.fixture
def seg(make_napari_viewer, models_dir, tiny_model):
    from seglab.models.storage import save_model

    save_model(tiny_model, models_dir / "tiny")
    viewer = make_napari_viewer()
    widget = sw.SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.reset_choices()
    widget.model.value = "tiny"
    widget.device.value = "cpu"
    return viewer, widget


def _labels(viewer):
    return [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Labels)]


def _run(qtbot, widget):
    worker = widget.start()
    if worker is not None:
        qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    return worker


def _ready(widget):
    assert not widget.running and widget.run_button.enabled and widget.status.value != "running…"


@pytest.mark.parametrize("data, kwargs, shape", [
    (IMG > 100, {}, (64, 72)),
    (IMG.astype(np.int8), {}, (64, 72)),
    (IMG.astype(np.uint64), {}, (64, 72)),
    (IMG.astype(np.float16), {}, (64, 72)),
    (np.where(IMG > 100, np.nan, IMG).astype(np.float32), {}, (64, 72)),
    (np.zeros((1, 1), np.uint8), {}, (1, 1)),
    (np.full((64, 72), 9, np.uint16), {}, (64, 72)),
    (np.stack([IMG] * 3, -1), {"rgb": True}, (64, 72)),
    (np.stack([IMG] * 3 + [IMG * 0 + 255], -1), {"rgb": True}, (64, 72)),
    (np.stack([IMG, IMG[::-1]]), {}, (2, 64, 72)),
], ids=["bool", "int8", "uint64", "float16", "nan", "1x1", "constant", "rgb", "rgba", "z stack"])
def test_segment_widget_layers_with_a_result(qtbot, seg, notes, data, kwargs, shape):
    viewer, widget = seg
    widget.image.value = viewer.add_image(data, name="in", **kwargs)
    widget.model.value = "tiny"  # the user's choice wins over the proposal for RGB layers
    assert _run(qtbot, widget) is not None
    assert not notes["error"], notes["error"]
    (out,) = _labels(viewer)
    assert out.data.shape == shape
    assert widget.status.value.endswith("objects (tiny-unet)")
    _ready(widget)


def test_channel_axis_on_a_non_rgb_layer_keeps_the_spatial_scale(qtbot, seg, notes):
    """Was: 'could not broadcast input array from shape (3,) into shape (2,)', status 'running…' forever."""
    viewer, widget = seg
    layer = viewer.add_image(np.stack([NOISE, IMG, NOISE]), name="cyx", scale=(1.0, 0.5, 0.25),
                             translate=(0.0, 10.0, 20.0))
    widget.image.value = layer
    widget.channel_axis.value = 0
    widget.channels.value = "1"
    _run(qtbot, widget)
    assert not notes["error"], notes["error"]
    (out,) = _labels(viewer)
    assert out.data.shape == (64, 72)
    assert list(out.scale) == [0.5, 0.25] and list(out.translate) == [10.0, 20.0]
    _ready(widget)
    _run(qtbot, widget)  # a second run on the same image updates the same layer
    assert _labels(viewer) == [out] and not notes["error"]


def test_non_rgb_channels_need_a_channel_choice(qtbot, seg, notes):
    viewer, widget = seg
    widget.image.value = viewer.add_image(np.stack([IMG, NOISE, NOISE], -1).astype(np.float32), name="composite",
                                          rgb=False)
    widget.channel_axis.value = 2
    _run(qtbot, widget)
    assert notes["error"] and "3 non-RGB channel" in notes["error"][-1] and "'Channels'" in notes["error"][-1]
    assert widget.status.value == "failed" and not _labels(viewer)
    _ready(widget)


def test_a_leading_axis_of_three_is_named_as_possibly_channels(qtbot, seg, notes):
    viewer, widget = seg
    widget.image.value = viewer.add_image(np.stack([IMG, NOISE, NOISE]), name="three")
    _run(qtbot, widget)
    assert any("set 'Channel axis' to 0" in m for m in notes["info"])


@pytest.mark.parametrize("data, channel_axis, channels, msg", [
    (np.zeros((2, 2, 2, 2, 16, 16), np.float32), -1, "", "expected 2 to 4 spatial axes"),
    (np.zeros((3, 16, 16), np.float32), 3, "", "channel axis 3 does not exist"),
    (np.zeros((3, 16, 16), np.float32), 0, "5", "do not exist"),
    (np.zeros((3, 16, 16), np.float32), 0, "a,b", "channels must be integers"),
    (np.stack([IMG, NOISE], -1), -1, "", "2 non-RGB channel"),
], ids=["6d", "channel axis out of range", "missing channel", "channels not numbers", "two channels last"])
def test_segment_widget_bad_layers_give_one_notification(qtbot, seg, notes, data, channel_axis, channels, msg):
    viewer, widget = seg
    widget.image.value = viewer.add_image(data, name="bad")
    widget.channel_axis.value = channel_axis
    widget.channels.value = channels
    _run(qtbot, widget)
    assert notes["error"] and msg in notes["error"][-1]
    assert not _labels(viewer)
    _ready(widget)


def test_a_failing_result_handler_does_not_leave_the_widget_running(qtbot, seg, notes, monkeypatch):
    viewer, widget = seg
    widget.image.value = viewer.add_image(IMG, name="img")

    def broken(self, value):
        raise ValueError("could not broadcast input array from shape (3,) into shape (2,)")

    monkeypatch.setattr(sw.SegmentWidget, "_on_done", broken)
    _run(qtbot, widget)
    assert widget.status.value == "failed"
    assert notes["error"] and "could not show the result" in notes["error"][-1]
    _ready(widget)


# ---- Train widget ------------------------------------------------------------------------------
@pytest.fixture
def train(make_napari_viewer, models_dir, tiny_model):
    from seglab.models.storage import save_model

    save_model(tiny_model, models_dir / "tiny")
    viewer = make_napari_viewer()
    widget = tw.TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.start_model.value = ("model", "tiny")
    widget.budget_unit.value = "epochs"
    widget.budget.value = 1
    widget.device.value = "cpu"
    widget.model_name.value = "my-cells"
    return viewer, widget


@pytest.mark.parametrize("image, labels, msg", [
    (IMG, LAB[:10], "differ in shape"),
    (IMG, -LAB, "negative values"),
    (np.zeros((2, 2, 2, 64, 72), np.float32), np.zeros((2, 2, 2, 64, 72), np.int32), "training takes 2D images"),
    (IMG, np.zeros_like(LAB), "the labels hold no objects"),
], ids=["labels of another shape", "negative label ids", "5d image", "no objects"])
def test_train_widget_bad_pairs_give_one_notification(qtbot, train, notes, models_dir, image, labels, msg):
    viewer, widget = train
    row = widget.pairs[0]
    row.image.value = viewer.add_image(image, name="img")
    row.labels.value = viewer.add_labels(labels, name="lab")
    worker = widget.start()
    if worker is not None:
        qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert notes["error"], "no notification"
    assert msg in notes["error"][-1]
    assert not widget.running and widget.train_button.enabled
    assert not (models_dir / "my-cells").exists()
