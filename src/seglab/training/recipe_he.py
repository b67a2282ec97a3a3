"""The recipe of ``stardist-he``: StarDist-style nuclei in H&E-stained tissue, from the RGB channels.

    python -m seglab.training.recipes stardist-he --data ../shared/data/dsb2018 \
        --monuseg ../shared/data/monuseg-kumar --time-budget 4800 --threads 2 --out runs/stardist-he
    # resume from the last checkpoint (weights only; the learning-rate schedule starts again):
    python -m seglab.training.recipes stardist-he ... --init runs/stardist-he/last --lr 1e-3

Data: the colour (3-channel: H&E and other stains) images of DSB2018 ``train`` and the 12
MoNuSeg (Kumar split) ``train`` tiles. Held out as the *tune* set, which picks the best
checkpoint and the thresholds: every tenth DSB2018 colour training image (as the other recipes
hold out) and the rightmost :data:`MONUSEG_TUNE_COLUMNS` columns of every MoNuSeg training tile
(so that all organs stay in training and in tuning). ``val`` of both is scored once, at the end.

The tune score is the mean of MoNuSeg AJI and panoptic quality (per image, averaged over the
12 strips) and DSB2018 colour AP@0.5: the field's measures for tissue, and AP for the
DSB2018 colour images.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from seglab.datasets import load_split, read_manifest
from seglab.evaluation import AnnotatedImage, predict_maps
from seglab.inference.denoise import steps_of
from seglab.io.labels import relabel_consecutive
from seglab.metrics import evaluate
from seglab.models.base import SegmentationModel
from seglab.models.storage import load_model, new_model, save_model
from seglab.training.data import Augment, PatchSampler, background_sampler, make_pair
from seglab.training.loop import TrainSettings, train_iter
from seglab.training.recipes import (_log, recipe_architecture, record_start, run_lr, run_logged,
                                     stops_before_finish, where_trained)

STARDIST_HE = {
    "name": "stardist-he",
    "family": "stardist",
    "description": ("StarDist-style star-convex polygons (32 rays) for nuclei in H&E / haematoxylin-stained "
                    "brightfield tissue, reading the RGB channels; DSB2018 colour + MoNuSeg "
                    "(non-commercial use: CC BY-NC-SA 4.0)"),
    # channel counts in multiples of 16 keep the CPU's matrix units busy: measured faster per
    # step than stardist-nuclei's 12/24/48/96/192 (docs/benchmarks.md, "Training throughput")
    "architecture": {"widths": [16, 32, 64, 128, 256], "convs_per_block": 2, "n_rays": 32, "grid": 2,
                     "head_width": 64},
    "input_channels": 3,
    "tile_context": 64,
    "patch_size": 256,
    "batch_size": 8,
    "lr": 2e-3,
    # MoNuSeg tiles count this many times their area relative to DSB2018 colour images
    "monuseg_weight": 1.5,
    "augment": {"scale_range": [0.7, 1.4], "noise_std": 0.02, "invert_prob": 0.0, "colour_jitter": 0.05},
}

MONUSEG_TUNE_COLUMNS = 200
DSB_DEFAULT = "../shared/data/dsb2018"
MONUSEG_DEFAULT = "../shared/data/monuseg-kumar"


def colour_ids(root: str | Path, split: str) -> list[str]:
    """Ids of the 3-channel (stained, colour) images of ``split`` in a manifest, in id order."""
    return sorted(r["id"] for r in read_manifest(root) if r["split"] == split and r["channels"] == "3")


def he_data(dsb: str | Path, monuseg: str | Path) -> dict[str, list[AnnotatedImage]]:
    """Training and tune images of the recipe: ``train`` (DSB2018 colour minus every tenth, MoNuSeg
    tiles minus their right strip), ``tune_dsb`` and ``tune_monuseg``."""
    ids = colour_ids(dsb, "train")
    tune_ids = [rid for i, rid in enumerate(ids) if i % 10 == 5]
    train_dsb = load_split(dsb, "train", [r for r in ids if r not in tune_ids])
    tune_dsb = load_split(dsb, "train", tune_ids)
    train_mo, tune_mo = [], []
    for it in load_split(monuseg, "train"):
        w = it.labels.shape[1]
        cut = w - MONUSEG_TUNE_COLUMNS
        train_mo.append(it.crop(slice(None), slice(0, cut)))
        tune_mo.append(it.crop(slice(None), slice(cut, w), name=f"{it.name}[:, {cut}:]"))
    for it in train_mo + tune_mo:
        it.labels = relabel_consecutive(it.labels)  # (objects cut by the crop keep their visible part)
    return {"train_dsb": train_dsb, "train_monuseg": train_mo, "tune_dsb": tune_dsb, "tune_monuseg": tune_mo}


def object_diameter_stats(labels: list[np.ndarray]) -> tuple[float, list[float]]:
    """Median equivalent diameter (pixels, ``sqrt(4 area / pi)``) of all objects in ``labels``, and
    their 10th and 90th percentiles (``training["object_diameter_range"]``)."""
    diam = []
    for lab in labels:
        area = np.bincount(np.asarray(lab).ravel())[1:]
        diam.append(np.sqrt(4.0 * area[area > 0] / np.pi))
    d = np.concatenate(diam) if diam else np.zeros(0)
    if d.size == 0:
        raise ValueError("no objects")
    p10, p50, p90 = np.percentile(d, [10, 50, 90])
    return float(p50), [round(float(p10), 2), round(float(p90), 2)]


def median_object_diameter(labels: list[np.ndarray]) -> float:
    """Median equivalent diameter (pixels) of all objects in ``labels``."""
    return object_diameter_stats(labels)[0]


def he_scores(model: SegmentationModel, tune_mo, tune_dsb, *, device="auto", thresholds=None,
              maps=None) -> dict:
    """Tune metrics: MoNuSeg AJI, per-image PQ, pooled AP@0.5; DSB2018 colour AP@0.5; their ``score``."""
    th = model.thresholds(thresholds)
    items = list(tune_mo) + list(tune_dsb)
    if maps is None:
        maps = [predict_maps(model, it, device=device) for it in items]
    preds = [model.postprocess(m, th, shape=it.labels.shape).labels for m, it in zip(maps, items)]
    n = len(tune_mo)
    mo = evaluate(zip([it.labels for it in tune_mo], preds[:n]), thresholds=(0.5,))
    ds = evaluate(zip([it.labels for it in tune_dsb], preds[n:]), thresholds=(0.5,))
    out = {"monuseg_aji": mo["aji"], "monuseg_pq": mo["pq_per_image"], "monuseg_ap50": mo["thresholds"]["0.50"]["ap"],
           "dsb_colour_ap50": ds["thresholds"]["0.50"]["ap"]}
    out["score"] = float(np.mean([out["monuseg_aji"], out["monuseg_pq"], out["dsb_colour_ap50"]]))
    return out


def _sampler(model: SegmentationModel, data: dict, recipe: dict, seed: int) -> PatchSampler:
    ref_area = 256 * 320  # every DSB2018 colour image has this size
    pairs = []
    for group, w in (("train_dsb", 1.0), ("train_monuseg", float(recipe["monuseg_weight"]))):
        for it in data[group]:
            weight = w * it.labels.size / ref_area
            pairs.append(make_pair(it.image, it.labels, model.config.input_channels, model.config.normalization,
                                   channel_axis=it.channel_axis, weight=weight, name=it.name,
                                   denoise_steps=steps_of(model.config)))
    a = recipe["augment"]
    aug = Augment(scale_range=tuple(a["scale_range"]), noise_std=a["noise_std"], invert_prob=a["invert_prob"],
                  colour_jitter=a["colour_jitter"])
    return PatchSampler(pairs, recipe["patch_size"], aug, seed=seed)


def train_he(args: argparse.Namespace, recipe: dict = STARDIST_HE) -> None:
    """Train ``stardist-he`` (or continue from ``--init``), saving ``best/`` and ``last/`` as it goes,
    then :func:`finish_he`."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = he_data(args.data, args.monuseg)
    _log("train: {} DSB2018 colour images, {} MoNuSeg tiles; tune: {} + {}".format(
        len(data["train_dsb"]), len(data["train_monuseg"]), len(data["tune_dsb"]), len(data["tune_monuseg"])))
    start_training: dict = {}
    if args.init:
        model = load_model(args.init)
        start_training = dict(model.config.training or {})
        _log(f"starting from weights in {args.init}")
    else:
        model = new_model(recipe["family"], recipe["name"], description=recipe["description"],
                          architecture=recipe_architecture(recipe, args.architecture),
                          tile_context=recipe["tile_context"],
                          input_channels=recipe["input_channels"])
        if args.init_from:
            from seglab.models.registry import get_model
            from seglab.training.recipes import transfer_weights

            copied = transfer_weights(model, get_model(args.init_from))
            _log(f"copied {len(copied)} tensors from {args.init_from}")
    model.config.name = recipe["name"]
    model.config.description = recipe["description"]
    # brightfield: pixels black in every channel are a scanner's padding, filled with the glass colour
    model.config.normalization = {**model.config.normalization, "fill_black": True}
    settings = TrainSettings(steps=args.steps, time_budget=args.time_budget,
                             batch_size=args.batch_size or recipe["batch_size"], lr=args.lr or recipe["lr"],
                             validate_every=args.validate_every, seed=args.seed, warmup_steps=50,
                             ema_decay=args.ema_decay)
    sampler = background_sampler(_sampler(model, data, recipe, args.seed), settings.batch_size, model,
                                 args.workers)

    def validate(m: SegmentationModel) -> float:
        s = he_scores(m, data["tune_monuseg"], data["tune_dsb"], device=args.device)
        m.config.training = {"checkpoint_step": sampler.served, "tune": s}
        save_model(m, out / "last", overwrite=True)
        _log("tune at step {}: {}".format(sampler.served, json.dumps({k: round(v, 4) for k, v in s.items()})))
        return s["score"]

    def on_best(m, step, score):
        save_model(m, out / "best", overwrite=True)
        _log(f"new best at step {step}: tune score {score:.4f} (saved)")

    gen = train_iter(model, sampler, settings, device=args.device, validate=validate, on_best=on_best,
                     report_every=50)
    try:
        result = run_logged(gen)
    finally:
        sampler.close()
    _log(f"training done: {result.steps} steps in {result.elapsed:.0f}s, best tune score {result.best_score} "
         f"at {result.best_step}")
    run = {"steps": result.steps, "seconds": round(result.elapsed, 1), "best_step": result.best_step,
           "tune_score_best_checkpoint": result.best_score, "lr": settings.lr,
           "monuseg_weight": float(recipe["monuseg_weight"]),
           "scale_range": list(recipe["augment"]["scale_range"]), **where_trained(args)}
    record_start(run, args, settings, result, start_training)
    (out / "train_result.json").write_text(json.dumps(run, indent=2))
    if stops_before_finish(args, recipe["name"], out):
        return
    finish_he(model, data, out, recipe, args, run)


def finish_he(model: SegmentationModel, data: dict, out: Path, recipe: dict, args, run: dict) -> None:
    """Tune the thresholds on the tune set (its score), score ``val``, write ``final/``."""
    items = data["tune_monuseg"] + data["tune_dsb"]
    maps = [predict_maps(model, it, device=args.device) for it in items]
    grid = type(model).threshold_grid
    trials = []
    for p in grid["prob_thresh"]:
        for nms in grid["nms_thresh"]:
            th = {"prob_thresh": float(p), "nms_thresh": float(nms)}
            s = he_scores(model, data["tune_monuseg"], data["tune_dsb"], thresholds=th, maps=maps)
            trials.append((s["score"], th, s))
    base = he_scores(model, data["tune_monuseg"], data["tune_dsb"], maps=maps)
    best_score, best_th, best_s = max(trials, key=lambda t: t[0])
    if best_score <= base["score"]:
        best_th, best_s = model.thresholds(), base
    _log(f"tuned thresholds {best_th}: {json.dumps(best_s)}")
    model.config.thresholds = dict(best_th)
    diameter, size_range = object_diameter_stats([it.labels for it in data["train_dsb"] + data["train_monuseg"]])
    model.config.object_diameter = round(diameter, 2)
    val_mo = load_split(args.monuseg, "val")
    val_dsb = load_split(args.data, "val", colour_ids(args.data, "val"))
    from seglab.evaluation import evaluate_model

    t0 = time.perf_counter()
    m_mo = evaluate_model(model, val_mo, device=args.device)
    for r, it in zip(m_mo["per_image"], val_mo):
        r["image"] = it.name
    m_dsb = evaluate_model(model, val_dsb, device=args.device)
    m_dsb.pop("per_image")
    _log(f"val scored in {time.perf_counter() - t0:.0f}s: MoNuSeg AJI {m_mo['aji']:.4f} PQ {m_mo['pq_per_image']:.4f} "
         f"AP@0.5 {m_mo['thresholds']['0.50']['ap']:.4f}; DSB2018 colour AP@0.5 {m_dsb['thresholds']['0.50']['ap']:.4f}")
    model.config.scores = {"dataset": "MoNuSeg 2018 (Kumar split), split val: 4 tiles 1000x1000 at 40x", **m_mo,
                           "dsb2018_val_colour": {"dataset": "DSB2018 stage1 (corrected), split val, colour images",
                                                  **m_dsb}}
    a = recipe["augment"]
    model.config.training = {
        "recipe": "python -m seglab.training.recipes " + " ".join(sys.argv[1:]),
        "data": ("DSB2018 split train, colour images minus every tenth (CC0); MoNuSeg (Kumar split) train tiles "
                 f"minus their right {MONUSEG_TUNE_COLUMNS} columns (CC BY-NC-SA 4.0: non-commercial)"),
        "n_train_images": {"dsb2018_colour": len(data["train_dsb"]), "monuseg_tiles": len(data["train_monuseg"])},
        "tune": {"dsb2018_colour_images": len(data["tune_dsb"]),
                 "monuseg_strips": f"{len(data['tune_monuseg'])} x 1000x{MONUSEG_TUNE_COLUMNS}"},
        **run,
        "tune_tuned_thresholds": best_s,
        "object_diameter": "median equivalent diameter of the training objects, at the scale trained "
                           f"(augmentation scales {a['scale_range'][0]}-{a['scale_range'][1]} around it)",
        "object_diameter_range": size_range,
        "patch_size": recipe["patch_size"],
        "batch_size": args.batch_size or recipe["batch_size"],
        "lr": run_lr(args, run, recipe),
        "monuseg_weight": run.get("monuseg_weight", recipe["monuseg_weight"]),
        "augment": a,
        "normalization": ("per-channel percentiles 1 / 99.8 (the RGB channels as they are, not luma), black "
                          "padding filled with the glass colour first"),
        "device": str(args.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "seed": args.seed,
    }
    from seglab.training.size_fit import attach_size_model, he_training_items

    facts = attach_size_model(model, *he_training_items(args.data, args.monuseg))
    _log(f"size model: {json.dumps(facts)}")
    save_model(model, out / "final", overwrite=True)
    _log(f"saved {out / 'final'}")


def finish_only(args: argparse.Namespace, recipe: dict = STARDIST_HE) -> None:
    """``finish-stardist-he``: tune and score ``--init`` (default ``<out>/best``) again."""
    out = Path(args.out)
    data = he_data(args.data, args.monuseg)
    model = load_model(args.init or out / "best")
    result = out / "train_result.json"
    # a checkpoint of a run still going (or stopped) has no train_result.json: keep what it recorded
    run = json.loads(result.read_text()) if result.is_file() else {"checkpoint": dict(model.config.training)}
    if run.get("scale_range"):  # trained with --scale-range: its record says so
        recipe = {**recipe, "augment": {**recipe["augment"], "scale_range": list(run["scale_range"])}}
    finish_he(model, data, out, recipe, args, run)
