"""Threshold fields get help when the family gives none; a family's own help is kept."""

import pytest

pytest.importorskip("napari")

from magicgui.widgets import Container, FloatSpinBox  # noqa: E402

from seglab.plugin.tooltips import THRESHOLD_HELP, fill_threshold_tooltips  # noqa: E402


def test_fallback_help_says_which_way_to_move_each_threshold():
    box = Container(widgets=[FloatSpinBox(name="min_area", value=15.0, max=1e6),
                             FloatSpinBox(name="odd_thresh", value=0.2),
                             FloatSpinBox(name="nms_thresh", value=0.4, tooltip="the family's own help")])
    fill_threshold_tooltips(box)
    assert box.min_area.tooltip == THRESHOLD_HELP["min_area"] + " (model default 15)"
    assert "odd_thresh" in box.odd_thresh.tooltip
    assert box.nms_thresh.tooltip == "the family's own help"
    for text in THRESHOLD_HELP.values():
        assert "raise" in text and "lower" in text
