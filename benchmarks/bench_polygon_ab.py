"""End to end ``stardist-nuclei`` on the 2048x2048 mosaic of ``bench_speed.py``, with the polygon
code (vertices, NMS) of another revision's ``star_geometry.py`` against this checkout's,
alternated call by call in one process so that both see the same load.

    git show 5382cc7:src/seglab/models/star_geometry.py > /tmp/star_geometry_old.py
    PYTHONPATH=benchmarks python benchmarks/bench_polygon_ab.py --old /tmp/star_geometry_old.py [--repeats 11] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import torch

from bench_speed import build_mosaic
from machine import cpu_model, write_json

import seglab.models.stardist as star_family
from seglab.inference.engine import segment
from seglab.models.registry import get_model


def load_old(path: str):
    spec = importlib.util.spec_from_file_location("star_geometry_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["star_geometry_old"] = module  # numba's cache looks the module up by name
    spec.loader.exec_module(module)
    return module


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--old", required=True, help="another revision's star_geometry.py")
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    old = load_old(args.old)

    def old_coords(points, dists, out=None):  # the old function returned a new array
        out[:] = old.polygon_coords(points, dists)
        return out

    parts = {"old": (old_coords, old.polygon_nms_iter),
             "new": (star_family.polygon_coords, star_family.polygon_nms_iter)}

    def use(which: str) -> None:
        star_family.polygon_coords, star_family.polygon_nms_iter = parts[which]

    model = get_model("stardist-nuclei")
    image, _ = build_mosaic()
    objects = {}
    for which in parts:  # warm-up (numba compiles)
        use(which)
        objects[which] = segment(model, image, device="cpu", diameter=None).n_objects
    times: dict[str, list[float]] = {w: [] for w in parts}
    for r in range(args.repeats):
        for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
            use(which)
            t0 = time.perf_counter()
            segment(model, image, device="cpu", diameter=None)
            times[which].append(time.perf_counter() - t0)
    out = {"cpu": cpu_model(), "threads": args.threads, "repeats": args.repeats, "old": args.old, "objects": objects,
           "load_avg_after": os.getloadavg(),
           **{w: {"median_s": statistics.median(v), "min_s": min(v), "runs": v} for w, v in times.items()}}
    print(f"old {out['old']['median_s']:.3f} s, new {out['new']['median_s']:.3f} s (medians of {args.repeats}); "
          f"objects {objects}")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
