"""The cost of ``diameter="auto"`` for two models side by side, image by image (session 26).

    python benchmarks/bench_auto_cost_ab.py --models unet-nuclei path/to/previous [--repeats 3] [--json out.json]

``bench_scale.py --cost`` times one model's ``auto`` against its true-diameter pass; run for two
models one after the other on a shared machine, their ratios differ with the load of the moment
(session 26: 1.18 and 1.34 back to back for weights whose estimates take the same passes on all but
one image). Here every DSB2018 ``val`` image is segmented by each model with ``auto`` and with
its own ``object_diameter`` (no estimate, factor 1), the median of ``--repeats`` runs per cell,
all four cells of an image in a row, so both models see the same load.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from machine import cpu_model, load_1min, write_json  # benchmarks/machine.py
from seglab.datasets import load_split
from seglab.inference.engine import segment
from seglab.models.registry import get_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs=2, required=True)
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: get_model(name) for name in args.models}
    totals = {(n, k): 0.0 for n in models for k in ("auto", "true")}
    per_image = []
    loads = [load_1min()]
    for item in load_split(args.data, "val"):
        kw = {"channel_axis": item.channel_axis} if item.channel_axis is not None else {}
        for m in models.values():  # warm-up
            segment(m, item.image, diameter=m.config.object_diameter, **kw)
        row: dict = {"name": item.name[:12]}
        for n, m in models.items():
            for k, d in (("auto", "auto"), ("true", m.config.object_diameter)):
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    segment(m, item.image, diameter=d, **kw)
                    times.append(time.perf_counter() - t)
                row[f"{n} {k}"] = round(float(np.median(times)), 4)
                totals[(n, k)] += float(np.median(times))
        per_image.append(row)
    loads.append(load_1min())
    out = {"cpu": cpu_model(), "threads": args.threads, "repeats": args.repeats, "load_1min": loads,
           "models": {n: {"auto_s": round(totals[(n, "auto")], 3), "true_s": round(totals[(n, "true")], 3),
                          "ratio": round(totals[(n, "auto")] / totals[(n, "true")], 3)} for n in models},
           "per_image": per_image}
    for n, v in out["models"].items():
        print(f"{n}: auto {v['auto_s']} s, true diameter {v['true_s']} s, ratio {v['ratio']}")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
