"""Smoothing noisy (low-light) fluorescence before a grey model: which sigma, at which noise (session 25).

    python benchmarks/bench_low_light.py [--model stardist-nuclei] [--split tune|val] [--json out.json]

The dark-background grey images of the recipes' ``tune`` set (held out of ``train``, never
``val``; ``--split val`` for the report) as they are and under shot noise (each pixel a Poisson
count, the brightest pixel expecting ``N`` photons, N in 1000 .. 3), segmented with
``diameter="auto"`` after a Gaussian pre-filter of each sigma (0: none); per image its noise
(:func:`seglab.inference.denoise.noise_level`) and its matches at IoU 0.5. From those, the rule
(``[[noise level, sigma], ...]``) with the best pooled AP@0.5 averaged over the conditions that
loses at most 0.002 on the images as they are: what a model's ``denoise["steps"]`` is set to.
``--product`` instead scores the product's ``denoise="auto"`` against ``"off"``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from scipy import ndimage as ndi

from machine import cpu_model, write_json  # benchmarks/machine.py
from seglab.inference.engine import segment
from seglab.inference.normalize import model_input
from seglab.metrics import evaluate, image_counts
from seglab.models.registry import get_model
from splits import fluorescence_items  # benchmarks/splits.py


def shot_noise(image: np.ndarray, photons: float | None, rng: np.random.Generator) -> np.ndarray:
    if photons is None:
        return image.astype(np.float32)
    return rng.poisson(image / max(float(image.max()), 1.0) * photons).astype(np.float32)


def plane_noise(image: np.ndarray) -> float:
    """The noise level the product reads on a grey plane (its central window, normalised)."""
    from seglab.inference.denoise import noise_level, noise_window

    x = model_input(image, 1, {"low": 1.0, "high": 99.8})
    return noise_level(x[(slice(None), *noise_window(*x.shape[1:]))])


def noisy_images(items, photons: float) -> list[np.ndarray]:
    """The items under shot noise of ``photons`` (0: as they are); the same draws every time."""
    rng = np.random.default_rng(25)
    return [shot_noise(it.image, photons or None, rng) for it in items]


def image_runs(model, items, photons: list[float], sigmas: list[float]) -> list[dict]:
    """Per condition and image: its noise level and, per sigma, its (tp, fp, fn) at IoU 0.5."""
    rows = []
    for ph in photons:
        for it, x in zip(items, noisy_images(items, ph)):
            row = {"photons": ph, "image": it.name, "noise": round(plane_noise(x), 5), "counts": {}}
            for sigma in sigmas:
                pred = segment(model, ndi.gaussian_filter(x, sigma) if sigma else x, denoise=False).labels
                c = image_counts(it.labels, pred, (0.5,))[0.5]
                row["counts"][f"{sigma:g}"] = [int(c.tp), int(c.fp), int(c.fn)]
            rows.append(row)
        print(f"{ph:g} photons: " + "  ".join(f"sigma {k} AP {pooled(rows, ph, lambda r, k=k: k):.3f}"
                                             for k in rows[-1]["counts"]), flush=True)
    return rows


def pooled(rows: list[dict], photons: float, pick) -> float:
    """Pooled AP@0.5 of one condition, each image's sigma chosen by ``pick(row)``."""
    tp = fp = fn = 0
    for r in rows:
        if r["photons"] == photons:
            a, b, c = r["counts"][pick(r)]
            tp, fp, fn = tp + a, fp + b, fn + c
    return tp / max(tp + fp + fn, 1)


def fit_rule(rows: list[dict], max_clean_loss: float = 0.002, max_steps: int = 3, min_level: float = 0.07) -> dict:
    """The steps (up to ``max_steps`` triggers, levels and sigmas rising) with the best mean pooled
    AP@0.5 over the conditions, losing at most ``max_clean_loss`` on the images as they are; no
    trigger below ``min_level`` (0.07: the 95th percentile of the clean dark-background ``train``
    images' noise at half their size, 0.072; at their own size 0.037: smoothing is for noisy
    images, not a change of the model on clean ones, small nuclei included)."""
    import itertools

    sigmas = list(rows[0]["counts"])
    values = [float(k) for k in sigmas]
    conds = sorted({r["photons"] for r in rows})
    cond = np.array([conds.index(r["photons"]) for r in rows])
    noise = np.array([np.nan if r["noise"] is None else r["noise"] for r in rows])
    counts = np.array([[r["counts"][k] for k in sigmas] for r in rows], dtype=np.int64)  # (rows, sigmas, 3)
    levels = [round(v, 3) for v in np.arange(min_level, 0.40, 0.01)]
    zero = values.index(0.0)

    def aps(pick: np.ndarray) -> np.ndarray:
        c = counts[np.arange(len(rows)), pick]  # (rows, 3)
        sums = np.zeros((len(conds), 3))
        np.add.at(sums, cond, c)
        return sums[:, 0] / np.maximum(sums.sum(axis=1), 1)

    none = aps(np.full(len(rows), zero))
    clean = none[conds.index(0.0)] if 0.0 in conds else None
    best = None
    smoothing = [v for v in values if v > 0]
    for k in range(1, max_steps + 1):
        for chosen in itertools.combinations(smoothing, k):
            idx = np.array([zero] + [values.index(v) for v in chosen])
            for trig in itertools.combinations(levels, k):
                step = np.searchsorted(np.array(trig), np.nan_to_num(noise, nan=-1.0), side="right")
                got = aps(idx[step])
                if clean is not None and got[conds.index(0.0)] < clean - max_clean_loss:
                    continue
                if best is None or got.mean() > best["mean_ap"]:
                    best = {"steps": [[float(a), float(b)] for a, b in zip(trig, chosen)], "mean_ap": float(got.mean()),
                            "ap": {f"{c:g}": round(float(v), 4) for c, v in zip(conds, got)}}
    best["no_smoothing"] = {f"{c:g}": round(float(v), 4) for c, v in zip(conds, none)}
    best["no_smoothing_mean_ap"] = float(none.mean())
    return best


def load_items(args: argparse.Namespace) -> list:
    """The dark-background grey images of the chosen split."""
    return fluorescence_items(args.data, args.split)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="stardist-nuclei")
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--split", choices=["tune", "val"], default="tune")
    p.add_argument("--photons", nargs="*", type=float, default=[0, 1000, 300, 100, 30, 10, 3], help="0: no noise")
    p.add_argument("--sigmas", nargs="*", type=float, default=[0.0, 0.7, 1.0, 1.5, 2.0])
    p.add_argument("--product", action="store_true", help="only the product's denoise='auto' against none")
    p.add_argument("--fit", default=None, help="fit a rule to the per-image runs of this JSON (no segmenting)")
    p.add_argument("--renoise", action="store_true", help="with --fit: re-read the noise levels as the product does")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.fit:
        import json

        rows = json.load(open(args.fit))["images"]
        if args.renoise:  # the noise as the product reads it now, on the same draws
            items = {it.name: it for it in load_items(args)}
            for ph in sorted({r["photons"] for r in rows}):
                sel = [r for r in rows if r["photons"] == ph]
                for r, x in zip(sel, noisy_images([items[r["image"]] for r in sel], ph)):
                    r["noise"] = round(plane_noise(x), 5)
        best = fit_rule(rows)
        print(json.dumps(best, indent=1))
        if args.json:
            data = json.load(open(args.fit))
            write_json(args.json, {**data, "cpu_fit": cpu_model(), "fit": best, "images": rows})
        return 0
    torch.set_num_threads(args.threads)
    model = get_model(args.model)
    items = load_items(args)
    if args.product:
        results = {}
        for ph in args.photons:
            images = noisy_images(items, ph)
            row = {}
            for mode in ("off", "auto"):
                runs = [segment(model, x, denoise=mode) for x in images]
                ap = evaluate([(it.labels, r.labels) for it, r in zip(items, runs)], thresholds=(0.5,))
                row[mode] = round(float(ap["thresholds"]["0.50"]["ap"]), 4)
                if mode == "auto":
                    row["smoothed"] = sum(any(s.sigma > 0 for s in r.smoothing) for r in runs)
            name = f"{ph:g} photons" if ph else "as is"
            results[name] = row
            print(f"{args.model:<16} {name:<12} off {row['off']:.3f}  auto {row['auto']:.3f}  "
                  f"(smoothed {row['smoothed']}/{len(items)})", flush=True)
        if args.json:
            write_json(args.json, {"cpu": cpu_model(), "model": args.model, "split": args.split, "images": len(items),
                                   "diameter": "auto", "results": results})
        return 0
    rows = image_runs(model, items, args.photons, [float(s) for s in args.sigmas])
    best = fit_rule(rows)
    print(best, flush=True)
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "model": args.model, "split": args.split, "images_per_condition":
                               len(items), "diameter": "auto", "fit": best, "images": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
