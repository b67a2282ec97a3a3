"""DSB2018 `val` images as other labs' RGB files arrive, read by each model (session 24).

    python benchmarks/bench_rgb_input.py --models stardist-he stardist-nuclei unet-nuclei \\
        [--threads 2] [--json out.json]

Each grey image is given four ways (the grey plane; grey in all three channels; in the blue
channel alone on black, as a DAPI export; in the green channel alone), each colour image as
stored. Per model, kind and way: pooled AP@0.5 (``seglab.metrics.evaluate``) of
``segment(model, image)`` with the default ``diameter="auto"`` (what a user gets), and how
:func:`seglab.inference.appearance.rgb_appearance` reads the RGB ones (what the Segment widget's
model proposal is based on: an RGB model is proposed only for ``stained``), also for the
MoNuSeg H&E tiles.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from machine import MONUSEG, cpu_model, write_json  # benchmarks/machine.py
from seglab.datasets import image_kind, load_split
from seglab.inference.appearance import rgb_appearance
from seglab.inference.engine import segment
from seglab.io import read_image
from seglab.metrics import evaluate
from seglab.models.registry import get_model


def ways(item) -> dict[str, tuple[np.ndarray, int | None]]:
    """The image as each kind of file would hold it: ``(array, channel_axis)``."""
    im = item.image
    if item.channel_axis is not None:
        return {"as stored (RGB)": (im, item.channel_axis)}
    zero = np.zeros_like(im)
    return {"grey": (im, None), "grey in R, G and B": (np.stack([im] * 3, -1), -1),
            "blue only": (np.stack([zero, zero, im], -1), -1), "green only": (np.stack([zero, im, zero], -1), -1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["stardist-he", "stardist-nuclei", "unet-nuclei"],
                   help="models to score (none: only how the images look)")
    p.add_argument("--monuseg", default=str(MONUSEG), help="H&E tiles whose look is also read (all of them)")
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = load_split(args.data, "val")
    looks: dict[str, Counter] = {}
    for it in items:
        for way, (img, axis) in ways(it).items():
            if axis is not None:
                looks.setdefault(f"{image_kind(it)} | {way}", Counter())[rgb_appearance(img).kind] += 1
    tiles = sorted((Path(args.monuseg) / "images").glob("*.tif"))
    for tile in tiles:
        looks.setdefault("MoNuSeg H&E tiles (train and val)", Counter())[rgb_appearance(read_image(tile)).kind] += 1
    for key, counts in looks.items():
        print(f"appearance  {key:<50} {dict(counts)}", flush=True)
    results: dict = {}
    for name in args.models:
        model = get_model(name)
        preds: dict[tuple[str, str], list] = {}
        for it in items:
            for way, (img, axis) in ways(it).items():
                seg = segment(model, img, channel_axis=axis)
                preds.setdefault((image_kind(it), way), []).append((it.labels, seg.labels))
        for (kind, way), pairs in sorted(preds.items()):
            ap = evaluate(pairs, thresholds=(0.5,))["thresholds"]["0.50"]["ap"]
            results.setdefault(name, {}).setdefault(kind, {})[way] = round(float(ap), 4)
            print(f"{name:<18} {kind:<26} ({len(pairs)} images) {way:<20} AP@0.5 {ap:.3f}", flush=True)
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "diameter": "auto",
                               "appearance": {k: dict(v) for k, v in looks.items()}, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
