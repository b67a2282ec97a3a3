"""DSB2018 ``val`` AP@0.5 and time against the padding at the image's edges (``image_border``).

    python benchmarks/bench_border.py [--models stardist-nuclei unet-nuclei maskrcnn-nuclei]
                                      [--borders 0 16 32 64 context] [--json benchmarks/results/border.json]

Every model segments the 67 ``val`` images at their own size (``diameter=None``, as the model
cards score them) once per border: pixels reflected beyond each image edge before the network
(``context``: the whole tile context, what seglab did until session 17). Reports pooled AP@0.5
and AP@0.75 overall and per image kind, and the seconds of the whole pass (one process, so
times of one model are comparable when the load stays the same; the load is recorded).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from machine import cpu_model, load_1min, write_json  # benchmarks/machine.py

from seglab.datasets import image_kind, load_split
from seglab.evaluation import evaluate_model_iter
from seglab.inference.engine import run_to_end
from seglab.inference.tiling import tile_context
from seglab.metrics import evaluate
from seglab.models.registry import get_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"


def score(model, items, border: int) -> dict:
    """AP at IoU 0.5 / 0.75 (pooled) over ``items``, overall and per kind, with ``border``."""
    model.image_border = border  # this model only (the family's value is a class attribute)
    try:
        t0 = time.perf_counter()
        metrics, preds = run_to_end(evaluate_model_iter(model, items, device="cpu"))
        secs = time.perf_counter() - t0
    finally:
        del model.image_border
    out = {"border": border, "ap50": metrics["thresholds"]["0.50"]["ap"], "ap75": metrics["thresholds"]["0.75"]["ap"],
           "seconds": round(secs, 2), "load_avg_1min": load_1min(), "kinds": {}}
    for kind in sorted({image_kind(it) for it in items}):
        idx = [i for i, it in enumerate(items) if image_kind(it) == kind]
        m = evaluate(zip([items[i].labels for i in idx], [preds[i] for i in idx]))
        out["kinds"][kind] = m["thresholds"]["0.50"]["ap"]
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["stardist-nuclei", "unet-nuclei", "maskrcnn-nuclei"])
    p.add_argument("--borders", nargs="+", default=["0", "16", "32", "64", "context"])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--json", default=None)
    args = p.parse_args()
    items = load_split(args.data, "val")
    results = []
    for name in args.models:
        model = get_model(name)
        for b in args.borders:
            border = tile_context(model) if b == "context" else int(b)
            r = {"model": name, "border_arg": b, **score(model, items, border)}
            results.append(r)
            kinds = " ".join(f"{k}: {v:.3f}" for k, v in r["kinds"].items())
            print(f"{name} border {b} ({border} px): AP@0.5 {r['ap50']:.4f} AP@0.75 {r['ap75']:.4f} "
                  f"{r['seconds']:.1f} s (load {r['load_avg_1min']:.1f}); {kinds}", flush=True)
    if args.json:
        write_json(args.json, {"dataset": "DSB2018 val", "n_images": len(items), "cpu": cpu_model(),
                               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                               "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
