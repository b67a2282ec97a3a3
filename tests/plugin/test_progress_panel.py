"""The in-widget progress panel reads any core progress event generically."""

from types import SimpleNamespace

import pytest

pytest.importorskip("napari")

from seglab.inference.engine import ProgressEvent  # noqa: E402
from seglab.plugin.progress_panel import (  # noqa: E402
    BAR_STEPS,
    ProgressPanel,
    format_seconds,
    progress_info,
)
from seglab.training.finetune import FinetuneEvent  # noqa: E402
from seglab.training.loop import TrainEvent  # noqa: E402


def test_segmentation_event():
    info = progress_info(ProgressEvent("tile", 3, 16, plane=1, n_planes=6))
    assert info.text() == "tile 3/16 (plane 2/6)"
    assert info.fraction == pytest.approx(ProgressEvent("tile", 3, 16, plane=1, n_planes=6).fraction)


def test_training_event_uses_the_loops_step_and_eta():
    train = TrainEvent(step=40, fraction=0.4, loss=0.3, parts={}, elapsed=20.0, eta=30.0, lr=1e-3)
    info = progress_info(FinetuneEvent("train", 0.4, train))
    assert info.text() == "train step 40, 30 s left"


def test_any_new_stage_is_shown_by_name():
    # e.g. the threshold tuning the core reports after training, with its own counts
    info = progress_info(SimpleNamespace(stage="tune", done=5, total=20, fraction=0.25))
    assert info.text() == "tune 5/20"
    assert progress_info(SimpleNamespace(stage="save", fraction=1.0)).text() == "save"


def test_format_seconds():
    assert [format_seconds(s) for s in (4.4, 65, 3725)] == ["4 s", "1 min 05 s", "1 h 02 min"]


def test_panel_shows_stage_bar_and_time_left(qtbot, monkeypatch):
    panel = ProgressPanel()
    qtbot.addWidget(panel.native)
    clock = [100.0]
    monkeypatch.setattr("seglab.plugin.progress_panel.time.monotonic", lambda: clock[0])
    panel.begin()
    assert panel.active and not panel.native.isHidden()
    clock[0] += 10.0  # a quarter done in 10 s: 30 s left
    info = panel.show_event(SimpleNamespace(stage="postprocess", done=1, total=4, fraction=0.25))
    assert info.eta == pytest.approx(30.0)
    assert panel.text.value == "postprocess 1/4, 30 s left"
    assert panel.bar.value == BAR_STEPS // 4
    clock[0] += 30.0  # a stage at 100 % may still be working (e.g. tuning): no time left shown
    assert panel.show_event(SimpleNamespace(stage="tune", fraction=1.0)).eta is None
    assert panel.text.value == "tune" and panel.bar.value == BAR_STEPS
    panel.end()
    assert not panel.active and panel.native.isHidden()
