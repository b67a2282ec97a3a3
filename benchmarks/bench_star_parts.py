"""Time the StarDist-style family's compiled parts on real DSB2018 label images.

    python benchmarks/bench_star_parts.py [--repeats 7] [--json out.json]

* targets: radial distances (32 rays, every pixel) + normalised-distance probability of
  a real 1024x1024 val label image;
* NMS: candidates made from a real dense label image (2x2 mosaic of the val image with
  the most nuclei): every pixel on the 2x2 grid whose true probability (normalised distance)
  is above 0.5 (as with the default threshold), and then every foreground pixel, becomes a
  candidate with its true radial distances and a score, so there are tens of thousands of
  overlapping candidates; timed: polygon NMS, and rendering of the kept polygons.
Median and min over the repeats, after one warm-up (numba compiles on first use).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import tifffile

from seglab.models.star_geometry import polygon_coords, polygon_nms, radial_distances, render_polygons
from seglab.models.targets import normalized_distance

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018"


def val_labels() -> list[tuple[str, np.ndarray]]:
    rows = [r for r in csv.DictReader(open(DATA / "manifest.csv")) if r["split"] == "val"]
    return [(r["id"], tifffile.imread(DATA / "labels" / f"{r['id']}.tif").astype(np.int32)) for r in rows]


def timed(fn, repeats: int) -> tuple[list[float], object]:
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def summary(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4), "runs": len(times)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    labels = val_labels()
    big = next(lab for _, lab in labels if lab.shape == (1024, 1024))
    t_targets, _ = timed(lambda: (radial_distances(big, 32, 1), normalized_distance(big)), args.repeats)
    res = {"machine": platform.processor() or platform.machine(), "targets_1024": summary(t_targets),
           "targets_objects": int(len(np.unique(big)) - 1)}

    rid, dense = max(labels, key=lambda t: len(np.unique(t[1])))
    m = int(dense.max())

    def copy(lab: np.ndarray, k: int) -> np.ndarray:
        return np.where(lab > 0, lab + k * m, 0)

    mosaic = np.block([[dense, copy(dense[:, ::-1], 1)], [copy(dense[::-1], 2), copy(dense[::-1, ::-1], 3)]])
    prob = normalized_distance(mosaic)[::2, ::2]
    dist = radial_distances(mosaic, 32, 2)
    res["nms_image"] = (f"2x2 mosaic of val {rid[:12]} ({mosaic.shape[0]}x{mosaic.shape[1]}, "
                        f"{len(np.unique(mosaic)) - 1} nuclei)")
    rng = np.random.default_rng(0)
    for name, thresh in (("prob>0.5", 0.5), ("all foreground", 0.0)):
        ys, xs = np.nonzero(prob > thresh)
        scores = prob[ys, xs] + rng.uniform(0, 1e-3, ys.size)  # ties broken at random
        points = np.stack([ys * 2, xs * 2], 1).astype(np.float64)
        d = np.maximum(dist[:, ys, xs].T, 0.5)
        coords = polygon_coords(points, d)
        t_nms, keep = timed(lambda: polygon_nms(coords, scores, 0.4, points, d), args.repeats)
        t_render, _ = timed(lambda: render_polygons(coords[keep], mosaic.shape), args.repeats)
        res[f"nms {name}"] = {"candidates": int(len(coords)), "kept": int(len(keep)),
                              "nms": summary(t_nms), "render": summary(t_render)}
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
