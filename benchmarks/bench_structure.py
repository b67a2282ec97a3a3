"""Which planes are white noise: the structure ratio the size estimate skips planes by (session 26).

    python benchmarks/bench_structure.py [--split val] [--json out.json]

:func:`seglab.inference.denoise.structure_ratio` (the largest, over 128 px tiles, of 4 x the
variance of 2x2 block means over the pixels' variance) of: fields of white noise of several sizes;
three 10 px nuclei in a 1024 px field of noise; every DSB2018 image of ``--split`` as the models
see it (normalised, ``unet-nuclei``'s normalisation) at 1x and 0.5x; the grey ones under shot
noise (the brightest pixel expecting 10 / 3 / 1 photons) without smoothing and with ``auto``.
Planes below :data:`~seglab.inference.denoise.MIN_STRUCTURE` give no size to ``diameter="auto"``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from scipy import ndimage as ndi

from machine import cpu_model, write_json  # benchmarks/machine.py
from seglab.datasets import load_split
from seglab.inference.denoise import MIN_STRUCTURE, prepared_plane, structure_ratio
from seglab.models.registry import get_model


def percentiles(values: list[float]) -> dict[str, float]:
    return {"n": len(values), **{f"p{q}": round(float(np.percentile(values, q)), 3) for q in (0, 5, 50)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--split", default="val")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args()
    config = get_model("unet-nuclei").config
    rng = np.random.default_rng(args.seed)
    seen: dict[str, list[float]] = defaultdict(list)

    def ratio(plane: np.ndarray, mode: str | bool = False, channel_axis: int | None = None) -> float:
        return structure_ratio(prepared_plane(config, plane, mode, channel_axis=channel_axis)[0])

    for side in (64, 128, 1024, 4096):
        for _ in range(5 if side < 4096 else 2):
            seen[f"white noise {side} px"].append(ratio(rng.normal(100, 5, (side, side)).astype(np.float32)))
    yy, xx = np.mgrid[:1024, :1024]
    for _ in range(5):
        field = rng.normal(100, 5, (1024, 1024))
        for cy, cx in rng.integers(20, 1004, (3, 2)):
            field[(yy - cy) ** 2 + (xx - cx) ** 2 < 100] += 30
        seen["3 nuclei (10 px, +6 sd) in 1024 px of noise"].append(ratio(field.astype(np.float32)))
    for item in load_split(args.data, args.split):
        img, axis = item.image, item.channel_axis
        half = ndi.zoom(img, [0.5 if a in (0, 1) else 1 for a in range(img.ndim)], order=1)
        seen["DSB2018 as is"].append(ratio(img, channel_axis=axis))
        seen["DSB2018 at 0.5x"].append(ratio(half, channel_axis=axis))
        if axis is not None:
            continue
        grey = img.astype(np.float64)
        for photons in (10, 3, 1):
            noisy = rng.poisson(grey / max(grey.max(), 1.0) * photons).astype(np.float32)
            seen[f"DSB2018 grey, {photons} photons, off"].append(ratio(noisy))
            seen[f"DSB2018 grey, {photons} photons, auto"].append(ratio(noisy, "auto"))
    table = {k: percentiles(v) for k, v in seen.items()}
    print(f"structure ratio (min / 5th pct / median), {args.split}; a plane below {MIN_STRUCTURE} gives no size")
    for k, v in table.items():
        print(f"{k:48s} n={v['n']:3d}  {v['p0']:.3f} / {v['p5']:.3f} / {v['p50']:.3f}")
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "split": args.split, "min_structure": MIN_STRUCTURE,
                               "ratios": table})


if __name__ == "__main__":
    main()
