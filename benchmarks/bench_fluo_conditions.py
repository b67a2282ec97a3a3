"""A grey model on DSB2018 `val` fluorescence as other microscopes and settings give it (session 24).

    python benchmarks/bench_fluo_conditions.py [--model stardist-nuclei] [--split val|tune] [--changes ...] [--threads 2] [--json out.json]

The 53 dark-background grey `val` images, changed the way acquisitions differ, segmented with
the default ``diameter="auto"`` and scored by pooled AP@0.5 (``seglab.metrics.evaluate``):
contrast curves (gamma 0.5 and 2), vignetting, out-of-focus haze, saturation, defocus (Gaussian
blur), and shot noise at low light (each pixel a Poisson count, the brightest pixel expecting
``N`` photons). For the noisy ones also with a Gaussian pre-filter (``sigma`` px) before
segmenting: what smoothing would give back (in the product since session 25 as ``denoise="auto"``,
``benchmarks/bench_low_light.py``; ``--denoise auto`` scores the product as a user gets it, the
default ``off`` the conditions as they are).

``--noise-levels`` instead prints, for the dark-background ``train`` images (never ``val``), the
spread of :func:`noise_level` clean and at each shot-noise level: groundwork for a trigger that
would smooth only noisy images.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage as ndi

from machine import cpu_model, write_json  # benchmarks/machine.py
from seglab.inference.engine import segment
from seglab.metrics import evaluate
from seglab.models.registry import get_model
from splits import fluorescence_items  # benchmarks/splits.py


def vignetting(im: np.ndarray, fall: float = 0.6) -> np.ndarray:
    h, w = im.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)) / np.sqrt(2)
    return im * (1 - fall * r ** 2)


def shot_noise(photons: float, seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    return lambda im: rng.poisson(im / max(float(im.max()), 1.0) * photons).astype(np.float32)


CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "as is": lambda im: im,
    "gamma 0.5": lambda im: 255 * (im / 255) ** 0.5,
    "gamma 2": lambda im: 255 * (im / 255) ** 2,
    "vignetting (60 % darker at the corners)": vignetting,
    "haze (+ a 20 px blur of itself x0.5, + 40)": lambda im: im + 0.5 * ndi.gaussian_filter(im, 20) + 40,
    "saturated at half the maximum": lambda im: np.minimum(im, 0.5 * im.max()),
    "12-bit camera (x16, + an offset of 100)": lambda im: im * 16 + 100,
    "background ramp (0 to half the maximum, left to right)": lambda im: im + 0.5 * float(im.max()) * np.linspace(0, 1, im.shape[1])[None, :],
    "defocus (Gaussian blur, sigma 2 px)": lambda im: ndi.gaussian_filter(im, 2),
    "shot noise, 1000 photons at the brightest": shot_noise(1000),
    "shot noise, 100 photons at the brightest": shot_noise(100),
    "shot noise, 30 photons at the brightest": shot_noise(30),
    "shot noise, 10 photons at the brightest": shot_noise(10),
}


def noise_level(image: np.ndarray) -> float:
    """The product's noise measure (:func:`seglab.inference.denoise.noise_level`) of a grey plane as
    a grey model sees it (percentile-normalised). Session 24 measured over all the object pixels
    (their edges too): 0.028 median / 0.194 largest on the clean train images; since session 25
    over their flatter half (0.024 / 0.109)."""
    from seglab.inference.denoise import noise_level as product_noise_level
    from seglab.inference.normalize import model_input

    return product_noise_level(model_input(image, 1, {"low": 1.0, "high": 99.8}))


def noise_levels(data: str) -> dict[str, dict[str, float]]:
    """The spread of :func:`noise_level` over the dark-background ``train`` images, clean and noisy."""
    items = fluorescence_items(data, "train")
    out = {}
    for name in ["as is"] + [k for k in CHANGES if k.startswith("shot noise")]:
        v = np.array([noise_level(CHANGES[name](it.image.astype(np.float32))) for it in items])
        v = v[np.isfinite(v)]
        out[name] = {"images": int(len(v)), **{f"p{q}": round(float(np.percentile(v, q)), 4) for q in (0, 5, 50, 95, 100)}}
        print(f"{name:<44} " + "  ".join(f"{k} {val}" for k, val in out[name].items()), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="stardist-nuclei")
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prefilter", nargs="*", type=float, default=[1.0], help="Gaussian sigmas tried on noisy images")
    p.add_argument("--denoise", default="off", choices=["off", "auto"],
                   help="the product's smoothing of noisy images (session 24's figures: off)")
    p.add_argument("--noise-levels", action="store_true", help="only the noise levels of the train images")
    p.add_argument("--split", choices=["tune", "val"], default="val",
                   help="val (the report) or the recipes' tune set (held out of train: for choosing)")
    p.add_argument("--changes", nargs="*", default=None, choices=list(CHANGES), help="only these (default: all)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.noise_levels:
        levels = noise_levels(args.data)
        if args.json:
            write_json(args.json, {"cpu": cpu_model(), "split": "train", "noise_levels": levels})
        return 0
    torch.set_num_threads(args.threads)
    model = get_model(args.model)
    items = fluorescence_items(args.data, args.split)
    results: dict = {}
    for name, change in CHANGES.items():
        if args.changes is not None and name not in args.changes:
            continue
        images = [change(it.image.astype(np.float32)) for it in items]
        for sigma in [0.0] + (list(args.prefilter) if "noise" in name else []):
            pairs = [(it.labels, segment(model, ndi.gaussian_filter(x, sigma), denoise=False).labels if sigma
                      else segment(model, x, denoise=args.denoise).labels) for it, x in zip(items, images)]
            ap = float(evaluate(pairs, thresholds=(0.5,))["thresholds"]["0.50"]["ap"])
            key = name if not sigma else f"{name}, pre-filter sigma {sigma:g}"
            results[key] = round(ap, 4)
            print(f"{args.model:<16} {key:<62} AP@0.5 {ap:.3f}", flush=True)
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "model": args.model, "split": args.split, "images": len(items),
                               "diameter": "auto",
                               "denoise": args.denoise, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
