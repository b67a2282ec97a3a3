"""An H&E model on the MoNuSeg ``val`` tiles as other labs' stains and scanners give them (session 24).

    python benchmarks/bench_he_stain.py [--model stardist-he] [--threads N] [--json out.json]

Each tile is changed the way slides differ between labs, then segmented at the model's own scale
(``diameter=None``, so that only colour differs) and scored as ``bench_he_val.py`` scores
(PQ and AJI per tile averaged over tiles, pooled AP@0.5): haematoxylin and eosin stronger or
weaker (colour deconvolution, ``skimage.color.rgb2hed``, each stain's density scaled), faded
(blended with white), a yellow scanner white balance, JPEG at quality 60, and the tissue in grey
(luma in all three channels).
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import replace

import numpy as np
from PIL import Image
from skimage.color import hed2rgb, rgb2hed

from bench_he_val import score_mode  # benchmarks/bench_he_val.py
from machine import add_he_model_options, cpu_model, open_model, write_json  # benchmarks/machine.py
from seglab.datasets import load_split


def stained(img: np.ndarray, h: float, e: float) -> np.ndarray:
    """The tile with haematoxylin density times ``h`` and eosin times ``e``."""
    hed = rgb2hed(img)
    hed[..., 0] *= h
    hed[..., 1] *= e
    return (np.clip(hed2rgb(hed), 0, 1) * 255).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf))


CHANGES = {
    "as is": lambda im: im,
    "haematoxylin x0.7, eosin x1.3": lambda im: stained(im, 0.7, 1.3),
    "haematoxylin x1.3, eosin x0.6": lambda im: stained(im, 1.3, 0.6),
    "faded (0.7 tile + 0.3 white)": lambda im: (0.7 * im + 0.3 * 255).astype(np.uint8),
    "yellow white balance (1, 0.95, 0.8)": lambda im: np.clip(im * np.array([1.0, 0.95, 0.8]), 0, 255).astype(np.uint8),
    "JPEG quality 60": lambda im: jpeg(im, 60),
    "grey (luma) in R, G and B": lambda im: np.repeat((im @ np.array([0.299, 0.587, 0.114]))[..., None], 3, -1)
    .astype(np.uint8),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_he_model_options(p)
    args = p.parse_args(argv)
    model = open_model(args)
    items = load_split(args.monuseg, "val")
    results = {}
    for name, change in CHANGES.items():
        changed = [replace(it, image=change(np.moveaxis(it.image, it.channel_axis, -1)), channel_axis=-1)
                   for it in items]
        r = score_mode(model, changed, "none")
        results[name] = {k: r[k] for k in ("pq", "aji", "ap50")}
        print(f"{name:<38} PQ {r['pq']:.3f}  AJI {r['aji']:.3f}  AP@0.5 {r['ap50']:.3f}", flush=True)
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "model": args.model, "diameter": None, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
