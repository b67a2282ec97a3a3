"""An H&E model on the MoNuSeg ``val`` tiles as other labs' stains and scanners give them (session 24).

    python benchmarks/bench_he_stain.py [--model stardist-he] [--factor 0.5] [--modes none auto]
                                        [--threads N] [--json out.json]

Each tile is changed the way slides differ between labs, then segmented and scored as
``bench_he_val.py`` scores (PQ and AJI per tile averaged over tiles, pooled AP@0.5), with each
``--modes`` (``none``: the model's own scale, so that only colour differs; ``auto``; ``true``:
the rescale that undoes ``--factor``). Colour: haematoxylin and eosin stronger or weaker (colour
deconvolution, ``skimage.color.rgb2hed``, each stain's density scaled), faded (blended with
white), a yellow scanner white balance, JPEG at quality 60, the tissue in grey (luma in all three
channels). Geometry (labels moved alike): beside as much black (a scanner's out-of-scan area),
rotated 30 degrees with black corners. ``--factor`` resizes the tiles first (0.5: as if scanned
at 20x, ``bench_scale.resize_item``).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import hed2rgb, rgb2hed

from bench_he_val import score_mode  # benchmarks/bench_he_val.py
from bench_scale import resize_item  # benchmarks/bench_scale.py
from machine import add_he_model_options, cpu_model, open_model, write_json  # benchmarks/machine.py
from seglab.datasets import load_split
from seglab.evaluation import AnnotatedImage


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


def beside_black(img: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out, out_lab = np.zeros((img.shape[0], 2 * img.shape[1], 3), img.dtype), np.zeros((lab.shape[0], 2 * lab.shape[1]),
                                                                                      lab.dtype)
    out[:, img.shape[1]:], out_lab[:, lab.shape[1]:] = img, lab
    return out, out_lab


def rotated(img: np.ndarray, lab: np.ndarray, degrees: float = 30) -> tuple[np.ndarray, np.ndarray]:
    rot = np.stack([ndi.rotate(img[..., c], degrees, reshape=True, order=1, cval=0) for c in range(3)], -1)
    return rot, ndi.rotate(lab, degrees, reshape=True, order=0, cval=0)


def colour(fn: Callable[[np.ndarray], np.ndarray]) -> Callable:
    return lambda img, lab: (fn(img), lab)


CHANGES: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "as is": colour(lambda im: im),
    "haematoxylin x0.7, eosin x1.3": colour(lambda im: stained(im, 0.7, 1.3)),
    "haematoxylin x1.3, eosin x0.6": colour(lambda im: stained(im, 1.3, 0.6)),
    "faded (0.7 tile + 0.3 white)": colour(lambda im: (0.7 * im + 0.3 * 255).astype(np.uint8)),
    "yellow white balance (1, 0.95, 0.8)": colour(
        lambda im: np.clip(im * np.array([1.0, 0.95, 0.8]), 0, 255).astype(np.uint8)),
    "JPEG quality 60": colour(lambda im: jpeg(im, 60)),
    "grey (luma) in R, G and B": colour(
        lambda im: np.repeat((im @ np.array([0.299, 0.587, 0.114]))[..., None], 3, -1).astype(np.uint8)),
    "beside as much black": beside_black,
    "rotated 30 degrees, black corners": rotated,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_he_model_options(p)
    p.add_argument("--factor", type=float, default=1.0, help="resize the tiles first (0.5: as if at 20x)")
    p.add_argument("--modes", nargs="+", default=["none"], choices=["none", "auto", "true"])
    p.add_argument("--changes", nargs="+", default=list(CHANGES), choices=list(CHANGES))
    args = p.parse_args(argv)
    model = open_model(args)
    items = [resize_item(it, args.factor) for it in load_split(args.monuseg, "val")]
    results: dict = {}
    for name in args.changes:
        changed = []
        for it in items:
            img = np.clip(np.moveaxis(np.asarray(it.image), it.channel_axis, -1), 0, 255).astype(np.uint8)
            img, lab = CHANGES[name](img, it.labels)
            changed.append(AnnotatedImage(img, lab, -1, it.name))
        for mode in args.modes:
            r = score_mode(model, changed, mode, args.factor)
            results.setdefault(name, {})[mode] = {k: r[k] for k in ("pq", "aji", "ap50")}
            print(f"{name:<38} {mode:<5} PQ {r['pq']:.3f}  AJI {r['aji']:.3f}  AP@0.5 {r['ap50']:.3f}", flush=True)
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "model": args.model, "factor": args.factor, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
