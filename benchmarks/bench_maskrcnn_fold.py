"""maskrcnn-nuclei on the 2048x2048 mosaic (``bench_speed.build_mosaic``) with its folded backbone
(batch norm folded, ReLUs fused: what a run uses) against the plain network, interleaved run by
run in one process so that both see the same load; wall and CPU seconds, medians.

    python benchmarks/bench_maskrcnn_fold.py --threads 1 --repeats 5 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_speed import build_mosaic
from machine import cpu_model  # benchmarks/machine.py

from seglab.inference.engine import segment
from seglab.io.atomic import atomic_file
from seglab.models.registry import get_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    image, _ = build_mosaic()
    model = get_model("maskrcnn-nuclei")

    def run(folded: bool) -> tuple[float, float, int]:
        if folded:
            model.__dict__.pop("_inference_copy", None)  # the class's: the folded copy
        else:
            model._inference_copy = lambda net: net.eval()  # the plain network itself
        model._fused_key = None
        model._inference_network()  # (built outside the timing)
        t0, c0 = time.perf_counter(), time.process_time()
        seg = segment(model, image, device="cpu", diameter=None)
        return time.perf_counter() - t0, time.process_time() - c0, seg.n_objects

    run(True), run(False)  # warm-up
    runs: dict[str, list] = {"plain": [], "folded": []}
    for _ in range(args.repeats):
        runs["plain"].append(run(False))
        runs["folded"].append(run(True))
    out = {"cpu": cpu_model(), "threads": args.threads, "repeats": args.repeats,
           "load_avg_1min": round(os.getloadavg()[0], 2),
           "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": {}}
    for k, rs in runs.items():
        cell = {"wall_median": round(float(np.median([r[0] for r in rs])), 3),
                "cpu_median": round(float(np.median([r[1] for r in rs])), 3), "objects": rs[0][2],
                "runs": [[round(a, 3), round(b, 3)] for a, b, _ in rs]}
        out["results"][k] = cell
        print(k, cell, flush=True)
    if args.json:
        with atomic_file(args.json) as tmp:
            Path(tmp).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
