"""Pack the ``train`` split of DSB2018-style folders into a small copy for a lent GPU machine.

The `device` tool sends the working tree (at most 64 MiB, tracked files included) and nothing
beside it, so the data must travel inside the repository, in a folder git ignores:

    python benchmarks/device/pack_data.py --out .gpudata [--colour-only] \
        ../shared/data/dsb2018 [../shared/data/monuseg-kumar]

Each folder's ``manifest.csv`` is copied whole; of its images and labels only the ``train``
rows are written, as zlib-compressed TIFFs with a horizontal predictor (lossless: every array is
read back and compared). ``--colour-only`` keeps the colour (3-channel) rows of a folder with
grey ones too (what ``stardist-he`` trains on from DSB2018). Prints the bytes written.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import tifffile


def pack(src: Path, dst: Path, colour_only: bool = False) -> int:
    """Write the train rows of ``src`` under ``dst``; the bytes written."""
    with open(src / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    if colour_only:
        rows = [r for r in rows if r.get("channels") == "3"]
    for sub in ("images", "labels"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "manifest.csv", dst / "manifest.csv")
    total = (dst / "manifest.csv").stat().st_size
    for r in rows:
        for sub in ("images", "labels"):
            a = tifffile.imread(src / sub / f"{r['id']}.tif")
            path = dst / sub / f"{r['id']}.tif"
            tifffile.imwrite(path, a, compression="zlib", compressionargs={"level": 9}, predictor=True)
            b = tifffile.imread(path)
            if b.dtype != a.dtype or not np.array_equal(a, b):
                raise SystemExit(f"{path} does not read back as written")
            total += path.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=Path(".gpudata"))
    p.add_argument("--colour-only", action="store_true", help="only the 3-channel rows of the first folder")
    args = p.parse_args(argv)
    for i, src in enumerate(args.folders):
        n = pack(src, args.out / src.resolve().name, colour_only=args.colour_only and i == 0)
        print(f"{src} -> {args.out / src.resolve().name}: {n / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
