"""Cost of linking a Z stack's objects across planes (issue 13, ``--link-z``).

    python benchmarks/bench_linking.py [--size 2048] [--planes 10]

The ``fluorescence`` sample's labels tiled to ``size`` x ``size``, shifted one pixel per plane,
ids unique over the stack (as the engine gives them); ``link_planes`` time and the ids left.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench_geojson import tiled_labels
from seglab.linking import link_planes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--planes", type=int, default=10)
    args = p.parse_args()
    lab = tiled_labels(args.size)
    planes, offset = [], 0
    for k in range(args.planes):
        plane = np.roll(lab, k, axis=1)
        plane = np.where(plane > 0, plane + offset, 0)
        offset = int(plane.max())
        planes.append(plane)
    stack = np.stack(planes)
    n = sum(len(np.unique(pl)) - 1 for pl in planes)
    t = time.perf_counter()
    linked = link_planes(stack)
    dt = time.perf_counter() - t
    print(f"{args.planes} planes of {args.size}x{args.size}, {n} objects in all -> {int(linked.labels.max())} ids "
          f"in {dt:.2f} s")


if __name__ == "__main__":
    main()
