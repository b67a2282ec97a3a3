"""A few nuclei in a large empty field: the grey models on sparse fluorescence (session 27, an open problem).

    python benchmarks/bench_sparse.py [--models stardist-nuclei ...] [--split tune|val] [--keep 3] [--side 1024] [--threads 1] [--json out.json]

Low-density cultures and large fields with a handful of labelled cells put the nuclei on far less
than 0.2 % of the image, so the 99.8th percentile that sets the white point lies in the
background's noise, and a model sees noise stretched over the whole range. Each dark-background
grey image of the split keeps ``--keep`` of its nuclei (the others replaced by its background
median) in the corner of a ``--side`` x ``--side`` field of Gaussian noise with its background's
level and robust spread; segmented as a user gets it (``segment(model, image)``), scored by pooled
AP@0.5 against the kept nuclei.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from machine import cpu_model, write_json  # benchmarks/machine.py
from seglab.inference.engine import segment
from seglab.metrics import evaluate
from seglab.models.registry import get_model
from splits import fluorescence_items  # benchmarks/splits.py


def sparse_field(image: np.ndarray, labels: np.ndarray, keep: int = 3, side: int = 1024,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``keep`` nuclei of the image in the corner of a ``side``-px field of its background noise, and their labels."""
    rng = np.random.default_rng(seed)
    im = image.astype(np.float32)
    ids = np.unique(labels[labels > 0])
    kept = rng.choice(ids, size=min(keep, len(ids)), replace=False)
    bgpix = im[labels == 0]
    bg = float(np.median(bgpix))
    sd = max(1.4826 * float(np.median(np.abs(bgpix - bg))), 0.5)
    field = rng.normal(bg, sd, (side, side)).astype(np.float32)
    h, w = min(im.shape[0], side), min(im.shape[1], side)
    field[:h, :w] = np.where(np.isin(labels, kept) | (labels == 0), im, bg)[:h, :w]
    truth = np.zeros((side, side), np.int32)
    truth[:h, :w] = np.where(np.isin(labels, kept), labels, 0)[:h, :w]
    return field, truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["stardist-nuclei", "unet-nuclei", "maskrcnn-nuclei"])
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--split", choices=["tune", "val"], default="tune")
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--side", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = fluorescence_items(args.data, args.split)
    fields = [sparse_field(it.image, it.labels, args.keep, args.side, seed=i) for i, it in enumerate(items)]
    results = {}
    for name in args.models:
        model = get_model(name)
        pairs = [(truth, segment(model, field).labels) for field, truth in fields]
        m = evaluate(pairs, thresholds=(0.5,))["thresholds"]["0.50"]
        results[name] = {k: (round(float(m[k]), 4) if k == "ap" else int(m[k])) for k in ("ap", "tp", "fp", "fn")}
        print(f"{name:<16} {args.keep} nuclei in {args.side}^2: AP@0.5 {m['ap']:.3f} (tp {m['tp']}, fp {m['fp']}, "
              f"fn {m['fn']})", flush=True)
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "split": args.split, "images": len(items), "keep": args.keep,
                               "side": args.side, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
