"""A few nuclei in a large empty field: the grey models on sparse fluorescence (sessions 27-28).

    python benchmarks/bench_sparse.py [--models stardist-nuclei ...] [--split tune|val] [--keep 3] [--side 1024] [--compare] [--enlarge 3 --side 2048 --every 3 [--true-diameter]] [--debris X] [--threads 1] [--json out.json]

Low-density cultures and large fields with a handful of labelled cells put the nuclei on far less
than 0.2 % of the image, so the 99.8th percentile that sets the white point lies in the
background's noise, and a model sees noise stretched over the whole range. Each dark-background
grey image of the split keeps ``--keep`` of its nuclei, with their halo, in the corner of a
``--side`` x ``--side`` field of its own background pixels drawn at random (:func:`sparse_field`);
segmented as a user gets it (``segment(model, image)``), scored by pooled AP@0.5 against the kept
nuclei. ``--keep 0`` is an empty view: every object found is false.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from machine import cpu_model, write_json  # benchmarks/machine.py
from seglab.inference.diameter import AUTO, equivalent_diameters
from seglab.inference.engine import segment
from seglab.inference.rescale import resize_image, resize_labels
from seglab.metrics import evaluate
from seglab.models.registry import get_model
from bench_debris import off_debris
from splits import fluorescence_items  # benchmarks/splits.py


def sparse_field(image: np.ndarray, labels: np.ndarray, keep: int = 3, side: int = 1024,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``keep`` nuclei of the image (0: an empty view), with a 3 px rim (their halo), in the corner of
    a ``side``-px field of its background pixels (those within 6 robust sigmas of its median: not the
    unlabelled objects among them) drawn at random: what a camera shows of an empty region, the
    background's level, noise and quantisation, no structure. Returns the field and its labels."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    im = image.astype(np.float32)
    ids = np.unique(labels[labels > 0])
    kept = rng.choice(ids, size=min(keep, len(ids)), replace=False)
    near = ndi.binary_dilation(labels > 0, iterations=3)
    background = im[~near] if (~near).any() else im[labels == 0]
    level = float(np.median(background))
    spread = max(1.4826 * float(np.median(np.abs(background - level))), 1.0)
    background = background[np.abs(background - level) <= 6 * spread]  # not the unlabelled objects in it
    field = rng.choice(background, size=(side, side)).astype(np.float32)
    shown = np.isin(labels, kept)
    rim = ndi.binary_dilation(shown, iterations=3) & ~((labels > 0) & ~shown)  # the kept nuclei and their halo
    h, w = min(im.shape[0], side), min(im.shape[1], side)
    corner = field[:h, :w]
    corner[rim[:h, :w]] = im[:h, :w][rim[:h, :w]]
    truth = np.zeros((side, side), np.int32)
    truth[:h, :w] = np.where(shown, labels, 0)[:h, :w]
    return field, truth


def with_debris(field: np.ndarray, brightness: float) -> tuple[np.ndarray, np.ndarray]:
    """The field with one flat disc of bright debris (``brightness`` x its maximum, radius 3 % of its
    side) in the corner opposite the nuclei, and the mask of what the debris covers."""
    side = field.shape[0]
    r = max(3, int(0.03 * side))
    yy, xx = np.mgrid[:side, :side]
    on = (yy - 0.85 * side) ** 2 + (xx - 0.85 * side) ** 2 <= r * r
    out = field.copy()
    out[on] = brightness * float(field.max())
    return out, on


def enlarged(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The image (bilinear) and labels (nearest) resized by ``factor`` (as they are at 1)."""
    if factor == 1.0:
        return image, labels
    out = (int(round(image.shape[0] * factor)), int(round(image.shape[1] * factor)))
    return resize_image(image.astype(np.float32)[None], out)[0], resize_labels(labels, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["stardist-nuclei", "unet-nuclei", "maskrcnn-nuclei"])
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--split", choices=["tune", "val"], default="tune")
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--side", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compare", action="store_true",
                   help="each model with normalization['sparse_objects'] off and on (default: as shipped)")
    p.add_argument("--enlarge", type=float, default=1.0,
                   help="resize each image (and labels) by this factor first: large nuclei, few and far apart")
    p.add_argument("--every", type=int, default=1, help="every n-th image of the split")
    p.add_argument("--true-diameter", action="store_true",
                   help="segment with the nuclei's true diameter instead of auto (the reference for --enlarge)")
    p.add_argument("--debris", type=float, default=0.0, metavar="X",
                   help="add a disc of bright debris at X times the field's maximum (objects on it not scored)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = fluorescence_items(args.data, args.split)[:: args.every]
    sized = [enlarged(it.image, it.labels, args.enlarge) for it in items]
    fields = [sparse_field(image, labels, args.keep, args.side, seed=i) for i, (image, labels) in enumerate(sized)]
    covered = [np.zeros((args.side, args.side), bool)] * len(fields)
    if args.debris:
        with_disc = [with_debris(field, args.debris) for field, _ in fields]
        fields = [(field, off_debris(truth, on)) for (field, on), (_, truth) in zip(with_disc, fields)]
        covered = [on for _, on in with_disc]
    truths = ([float(np.median(equivalent_diameters(labels))) for _, labels in sized] if args.true_diameter
              else [AUTO] * len(items))
    results: dict = {}
    for name in args.models:
        model = get_model(name)
        shipped = bool(model.config.normalization.get("sparse_objects"))
        for rule in ([False, True] if args.compare else [shipped]):
            model.config.normalization["sparse_objects"] = rule
            pairs = [(truth, off_debris(segment(model, field, diameter=d).labels, on))
                     for (field, truth), d, on in zip(fields, truths, covered)]
            m = evaluate(pairs, thresholds=(0.5,))["thresholds"]["0.50"]
            key = f"{name}, sparse_objects {'on' if rule else 'off'}"
            results[key] = {k: (round(float(m[k]), 4) if k == "ap" else int(m[k])) for k in ("ap", "tp", "fp", "fn")}
            print(f"{key:<36} {args.keep} nuclei in {args.side}^2: AP@0.5 {m['ap']:.3f} (tp {m['tp']}, "
                  f"fp {m['fp']}, fn {m['fn']})", flush=True)
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "split": args.split, "images": len(items), "keep": args.keep,
                               "side": args.side, "enlarge": args.enlarge, "every": args.every,
                               "diameter": "true" if args.true_diameter else AUTO, "debris": args.debris,
                               "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
