"""An H&E model on the MoNuSeg ``val`` tiles as a user runs it: ``diameter="auto"`` (the default)
and no rescaling (what the model card's training scores use), per tile and averaged (issue 11).

    python benchmarks/bench_he_val.py [--model stardist-he] [--monuseg ../shared/data/monuseg-kumar]
                                      [--modes auto none] [--json benchmarks/results/he_val.json]

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
import torch

from machine import cpu_model, load_1min, write_json  # benchmarks/machine.py

from seglab.datasets import load_split
from seglab.inference.diameter import equivalent_diameters
from seglab.inference.engine import segment
from seglab.metrics import evaluate
from seglab.models.registry import get_model

ROOT = Path(__file__).resolve().parents[1]
MONUSEG = ROOT.parent / "shared" / "data" / "monuseg-kumar"


def score_mode(model, items, mode: str) -> dict:
    """Every tile segmented with ``diameter`` = ``mode`` (``auto`` or ``none``), and the scores."""
    preds, tiles = [], []
    for it in items:
        t0 = time.perf_counter()
        seg = segment(model, it.image, channel_axis=it.channel_axis, diameter=None if mode == "none" else mode)
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
    p.add_argument("--model", default="stardist-he")
    p.add_argument("--monuseg", default=str(MONUSEG))
    p.add_argument("--modes", nargs="+", default=["auto", "none"], choices=["auto", "none"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = get_model(args.model)
    items = load_split(Path(args.monuseg), "val")
    out = {"dataset": "MoNuSeg (Kumar split) val", "model": args.model, "n_tiles": len(items), "cpu": cpu_model(),
           "cpu_count": os.cpu_count(), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "object_diameter": model.config.object_diameter, "results": {}}
    for mode in args.modes:
        r = out["results"][mode] = score_mode(model, items, mode)
        print(f"{args.model} {mode}: AJI {r['aji']:.3f} PQ {r['pq']:.3f} AP@0.5 {r['ap50']:.3f}", flush=True)
        for t in r["tiles"]:
            print(f"  {t['tile'][:16]} true {t['true_median_diameter']} px, diameter {t['diameter']}, "
                  f"factor {t['factor']}: AJI {t.get('aji', float('nan')):.3f} PQ {t.get('pq', float('nan')):.3f}",
                  flush=True)
    out["load_avg_1min"] = load_1min()
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
