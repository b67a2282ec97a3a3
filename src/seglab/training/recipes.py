"""Recipes that train the built-in models from scratch, kept here so anyone can retrain them.

    python -m seglab.training.recipes unet-nuclei --data ../shared/data/dsb2018 \
        --time-budget 6000 --out runs/unet-nuclei
    python -m seglab.training.recipes stardist-nuclei --data ../shared/data/dsb2018 \
        --init-from unet-nuclei --time-budget 5000 --out runs/stardist-nuclei
    python -m seglab.training.recipes maskrcnn-nuclei --data ../shared/data/dsb2018 \
        --time-budget 36000 --out runs/maskrcnn-nuclei [--init runs/maskrcnn-nuclei/best]
    python -m seglab.training.recipes stardist-he --data ../shared/data/dsb2018 \
        --monuseg ../shared/data/monuseg-kumar --time-budget 4800 --out runs/stardist-he

(``stardist-he``, the H&E model that reads RGB, is in :mod:`seglab.training.recipe_he`.)

It trains, then tunes the thresholds and scores ``val`` (``finish``); ``finish-<recipe>``
repeats only that last part for a finished run (``--out`` holding ``best/``).

Trains on the ``train`` split only. Every tenth training image (per channel
group, in id order) is held out as a *tune* set that picks the best checkpoint
and the thresholds; ``val`` is only scored once, at the end, for the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from seglab.datasets import image_kind, load_split, read_manifest
from seglab.evaluation import ap50, evaluate_model, tune_thresholds
from seglab.inference.denoise import steps_of
from seglab.inference.device import device_name
from seglab.inference.diameter import equivalent_diameters
from seglab.models.base import SegmentationModel
from seglab.models.maskrcnn_net import DEFAULT_ARCHITECTURE as MASKRCNN_ARCHITECTURE
from seglab.models.storage import load_model, new_model, save_model
from seglab.training.data import Augment, PatchSampler, background_sampler, make_pair
from seglab.training.loop import TrainSettings, train_iter
from seglab.training.replay import DSB2018_REPLAY

UNET_NUCLEI = {
    "name": "unet-nuclei",
    "family": "unet",
    "description": "U-Net for nuclei (fluorescence, brightfield, H&E); DSB2018, trained from scratch",
    # the shipped layout (session 19): a stride-2 stem, every level at half resolution or less,
    # full resolution again through a sub-pixel layer (docs/models/unet-nuclei.md)
    "architecture": {"widths": [16, 32, 64, 128, 256], "convs_per_block": 2, "stem": 16, "full_width": 8},
    "tile_context": 32,
    "patch_size": 256,
    "batch_size": 8,
    "lr": 2e-3,
    "colour_weight": 2.0,
    # the brightfield images are where its `auto` missed at 2-4x (session 11), as StarDist's did
    "bright_weight": 6.0,
    "augment": {"scale_range": [0.7, 1.4], "noise_std": 0.03, "invert_prob": 0.1},
}

MASKRCNN_NUCLEI = {
    "name": "maskrcnn-nuclei",
    "family": "maskrcnn",
    "description": "Mask R-CNN (torchvision, compact FPN backbone) for nuclei; DSB2018, trained from scratch",
    "architecture": dict(MASKRCNN_ARCHITECTURE),
    # the context exceeds half the largest object (about 80 px), so an object whose box
    # centre is in a tile's core lies whole inside that tile; 128 (not 96): near-tied nested
    # detections then resolve as untiled (docs/benchmarks.md, "Mask R-CNN tile context")
    "tile_context": 128,
    "patch_size": 256,
    "batch_size": 4,
    "lr": 1e-3,
    "warmup_steps": 200,
    "colour_weight": 2.0,
    # brightfield was its worst kind (val AP@0.5 0.297 in session 12), as it was the dense models'
    "bright_weight": 6.0,
    "augment": {"scale_range": [0.7, 1.4], "noise_std": 0.03, "invert_prob": 0.1},
}

STARDIST_NUCLEI = {
    "name": "stardist-nuclei",
    "family": "stardist",
    "description": "StarDist-style star-convex polygons (32 rays) for nuclei; DSB2018, trained here",
    "architecture": {"widths": [12, 24, 48, 96, 192], "convs_per_block": 2, "n_rays": 32, "grid": 2,
                     "head_width": 64},
    "tile_context": 64,
    "patch_size": 256,
    "batch_size": 8,
    "lr": 2e-3,
    "colour_weight": 2.0,
    # 13 of the 597 train images; at weight 1 they were 2 % of the patches (session 11)
    "bright_weight": 6.0,
    "augment": {"scale_range": [0.7, 1.4], "noise_std": 0.03, "invert_prob": 0.1},
}

RECIPES = {"unet-nuclei": UNET_NUCLEI, "stardist-nuclei": STARDIST_NUCLEI, "maskrcnn-nuclei": MASKRCNN_NUCLEI}


def transfer_weights(model, source) -> list[str]:
    """Copy every tensor of ``source``'s network whose name and shape match into ``model``'s
    (e.g. a U-Net encoder/decoder into a StarDist-style network); returns the names copied."""
    src = source.network.state_dict()
    dst = model.network.state_dict()
    copied = [k for k, v in dst.items() if k in src and src[k].shape == v.shape]
    dst.update({k: src[k] for k in copied})
    model.network.load_state_dict(dst)
    return copied


def image_weight(recipe: dict, item) -> float:
    """How often a training image is drawn, relative to a grey fluorescence image: the recipe's
    ``colour_weight`` for colour images, its ``bright_weight`` (default 1) for grey images with a
    bright background (brightfield), which DSB2018 has few of."""
    kind = image_kind(item)
    if kind == "colour (stained)":
        return float(recipe["colour_weight"])
    return float(recipe.get("bright_weight", 1.0)) if kind == "grey, bright background" else 1.0


def image_weights(recipe: dict) -> dict[str, float]:
    """The draw weights of :func:`image_weight` by kind, as a run records them."""
    return {"colour (stained)": float(recipe["colour_weight"]),
            "grey, bright background": float(recipe.get("bright_weight", 1.0))}


def split_train_tune(root: Path) -> tuple[list[str], list[str]]:
    """Ids of training images and of the held-out tune set (every tenth per channel group)."""
    rows = [r for r in read_manifest(root) if r["split"] == "train"]
    train, tune = [], []
    for ch in sorted({r["channels"] for r in rows}):
        group = sorted(r["id"] for r in rows if r["channels"] == ch)
        for i, rid in enumerate(group):
            (tune if i % 10 == 5 else train).append(rid)
    return train, tune


def seen_object_diameter(label_images, weights, scale_range) -> tuple[float | None, list[float] | None]:
    """Median equivalent diameter of the training objects at the scale the network sees them, and
    their 10th and 90th percentiles (``training["object_diameter_range"]``).

    Objects count as often as the sampler shows them (their image's weight over its area:
    patches are drawn by image weight at uniform positions), times the geometric mean of the
    scale augmentation (log-uniform over ``scale_range``).
    """
    values, w = [], []
    for lab, weight in zip(label_images, weights):
        d = equivalent_diameters(lab)
        values.append(d)
        w.append(np.full(d.size, float(weight) / max(np.asarray(lab).size, 1)))
    if not values or sum(v.size for v in values) == 0:
        return None, None
    v, w = np.concatenate(values), np.concatenate(w)
    lo, hi = (float(x) for x in scale_range)
    g = float(np.sqrt(lo * hi))
    order = np.argsort(v)
    cum = np.cumsum(w[order]) / w.sum()
    q = [round(float(v[order][np.searchsorted(cum, p)]) * g, 2) for p in (0.1, 0.5, 0.9)]
    return q[1], [q[0], q[2]]


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def run_logged(gen):
    """Drive a :func:`train_iter` generator to its end, logging each reported step; its result."""
    while True:
        try:
            ev = next(gen)
        except StopIteration as s:
            return s.value
        _log(f"step {ev.step} loss {ev.loss:.4f} {json.dumps({k: round(v, 4) for k, v in ev.parts.items()})} "
             f"lr {ev.lr:.2e} elapsed {ev.elapsed:.0f}s eta {ev.eta:.0f}s"
             + (f" val {ev.val_score:.4f}" if ev.val_score is not None else "")
             + (f" (trained {ev.val_parts['trained']:.4f}, average {ev.val_parts['average']:.4f})"
                if ev.val_parts else ""))


def where_trained(args: argparse.Namespace) -> dict:
    """The run facts on where a recipe trained: the device and the data worker processes."""
    return {"trained_on": device_name(args.device), "data_workers": args.workers}


def stops_before_finish(args: argparse.Namespace, name: str, out: Path) -> bool:
    """Whether the run ends after training (``--train-only``), saying how to finish it."""
    if args.train_only:
        _log(f"not finished (--train-only): finish-{name} --out {out} does it")
    return bool(args.train_only)


def train_recipe(args: argparse.Namespace, recipe: dict) -> None:
    """Train a built-in from its recipe (or from ``--init``), then :func:`finish` it."""
    root = Path(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_ids, tune_ids = split_train_tune(root)
    _log(f"train {len(train_ids)} images, tune {len(tune_ids)} images")
    train_items = load_split(root, "train", train_ids)
    tune_items = load_split(root, "train", tune_ids)[: args.max_eval_images]
    start_training: dict = {}
    if args.init:
        model = load_model(args.init)
        start_training = dict(model.config.training or {})
        _log(f"starting from weights in {args.init}")
    else:
        model = new_model(
            recipe["family"],
            recipe["name"],
            description=recipe["description"],
            architecture=recipe_architecture(recipe, args.architecture),
            tile_context=recipe["tile_context"],
        )
        if args.init_from:
            from seglab.models.registry import get_model

            copied = transfer_weights(model, get_model(args.init_from))
            _log(f"copied {len(copied)} tensors from {args.init_from}")
    model.config.name = recipe["name"]
    grey_normalization(model)
    if args.border_weight is not None:
        model.config.loss = {**model.config.loss, "border_weight": args.border_weight}
    pairs = [
        make_pair(it.image, it.labels, model.config.input_channels, model.config.normalization,
                  channel_axis=it.channel_axis, weight=image_weight(recipe, it),
                  name=it.name, denoise_steps=steps_of(model.config))
        for it in train_items
    ]
    teacher = None
    if args.teacher:
        from seglab.models.registry import get_model
        from seglab.training.distill import check_pair

        teacher = get_model(args.teacher)
        check_pair(teacher, model)
        model.config.loss = {**model.config.loss, "distill_weight": args.distill_weight}
        _log(f"teacher: {args.teacher} (its maps{' over 8 orientations' if args.teacher_augment else ''} as soft "
             f"targets, weight {args.distill_weight})")
    aug = recipe["augment"]
    model.config.object_diameter, size_range = seen_object_diameter(
        [p.labels for p in pairs], [p.weight for p in pairs], aug["scale_range"])
    _log(f"object diameter (median, as seen in training): {model.config.object_diameter} px, "
         f"10th-90th percentile {size_range}")
    settings = TrainSettings(steps=args.steps, time_budget=args.time_budget, batch_size=args.batch_size or recipe["batch_size"],
                             lr=args.lr or recipe["lr"], validate_every=args.validate_every, seed=args.seed,
                             warmup_steps=recipe.get("warmup_steps", 50), ema_decay=args.ema_decay)
    # the next batches (augmentation, targets) are made in a thread (or --workers processes)
    # while the network trains
    sampler = background_sampler(
        PatchSampler(pairs, recipe["patch_size"],
                     Augment(scale_range=tuple(aug["scale_range"]), noise_std=aug["noise_std"],
                             invert_prob=aug["invert_prob"], blur_prob=aug.get("blur_prob", 0.0),
                             blur_sigma=aug.get("blur_sigma", 2.5), saturate_prob=aug.get("saturate_prob", 0.0)),
                     seed=args.seed, teacher=teacher, teacher_augment=args.teacher_augment),
        settings.batch_size, model, args.workers)

    def on_best(m, step, score):
        m.config.training = {"checkpoint_step": step, "tune_ap50": score}
        if args.ema_decay:
            m.config.training["weight_average_decay"] = args.ema_decay
        save_model(m, out / "best", overwrite=True)
        _log(f"new best at step {step}: tune AP@0.5 {score:.4f} (saved)")

    gen = train_iter(model, sampler, settings, device=args.device,
                     validate=lambda m: ap50(m, tune_items, device=args.device), on_best=on_best,
                     report_every=50)
    try:
        result = run_logged(gen)
    finally:
        sampler.close()
    _log(f"training done: {result.steps} steps in {result.elapsed:.0f}s, best tune AP@0.5 {result.best_score} at {result.best_step}")
    run = {"steps": result.steps, "seconds": round(result.elapsed, 1), "best_step": result.best_step,
           "tune_ap50_best_checkpoint": result.best_score, "n_train_images": len(train_ids), "lr": settings.lr,
           "image_weights": image_weights(recipe), "augment": recipe["augment"], **where_trained(args)}
    if teacher is not None:
        run["teacher"] = {"model": str(args.teacher), "distill_weight": args.distill_weight,
                          **({"augment": True} if args.teacher_augment else {})}
    record_start(run, args, settings, result, start_training)
    (out / "train_result.json").write_text(json.dumps(run, indent=2))
    if stops_before_finish(args, recipe["name"], out):
        return
    finish(model, root, tune_items, out, recipe, args, run)


#: what a recipe run records of itself (``train_result.json``, and in the model's ``training``)
RUN_FACTS = ("steps", "seconds", "best_step", "tune_ap50_best_checkpoint", "tune_score_best_checkpoint",
             "n_train_images", "lr", "image_weights", "weight_average", "initialised_from",
             "backbone_initialised_from", "teacher", "monuseg_weight", "scale_range", "augment", "trained_on",
             "data_workers", "previous_phase")


def grey_normalization(model: SegmentationModel) -> None:
    """A grey recipe's model fills black padding beside a bright background (brightfield: a
    scanner's out-of-scan area, a rotated image's corners; in fluorescence black is the background
    and stays: :func:`seglab.inference.normalize.padding_of`), and on a dark background keeps bright
    debris from setting its high percentile (:func:`~seglab.inference.normalize.outlier_robust_high`)
    and the noise of a field with few objects from setting it
    (:func:`~seglab.inference.normalize.sparse_robust_high`), unless its config says otherwise."""
    model.config.normalization = {"fill_black": "brightfield", "bright_outliers": True, "sparse_objects": True,
                                  **model.config.normalization}


def with_augment(recipe: dict, blur: Sequence[float] | None = None, saturate: float | None = None) -> dict:
    """The recipe with defocus augmentation (``--blur PROB SIGMA``: its share of patches and
    largest sigma) and saturation (``--saturate PROB``), recorded in its ``augment`` as the
    model's ``training`` keeps it."""
    extra: dict[str, float] = {}
    if blur is not None:
        extra.update(blur_prob=float(blur[0]), blur_sigma=float(blur[1]))
    if saturate is not None:
        extra["saturate_prob"] = float(saturate)
    return {**recipe, "augment": {**recipe["augment"], **extra}} if extra else recipe


def recipe_architecture(recipe: dict, override: str | None) -> dict:
    """The recipe's architecture with the keys of ``override`` (a JSON object, ``--architecture``)
    put over it, e.g. ``{"stem": 16, "widths": [16, 32, 64, 128, 256]}``."""
    arch = dict(recipe["architecture"])
    if override:
        try:
            extra = json.loads(override)
        except json.JSONDecodeError as e:
            raise SystemExit(f"--architecture is not JSON: {e}") from None
        if not isinstance(extra, dict):
            raise SystemExit("--architecture must be a JSON object of architecture keys")
        arch.update(extra)
    return arch


def run_lr(args: argparse.Namespace, run: dict, recipe: dict) -> float:
    """The learning rate a run trained with: ``--lr``, else the one its run facts record (a
    ``finish-<recipe>`` of a run trained with ``--lr``), else the recipe's."""
    return args.lr or run.get("lr") or recipe["lr"]


def record_start(run: dict, args: argparse.Namespace, settings: TrainSettings, result, start_training: dict) -> None:
    """Add to a run's facts its weight average and where it started: the tensors it copied
    (``--init-from``), or the model it continued (``--init``) with the facts of the phases before."""
    if settings.ema_decay:
        run["weight_average"] = {"decay": settings.ema_decay, "best_is_average": result.best_is_average}
    if args.init_from and not args.init:
        run["backbone_initialised_from"] = f"{args.init_from} (tensors of the same name and shape)"
    if args.init:
        run["initialised_from"] = str(args.init)
        prev = previous_phase(args.init, start_training)
        if prev:
            run["previous_phase"] = prev


def previous_phase(init: str | Path, start_training: dict) -> dict | None:
    """The facts of the run that made the model in ``init``: its run folder's ``train_result.json``,
    else its log's last line, else those its config's ``training`` records (a shipped model's
    folder), so that every phase of a model trained in several stays on record."""
    run_dir = Path(init).parent
    log = Path(str(run_dir) + ".log")
    if (run_dir / "train_result.json").is_file():
        return json.loads((run_dir / "train_result.json").read_text())
    if log.is_file():
        return run_from_log(log)
    facts = {k: start_training[k] for k in RUN_FACTS if k in (start_training or {})}
    return facts or None


def run_from_log(log: Path) -> dict:
    """Training facts from a recipe log's 'training done' line (for runs finished separately)."""
    import re

    for line in reversed(log.read_text().splitlines()):
        m = re.search(r"training done: (\d+) steps in (\d+)s, best tune AP@0.5 ([\d.]+) at (\d+)", line)
        if m:
            return {"steps": int(m[1]), "seconds": float(m[2]), "tune_ap50_best_checkpoint": float(m[3]),
                    "best_step": int(m[4])}
    raise SystemExit(f"no 'training done' line in {log}")


def finish(model, root: Path, tune_items, out: Path, recipe: dict, args, run: dict) -> None:
    """Tune thresholds on the tune set, score on val, write the final model folder."""
    grid = type(model).threshold_grid
    best, score, _ = tune_thresholds(model, tune_items, grid, device=args.device)
    _log(f"tuned thresholds {best}: tune AP@0.5 {score:.4f}")
    model.config.thresholds = best
    val_items = load_split(root, "val")[: args.max_eval_images]
    if args.max_eval_images is not None:
        run = {**run, "max_eval_images": args.max_eval_images}
    metrics = evaluate_model(model, val_items, device=args.device)
    _log(f"val: {json.dumps(metrics)}")
    model.config.scores = {"dataset": "DSB2018 stage1 (corrected), split val", **metrics}
    model.config.training = {
        "recipe": "python -m seglab.training.recipes " + " ".join(sys.argv[1:]),
        "data": "DSB2018 split train minus tune (every tenth per channel group)",
        **run,
        "tune_ap50_tuned_thresholds": score,
        "patch_size": recipe["patch_size"],
        "batch_size": args.batch_size or recipe["batch_size"],
        "lr": run_lr(args, run, recipe),
        "augment": run.get("augment", recipe["augment"]),  # what it trained with (a finish may lack --blur)
        "image_weights": image_weights(recipe),
        "device": str(args.device),
        "torch": torch.__version__,
        "seed": args.seed,
        # the sizes it saw (10th, 90th percentile): "auto" leaves such objects alone
        "object_diameter_range": recipe_object_diameter(root, recipe)[1],
        # what fine-tuning replays of its training data (seglab.training.replay)
        "replay_set": DSB2018_REPLAY,
    }
    from seglab.training.size_fit import attach_size_model

    facts = attach_size_model(model, load_split(root, "train"), "DSB2018 split train")
    _log(f"size model: {json.dumps(facts)}")
    save_model(model, out / "final", overwrite=True)
    _log(f"saved {out / 'final'}")


def recipe_object_diameter(root: Path, recipe: dict) -> tuple[float | None, list[float] | None]:
    """``object_diameter`` of a recipe's model and ``training["object_diameter_range"]``: its
    training split's objects as the sampler shows them."""
    train_ids, _ = split_train_tune(root)
    items = load_split(root, "train", train_ids)
    weights = [image_weight(recipe, it) for it in items]
    return seen_object_diameter([it.labels for it in items], weights, recipe["augment"]["scale_range"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seglab.training.recipes")
    from seglab.training import recipe_he

    he = recipe_he.STARDIST_HE["name"]
    p.add_argument("recipe", choices=[*RECIPES, *(f"finish-{r}" for r in RECIPES),
                                      *(f"object-diameter-{r}" for r in RECIPES), he, f"finish-{he}"],
                   help="train a recipe, finish a run, or print the object diameter its training data gives")
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--monuseg", default=recipe_he.MONUSEG_DEFAULT, help=f"{he}: the MoNuSeg (Kumar) folder")
    p.add_argument("--out", default=None, help="run folder (default runs/<recipe>)")
    p.add_argument("--time-budget", type=float, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="patches per step (default: the recipe's)")
    p.add_argument("--validate-every", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None, help="model folder to start from (resume)")
    p.add_argument("--init-from", default=None,
                   help="model (name or folder) whose tensors of matching name and shape start a new network")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workers", type=int, default=0,
                   help="make training batches in this many processes (a GPU beside many cores); "
                        "0: in one background thread")
    p.add_argument("--train-only", action="store_true",
                   help="stop after training (best/ and train_result.json); finish-<recipe> finishes it")
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="also keep an exponential moving average of the weights (e.g. 0.999); each "
                        "validation scores both, and the better is kept (0: off)")
    p.add_argument("--architecture", default=None,
                   help='a new network: JSON keys put over the recipe\'s architecture, e.g. \'{"stem": 16}\'')
    p.add_argument("--border-weight", type=float, default=None,
                   help="U-Net loss: extra weight on pixels where touching nuclei meet")
    p.add_argument("--colour-weight", type=float, default=None,
                   help="how often a colour (stained) DSB2018 image is drawn against a grey one "
                        "(default: the recipe's)")
    p.add_argument("--monuseg-weight", type=float, default=None,
                   help=f"{he}: how much more likely a MoNuSeg pixel is drawn than a DSB2018 colour one "
                        f"(default: the recipe's {recipe_he.STARDIST_HE['monuseg_weight']})")
    p.add_argument("--blur", nargs=2, type=float, default=None, metavar=("PROB", "SIGMA"),
                   help="defocus augmentation: this share of patches blurred by a Gaussian of sigma 0.5..SIGMA px")
    p.add_argument("--saturate", type=float, default=None, metavar="PROB",
                   help="saturation augmentation: this share of grey patches clipped at 0.3..0.8 of their "
                        "range (a camera's saturated nuclei)")
    p.add_argument("--scale-range", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                   help=f"{he}: scale augmentation range (default: the recipe's, 0.7 1.4)")
    p.add_argument("--teacher", default=None,
                   help="a trained model (name or folder) of the same family whose maps on every patch "
                        "are soft targets beside the labels' (knowledge distillation; StarDist, U-Net)")
    p.add_argument("--teacher-augment", action="store_true",
                   help="the teacher's maps averaged over each patch's 8 flips and rotations (test-time "
                        "augmentation; a better teacher at 8x its cost)")
    p.add_argument("--distill-weight", type=float, default=None,
                   help="weight of the teacher's soft targets against the labels' (with --teacher; default 1)")
    p.add_argument("--max-eval-images", type=int, default=None,
                   help="score only the first N tune and val images (a quick check of the recipe, not a result)")
    p.add_argument("--log", default=None, help="finish: training log to take steps and time from")
    args = p.parse_args(argv)
    args.out = args.out or f"runs/{args.recipe.removeprefix('finish-')}"
    if args.border_weight is not None and not args.recipe.endswith("unet-nuclei"):
        p.error("--border-weight is a U-Net loss setting")
    if args.monuseg_weight is not None and args.recipe != he:
        p.error(f"--monuseg-weight is a setting of the {he} training")
    if args.monuseg_weight is not None and not args.monuseg_weight > 0:
        p.error("--monuseg-weight must be positive")
    if args.scale_range is not None and args.recipe != he:
        p.error(f"--scale-range is a setting of the {he} training")
    if args.scale_range is not None and not 0 < args.scale_range[0] <= 1 <= args.scale_range[1]:
        p.error("--scale-range needs 0 < LOW <= 1 <= HIGH")
    if args.teacher_augment and not args.teacher:
        p.error("--teacher-augment augments a teacher: give --teacher")
    if args.distill_weight is not None and not args.teacher:
        p.error("--distill-weight weighs a teacher's targets: give --teacher")
    if args.distill_weight is not None and not args.distill_weight > 0:
        p.error("--distill-weight must be positive")
    if args.teacher and args.distill_weight is None:
        args.distill_weight = 1.0
    if args.teacher and args.recipe not in RECIPES:
        p.error("--teacher is a setting of the DSB2018 recipes' training")
    if args.colour_weight is not None and args.recipe not in RECIPES:
        p.error("--colour-weight is a setting of the DSB2018 recipes' training")
    if (args.blur is not None or args.saturate is not None) and args.recipe in (he, f"finish-{he}"):
        p.error("--blur and --saturate are settings of the DSB2018 recipes' training")
    if args.saturate is not None and not 0 <= args.saturate <= 1:
        p.error("--saturate is a share of patches: 0 to 1")
    if args.architecture and (args.init or args.recipe.startswith(("finish-", "object-diameter-"))):
        p.error("--architecture builds a new network: not with --init, finish-* or object-diameter-*")
    if args.workers < 0:
        p.error("--workers must be 0 or more")
    if args.workers and args.teacher:
        p.error("--teacher runs in the training process: not with --workers")
    if args.threads:
        torch.set_num_threads(args.threads)
    np.random.seed(args.seed)
    if args.recipe.startswith("object-diameter-"):
        recipe = RECIPES[args.recipe.removeprefix("object-diameter-")]
        d, size_range = recipe_object_diameter(Path(args.data), recipe)
        print(json.dumps({"object_diameter": d, "object_diameter_range": size_range}))
        return 0
    if args.recipe == he:
        if args.steps is None and args.time_budget is None:
            p.error("give --steps or --time-budget")
        he_recipe = recipe_he.STARDIST_HE
        if args.monuseg_weight is not None:
            he_recipe = {**he_recipe, "monuseg_weight": args.monuseg_weight}
        if args.scale_range is not None:
            he_recipe = {**he_recipe, "augment": {**he_recipe["augment"], "scale_range": list(args.scale_range)}}
        recipe_he.train_he(args, he_recipe)
    elif args.recipe == f"finish-{he}":
        recipe_he.finish_only(args)
    elif args.recipe in RECIPES:
        if args.steps is None and args.time_budget is None:
            p.error("give --steps or --time-budget")
        recipe = RECIPES[args.recipe]
        if args.colour_weight is not None:
            recipe = {**recipe, "colour_weight": args.colour_weight}
        train_recipe(args, with_augment(recipe, args.blur, args.saturate))
    else:
        recipe = with_augment(RECIPES[args.recipe.removeprefix("finish-")], args.blur, args.saturate)
        root = Path(args.data)
        train_ids, tune_ids = split_train_tune(root)
        model = load_model(args.init or Path(args.out) / "best")
        grey_normalization(model)  # (a run trained before the grey models filled padding or ignored debris)
        result_file = Path(args.out) / "train_result.json"
        if result_file.is_file():
            run = json.loads(result_file.read_text())
        elif args.log:
            run = {**run_from_log(Path(args.log)), "n_train_images": len(train_ids)}
        else:
            p.error("finishing needs train_result.json in --out or --log LOGFILE")
        colour = (run.get("image_weights") or {}).get("colour (stained)")
        if colour is not None:  # a run trained with --colour-weight: its record and sizes say so
            recipe = {**recipe, "colour_weight": colour}
        tune_items = load_split(root, "train", tune_ids)[: args.max_eval_images]
        finish(model, root, tune_items, Path(args.out), recipe, args, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
