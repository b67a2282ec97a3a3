"""How close ``auto``'s diameter estimate comes to the truth on DSB2018 images resized.

For each image (``--split``, every ``--every``-th) and factor, the estimate alone
(``estimate_image_iter``, no segmentation after it) against the median equivalent diameter of the
resized labels. Prints, per factor, the share of estimates within 30 % of the truth and the median
error (as a ratio). To compare two versions of the estimate, run it on both checkouts
(``PYTHONPATH=<checkout>/src``) and compare the per-image rows.

    python benchmarks/bench_estimate.py --model maskrcnn-nuclei --split train --every 10 --json out.json
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_scale import DATA, resize_item
from machine import cpu_model, write_json  # benchmarks/machine.py

from seglab.datasets import load_split
from seglab.inference import diameter as dm
from seglab.models.registry import get_model
from seglab.progress import run_to_end


def summary(rows: list[dict], factors: list[float]) -> dict[str, dict]:
    """Per factor: images, share within 30 % of the truth, median error ratio (missing: infinite)."""
    out = {}
    for f in factors:
        errs = [abs(math.log(r["estimate"] / r["true"])) if r["estimate"] else math.inf
                for r in rows if r["factor"] == f]
        out[f"{f:g}"] = {"n": len(errs), "within_30": round(float(np.mean([e <= math.log(1.3) for e in errs])), 3),
                         "median_error": round(float(math.exp(np.median(errs))), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--split", default="train", choices=["train", "val"])
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--factors", nargs="+", type=float, default=[1, 2, 3, 4])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = get_model(args.model)
    rows = []
    for it in load_split(Path(args.data), args.split)[:: args.every]:
        for f in args.factors:
            s = resize_item(it, f)
            est = run_to_end(dm.estimate_image_iter(model, s.image, channel_axis=s.channel_axis, device="cpu"))
            rows.append({"name": str(it.name)[:12], "factor": f,
                         "true": round(float(np.median(dm.equivalent_diameters(s.labels))), 2),
                         "estimate": None if est.diameter is None else round(est.diameter, 2),
                         "reading": None if est.regressed is None else round(est.regressed, 2)})
    out = {"model": args.model, "split": args.split, "every": args.every, "cpu": cpu_model(),
           "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "summary": summary(rows, args.factors), "rows": rows}
    for f, cell in out["summary"].items():
        print(args.model, args.split, f"x{f}", cell, flush=True)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
