"""How a grey (one-channel) model reads a kind of DSB2018 `val` image, three ways (session 21).

    python benchmarks/bench_grey_input.py --models stardist-nuclei unet-nuclei \\
        [--kinds "colour (stained)" "grey, bright background"] [--json out.json]

For each kind, pooled AP@0.5 (``seglab.metrics.evaluate``, no rescaling) when the model gets:

- ``as is``: what ``segment`` does (colour images to luma, the weights used in training);
- ``haematoxylin``: colour images only, the haematoxylin optical density of a colour
  deconvolution (``skimage.color.rgb2hed``), nuclei bright on dark as in fluorescence;
- ``inverted``: the image (luma for colour) turned over, ``max - value``.

A reading that scored higher here would be a candidate for how ``segment`` prepares such
images; none is used by the product.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from skimage.color import rgb2hed

from machine import cpu_model, write_json  # benchmarks/machine.py
from seglab.datasets import image_kind, load_split
from seglab.inference.engine import segment
from seglab.inference.normalize import select_channels
from seglab.metrics import evaluate
from seglab.models.registry import get_model

KINDS = ("colour (stained)", "grey, bright background")


def readings(item) -> dict[str, tuple[np.ndarray, int | None]]:
    """The image as given, and the alternative grey readings of it."""
    out = {"as is": (item.image, item.channel_axis)}
    grey = select_channels(item.image, 1, item.channel_axis, None, None)[0]
    if item.channel_axis is not None:
        rgb = np.moveaxis(item.image, item.channel_axis, -1)[..., :3]
        out["haematoxylin"] = (rgb2hed(rgb)[..., 0].astype(np.float32), None)
    out["inverted"] = (grey.max() - grey, None)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["stardist-nuclei", "unet-nuclei"])
    p.add_argument("--data", default="../shared/data/dsb2018")
    p.add_argument("--kinds", nargs="+", default=list(KINDS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = load_split(args.data, "val")
    results: dict = {}
    for name in args.models:
        model = get_model(name)
        if model.config.input_channels != 1:
            p.error(f"{name} reads {model.config.input_channels} channels; this compares grey readings")
        for kind in args.kinds:
            chosen = [it for it in items if image_kind(it) == kind]
            preds: dict[str, list] = {}
            for it in chosen:
                for how, (img, axis) in readings(it).items():
                    seg = segment(model, img, channel_axis=axis, diameter=None)
                    preds.setdefault(how, []).append((it.labels, seg.labels))
            for how, pairs in preds.items():
                ap = evaluate(pairs, thresholds=(0.5,))["thresholds"]["0.50"]["ap"]
                results.setdefault(name, {}).setdefault(kind, {})[how] = round(float(ap), 4)
                print(f"{name:<18} {kind:<26} ({len(chosen)} images) {how:<13} AP@0.5 {ap:.3f}", flush=True)
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
