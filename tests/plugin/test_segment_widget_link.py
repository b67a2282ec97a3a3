"""The Segment widget's *Link objects across Z* (Advanced): enabled for Z stacks only, one id per
object through the stack, one feature row per object."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from seglab.models import families  # noqa: E402
from seglab.plugin import segment_widget as sw  # noqa: E402
from test_linking import moving_discs  # noqa: E402


@pytest.fixture
def flows_model(models_dir, monkeypatch):
    from flows_helpers import FlowsModel
    from seglab.models.storage import new_model, save_model

    monkeypatch.setitem(families.FAMILIES, FlowsModel.family, "flows_helpers:FlowsModel")
    save_model(new_model("test-flows", "flows", tile_context=8), models_dir / "flows")
    return "flows"


def test_link_option_only_for_z_stacks(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = sw.SegmentWidget(viewer)
    widget.image.value = viewer.add_image(np.zeros((32, 32), np.float32), name="flat")
    assert not widget.link_z.enabled
    widget.image.value = viewer.add_image(np.zeros((4, 32, 32), np.float32), name="stack")
    assert widget.link_z.enabled and widget.link_axis() == 0
    widget.image.value = viewer.add_image(np.zeros((4, 32, 32), np.float32), name="movie", axis_labels=("t", "y", "x"))
    assert not widget.link_z.enabled
    widget.image.value = viewer.add_image(np.zeros((2, 3, 32, 32), np.float32), name="tz")
    assert widget.link_axis() == 1  # napari's order: T, Z
    widget.image.value = viewer.add_image(np.zeros((2, 4, 32, 32), np.float32), name="cz")
    widget.channel_axis.value = 0  # channels, then Z
    assert widget.link_z.enabled and widget.link_axis() == 0
    widget.image.value = viewer.add_image(np.zeros((2, 32, 32), np.float32), name="c2")
    assert not widget.link_z.enabled  # axis 0 holds channels: no planes left


def test_linked_run_gives_one_id_per_object(qtbot, make_napari_viewer, flows_model, monkeypatch):
    errors = []
    monkeypatch.setattr(sw, "show_error", lambda msg: errors.append(msg))
    viewer = make_napari_viewer()
    widget = sw.SegmentWidget(viewer)
    widget.reset_choices()
    stack = np.stack([(p > 0) * 200.0 + 20 for p in moving_discs(5)]).astype(np.float32)
    widget.image.value = viewer.add_image(stack, name="discs")
    widget.model.value = flows_model
    widget.diameter.value = "none"
    widget.link_z.value = True
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert not errors
    out = widget.output_layer
    assert set(np.unique(out.data)) == {0, 1, 2, 3}
    feats = out.features
    assert list(feats["index"]) == [1, 2, 3] and list(feats["n_planes"]) == [5, 5, 5]
    # the measurements of a linked object are those of its largest plane (as the Measurements dock shows them)
    assert list(feats["area"]) == [max(int(np.count_nonzero(p == i)) for p in out.data) for i in (1, 2, 3)]
