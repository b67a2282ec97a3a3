"""maskrcnn-nuclei on the 2048x2048 mosaic (``bench_speed.build_mosaic``), the inference speed-ups of
sessions 12 and 13 one at a time, interleaved run by run in one process so that all arms see the
same load (wall and CPU seconds, medians):

* ``plain, rpn 0.3, tv``: the plain network (batch norm not folded), proposal threshold 0.3,
  torchvision's RoIAlign (session 11);
* ``folded, rpn 0.3, tv``: the backbone folded (``maskrcnn_net.inference_copy``, what a run uses);
* ``folded, rpn <config>, tv``: and the model's own ``rpn_score_thresh`` (0.8 since session 12);
* ``folded, rpn <config>, separable``: and seglab's RoIAlign (``seglab.models.roi_align``, session 13).

    python benchmarks/bench_maskrcnn_speedups.py --threads 1 --repeats 5 [--arms ...] --json out.json
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from bench_speed import build_mosaic
from machine import cpu_model, load_1min, write_json  # benchmarks/machine.py

from seglab.inference.engine import segment
from seglab.models.registry import get_model
from seglab.models.roi_align import use_torchvision_poolers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--arms", nargs="*", default=None, help="arm names to run (default: all)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    image, _ = build_mosaic()
    model = get_model("maskrcnn-nuclei")

    own = float(model.network.rpn_score_thresh)
    seglab_pools = model.network.maskrcnn.roi_heads.box_roi_pool, model.network.maskrcnn.roi_heads.mask_roi_pool
    arms = {"plain, rpn 0.3, tv": (False, 0.3, "tv"), "folded, rpn 0.3, tv": (True, 0.3, "tv"),
            f"folded, rpn {own:g}, tv": (True, own, "tv"), f"folded, rpn {own:g}, separable": (True, own, "separable")}
    if args.arms:
        arms = {k: v for k, v in arms.items() if k in args.arms}

    def run(folded: bool, rpn: float, pools: str) -> tuple[float, float, int, int]:
        if folded:
            model.__dict__.pop("_inference_copy", None)  # the class's: the folded copy
        else:
            model._inference_copy = lambda net: net.eval()  # the plain network itself
        model._fused_key = None
        net = model._inference_network()  # (built outside the timing)
        net.rpn_score_thresh = rpn
        rh = net.maskrcnn.roi_heads
        if pools == "tv":
            use_torchvision_poolers(rh)
        else:  # as build_maskrcnn makes them
            rh.box_roi_pool, rh.mask_roi_pool = seglab_pools
        regions = [0]
        pool = net.maskrcnn.roi_heads.box_roi_pool
        pool_forward = type(pool).forward.__get__(pool)

        def counting(features, boxes, sizes):  # regions through the box head's RoIAlign
            regions[0] += sum(len(b) for b in boxes)
            return pool_forward(features, boxes, sizes)

        pool.forward = counting
        t0, c0 = time.perf_counter(), time.process_time()
        seg = segment(model, image, device="cpu", diameter=None)
        return time.perf_counter() - t0, time.process_time() - c0, seg.n_objects, regions[0]

    segment(model, image, device="cpu", diameter=None)  # warm-up (and the device's memory format)
    runs: dict[str, list] = {k: [] for k in arms}
    for _ in range(args.repeats):
        for k, arm in arms.items():
            runs[k].append(run(*arm))
    out = {"cpu": cpu_model(), "threads": args.threads, "repeats": args.repeats,
           "load_avg_1min": load_1min(),
           "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": {}}
    for k, rs in runs.items():
        cell = {"wall_median": round(float(np.median([r[0] for r in rs])), 3),
                "cpu_median": round(float(np.median([r[1] for r in rs])), 3), "objects": rs[0][2],
                "box_head_regions": rs[0][3], "runs": [[round(r[0], 3), round(r[1], 3)] for r in rs]}
        out["results"][k] = cell
        print(k, cell, flush=True)
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
