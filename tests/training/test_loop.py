import numpy as np
import pytest
import torch

from seglab.errors import SeglabError
from seglab.inference.engine import run_to_end
from seglab.training.data import Augment, PatchSampler, make_pair
from seglab.training.loop import TrainSettings, train_iter
from tests_helpers import blob_image, drain


def _sampler(model, n=3):
    pairs = []
    for s in range(n):
        img, lab = blob_image((96, 96), n=8, seed=s)
        pairs.append(make_pair(img, lab, 1, model.config.normalization))
    return PatchSampler(pairs, 64, Augment(), seed=0)


def test_short_training_lowers_the_loss(tiny_model):
    sampler = _sampler(tiny_model)
    events = list(train_iter(tiny_model, sampler, TrainSettings(steps=60, batch_size=4, lr=5e-3, warmup_steps=5),
                             device="cpu", report_every=10))
    assert events[-1].step == 60
    assert events[-1].loss < 0.8 * events[0].loss


def test_cancel_keeps_best_weights(tiny_model):
    sampler = _sampler(tiny_model)
    scores = iter([0.9, 0.1, 0.2, 0.3, 0.4])
    snapshots = {}

    def validate(m):
        s = next(scores)
        snapshots[s] = {k: v.clone() for k, v in m.network.state_dict().items()}
        return s

    gen = train_iter(tiny_model, sampler, TrainSettings(steps=100, batch_size=2, validate_every=2), device="cpu",
                     validate=validate, report_every=1)
    for ev in gen:
        if ev.step >= 5:
            break
    gen.close()  # cancel
    best = snapshots[0.9]
    for k, v in tiny_model.network.state_dict().items():
        assert np.array_equal(v.numpy(), best[k].numpy()), k


def test_sampler_pads_small_images_and_masks_padding(tiny_model):
    img, lab = blob_image((40, 30), n=2, seed=1)
    s = PatchSampler([make_pair(img, lab, 1, tiny_model.config.normalization)], 64, Augment(scale_range=(1, 1)))
    x, lab_p, valid = s.sample()
    assert x.shape == (1, 64, 64) and lab_p.shape == valid.shape == (64, 64)
    assert valid.sum() == 40 * 30


def test_bad_settings_and_pairs():
    with pytest.raises(SeglabError):
        TrainSettings().check()
    with pytest.raises(SeglabError, match="differ in shape"):
        make_pair(np.zeros((10, 10)), np.zeros((10, 11), int), 1, {})
    with pytest.raises(SeglabError, match="must be integers"):
        make_pair(np.zeros((10, 10)), np.full((10, 10), 0.5), 1, {})


def test_frozen_norm_stats_stay_and_min_steps_runs_past_the_budget(tiny_model):
    sampler = _sampler(tiny_model)
    bn = [m for m in tiny_model.network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bn]
    settings = TrainSettings(time_budget=1e-9, min_steps=3, batch_size=2, freeze_norm_stats=True)
    result = run_to_end(train_iter(tiny_model, sampler, settings, device="cpu", report_every=1))
    assert result.steps == 3 and all(h["lr"] > 0 for h in result.history)  # the steps really train
    assert all(torch.equal(m.running_mean, b) for m, b in zip(bn, before))
    settings.freeze_norm_stats = False
    run_to_end(train_iter(tiny_model, sampler, settings, device="cpu", report_every=1))
    assert not all(torch.equal(m.running_mean, b) for m, b in zip(bn, before))


def test_anchor_weight_keeps_weights_near_the_start(tiny_model):
    import copy

    def drift(anchor_weight):
        model = copy.deepcopy(tiny_model)
        start = {k: v.clone() for k, v in model.network.state_dict().items()}
        settings = TrainSettings(steps=20, batch_size=2, lr=5e-3, warmup_steps=1, weight_decay=0.0,
                                 anchor_weight=anchor_weight)
        for _ in train_iter(model, _sampler(model), settings, device="cpu"):
            pass
        return sum(float(((v.float() - start[k].float()) ** 2).sum())
                   for k, v in model.network.state_dict().items() if v.is_floating_point() and "running" not in k)

    assert drift(100.0) < 0.5 * drift(0.0)


def test_weight_average_follows_the_ramped_decay():
    """The average of a parameter that takes the values 1, 2, 3, ... is the exponential average with
    the decay ramped as (1 + n) / (10 + n); integer buffers follow the network."""
    from seglab.training.loop import WeightAverage

    net = torch.nn.BatchNorm1d(1)
    avg = WeightAverage(net, 0.5)
    expect = net.weight.item()
    for n, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        with torch.no_grad():
            net.weight.fill_(value)
        net.num_batches_tracked += 1
        avg.update(net)
        d = min(0.5, (1 + n) / (10 + n))
        expect = d * expect + (1 - d) * value
    assert avg.state["weight"].item() == pytest.approx(expect)
    assert int(avg.state["num_batches_tracked"]) == 4
    with pytest.raises(SeglabError, match="decay"):
        TrainSettings(steps=1, ema_decay=1.0).check()


def test_validation_scores_the_average_too_and_keeps_the_better(tiny_model):
    """With a weight average each validation scores the trained weights and the average; the
    better (here the average, by construction of the scores) is what the model ends with."""
    sampler = _sampler(tiny_model)
    calls = []

    def validate(m):
        state = {k: v.clone() for k, v in m.network.state_dict().items()}
        calls.append(state)
        return 0.2 + 0.1 * (len(calls) % 2 == 0)  # 2nd, 4th ... call (the average) scores higher

    settings = TrainSettings(steps=6, batch_size=2, lr=5e-3, warmup_steps=1, validate_every=3, ema_decay=0.9)
    events, result = drain(train_iter(tiny_model, sampler, settings, device="cpu", validate=validate, report_every=1))
    assert len(calls) == 4  # steps 3 and 6, two scores each
    at = [e for e in events if e.val_score is not None]
    assert [e.step for e in at] == [3, 6]
    assert all(e.val_parts == {"trained": 0.2, "average": pytest.approx(0.3)} for e in at)
    assert result.best_is_average and result.best_step == 3 and result.best_score == pytest.approx(0.3)
    assert any(not torch.equal(calls[0][k], calls[1][k]) for k in calls[0])  # the average differs
    for k, v in tiny_model.network.state_dict().items():
        assert torch.equal(v, calls[1][k]), k  # the average of step 3


def test_without_validation_the_average_is_the_result(tiny_model):
    from seglab.training.loop import WeightAverage

    sampler = _sampler(tiny_model)
    settings = TrainSettings(steps=4, batch_size=2, lr=5e-3, warmup_steps=1, ema_decay=0.5)
    seen = []
    original = WeightAverage.update

    def spy(self, net):
        original(self, net)
        seen.append({k: v.clone() for k, v in self.state.items()})

    WeightAverage.update = spy
    try:
        result = run_to_end(train_iter(tiny_model, sampler, settings, device="cpu"))
    finally:
        WeightAverage.update = original
    assert result.best_is_average and len(seen) == 4
    for k, v in tiny_model.network.state_dict().items():
        assert torch.equal(v, seen[-1][k]), k
