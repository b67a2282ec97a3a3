"""Models on out-of-focus images: DSB2018 images blurred, scored per image kind (session 25).

    python benchmarks/bench_defocus.py --models unet-nuclei runs/s25/un-blur/best [--split tune|val] [--json out.json]

Every image of the split (``tune``: the recipes' held-out part of ``train``, for choosing;
``val`` for the report) as it is and blurred by a Gaussian of each sigma (pixels of the image as
given: a camera's defocus), segmented as a user gets it (``segment(model, image)``: ``diameter``
and ``denoise`` ``"auto"``), pooled AP@0.5 over all images and per kind. The mean over the
sigmas is what a model that tolerates defocus raises.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from scipy import ndimage as ndi

from machine import cpu_model, write_json  # benchmarks/machine.py
from seglab.inference.engine import segment
from seglab.metrics import evaluate
from seglab.models.registry import ModelRegistry
from splits import scores_by_kind, split_items  # benchmarks/splits.py


def blurred(image: np.ndarray, sigma: float, channel_axis: int | None) -> np.ndarray:
    if not sigma:
        return image
    s = [sigma] * image.ndim
    if channel_axis is not None:
        s[channel_axis] = 0.0
    return ndi.gaussian_filter(image.astype(np.float32), s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["unet-nuclei"])
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--split", choices=["tune", "val"], default="tune")
    p.add_argument("--sigmas", nargs="*", type=float, default=[0.0, 1.0, 2.0, 3.0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = split_items(args.data, args.split)
    reg = ModelRegistry()
    results: dict = {}
    for ref in args.models:
        model = reg.load(reg.resolve(ref))
        row: dict = {}
        for sigma in args.sigmas:
            preds = [segment(model, blurred(it.image, sigma, it.channel_axis), channel_axis=it.channel_axis).labels
                     for it in items]
            scores = {"all": evaluate([(it.labels, q) for it, q in zip(items, preds)], thresholds=(0.5,)),
                      **scores_by_kind(items, preds, thresholds=(0.5,))}
            row[f"sigma {sigma:g}"] = {k: round(float(v["thresholds"]["0.50"]["ap"]), 4) for k, v in scores.items()}
            print(f"{ref:<32} sigma {sigma:<4g} " + "  ".join(f"{k} {v:.3f}" for k, v in row[f'sigma {sigma:g}'].items()),
                  flush=True)
        row["mean over sigmas (all)"] = round(float(np.mean([row[f"sigma {s:g}"]["all"] for s in args.sigmas])), 4)
        print(f"{ref:<32} mean over sigmas (all images) {row['mean over sigmas (all)']:.3f}", flush=True)
        results[ref] = row
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "split": args.split, "images": len(items), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
