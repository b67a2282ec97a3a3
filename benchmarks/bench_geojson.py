"""Cost of the GeoJSON export (issue 14): tracing every object of a label image and writing the file.

    python benchmarks/bench_geojson.py [--size 2048] [--repeat 3]

A grid of the ``fluorescence`` sample's ground-truth labels tiled to ``size`` x ``size``
(ids renumbered per tile, so real nucleus shapes), then ``labels_features`` + ``write_geojson``
with the object table as measurements; median of ``repeat`` runs, objects per second, file size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from seglab.io.geojson import labels_features, write_geojson
from seglab.objects import object_table
from seglab.samples import load_sample


def tiled_labels(size: int) -> np.ndarray:
    _, lab = load_sample("fluorescence")
    lab = lab.astype(np.int64)
    reps = (-(-size // lab.shape[0]), -(-size // lab.shape[1]))
    out = np.zeros((reps[0] * lab.shape[0], reps[1] * lab.shape[1]), dtype=np.int64)
    offset = 0
    for i in range(reps[0]):
        for j in range(reps[1]):
            tile = np.where(lab > 0, lab + offset, 0)
            out[i * lab.shape[0]:(i + 1) * lab.shape[0], j * lab.shape[1]:(j + 1) * lab.shape[1]] = tile
            offset = int(tile.max())
    return out[:size, :size].astype(np.int32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    labels = tiled_labels(args.size)
    table = object_table(labels)
    n = table["label"].size
    trace, total, size = [], [], 0
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            feats = labels_features(labels, table=table)
            t1 = time.perf_counter()
            path = write_geojson(Path(d) / "x_objects.geojson", feats)
            t2 = time.perf_counter()
            trace.append(t1 - t0)
            total.append(t2 - t0)
            size = path.stat().st_size
    tr, tt = statistics.median(trace), statistics.median(total)
    print(f"{args.size}x{args.size} labels, {n} objects: features {tr:.2f} s, with writing {tt:.2f} s "
          f"({n / tt:.0f} objects/s), file {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
