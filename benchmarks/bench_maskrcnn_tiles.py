"""Mask R-CNN tiled vs untiled, accuracy and cost per proposal selection and context (issue 12).

    python benchmarks/bench_maskrcnn_tiles.py compare [--tile 256] [--no-amp] VARIANT ...
    python benchmarks/bench_maskrcnn_tiles.py truth VARIANT ...
    python benchmarks/bench_maskrcnn_tiles.py cost [--repeats 5] VARIANT ...

A VARIANT is ``RPN_SCORE_THRESH,CONTEXT``: ``0,48`` is the earlier behaviour (torchvision's
top-N proposal budgets per tile, 48 px context), ``0.3,96`` the shipped one. ``compare``: the
``fluorescence`` sample untiled and with ``--tile``: objects, pixels whose foreground differs,
one-to-one matches at IoU >= 0.9 (tp/fp/fn), identical up to ids, seconds, and the most RPN
proposals any tile kept. ``truth``: AP against the ground truth of three samples (untiled).
``cost``: median seconds of the 1024x1024 ``brightfield`` sample (one tile), variants interleaved.
``--diameter`` (default ``none``: no rescaling) is passed to every ``segment``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from torchvision.models.detection.rpn import RegionProposalNetwork

from seglab.inference.diameter import parse_diameter
from seglab.inference.engine import segment
from seglab.metrics import evaluate
from seglab.models.registry import get_model
from seglab.samples import load_sample


def same_objects(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b)) and bool(np.all((pairs[0] == 0) == (pairs[1] == 0)))


def variant(spec: str):
    """The built-in model with proposals chosen by objectness ``thr`` (0: top-N budgets) and context ``ctx``."""
    thr, ctx = float(spec.split(",")[0]), int(spec.split(",")[1])
    model = get_model("maskrcnn-nuclei")
    net, a = model.network, model.config.architecture
    rpn, rh = net.maskrcnn.rpn, net.maskrcnn.roi_heads
    net.rpn_score_thresh = thr
    if thr == 0:
        rpn._pre_nms_top_n["testing"] = int(a["rpn_pre_nms_top_n"])
        rpn._post_nms_top_n["testing"] = int(a["rpn_post_nms_top_n"])
        rh.detections_per_img = int(a["detections_per_img"])
    model.config.tile_context = ctx
    return model


def count_proposals() -> list[int]:
    """Record how many proposals each tile's RPN keeps (patched on the class: segmentation runs
    an inference copy of the network, made on its first call, not ``model.network`` itself)."""
    seen: list[int] = []
    original = RegionProposalNetwork.filter_proposals

    def record(self, *args):
        boxes, scores = original(self, *args)
        seen.extend(len(b) for b in boxes)
        return boxes, scores

    RegionProposalNetwork.filter_proposals = record
    return seen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["compare", "truth", "cost"])
    p.add_argument("variants", nargs="+")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--diameter", default="none", help="'none' (no rescaling: the tiles are the subject), 'auto' or pixels")
    args = p.parse_args()
    amp = not args.no_amp
    diameter = parse_diameter(args.diameter)
    if args.mode == "compare":
        image, _ = load_sample("fluorescence")
        seen = count_proposals()
        for spec in args.variants:
            model = variant(spec)
            seen.clear()
            t = time.perf_counter()
            whole = segment(model, image, tile_size=4096, amp=amp, device="cpu", diameter=diameter)
            tw = time.perf_counter() - t
            seen.clear()
            t = time.perf_counter()
            tiled = segment(model, image, tile_size=args.tile, amp=amp, device="cpu", diameter=diameter)
            tt = time.perf_counter() - t
            e = evaluate([(whole.labels, tiled.labels)], thresholds=(0.9,))["thresholds"]["0.90"]
            print(f"{spec} amp {amp}: objects {whole.n_objects} / {tiled.n_objects}, pixels differing "
                  f"{int(((whole.labels > 0) != (tiled.labels > 0)).sum())}, IoU>=0.9 tp/fp/fn {e['tp']}/{e['fp']}/{e['fn']}, "
                  f"identical {same_objects(whole.labels, tiled.labels)}, s {tw:.1f} / {tt:.1f}, "
                  f"most proposals in a tile {max(seen)}", flush=True)
    elif args.mode == "truth":
        samples = {k: load_sample(k) for k in ("fluorescence", "large_nuclei", "brightfield")}
        for spec in args.variants:
            model = variant(spec)
            pairs = [(truth, segment(model, image, amp=amp, device="cpu", diameter=diameter).labels) for image, truth in samples.values()]
            e = evaluate(pairs)
            print(f"{spec}: AP@0.5 {e['thresholds']['0.50']['ap']:.4f} AP@0.75 {e['thresholds']['0.75']['ap']:.4f}", flush=True)
    else:
        image, _ = load_sample("brightfield")
        models = {spec: variant(spec) for spec in args.variants}
        times: dict[str, list[float]] = {spec: [] for spec in models}
        objects = {}
        for m in models.values():
            segment(m, image, amp=amp, device="cpu", diameter=diameter)
        for _ in range(args.repeats):
            for spec, m in models.items():
                t = time.perf_counter()
                objects[spec] = segment(m, image, amp=amp, device="cpu", diameter=diameter).n_objects
                times[spec].append(time.perf_counter() - t)
        for spec, ts in times.items():
            print(f"{spec}: median {statistics.median(ts):.2f} s, min {min(ts):.2f} s, objects {objects[spec]}")


if __name__ == "__main__":
    main()
