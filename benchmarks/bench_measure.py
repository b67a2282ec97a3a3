"""Time of ``seglab.measure.measure`` on 10,000 objects (issue 14).

    python benchmarks/bench_measure.py [--repeats 3]

A 2400x2400 label image with 10,000 discs (radius 4 to 10 px) on a grid, a two-channel uint16
image; shape only, with intensities, and with intensities and an anisotropic pixel size.
Also ``regionprops_table`` of the same shape properties alone, for comparison. Best of
``--repeats``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from skimage.draw import disk
from skimage.measure import regionprops_table

from seglab.measure import measure


def objects(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lab = np.zeros((2400, 2400), np.int32)
    n = 0
    for cy in range(10, 2390, 24):
        for cx in range(10, 2390, 24):
            rr, cc = disk((cy + rng.uniform(-2, 2), cx + rng.uniform(-2, 2)), rng.uniform(4, 10), shape=lab.shape)
            n += 1
            lab[rr, cc] = n
    return lab, rng.integers(0, 4000, (*lab.shape, 2)).astype(np.uint16)


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    lab, img = objects()
    print(f"{len(np.unique(lab)) - 1} objects in {lab.shape[0]}x{lab.shape[1]}")
    props = ("label", "area", "perimeter", "centroid", "bbox", "equivalent_diameter_area", "eccentricity",
             "solidity", "orientation")
    runs = {
        "measure: shape": lambda: measure(lab),
        "measure: shape + 2 channels": lambda: measure(lab, img),
        "measure: shape + 2 channels + 0.3x0.2 um pixels": lambda: measure(lab, img, pixel_size=(0.3, 0.2), unit="um"),
        "regionprops_table, same shape properties": lambda: regionprops_table(lab, properties=props),
    }
    for name, fn in runs.items():
        print(f"{name}: {best(fn, args.repeats):.2f} s")


if __name__ == "__main__":
    main()
