"""Retraining on a user's own annotations: what the Train widget and ``seglab train`` share.

:func:`prepare` checks every input and builds a :class:`FinetunePlan` before any training
starts (each problem is a :class:`~seglab.errors.SeglabError` with a specific message);
:func:`finetune_iter` trains the plan's model, re-tunes its thresholds and saves it
atomically, yielding :class:`FinetuneEvent` progress. Setting the ``stop`` event ends
training (and threshold tuning) early and still saves the best weights so far.

A time budget covers the whole run up to the saved model: the start model is scored,
the cost of threshold tuning is measured on a few of the tuning images and reserved
out of the budget (at most :data:`TUNE_SHARE` of it; with less, fewer replay crops and a
random part of the grid are tried), and tuning stops at the budget's end.

Nothing here depends on the family: targets, loss and the threshold search grid come
from the model (:meth:`make_targets`, :meth:`loss`, ``threshold_grid``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seglab.errors import SeglabError, SeglabWarning
from seglab.evaluation import AnnotatedImage, ap50, grid_points, raw_output_iter, tune_thresholds_iter
from seglab.inference.denoise import steps_of
from seglab.inference.device import resolve_device
from seglab.inference.engine import TileRun, place_network, run_to_end
from seglab.inference.tiling import plane_borders, tile_context
from seglab.io.labels import int32_ids
from seglab.models.base import SegmentationModel
from seglab.models.families import family_class
from seglab.models.registry import ModelRegistry
from seglab.models.storage import check_replaceable, clone_state, new_model, save_model
from seglab.training.data import Augment, PatchSampler, PrefetchSampler, TrainPair, make_pair
from seglab.training.loop import TrainEvent, TrainSettings, train_iter
from seglab.training.replay import load_replay_set
from seglab.training.sizing import annotated_diameter, rescale_item, rescale_pair, training_factor

#: default length of a run, in seconds (the Train widget and ``seglab train``)
DEFAULT_TIME_BUDGET = 120.0
#: a time budget below this cannot be honoured (one step, tuning and saving take longer)
MIN_TIME_BUDGET = 1.0
#: most of a time budget that threshold tuning may take (the rest trains)
TUNE_SHARE = 0.25
#: seconds kept for saving the model at the end of a time budget (at most 5 % of it)
SAVE_SECONDS = 1.0
#: the start model's size model is kept after fine-tuning while its median absolute log error on the
#: user's pairs and a few replay crops, read from the fine-tuned encoder, is at most this (30 %).
#: Measured (unet-nuclei fine-tuned 20 s on x4 enlarged DSB2018 crops, three x4 val crops): dropping it
#: left ``auto`` to the object measures, which read the fragments (AP@0.5 0.49); keeping it (error
#: 0.23 on 21 samples) 0.69; the true diameter 0.73; the shipped model reads its own encoder at 0.07
SIZE_KEEP_ERROR = math.log(1.3)
#: replay crops (spread over the set) beside the user's pairs in that check, and the factors
SIZE_CHECK_REPLAY = 8
SIZE_CHECK_FACTORS = (0.5, 1.0, 2.0)
#: tuning images (and as many replay crops) timed to estimate the tuning's cost ...
PROBE_ITEMS = 2
#: ... for at most this share of the time budget (at least one image)
PROBE_SHARE = 0.1
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

Box = tuple[float, float, float, float]  # (y0, x0, y1, x1) in pixels of the image, end exclusive


@dataclass
class Annotation:
    """One annotated image as the user gave it.

    ``regions`` says where the annotation is complete: ``None`` (the whole image), a list
    of rectangles ``(y0, x0, y1, x1)`` in the image's pixel coordinates, or a boolean mask
    (``dtype=bool``) of the image's shape. Pixels outside the regions do not count in the loss.
    """

    image: np.ndarray
    labels: np.ndarray
    channel_axis: int | None = None
    regions: Sequence[Box] | np.ndarray | None = None
    name: str = "image"
    labels_name: str = "labels"


@dataclass
class FinetuneSettings:
    """How long and how to train. Give exactly one of ``time_budget`` (seconds) and ``epochs``.

    An epoch is as many patches as cover the annotated pixels once.
    """

    time_budget: float | None = None
    epochs: int | None = None
    #: AdamW learning rate; ``None``: the family's ``finetune_lr`` (3e-4; U-Net 1e-3)
    lr: float | None = None
    augment: bool = True
    device: str = "auto"
    patch_size: int = 128
    batch_size: int = 8
    validate_every: int = 20
    seed: int = 0
    #: keep the start model's batch-norm statistics (a few images would shift them for all others)
    freeze_norm_stats: bool = True
    #: L2-SP penalty towards the start model's weights (ignored when training from scratch)
    anchor_weight: float = 0.0
    #: keep the first levels of the start model's feature extractor (``model.encoder_levels()``,
    #: from the input down) fixed: they hold generic edge and texture filters, and not
    #: training them makes steps faster and forgets less (docs/benchmarks.md). 0 trains
    #: every weight; the model's number of levels or more keeps the whole encoder fixed
    freeze_levels: int = 2
    #: share of patches drawn from the start model's replay set (crops of its own training
    #: data, :mod:`seglab.training.replay`) so it keeps the kinds it knew; 0 turns it off
    replay: float = 0.5

    def check(self) -> None:
        if (self.time_budget is None) == (self.epochs is None):
            raise SeglabError("give either a time budget or a number of epochs")
        if self.time_budget is not None and not self.time_budget >= MIN_TIME_BUDGET:
            raise SeglabError(f"a time budget of {self.time_budget:g} s is too short for one training step; "
                              f"give at least {MIN_TIME_BUDGET:g} s")
        if self.epochs is not None and self.epochs < 1:
            raise SeglabError("the number of epochs must be at least 1")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise SeglabError(f"the learning rate must be a positive number, got {self.lr}")
        if not 0.0 <= self.replay < 1.0:
            raise SeglabError(f"the replay share must be at least 0 and below 1, got {self.replay}")
        if isinstance(self.freeze_levels, bool) or not isinstance(self.freeze_levels, int) or self.freeze_levels < 0:
            raise SeglabError(f"the number of fixed encoder levels must be a whole number >= 0, got {self.freeze_levels!r}")
        if self.patch_size < 16 or self.batch_size < 1:
            raise SeglabError("patch size must be at least 16 and batch size at least 1")


@dataclass
class FinetunePlan:
    """Checked inputs, ready to train: the model, its training pairs and where it will be saved."""

    model: SegmentationModel
    out: Path
    overwrite: bool
    sampler: PatchSampler
    train: TrainSettings
    tune_items: list[AnnotatedImage]
    validation: list[AnnotatedImage]
    provenance: dict[str, Any]
    settings: FinetuneSettings
    from_scratch: bool
    #: the replay set's crops (empty without replay): thresholds tuned on the training pairs must suit them too
    replay_items: list[AnnotatedImage] = field(default_factory=list)


@dataclass
class FinetuneEvent:
    """Progress: ``stage`` is ``baseline``, ``train``, ``tune`` or ``save``; ``train`` holds the loop's
    event; ``tune`` events count ``done`` of ``total`` tuning steps (``fraction`` is the stage's)."""

    stage: str
    fraction: float
    train: TrainEvent | None = None
    val_score: float | None = None
    done: int = 0
    total: int = 0


@dataclass
class FinetuneResult:
    """What a run produced: the saved folder (``None`` when stopped before the first step)."""

    path: Path | None
    model: SegmentationModel
    steps: int
    seconds: float
    stopped: bool
    scores: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


# ---- checks -------------------------------------------------------------
def check_model_name(name: str, registry: ModelRegistry) -> None:
    """A new model's name: a plain folder name that no built-in model has."""
    if not name or not _NAME_OK.match(name):
        raise SeglabError(f"model name {name!r} is not usable: use letters, digits and . _ + - "
                          "(starting with a letter or digit)")
    builtin = {m.name for m in registry.list() if m.source == "builtin"}
    if name in builtin:
        raise SeglabError(f"{name!r} is the name of a built-in model; choose another name")


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse an existing model unless ``overwrite``; make sure its folder can be written."""
    if out.exists() and not overwrite:
        raise SeglabError(f"a model named {out.name!r} already exists in {out.parent}; "
                          "choose another name or allow overwriting")
    if overwrite:
        check_replaceable(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as e:
        raise SeglabError(f"cannot write models to {out.parent}: {e.strerror or e}") from None


def _check_labels(labels: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.number):
        raise SeglabError(f"{what} must hold integer object ids, got {labels.dtype}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.all(np.mod(labels, 1) == 0):
            raise SeglabError(f"{what} must hold integer object ids, got non-integer {labels.dtype} values")
    if labels.ndim != 2:
        raise SeglabError(f"{what} has shape {labels.shape}; training takes 2D images (pick one plane)")
    if labels.size and labels.min() < 0:
        raise SeglabError(f"{what} contains negative values")
    return int32_ids(labels)


def _spatial_shape(image: np.ndarray, channel_axis: int | None) -> tuple[int, ...]:
    shape = tuple(np.shape(image))
    if channel_axis is None:
        return shape
    ax = channel_axis % len(shape)
    return shape[:ax] + shape[ax + 1:]


def regions_mask(regions: Sequence[Box] | np.ndarray | None, shape: tuple[int, int], what: str) -> np.ndarray | None:
    """Boolean mask of the annotated area; ``None`` means the whole image counts."""
    if regions is None:
        return None
    if isinstance(regions, np.ndarray) and regions.dtype == bool:
        if regions.shape != shape:
            raise SeglabError(f"the region mask of {what} has shape {regions.shape}, the image {shape}")
        mask = regions.astype(bool)
        if not mask.any():
            raise SeglabError(f"the region mask of {what} is empty")
        return mask
    boxes = list(regions)
    if not boxes:
        return None
    mask = np.zeros(shape, dtype=bool)
    h, w = shape
    for i, box in enumerate(boxes, start=1):
        y0, x0, y1, x1 = (float(v) for v in box)
        y0, y1 = sorted((y0, y1))
        x0, x1 = sorted((x0, x1))
        r0, r1 = max(0, math.floor(y0)), min(h, math.ceil(y1))
        c0, c1 = max(0, math.floor(x0)), min(w, math.ceil(x1))
        if r1 <= r0 or c1 <= c0:
            raise SeglabError(f"rectangle {i} of {what} ({y0:g}, {x0:g})-({y1:g}, {x1:g}) lies outside "
                              f"the image ({h} x {w} pixels)")
        mask[r0:r1, c0:c1] = True
    return mask


def _objects_in(labels: np.ndarray, valid: np.ndarray | None) -> int:
    ids = labels if valid is None else labels[valid]
    return int(np.count_nonzero(np.unique(ids)))


def _check_annotation(a: Annotation, index: int, role: str = "pair") -> tuple[np.ndarray, np.ndarray | None, int]:
    what = f"{role} {index} ('{a.name}' / '{a.labels_name}')"
    labels = _check_labels(a.labels, f"labels '{a.labels_name}'")
    spatial = _spatial_shape(a.image, a.channel_axis)
    if spatial != labels.shape:
        raise SeglabError(f"image '{a.name}' {spatial} and labels '{a.labels_name}' {labels.shape} "
                          "differ in shape")
    valid = regions_mask(a.regions, labels.shape, what)
    return labels, valid, _objects_in(labels, valid)


def _crops(image: np.ndarray, labels: np.ndarray, ca: int | None, valid: np.ndarray | None,
           name: str) -> list[AnnotatedImage]:
    """Annotated images to tune thresholds on: the whole image, or each complete region's box."""
    if valid is None:
        return [AnnotatedImage(image, labels, ca, name)]
    from scipy import ndimage as ndi

    comp, _ = ndi.label(valid)
    out = []
    for k, sl in enumerate(ndi.find_objects(comp), start=1):
        if sl is None or min(s.stop - s.start for s in sl) < 8:
            continue
        out.append(AnnotatedImage(image, labels, ca).crop(*sl, name=f"{name}[{k}]"))
    return out


# ---- plan ---------------------------------------------------------------
def prepare(
    annotations: Sequence[Annotation],
    *,
    out: str | os.PathLike,
    start: str | os.PathLike | None = None,
    family: str | None = None,
    name: str | None = None,
    settings: FinetuneSettings | None = None,
    validation: Sequence[Annotation] = (),
    overwrite: bool = False,
    registry: ModelRegistry | None = None,
) -> FinetunePlan:
    """Check everything and build the plan; raises :class:`SeglabError` before any training."""
    settings = settings or FinetuneSettings(time_budget=DEFAULT_TIME_BUDGET)
    registry = registry or ModelRegistry()
    settings.check()
    if (start is None) == (family is None):
        raise SeglabError("start from a model or from scratch with a family (one of the two)")
    if family is not None:
        family_class(family)
    out = Path(out).expanduser()
    name = name or out.name
    check_model_name(name, registry)
    if name != out.name:
        raise SeglabError(f"the model's name is its folder's name: {name!r} would be saved as {out.name!r} and "
                          f"found only under that name; give the folder {out.parent / name} or the name {out.name!r}")
    check_output(out, overwrite)
    if not annotations:
        raise SeglabError("no annotations: add at least one pair of image and labels")
    checked = [_check_annotation(a, i) for i, a in enumerate(annotations, start=1)]
    n_objects = sum(n for _, _, n in checked)
    if n_objects == 0:
        raise SeglabError("no annotations: the labels hold no objects"
                          + (" inside the rectangles" if any(v is not None for _, v, _ in checked) else ""))
    if n_objects == 1:
        raise SeglabError("only one object is annotated; annotate at least two (more is better)")
    for i, (a, (_, valid, n)) in enumerate(zip(annotations, checked), start=1):
        if n == 0:  # (an empty or forgotten labels layer beside annotated ones)
            warnings.warn(f"pair {i} ('{a.name}' / '{a.labels_name}') has no objects"
                          + (" inside its rectangles" if valid is not None else "")
                          + ": all of it is trained as background; annotate its objects or leave the pair out",
                          SeglabWarning, stacklevel=2)
    val_checked = [_check_annotation(v, i, "validation pair") for i, v in enumerate(validation, start=1)]
    if validation and sum(n for _, _, n in val_checked) == 0:
        raise SeglabError("the validation labels hold no objects")

    parent: dict[str, Any] | None = None
    if start is not None:
        folder = registry.resolve(start)
        model = registry.load(folder)
        parent = {"name": folder.name, "config_name": model.config.name, "path": str(folder), "family": model.family,
                  "seglab_version": model.config.seglab_version, "scores": model.config.scores}
    else:
        model = new_model(family, name)
    divisor = model.size_divisor
    patch = max(divisor, settings.patch_size // divisor * divisor)

    # objects are brought to the start model's size (issue 11); from scratch the model takes the user's
    user_diameter = annotated_diameter([(lab, val) for lab, val, _ in checked])
    factor = training_factor(model.config.object_diameter if parent is not None else None, user_diameter)
    if parent is None and user_diameter is not None:
        model.config.object_diameter = round(user_diameter, 2)
    pairs: list[TrainPair] = []
    tune_items: list[AnnotatedImage] = []
    for a, (labels, valid, _) in zip(annotations, checked):
        pairs.append(rescale_pair(make_pair(a.image, labels, model.config.input_channels, model.config.normalization,
                                            channel_axis=a.channel_axis, valid=valid, name=a.name,
                                            denoise_steps=steps_of(model.config)), factor))
        tune_items += [rescale_item(c, factor) for c in _crops(np.asarray(a.image), labels, a.channel_axis, valid,
                                                                a.name)]
    val_items = []
    for v, (labels, valid, _) in zip(validation, val_checked):
        make_pair(v.image, labels, model.config.input_channels, model.config.normalization,
                  channel_axis=v.channel_axis, name=v.name)  # the same channel checks as training
        val_items += [rescale_item(c, factor) for c in _crops(np.asarray(v.image), labels, v.channel_axis, valid,
                                                              v.name)]

    annotated_px = sum(int(p.labels.size if p.valid is None else p.valid.sum()) for p in pairs)
    replay_name = model.config.training.get("replay_set") if parent is not None else None
    replay_items = []
    if replay_name and settings.replay > 0:
        try:
            replay_items = load_replay_set(replay_name)
        except SeglabError as e:
            raise SeglabError(f"{e} (named by the start model); set the replay share to 0 to fine-tune "
                              "without it") from None
    replay = _replay_pairs(model, replay_items, pairs, settings.replay)
    user_share = 1.0 - settings.replay if replay else 1.0
    steps = None
    if settings.epochs is not None:
        per_epoch = max(1, math.ceil(annotated_px / (user_share * settings.batch_size * patch * patch)))
        steps = settings.epochs * per_epoch
    augment = Augment() if settings.augment else Augment(flips=False, scale_range=(1.0, 1.0), intensity=False,
                                                         noise_std=0.0)
    sampler = PatchSampler(pairs + replay, patch, augment, seed=settings.seed)
    frozen = freeze_levels(model, settings.freeze_levels) if parent is not None else []
    lr = settings.lr if settings.lr is not None else type(model).finetune_lr
    train = TrainSettings(steps=steps, time_budget=settings.time_budget, batch_size=settings.batch_size,
                          lr=lr, warmup_steps=5, validate_every=settings.validate_every,
                          seed=settings.seed, min_steps=1,
                          freeze_norm_stats=settings.freeze_norm_stats and parent is not None,
                          anchor_weight=settings.anchor_weight if parent is not None else 0.0,
                          weight_decay=0.0 if parent is not None and settings.anchor_weight > 0 else 1e-4)
    model.config.name = name
    provenance = {
        "kind": "from scratch" if parent is None else "fine-tuned",
        "parent": parent,
        "family": model.family,
        "pairs": [_describe(a, lab, val, n) for a, (lab, val, n) in zip(annotations, checked)],
        "validation": [_describe(v, lab, val, n) for v, (lab, val, n) in zip(validation, val_checked)],
        "settings": {**asdict(settings), "lr": lr, "patch_size": patch, "steps": steps},
        "replay": ({"set": replay_name, "share": settings.replay, "crops": len(replay)} if replay else None),
        "replay_set": replay_name,
        "frozen_levels": frozen,
        "user_object_diameter": None if user_diameter is None else round(user_diameter, 2),
        "rescaled_by": factor,
        # the sizes the start model saw, still those it sees (pairs are rescaled to them)
        "object_diameter_range": model.config.training.get("object_diameter_range") if parent is not None else None,
    }
    return FinetunePlan(model, out, overwrite, sampler, train, tune_items, val_items, provenance, settings,
                        parent is None, replay_items)


def freeze_levels(model: SegmentationModel, n: int) -> list[str]:
    """Stop gradients to the first ``n`` levels of the model's feature extractor; returns their prefixes."""
    levels = tuple(model.encoder_levels()[:n])
    if levels:
        for name, p in model.network.named_parameters():
            if name.startswith(levels):
                p.requires_grad_(False)
    return list(levels)


def _replay_pairs(model: SegmentationModel, items: list[AnnotatedImage], pairs: list[TrainPair],
                  share: float) -> list[TrainPair]:
    """The replay crops as training pairs; reweights ``pairs`` so replay gets ``share`` of the patches."""
    if not items:
        return []
    for p in pairs:
        p.weight = (1.0 - share) / len(pairs)
    return [make_pair(it.image, it.labels, model.config.input_channels, model.config.normalization,
                      channel_axis=it.channel_axis, weight=share / len(items), name=f"replay:{it.name}",
                      denoise_steps=steps_of(model.config))
            for it in items]


def _describe(a: Annotation, labels: np.ndarray, valid: np.ndarray | None, n: int) -> dict[str, Any]:
    d: dict[str, Any] = {"image": a.name, "image_shape": list(np.shape(a.image)), "labels": a.labels_name,
                         "labels_shape": list(labels.shape), "objects": n}
    if valid is not None:
        d["annotated_pixels"] = int(valid.sum())
        d["regions"] = len(a.regions) if not isinstance(a.regions, np.ndarray) else "mask"
    return d


# ---- run ----------------------------------------------------------------
@dataclass
class TuningPlan:
    """What tuning will try within the budget: the images, the replay crops kept and the
    seconds reserved for it (``skip``: tuning would not fit; the thresholds stay)."""

    items: list[AnnotatedImage]
    keep: list[AnnotatedImage]
    reserve: float
    skip: bool = False
    estimate: float = 0.0


@dataclass
class TuningCost:
    """Measured cost of tuning's two kinds of work, per pixel and per image (estimates take the
    larger of the two, so both size-bound and per-image costs such as Mask R-CNN's heads count)."""

    raw_per_px: float
    post_per_px: float
    raw_per_item: float
    post_per_item: float
    #: the network sees each image with this context on every side (raw cost per pixel counts it)
    context: int = 0

    def of(self, items: Sequence[AnnotatedImage], n_raw: int, n_points: int) -> float:
        px, n = _pixels(items), len(items)
        raw = max(self.raw_per_px * _pixels(items, self.context), self.raw_per_item * n)
        post = max(self.post_per_px * px, self.post_per_item * n)
        return n_raw * raw + n_points * post


def _pixels(items: Sequence[AnnotatedImage], context: int = 0) -> int:
    """Pixels of the images, each grown by ``context`` on every side."""
    return sum((it.labels.shape[0] + 2 * context) * (it.labels.shape[1] + 2 * context) for it in items)


def _spread(items: Sequence[AnnotatedImage], k: int) -> list[AnnotatedImage]:
    """``k`` of ``items``, evenly spaced (all when ``k`` is not smaller)."""
    if k >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, k).round().astype(int)]


def _probe_tuning(model: SegmentationModel, items: Sequence[AnnotatedImage], device: str,
                  stop: threading.Event | None, limit: float) -> Generator[FinetuneEvent, None, TuningCost | None]:
    """Time the raw output and one postprocessing on ``items`` with the current thresholds,
    stopping after ``limit`` seconds (at least one item); ``None`` when stopped."""
    th = model.thresholds()
    dev = resolve_device(device)
    place_network(model, dev)
    run = TileRun(dev)
    raw_s = post_s = 0.0
    done: list[AnnotatedImage] = []
    if items:  # untimed warm-up on a small crop (first-call costs such as batch-norm folding)
        small = items[0].crop(slice(0, 64), slice(0, 64))
        warm = yield from _probe_events(raw_output_iter(model, small, th, run), stop)
        if warm is _STOPPED:
            return None
        run_to_end(model.postprocess_iter(warm, th, small.labels.shape))
    t0 = time.perf_counter()
    for it in items:
        if done and time.perf_counter() - t0 > limit:
            break
        t = time.perf_counter()
        raw = yield from _probe_events(raw_output_iter(model, it, th, run), stop)
        if raw is _STOPPED:
            return None
        raw_s += time.perf_counter() - t
        t = time.perf_counter()
        run_to_end(model.postprocess_iter(raw, th, it.labels.shape))
        post_s += time.perf_counter() - t
        done.append(it)
        yield FinetuneEvent("baseline", 0.0)
    # what the network sees around an image: the engine's border
    context = plane_borders(0, 0, tile_context(model), int(model.image_border), None, int(model.output_stride))[0][0]
    return TuningCost(raw_s / max(_pixels(done, context), 1), post_s / max(_pixels(done), 1),
                      raw_s / len(done), post_s / len(done), context)


_STOPPED = object()


def _probe_events(gen: Generator[Any, None, Any], stop: threading.Event | None
                  ) -> Generator[FinetuneEvent, None, Any]:
    """Drive an engine generator, yielding ``baseline`` events; its result, or ``_STOPPED``."""
    try:
        while True:
            try:
                next(gen)
            except StopIteration as s:
                return s.value
            yield FinetuneEvent("baseline", 0.0)
            if stop is not None and stop.is_set():
                return _STOPPED
    finally:
        gen.close()


def plan_tuning(model: SegmentationModel, items: list[AnnotatedImage], keep: list[AnnotatedImage],
                cost: TuningCost, budget: float) -> TuningPlan:
    """Seconds to reserve for tuning out of ``budget`` and the replay crops to tune on.

    The full search costs ``n_raw`` raw outputs and ``n_points`` postprocessings of every
    image (``n_raw``: distinct raw outputs the grid needs). When that exceeds
    :data:`TUNE_SHARE` of the budget, the reserve is that share and replay crops are
    dropped (evenly, keeping at least four) until the raw outputs take at most half of it;
    the search then tries a random part of the grid until its deadline. When even the
    current thresholds' score (one raw output and postprocessing of the images kept) does
    not fit in the share, tuning is skipped.
    """
    grid = type(model).threshold_grid
    points = grid_points(model.thresholds(), grid)
    n_raw = len({tuple(sorted(model.raw_thresholds(p, grid).items())) for p in points})
    cap = TUNE_SHARE * budget
    full = cost.of(items + keep, n_raw, len(points))
    if full * 1.2 <= cap:
        return TuningPlan(items, list(keep), full * 1.2, estimate=full)
    k = len(keep)
    while k > min(4, len(keep)) and cost.of(items + _spread(keep, k), n_raw, 0) > cap / 2:
        k = max(min(4, len(keep)), k * 3 // 4)
    kept = _spread(keep, k)
    first = cost.of(items + kept, 1, 1)
    if first > cap:
        return TuningPlan(items, kept, 0.0, skip=True, estimate=first)
    return TuningPlan(items, kept, cap, estimate=full)


def finetune_iter(
    plan: FinetunePlan, stop: threading.Event | None = None
) -> Generator[FinetuneEvent, None, FinetuneResult]:
    """Train, re-tune thresholds, save. ``stop.set()`` ends training (or tuning) early; the best
    weights (and the thresholds they had) are saved.

    With a time budget, the whole run up to the saved model fits in it: scoring the start
    model, measuring what tuning costs, training (what is left after the tuning, the last
    validation and the save are reserved), tuning (ends at the budget with the best point so
    far) and saving.
    """
    model, dev, val = plan.model, plan.settings.device, plan.validation
    t0 = time.perf_counter()
    budget = plan.settings.time_budget
    before = None
    val_seconds = 0.0
    if val and not plan.from_scratch:
        yield FinetuneEvent("baseline", 0.0)
        before = ap50(model, val, device=dev)
        val_seconds = time.perf_counter() - t0
        yield FinetuneEvent("baseline", 0.0, val_score=before)
    start_state = clone_state(model)
    if stop is not None and stop.is_set():  # cancelled before training began: nothing to save
        return FinetuneResult(None, model, 0, time.perf_counter() - t0, True)
    tune_on = list(val or plan.tune_items)
    keep = [] if val else list(plan.replay_items)
    grid = type(model).threshold_grid
    tuning: TuningPlan | None = TuningPlan(tune_on, keep, 0.0) if grid and tune_on else None
    train_settings = plan.train
    if budget is not None:
        if tuning is not None:
            probe = [x for pair in itertools.zip_longest(_spread(tune_on, PROBE_ITEMS), _spread(keep, PROBE_ITEMS))
                     for x in pair if x is not None]
            cost = yield from _probe_tuning(model, probe, dev, stop, PROBE_SHARE * budget)
            if cost is None:  # stopped while measuring: nothing trained, nothing to save
                return FinetuneResult(None, model, 0, time.perf_counter() - t0, True)
            tuning = plan_tuning(model, tune_on, keep, cost, budget)
        reserve = (tuning.reserve if tuning else 0.0) + val_seconds + min(SAVE_SECONDS, 0.05 * budget)
        left = budget - (time.perf_counter() - t0) - reserve
        train_settings = dataclasses.replace(plan.train, time_budget=max(left, 0.01))
    validate = (lambda m: ap50(m, val, device=dev)) if val else None
    # the next batches (augmentation, targets) are made in a thread while the network trains; the
    # same batches in the same order as drawing them in the loop
    sampler = PrefetchSampler(plan.sampler)
    gen = train_iter(model, sampler, train_settings, device=dev, validate=validate, report_every=1)
    last: TrainEvent | None = None
    best_val, history, stopped = None, [], False
    try:
        while True:
            try:
                last = next(gen)
            except StopIteration as s:
                best_val, history = s.value.best_score, s.value.history
                break
            yield FinetuneEvent("train", last.fraction, last, last.val_score)
            if stop is not None and stop.is_set():
                stopped = True
                best_val = last.best_score
                break
    finally:
        gen.close()  # restores the best weights seen so far
        sampler.close()
    steps = 0 if last is None else last.step
    train_seconds = time.perf_counter() - t0
    scores: dict[str, Any] = {}
    if val:
        scores = {"validation_images": [v.name for v in val], "ap50_before": before, "ap50_best_checkpoint": best_val}
        if before is not None and best_val is not None and best_val < before:
            model.network.load_state_dict(start_state)  # training never beat the start model on validation
            scores["kept_start_weights"] = True
    if tuning is not None and tuning.skip:
        scores["tuning"] = {"skipped": f"scoring the current thresholds alone would take about "
                                       f"{tuning.estimate:.0f} s, more than {TUNE_SHARE:.0%} of the time budget"}
        yield FinetuneEvent("tune", 1.0, done=1, total=1)
    elif tuning is not None:
        deadline = None if budget is None else t0 + budget - min(SAVE_SECONDS, 0.05 * budget)
        tuned = yield from _tune(model, tuning, dev, deadline, stop, scores)
        if tuned is not None:
            model.config.thresholds = tuned
            scores["thresholds_tuned_on"] = ("validation images" if val else "training images (regions)"
                                             + (", AP@0.5 on the replay crops kept within 0.01" if tuning.keep else ""))
    else:
        yield FinetuneEvent("tune", 1.0)
    yield FinetuneEvent("save", 1.0)
    cfg = model.config
    parent = plan.provenance["parent"]
    names = ", ".join(p["image"] for p in plan.provenance["pairs"])
    cfg.description = (f"{'trained from scratch' if parent is None else 'fine-tuned from ' + parent['name']} "
                       f"on {len(plan.provenance['pairs'])} image(s): {names}")
    seconds = time.perf_counter() - t0
    cfg.training = {**plan.provenance, "steps": steps, "seconds": round(seconds, 1),
                    "training_seconds": round(train_seconds, 1), "stopped_early": stopped,
                    "device": str(resolve_device(dev)), "torch": torch.__version__,
                    "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    cfg.scores = scores
    if model.size_model is not None and steps > 0 and not scores.get("kept_start_weights"):
        # the size model reads the encoder it was fitted on, and these weights moved: kept only while
        # it still reads sizes from them (else "auto" falls back to its object measures alone; fit
        # again: python -m seglab.training.size_fit <folder>)
        check = check_size_model(model, plan.tune_items + _spread(plan.replay_items, SIZE_CHECK_REPLAY))
        if not check.get("kept"):
            model.size_model = None
        cfg.training["size_model"] = check
    path = save_model(model, plan.out, overwrite=plan.overwrite)
    return FinetuneResult(path, model, steps, time.perf_counter() - t0, stopped or bool(scores.get("tuning_stopped")),
                          scores, history)


def check_size_model(model: SegmentationModel, items: Sequence[AnnotatedImage]) -> dict[str, Any]:
    """Whether the start model's size model still reads object sizes from the fine-tuned encoder:
    its median error on ``items`` (the user's pairs and a few replay crops) resized by
    :data:`SIZE_CHECK_FACTORS`, against :data:`SIZE_KEEP_ERROR`; what was measured, and ``kept``."""
    from seglab.training.size_fit import size_samples_iter

    t0 = time.perf_counter()
    try:
        X, y, _, _ = run_to_end(size_samples_iter(model, items, SIZE_CHECK_FACTORS, windows=1))
    except SeglabError as e:  # no image with enough objects to check it on, say
        return {"kept": False, "reason": f"not kept: fitted on the start model's encoder, which training changed, "
                                         f"and it could not be checked on the new one ({e})"}
    err = float(np.median(np.abs(np.array([model.size_model.log_ratio(v) for v in X]) - y)))
    kept = err <= SIZE_KEEP_ERROR
    return {"kept": kept, "median_abs_log_error_after_training": round(err, 4), "samples": int(len(y)),
            "factors": list(SIZE_CHECK_FACTORS), "keep_if_at_most": round(SIZE_KEEP_ERROR, 4),
            "seconds": round(time.perf_counter() - t0, 2),
            "reason": ("checked on the fine-tuned encoder" if kept else
                       "not kept: fitted on the start model's encoder, which training changed, and off by more "
                       "than keep_if_at_most on it")}


def _tune(model: SegmentationModel, tuning: TuningPlan, device: str, deadline: float | None,
          stop: threading.Event | None, scores: dict[str, Any]) -> Generator[FinetuneEvent, None, dict | None]:
    """Tune thresholds per ``tuning`` until ``deadline``, yielding ``tune`` events; records what it
    did in ``scores``. Returns the best thresholds, or ``None`` when stopped (keep the current ones)."""
    gen = tune_thresholds_iter(model, tuning.items, type(model).threshold_grid, device=device, keep=tuning.keep,
                               deadline=deadline)
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as s:
                best, ap, trials = s.value
                break
            yield FinetuneEvent("tune", ev.done / ev.total if ev.total else 1.0, done=ev.done, total=ev.total)
            if stop is not None and stop.is_set():
                scores["tuning_stopped"] = True
                return None
    finally:
        gen.close()
    scores["ap50_tuned_thresholds"] = ap
    scores["tuning"] = {"points_tried": len(trials), "points": len(grid_points(model.thresholds(),
                                                                               type(model).threshold_grid)),
                        "replay_crops": len(tuning.keep), "reserved_seconds": round(tuning.reserve, 1)}
    return best


def finetune(plan: FinetunePlan) -> FinetuneResult:
    """Run :func:`finetune_iter` to the end (no progress)."""
    return run_to_end(finetune_iter(plan))
