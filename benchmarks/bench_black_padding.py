"""Grey models on brightfield images with black padding, filled or not (session 26).

    python benchmarks/bench_black_padding.py [--models stardist-nuclei ...] [--json out.json]

DSB2018's grey brightfield images (bright background; ``val`` and, as more examples of the kind,
``train``, reported apart) as they are, beside black padding (a sixth of the side on every
edge: a scanner's out-of-scan area) and rotated 25 degrees with black corners (bilinear, as a
slide viewer exports a rotated region), each segmented as a user gets it (``segment(model,
image)``: ``diameter="auto"``) with the model's ``normalization["fill_black"]`` as shipped
(``"brightfield"``: black padding beside a bright background filled with it) and without it
(the padding left black, as before). Pooled AP@0.5 against the labels moved the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage as ndi

from machine import cpu_model, write_json  # benchmarks/machine.py
from seglab.datasets import image_kind, load_split
from seglab.inference.engine import segment
from seglab.metrics import evaluate
from seglab.models.registry import get_model

ANGLE = 25.0


def padded(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = image.shape[0] // 6
    return np.pad(image, p), np.pad(labels, p)


def rotated(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (ndi.rotate(image, ANGLE, order=1, reshape=True, cval=0, mode="grid-constant"),
            ndi.rotate(labels, ANGLE, order=0, reshape=True, cval=0, mode="grid-constant"))


CHANGES: dict[str, Callable] = {"as is": lambda im, lab: (im, lab), "beside black padding": padded,
                                "rotated, black corners": rotated}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["stardist-nuclei", "unet-nuclei", "maskrcnn-nuclei"])
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--splits", nargs="+", default=["val", "train"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = {split: [it for it in load_split(args.data, split) if image_kind(it) == "grey, bright background"]
              for split in args.splits}
    results: dict = {"cpu": cpu_model(), "threads": args.threads, "angle": ANGLE,
                     "images": {s: [it.name for it in v] for s, v in images.items()}, "models": {}}
    for name in args.models:
        model = get_model(name)
        shipped = dict(model.config.normalization)
        off = {k: v for k, v in shipped.items() if k != "fill_black"}
        cells = results["models"].setdefault(name, {"fill_black": shipped.get("fill_black", False)})
        for split, items in images.items():
            for change, how in CHANGES.items():
                for mode, norm in (("left black", off), ("filled", shipped)):
                    if change == "as is" and mode == "filled":
                        continue  # nothing to fill: the same run
                    model.config.normalization = norm
                    pairs = []
                    for it in items:
                        image, labels = how(it.image, it.labels)
                        pairs.append((labels, segment(model, image).labels))
                    ap = evaluate(pairs, thresholds=(0.5,))["thresholds"]["0.50"]["ap"]
                    cells[f"{split} / {change} / {mode}"] = round(ap, 4)
                    print(f"{name:16s} {split:5s} ({len(items):2d}) {change:24s} {mode:10s} AP@0.5 {ap:.3f}", flush=True)
                    if args.json:
                        write_json(args.json, results)
        model.config.normalization = shipped


if __name__ == "__main__":
    main()
