"""A fourth family needs one module and its registry line: nothing in the engine, evaluation,
tuning, training or CLI. The family (``flows_helpers.FlowsModel``, Cellpose-style: a logit map
with a threshold in logit units, far outside [0, 1]) is defined in the tests and registered
only for them."""

from __future__ import annotations

import pytest

from flows_helpers import FlowsModel
from seglab.errors import SeglabError
from seglab.evaluation import AnnotatedImage, evaluate_model, tune_thresholds
from seglab.inference.engine import segment, segment_iter
from seglab.models import families
from tests_helpers import blob_image


@pytest.fixture
def flows(monkeypatch):
    monkeypatch.setitem(families.FAMILIES, FlowsModel.family, "flows_helpers:FlowsModel")  # its registry line
    from seglab.models.storage import new_model

    return new_model("test-flows", "flows", tile_context=8)


def _items(n=2):
    return [AnnotatedImage(*blob_image((96, 112), n=8, seed=s, rmin=4, rmax=8), name=f"b{s}") for s in range(n)]


def test_engine_runs_the_new_family_and_refuses_thresholds_outside_its_range(flows):
    img, truth = blob_image((200, 230), n=20, seed=1)
    res = segment(flows, img, device="cpu", tile_size=64, thresholds={"cell_logit": -3.0})  # a logit: < 0 is fine
    assert res.n_objects == int(truth.max())
    assert res.thresholds["cell_logit"] == -3.0
    stages = {ev.stage for ev in segment_iter(flows, img, device="cpu", tile_size=64)}
    assert stages == {"tile", "postprocess"}
    for bad, msg in [(7.0, "outside its range -6 to 6"), (float("nan"), "not a finite number"),
                     (float("-inf"), "not a finite number")]:
        with pytest.raises(SeglabError, match=msg):
            segment(flows, img, device="cpu", thresholds={"cell_logit": bad})


def test_evaluation_and_tuning_use_the_familys_grid(flows):
    items = _items()
    assert evaluate_model(flows, items, device="cpu")["thresholds"]["0.50"]["ap"] == 1.0
    flows.config.thresholds = {"cell_logit": 5.5, "min_area": 4.0}  # far too high: objects shrink or vanish
    assert evaluate_model(flows, items, device="cpu")["thresholds"]["0.50"]["ap"] < 0.5
    best, ap, trials = tune_thresholds(flows, items, flows.threshold_grid, device="cpu")
    assert len(trials) == 1 + 3 * 2 and ap == 1.0 and best["cell_logit"] in (-2.0, 0.0, 2.0)


def test_training_tuning_and_saving_through_finetune(flows, tmp_path):
    from seglab.models.registry import ModelRegistry
    from seglab.training.finetune import Annotation, FinetuneSettings, finetune_iter, prepare
    from seglab.inference.engine import run_to_end

    anns = [Annotation(it.image, it.labels, name=it.name) for it in _items()]
    plan = prepare(anns, out=tmp_path / "flows-mine", family="test-flows",
                   settings=FinetuneSettings(epochs=1, patch_size=32, batch_size=2, device="cpu"))
    events = []
    result = run_to_end(finetune_iter(plan), events.append)
    assert any(e.stage == "tune" and e.total > 0 for e in events)
    loaded = ModelRegistry().load(result.path)
    assert isinstance(loaded, FlowsModel) and set(loaded.config.thresholds) == {"cell_logit", "min_area"}
