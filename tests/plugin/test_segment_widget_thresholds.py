"""The Segment widget's threshold fields take their ranges, steps and tooltips from the family."""

import pytest

napari = pytest.importorskip("napari")

from seglab.models.base import ThresholdSpec  # noqa: E402
from seglab.models.maskrcnn import MaskRCNNModel  # noqa: E402
from seglab.plugin import segment_widget as sw  # noqa: E402


def test_threshold_fields_follow_the_family_specs(make_napari_viewer, monkeypatch, tmp_path):
    viewer = make_napari_viewer()
    widget = sw.SegmentWidget(viewer)
    widget.model.value = "maskrcnn-nuclei"
    for name, spec in MaskRCNNModel.threshold_specs.items():
        field = widget.thresholds[name]
        assert (field.min, field.max, field.step) == (spec.low, spec.high, spec.step)
        assert spec.help in field.tooltip
    # a family whose threshold is a logit: negative values are offered, not clamped to 0..1
    from flows_helpers import FlowsModel
    from seglab.models import families
    from seglab.models.storage import new_model, save_model

    monkeypatch.setitem(families.FAMILIES, FlowsModel.family, "flows_helpers:FlowsModel")  # its registry line
    folder = save_model(new_model("test-flows", "flows", tile_context=8), tmp_path / "flows")
    monkeypatch.setattr(widget._registry, "resolve", lambda name: folder)
    widget._rebuild_thresholds()
    field = widget.thresholds["cell_logit"]
    assert (field.min, field.max) == (-6.0, 6.0) and "logit" in field.tooltip
    field.value = -3.5
    assert widget.threshold_values()["cell_logit"] == -3.5
    assert isinstance(FlowsModel.threshold_specs["cell_logit"], ThresholdSpec)
