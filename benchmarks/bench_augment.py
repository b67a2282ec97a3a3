"""Test-time augmentation (``augment=True``): accuracy gained and time it costs, per model.

    PYTHONPATH=benchmarks python benchmarks/bench_augment.py [--models stardist-nuclei unet-nuclei]
                                  [--repeats 3] [--threads 2] [--json benchmarks/results/augment.json]

For each model, with and without augmentation (the model's own thresholds, no rescaling, as the
model cards score):

- pooled AP@0.5 on DSB2018 ``val`` (all 67 images) and per kind of image (``seglab.datasets.image_kind``);
- pooled AP@0.5 on the recipes' tune set (60 ``train`` images held out of training);
- seconds per 2048x2048 mosaic of real grey nuclei (``bench_speed.build_mosaic``), both runs
  alternated call by call in this process (same load for both), medians of ``--repeats``.

H&E (``stardist-he`` on MoNuSeg ``val``): ``bench_he_val.py --augment``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from bench_speed import build_mosaic  # benchmarks/bench_speed.py
from machine import cpu_model, load_1min, write_json  # benchmarks/machine.py
from splits import scores_by_kind, split_items  # benchmarks/splits.py

from seglab.evaluation import evaluate_model_iter
from seglab.inference.engine import run_to_end, segment
from seglab.models.registry import ModelRegistry

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "dsb2018")


def scores(model, items, augment: bool) -> dict:
    """Pooled AP@0.5 of ``items``, overall and per kind, and the seconds the run took."""
    t0 = time.perf_counter()
    overall, preds = run_to_end(evaluate_model_iter(model, items, augment=augment, device="cpu"))
    out = {"ap50": round(overall["thresholds"]["0.50"]["ap"], 4), "seconds": round(time.perf_counter() - t0, 1)}
    for k, m in scores_by_kind(items, preds, thresholds=(0.5,)).items():
        out[k] = round(m["thresholds"]["0.50"]["ap"], 4)
    return out


def mosaic_seconds(model, repeats: int) -> dict:
    """Seconds per 2048x2048 mosaic, plain and augmented alternated (one warm-up of each first)."""
    image, _ = build_mosaic()
    times: dict[str, list[float]] = {"plain": [], "augment": []}
    counts = {}
    for i in range(repeats + 1):
        for key in times:
            t0 = time.perf_counter()
            seg = segment(model, image, device="cpu", diameter=None, augment=key == "augment")
            if i:
                times[key].append(time.perf_counter() - t0)
            counts[key] = seg.n_objects
    return {k: {"median_s": round(statistics.median(v), 3), "min_s": round(min(v), 3), "objects": counts[k]}
            for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["stardist-nuclei", "unet-nuclei"])
    p.add_argument("--data", default=DATA)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-speed", action="store_true", help="skip the 2048x2048 timing")
    p.add_argument("--no-scores", action="store_true", help="the 2048x2048 timing only")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    reg = ModelRegistry()
    val, tune = ([], []) if args.no_scores else (split_items(args.data, "val"), split_items(args.data, "tune"))
    out = {"cpu": cpu_model(), "threads": args.threads, "load_avg_1min_before": load_1min(),
           "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "models": {}}
    for name in args.models:
        model = reg.load(reg.resolve(name))
        r = out["models"][name] = {"thresholds": model.thresholds()}
        for augment in () if args.no_scores else (False, True):
            key = "augment" if augment else "plain"
            r[key] = {"val": scores(model, val, augment), "tune": scores(model, tune, augment)}
            print(f"{name} {key}: val AP@0.5 {r[key]['val']['ap50']:.4f}, tune {r[key]['tune']['ap50']:.4f}", flush=True)
        if not args.no_speed:
            r["seconds_2048"] = mosaic_seconds(model, args.repeats)
            print(f"{name} 2048x2048: {r['seconds_2048']}", flush=True)
    out["load_avg_1min_after"] = load_1min()
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
