"""Fluorescence with bright debris: the grey models with and without ``bright_outliers`` (session 27).

    python benchmarks/bench_debris.py [--models stardist-nuclei ...] [--split tune|val] [--threads 1] [--json out.json]

Dust, dead cells and antibody aggregates are often far brighter than the nuclei. Over more than
0.2 % of an image they set its 99.8th percentile, and the nuclei reach the model at a fraction of
their usual contrast. Each dark-background grey image of the split (``tune``: the recipes' held-out
part of ``train``, for choosing; ``val`` for the report) gets discs of debris (:func:`debris`),
is segmented as a user gets it (``segment(model, image)``: ``diameter`` and ``denoise`` ``"auto"``)
with the model's normalisation as shipped and with ``bright_outliers`` off, and is scored by pooled
AP@0.5 with the objects lying on the debris (over 30 % of their pixels) left out of labels and
predictions alike: whether a model calls a bright disc a nucleus is not the question here, whether
it still sees the nuclei is.
"""

from __future__ import annotations

import argparse
import copy
import sys
import numpy as np
import torch

from machine import cpu_model, write_json  # benchmarks/machine.py
from seglab.inference.engine import segment
from seglab.metrics import evaluate
from seglab.models.registry import get_model
from splits import fluorescence_items  # benchmarks/splits.py


def debris(im: np.ndarray, share: float = 0.01, brightness: float = 5.0, seed: int = 0) -> np.ndarray:
    """Bright debris: flat discs (as a saturated camera records them) of ``brightness`` x the
    image's maximum, radius 3 % of its shorter side, covering about ``share`` of its area, at
    places drawn from its size."""
    h, w = im.shape
    rng = np.random.default_rng(seed + h * 7919 + w)
    r = max(3, int(0.03 * min(h, w)))
    n = max(1, int(round(share * h * w / (np.pi * r * r))))
    yy, xx = np.mgrid[:h, :w]
    out = im.copy()
    for cy, cx in zip(rng.integers(0, h, n), rng.integers(0, w, n)):
        out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = brightness * float(im.max())
    return out


CONDITIONS = {
    "as is": lambda im: im,
    "debris over 1 % at 5x the maximum": debris,
    "debris over 0.3 % at 5x the maximum": lambda im: debris(im, share=0.003),
    "debris over 1 % at 2x the maximum": lambda im: debris(im, brightness=2.0),
    "debris over 1 % at 15x the maximum": lambda im: debris(im, brightness=15.0),
}


def off_debris(labels: np.ndarray, on: np.ndarray) -> np.ndarray:
    """``labels`` without the objects that lie on the mask ``on`` (over 30 % of their pixels)."""
    out = labels.copy()
    ids = np.unique(labels[on & (labels > 0)])
    if ids.size:
        area = np.bincount(labels.ravel())
        over = np.bincount(labels[on].ravel(), minlength=area.size)
        drop = ids[over[ids] > 0.3 * area[ids]]
        out[np.isin(labels, drop)] = 0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["stardist-nuclei", "unet-nuclei", "maskrcnn-nuclei"])
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--split", choices=["tune", "val"], default="tune")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = fluorescence_items(args.data, args.split)
    results: dict = {}
    flags: dict = {}
    for name in args.models:
        shipped = get_model(name)
        plain = copy.deepcopy(shipped)
        plain.config.normalization = {**shipped.config.normalization, "bright_outliers": False}
        flags[name] = bool(shipped.config.normalization.get("bright_outliers"))
        for arm, model in (("bright_outliers off", plain), ("as shipped", shipped)):
            row = {}
            for cond, change in CONDITIONS.items():
                pairs = []
                for it in items:
                    im = it.image.astype(np.float32)
                    x = change(im)
                    on = x > 1.01 * float(im.max())
                    pairs.append((off_debris(it.labels, on), off_debris(segment(model, x).labels, on)))
                row[cond] = round(float(evaluate(pairs, thresholds=(0.5,))["thresholds"]["0.50"]["ap"]), 4)
                print(f"{name:<16} {arm:<20} {cond:<38} AP@0.5 {row[cond]:.3f}", flush=True)
            results[f"{name}, {arm}"] = row
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "split": args.split, "images": len(items), "diameter": "auto",
                               "bright_outliers_as_shipped": flags,
                               "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
