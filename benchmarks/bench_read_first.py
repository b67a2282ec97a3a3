"""``auto``'s "read first" against the full factor-1 probe, image by image, in one process (session 30).

    PYTHONPATH=benchmarks python benchmarks/bench_read_first.py --model maskrcnn-nuclei [--factor 1]
        [--repeats 3] [--threads 1] [--no-pass] [--json out.json]

Every DSB2018 ``val`` image (resized by ``--factor`` as ``bench_scale.py`` resizes it) is segmented
three ways, all three cells of an image in a row so that they see the same load: ``auto`` with the
factor-1 probe always run to its end (``seglab.inference.diameter.READ_FIRST_ABOVE`` set to
infinity: the rule before session 30), ``auto`` as shipped (the probe stops after the encoder when
the size model reads objects far above the tolerated sizes), and one pass at the model's own
``object_diameter`` (factor 1, no estimate; ``--no-pass`` leaves it out: at 2-4x it is the slow
unrescaled run, and the cost is the issue's figure at 1x only). Reports the cost of each ``auto`` against that pass
(median of ``--repeats`` per cell, summed over images), the factor each rule chose per image, and
pooled AP@0.5 of both rules (``seglab.metrics``, against the resized labels).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from bench_scale import DATA, resize_item  # benchmarks/bench_scale.py
from machine import cpu_model, load_1min, write_json  # benchmarks/machine.py
from seglab.datasets import load_split
from seglab.inference import diameter as dm
from seglab.inference.engine import segment
from seglab.metrics import evaluate
from seglab.models.registry import get_model

RULES = {"full probe": math.inf, "read first": dm.READ_FIRST_ABOVE}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--factor", type=float, default=1.0)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="first N val images only (development)")
    p.add_argument("--no-pass", action="store_true", help="no one-pass cell (AP and factors of the two rules only)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = get_model(args.model)
    items = load_split(args.data, "val")[: args.limit]
    totals = {k: 0.0 for k in (*RULES, "one pass")}
    preds: dict[str, list[np.ndarray]] = {k: [] for k in RULES}
    truths, per_image = [], []
    loads = [load_1min()]
    try:
        for item in items:
            item = resize_item(item, args.factor)
            kw = {"channel_axis": item.channel_axis} if item.channel_axis is not None else {}
            if not args.no_pass:  # warm-up, as bench_auto_cost_ab.py
                segment(model, item.image, diameter=model.config.object_diameter, **kw)
            elif not per_image:
                segment(model, item.image, diameter="auto", **kw)
            row: dict = {"name": item.name[:12]}
            for rule, above in RULES.items():
                dm.READ_FIRST_ABOVE = above
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    pred = segment(model, item.image, diameter="auto", **kw)
                    times.append(time.perf_counter() - t)
                row[rule] = round(float(np.median(times)), 4)
                row[f"{rule} factor"] = round(float(pred.scale_factor), 4)
                totals[rule] += float(np.median(times))
                preds[rule].append(pred.labels)
            dm.READ_FIRST_ABOVE = RULES["read first"]
            times = []
            for _ in range(0 if args.no_pass else args.repeats):
                t = time.perf_counter()
                segment(model, item.image, diameter=model.config.object_diameter, **kw)
                times.append(time.perf_counter() - t)
            row["one pass"] = round(float(np.median(times)), 4) if times else None
            totals["one pass"] += float(np.median(times)) if times else 0.0
            truths.append(item.labels)
            per_image.append(row)
    finally:
        dm.READ_FIRST_ABOVE = RULES["read first"]
    loads.append(load_1min())
    out = {"cpu": cpu_model(), "model": args.model, "factor": args.factor, "threads": args.threads,
           "repeats": args.repeats, "load_1min": loads, "images": len(per_image),
           "rules": {rule: {"auto_s": round(totals[rule], 3),
                            "cost": round(totals[rule] / totals["one pass"], 3) if totals["one pass"] else None,
                            "ap50": round(float(evaluate(list(zip(truths, preds[rule])))["thresholds"]["0.50"]["ap"]), 4),
                            "factors_changed": sum(r[f"{rule} factor"] != r["full probe factor"] for r in per_image)}
                     for rule in RULES},
           "one_pass_s": round(totals["one pass"], 3) if totals["one pass"] else None, "per_image": per_image}
    for rule, v in out["rules"].items():
        print(f"{args.model} x{args.factor} {rule}: auto {v['auto_s']} s ({v['cost']}x one pass "
              f"{out['one_pass_s']} s), AP@0.5 {v['ap50']}, factors changed {v['factors_changed']}")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
