"""An H&E model on the MoNuSeg ``val`` tiles as a user runs it: ``diameter="auto"`` (the default)
and no rescaling (what the model card's training scores use), per tile and averaged (issue 11).

    python benchmarks/bench_he_val.py [--model stardist-he] [--monuseg ../shared/data/monuseg-kumar]
                                      [--modes auto none true] [--factors 1 0.5 0.7 2]
                                      [--augment] [--json benchmarks/results/he_val.json]

With ``--factors``, the tiles are also resized by each factor first (as the scale benchmark does,
``bench_scale.resize_item``: 0.5 makes the 40x tiles look like 20x ones) and scored against
their resized labels; mode ``true`` then gives the rescale that undoes the resize
(``diameter`` = ``object_diameter`` x factor). ``--augment``: with test-time augmentation.

AJI and PQ (at IoU 0.5) per tile averaged over tiles, as Kumar et al. and HoVer-Net report them,
and pooled AP@0.5 (``seglab.metrics.evaluate``); with ``auto`` also each tile's estimated
diameter and the rescale factor applied. Nothing here is used for training or tuning.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench_scale import resize_item  # benchmarks/bench_scale.py
from machine import add_he_model_options, cpu_model, load_1min, open_model, write_json  # benchmarks/machine.py

from seglab.datasets import load_split
from seglab.inference.diameter import equivalent_diameters
from seglab.inference.engine import segment
from seglab.metrics import evaluate


def score_mode(model, items, mode: str, factor: float = 1.0, augment: bool = False) -> dict:
    """Every tile segmented with ``diameter`` = ``mode`` (``auto``, ``none``, or ``true``: the model's
    size times ``factor``, by which the tiles were resized), and the scores."""
    preds, tiles = [], []
    diameter = {"none": None, "auto": "auto"}.get(mode, (model.config.object_diameter or 0) * factor or None)
    for it in items:
        t0 = time.perf_counter()
        seg = segment(model, it.image, channel_axis=it.channel_axis, diameter=diameter, augment=augment)
        preds.append(seg.labels)
        tiles.append({"tile": str(it.name), "true_median_diameter": round(float(np.median(equivalent_diameters(it.labels))), 1),
                      "diameter": None if seg.diameter is None else round(float(seg.diameter), 1),
                      "factor": round(float(seg.scale_factor), 3), "seconds": round(time.perf_counter() - t0, 2)})
    m = evaluate(zip([it.labels for it in items], preds), thresholds=(0.5,))
    for t, r in zip(tiles, m["per_image"]):
        t.update({k: round(float(v), 4) for k, v in r.items() if isinstance(v, (int, float))})
    return {"aji": round(m["aji"], 4), "pq": round(m["pq_per_image"], 4),
            "ap50": round(m["thresholds"]["0.50"]["ap"], 4), "tiles": tiles}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_he_model_options(p)
    p.add_argument("--modes", nargs="+", default=["auto", "none"], choices=["auto", "none", "true"])
    p.add_argument("--factors", nargs="+", type=float, default=[1.0],
                   help="resize the tiles by each factor first (1: as they are)")
    p.add_argument("--augment", action="store_true", help="test-time augmentation (8 orientations)")
    args = p.parse_args(argv)
    model = open_model(args)
    items = load_split(Path(args.monuseg), "val")
    out = {"dataset": "MoNuSeg (Kumar split) val", "model": args.model, "n_tiles": len(items), "cpu": cpu_model(),
           "cpu_count": os.cpu_count(), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "object_diameter": model.config.object_diameter, "augment": args.augment, "results": {}}
    for factor in args.factors:
        scaled = [resize_item(it, factor) for it in items]
        for mode in args.modes:
            if mode == "true" and factor == 1.0:
                continue  # the same as none
            key = mode if factor == 1.0 else f"{factor:g}/{mode}"
            report(args.model, key, out["results"].setdefault(key, score_mode(model, scaled, mode, factor, args.augment)))
    out["load_avg_1min"] = load_1min()
    if args.json:
        write_json(args.json, out)
    return 0


def report(name: str, key: str, r: dict) -> None:
    """One mode's scores, and each tile's, on stdout."""
    print(f"{name} {key}: AJI {r['aji']:.3f} PQ {r['pq']:.3f} AP@0.5 {r['ap50']:.3f}", flush=True)
    for t in r["tiles"]:
        print(f"  {t['tile'][:16]} true {t['true_median_diameter']} px, diameter {t['diameter']}, "
              f"factor {t['factor']}: AJI {t.get('aji', float('nan')):.3f} PQ {t.get('pq', float('nan')):.3f}",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
