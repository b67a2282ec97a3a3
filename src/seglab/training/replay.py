"""Replay sets: small crops of a built-in model's own training data, shipped with the package.

Fine-tuning on a few images of one kind moves every weight, and within a few hundred steps
the model forgets the kinds it is not shown (see ``docs/benchmarks.md``). Mixing crops of the
original training data into every batch ("rehearsal") keeps those kinds in the loss. A model
names its replay set in ``config.training["replay_set"]``; fine-tuned models inherit the name.

Build the shipped set (from the DSB2018 ``train`` split only)::

    python -m seglab.training.replay --data ../shared/data/dsb2018 --out src/seglab/models/replay/dsb2018-train
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from seglab.datasets import image_kind, load_annotated, read_manifest
from seglab.errors import SeglabError
from seglab.evaluation import AnnotatedImage

REPLAY_ROOT = Path(__file__).resolve().parent.parent / "models" / "replay"
#: crops per kind of image in the shipped set: (grey dark background, grey bright background, colour)
#: the replay set shipped for models trained on DSB2018 ``train`` (the recipes name it in their configs)
DSB2018_REPLAY = "dsb2018-train"
DEFAULT_COUNTS = {"grey, dark background": 36, "grey, bright background": 6, "colour (stained)": 12}


def replay_names() -> list[str]:
    """Names of the replay sets shipped with the package."""
    if not REPLAY_ROOT.is_dir():
        return []
    return sorted(p.name for p in REPLAY_ROOT.iterdir() if (p / "images").is_dir())


def load_replay_set(name: str) -> list[AnnotatedImage]:
    """The crops of replay set ``name`` as annotated images (raw pixels, as read)."""
    folder = REPLAY_ROOT / name
    if not (folder / "images").is_dir():
        raise SeglabError(f"unknown replay set {name!r}; shipped: {', '.join(replay_names()) or 'none'}")
    items = []
    for img in sorted((folder / "images").glob("*.tif")):
        items.append(load_annotated(img, folder / "labels" / img.name))
    if not items:
        raise SeglabError(f"replay set {name!r} holds no images")
    return items


def _best_crop(item: AnnotatedImage, size: int, rng: np.random.Generator, tries: int = 8) -> tuple[slice, slice]:
    """The window of ``size`` (or the whole image when smaller) with most object pixels of a few random ones."""
    h, w = item.labels.shape
    sh, sw = min(size, h), min(size, w)
    best, best_fg = (slice(0, sh), slice(0, sw)), -1
    for _ in range(tries):
        y, x = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
        fg = int(np.count_nonzero(item.labels[y : y + sh, x : x + sw]))
        if fg > best_fg:
            best, best_fg = (slice(y, y + sh), slice(x, x + sw)), fg
    return best


def build_replay_set(data: str | os.PathLike, out: str | os.PathLike, *, split: str = "train",
                     counts: dict[str, int] | None = None, size: int = 256, seed: int = 0) -> list[str]:
    """Write ``counts`` crops per kind, drawn at random from ``split``, as compressed TIFFs; returns their ids."""
    import tifffile
    from skimage.segmentation import relabel_sequential

    counts = counts or DEFAULT_COUNTS
    data, out = Path(data), Path(out)
    rng = np.random.default_rng(seed)
    rows = [r for r in read_manifest(data) if r["split"] == split]
    order = rng.permutation(len(rows))
    taken: dict[str, int] = dict.fromkeys(counts, 0)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    ids = []
    for i in order:
        if all(taken[k] >= n for k, n in counts.items()):
            break
        r = rows[i]
        item = load_annotated(data / "images" / f"{r['id']}.tif", data / "labels" / f"{r['id']}.tif")
        kind = image_kind(item)
        if taken.get(kind, 0) >= counts.get(kind, 0) or item.labels.max() == 0:
            continue
        crop = item.crop(*_best_crop(item, size, rng))
        lab = relabel_sequential(crop.labels)[0].astype(np.uint16)
        tifffile.imwrite(out / "images" / f"{r['id']}.tif", crop.image, compression="zlib",
                         compressionargs={"level": 9})
        tifffile.imwrite(out / "labels" / f"{r['id']}.tif", lab, compression="zlib", compressionargs={"level": 9})
        taken[kind] += 1
        ids.append(r["id"])
    return ids


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="DSB2018-style folder (images/, labels/, manifest.csv)")
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ids = build_replay_set(args.data, args.out, size=args.size, seed=args.seed)
    print(f"wrote {len(ids)} crops to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
