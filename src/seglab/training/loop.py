"""The training loop every family uses (built-in recipes, CLI and napari retraining).

:func:`train_iter` is a generator of :class:`TrainEvent`; stopping it (``close()``)
cancels training and leaves the best weights seen so far in the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import torch

from seglab.errors import SeglabError
from seglab.inference.device import resolve_device
from seglab.models.base import SegmentationModel
from seglab.models.storage import clone_state
from seglab.torch_env import autocast, cuda_bf16, guard_triton
from seglab.training.data import PatchSampler


@dataclass
class TrainSettings:
    """How long and how to train. Give ``steps``, ``time_budget`` (seconds), or both (first reached stops)."""

    steps: int | None = None
    time_budget: float | None = None
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    amp: bool = True
    validate_every: int = 500
    seed: int = 0
    #: steps taken even when the time budget is already spent (so a short budget still trains)
    min_steps: int = 0
    #: keep normalisation layers' running statistics as they are (fine-tuning on a few images)
    freeze_norm_stats: bool = False
    #: L2-SP: weight of the squared distance of the weights from where training started
    #: (fine-tuning keeps what the start model knew); 0 = off
    anchor_weight: float = 0.0
    #: decay of an exponential moving average of the weights (and batch-norm statistics), e.g.
    #: 0.999; each validation then scores the trained weights and the average, and the better
    #: becomes the best so far. 0 = off
    ema_decay: float = 0.0

    def check(self) -> None:
        if self.steps is None and self.time_budget is None:
            raise SeglabError("give a number of steps or a time budget")
        if self.steps is not None and self.steps < 1:
            raise SeglabError("the number of steps must be at least 1")
        if self.time_budget is not None and self.time_budget <= 0:
            raise SeglabError("the time budget must be positive")
        if self.batch_size < 1:
            raise SeglabError("batch size must be at least 1")
        if not (self.lr > 0):
            raise SeglabError("learning rate must be positive")
        if not (0.0 <= self.ema_decay < 1.0):
            raise SeglabError(f"the weight average's decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class TrainEvent:
    """Progress of a training run."""

    step: int
    fraction: float
    loss: float
    parts: dict[str, float]
    elapsed: float
    eta: float
    lr: float
    val_score: float | None = None
    best_score: float | None = None
    #: at a validation with a weight average: the trained weights' and the average's scores
    val_parts: dict[str, float] | None = None


@dataclass
class TrainResult:
    steps: int
    elapsed: float
    best_score: float | None
    best_step: int | None
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False
    #: whether the best weights are the moving average's (``TrainSettings.ema_decay``)
    best_is_average: bool = False


class WeightAverage:
    """An exponential moving average of a network's floating-point state (parameters and
    batch-norm statistics; integer buffers follow the network). The decay ramps up as
    ``(1 + n) / (10 + n)`` over the first updates, so the average does not dwell on where
    training started."""

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self._float = [k for k, v in self.state.items() if v.is_floating_point()]

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        current = net.state_dict()
        torch._foreach_lerp_([self.state[k] for k in self._float], [current[k].detach() for k in self._float], 1.0 - d)
        for k, v in current.items():
            if not v.is_floating_point():
                self.state[k].copy_(v)


def _train_mode(net: torch.nn.Module, freeze_norm_stats: bool) -> None:
    """Training mode; with ``freeze_norm_stats`` batch-norm layers keep normalising with their running stats."""
    net.train()
    if freeze_norm_stats:
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def train_iter(
    model: SegmentationModel,
    sampler: PatchSampler,
    settings: TrainSettings,
    *,
    device: str | torch.device = "auto",
    validate: Callable[[SegmentationModel], float] | None = None,
    on_best: Callable[[SegmentationModel, int, float], None] | None = None,
    report_every: int = 10,
) -> Generator[TrainEvent, None, TrainResult]:
    """Train ``model`` in place. ``validate(model) -> score`` (higher is better) picks the best weights."""
    settings.check()
    guard_triton()
    dev = resolve_device(device)
    torch.manual_seed(settings.seed)
    net = model.network.to(dev)
    # channels_last: the layout the CPU's bf16 kernels and a GPU's tensor cores run fastest in
    net.to(memory_format=torch.channels_last)
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if dev.type == "cuda":
        # a fixed patch size: cuDNN picks its fastest convolutions once (restored when training ends)
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    anchor = ([(p, p.detach().float().clone()) for p in net.parameters() if p.requires_grad]
              if settings.anchor_weight > 0 else None)
    scaler = torch.amp.GradScaler("cuda", enabled=settings.amp and dev.type == "cuda" and not cuda_bf16(dev))
    t0 = time.perf_counter()
    best_state, best_score, best_step = None, None, None
    best_is_average = False
    average = WeightAverage(net, settings.ema_decay) if settings.ema_decay > 0 else None
    scores: dict[int, dict[str, float]] = {}  # step -> trained and averaged weights' scores
    validated_at: int | None = None
    history: list[dict] = []
    step = 0
    losses: list[float] = []
    cancelled = True

    def fraction() -> float:
        f = 0.0
        if settings.steps:
            f = max(f, step / settings.steps)
        if settings.time_budget:
            f = max(f, (time.perf_counter() - t0) / settings.time_budget)
        return min(f, 1.0)

    def next_step_overruns() -> bool:
        """Whether one more step (at the mean pace so far) would end past the time budget."""
        if not settings.time_budget or step == 0:
            return False
        elapsed = time.perf_counter() - t0
        return elapsed + elapsed / step > settings.time_budget

    def consider(score: float, is_average: bool) -> None:
        """Keep the weights now in the network if ``score`` is the best so far."""
        nonlocal best_state, best_score, best_step, best_is_average
        if best_score is None or score > best_score:
            best_state, best_score, best_step, best_is_average = clone_state(model), score, step, is_average
            if on_best is not None:
                on_best(model, step, score)

    def run_validation() -> float | None:
        """Score the trained weights (and the average's); the best of them; history notes both."""
        nonlocal validated_at
        if validate is None:
            return None
        validated_at = step
        net.eval()
        score = float(validate(model))
        consider(score, False)
        if average is not None:
            trained = clone_state(model)
            net.load_state_dict(average.state)
            averaged = float(validate(model))
            consider(averaged, True)
            net.load_state_dict(trained)
            scores[step] = {"trained": score, "average": averaged}
            score = max(score, averaged)
        _train_mode(net, settings.freeze_norm_stats)
        return score

    try:
        _train_mode(net, settings.freeze_norm_stats)
        while (fraction() < 1.0 and not next_step_overruns()) or step < settings.min_steps:
            f = fraction() if step >= settings.min_steps else min(fraction(), step / settings.min_steps)
            warm = min(1.0, (step + 1) / max(1, settings.warmup_steps))
            lr = settings.lr * warm * 0.5 * (1 + math.cos(math.pi * f))
            for g in opt.param_groups:
                g["lr"] = lr
            x, targets, valid = sampler.batch(settings.batch_size, model)
            x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            targets = {k: v.to(dev, non_blocking=True) for k, v in targets.items()}
            valid = valid.to(dev, non_blocking=True)
            with autocast(dev, settings.amp):
                loss, parts = model.training_loss(net, x, targets, valid)
            if anchor is not None:
                drift = sum(((p.float() - a) ** 2).sum() for p, a in anchor)
                loss = loss + settings.anchor_weight * drift
                parts = {**parts, "anchor": float(drift.detach())}
            if not torch.isfinite(loss):
                raise SeglabError(f"training diverged at step {step} (loss {float(loss)}); try a lower learning rate")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if average is not None:
                average.update(net)
            step += 1
            losses.append(loss.detach().item())
            val_score = None
            if validate is not None and settings.validate_every and step % settings.validate_every == 0:
                val_score = run_validation()
            if step % report_every == 0 or val_score is not None or fraction() >= 1.0:
                elapsed = time.perf_counter() - t0
                fr = fraction()
                eta = elapsed * (1 - fr) / fr if fr > 0 else float("inf")
                recent = float(np.mean(losses[-report_every:]))
                history.append({"step": step, "loss": recent, "elapsed": elapsed, "lr": lr, "val": val_score,
                                **({"val_parts": scores[step]} if step in scores else {})})
                yield TrainEvent(step, fr, recent, parts, elapsed, eta, lr, val_score, best_score,
                                 scores.get(step) if val_score is not None else None)
        if validate is not None and validated_at != step:  # the last weights, unless just scored
            run_validation()
        cancelled = False
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        net.eval()
        if best_state is not None:
            model.network.load_state_dict(best_state)
        elif average is not None and average.updates:  # no validation: the average is the result
            model.network.load_state_dict(average.state)
            best_is_average = True
        model.network.to("cpu").to(memory_format=torch.contiguous_format)
    return TrainResult(step, time.perf_counter() - t0, best_score, best_step, history, cancelled, best_is_average)
