"""What the errors of a model on DSB2018 ``val`` are: each missed nucleus and each false object by cause.

    python benchmarks/bench_val_errors.py --model stardist-nuclei [--diameter none|auto|labels] [--json out.json]

A true nucleus without a match at IoU 0.5 is *merged* (one predicted object covers it and, by at
least a fifth of its own area each, another nucleus too), *split* (two or more predicted objects
cover a fifth of it or more each), *missed* (no predicted object covers a fifth of it) or
*outline* (one predicted object covers it, too loosely or too tightly for IoU 0.5). A predicted
object without a match is *background* (less than a fifth of it on nuclei), a *merge* (a fifth
or more of it on each of two nuclei) or a *fragment / outline* (mostly on one nucleus). Missed
and merged nuclei get their median area. ``--diameter labels`` segments each image at the median
equivalent diameter of its own labels (what a perfect size estimate would give), to tell errors
of size from errors of the model; the default is the model's own scale (``none``), as the cards
report it.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

import numpy as np
import torch

from machine import cpu_model, load_1min, write_json  # benchmarks/machine.py
from seglab.datasets import image_kind, load_split
from seglab.inference.diameter import equivalent_diameters
from seglab.inference.engine import segment
from seglab.metrics import evaluate, iou_from_overlaps, overlaps
from seglab.models.registry import get_model

#: the share of an object that counts as "covering" it (see the module docstring)
COVER = 0.2


def causes(true: np.ndarray, pred: np.ndarray) -> tuple[list[tuple[str, int]], list[str]]:
    """Unmatched true objects as ``(cause, area)`` and unmatched predicted objects as causes."""
    inter, area_t, area_p = overlaps(true, pred)
    iou = iou_from_overlaps(inter, area_t, area_p)
    matched_t = (iou >= 0.5).any(axis=1)  # as seglab.metrics.match_counts matches at 0.5
    matched_p = (iou >= 0.5).any(axis=0)
    of_true = inter / np.maximum(area_t[:, None], 1)  # share of each true object a prediction covers
    of_pred = inter / np.maximum(area_p[None, :], 1)  # share of each prediction on each true object
    missed = []
    for t in np.flatnonzero(~matched_t):
        covering = np.flatnonzero(of_true[t] >= COVER)
        if covering.size == 0:
            cause = "missed"
        elif covering.size >= 2:
            cause = "split"
        elif (of_pred[:, covering[0]] >= COVER).sum() >= 2:
            cause = "merged"
        else:
            cause = "outline"
        missed.append((cause, int(area_t[t])))
    false = []
    for p in np.flatnonzero(~matched_p):
        on = of_pred[:, p]
        false.append("background" if on.sum() < COVER else "merge" if (on >= COVER).sum() >= 2
                     else "fragment / outline")
    return missed, false


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="stardist-nuclei")
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--diameter", default="none", choices=["none", "auto", "labels"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = get_model(args.model)
    items = load_split(args.data, "val")
    t0, load = time.perf_counter(), load_1min()
    pairs, fn, fp = [], Counter(), Counter()
    areas: dict[tuple[str, str], list[int]] = defaultdict(list)
    for it in items:
        d = {"none": None, "auto": "auto"}.get(args.diameter)
        if args.diameter == "labels":
            d = float(np.median(equivalent_diameters(it.labels)))
        kw = {} if it.channel_axis is None else {"channel_axis": it.channel_axis}
        pred = segment(model, it.image, diameter=d, **kw).labels
        pairs.append((it.labels, pred))
        kind = image_kind(it)
        missed, false = causes(it.labels, pred)
        for cause, area in missed:
            fn[(kind, cause)] += 1
            areas[(kind, cause)].append(area)
        for cause in false:
            fp[(kind, cause)] += 1
    overall = evaluate(pairs)["thresholds"]["0.50"]
    print(f"{args.model} diameter={args.diameter}: AP@0.5 {overall['ap']:.4f} "
          f"({overall['tp']} matched, {overall['fp']} false, {overall['fn']} missed)")
    if sum(fn.values()) != overall["fn"] or sum(fp.values()) != overall["fp"]:  # (only ties at IoU 0.5 differ)
        print(f"  note: {sum(fn.values())} missed and {sum(fp.values())} false by cause against the matching's "
              f"{overall['fn']} and {overall['fp']}")
    rows = []
    for (kind, cause), n in sorted(fn.items()):
        med = int(np.median(areas[(kind, cause)]))
        rows.append({"kind": kind, "error": "missed nucleus", "cause": cause, "n": n, "median_area": med})
        print(f"  missed  {kind:26s} {cause:20s} {n:4d}  median area {med} px")
    for (kind, cause), n in sorted(fp.items()):
        rows.append({"kind": kind, "error": "false object", "cause": cause, "n": n})
        print(f"  false   {kind:26s} {cause:20s} {n:4d}")
    if args.json:
        write_json(args.json, {"model": args.model, "diameter": args.diameter, "cpu": cpu_model(),
                               "torch_threads": args.threads, "load_avg_1min": load,
                               "seconds": round(time.perf_counter() - t0, 1), "ap50": overall, "causes": rows})


if __name__ == "__main__":
    main()
