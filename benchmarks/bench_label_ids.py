"""Cost of training targets with large label ids, before and after renumbering (issue 12).

    python benchmarks/bench_label_ids.py [--model stardist-nuclei]

``make_targets`` on a 256x256 crop of the ``fluorescence`` sample, its ids spread up to
about 5,000,000, and the same objects numbered 1..n (what ``make_pair`` now does); median of 5.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from seglab.models.registry import get_model
from seglab.samples import load_sample
from seglab.training.data import relabel_consecutive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="stardist-nuclei")
    args = p.parse_args()
    _, lab = load_sample("fluorescence")
    lab = lab[:256, :256].astype(np.int64)
    huge = np.where(lab > 0, lab * 20000 + 1000, 0)
    print(f"{len(np.unique(lab)) - 1} objects, largest id {huge.max()}")
    model = get_model(args.model)
    for name, labels in ((f"ids up to {huge.max()}", huge), ("renumbered 1..n", relabel_consecutive(huge))):
        model.make_targets(labels)
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            model.make_targets(labels)
            ts.append(time.perf_counter() - t)
        print(f"{name}: make_targets median {statistics.median(ts):.3f} s")


if __name__ == "__main__":
    main()
