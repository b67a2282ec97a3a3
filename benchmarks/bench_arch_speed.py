"""Network time per 2048x2048 image for candidate architectures (random weights), so that a
training run can pick one that is fast enough (issue 11, speed).

    python benchmarks/bench_arch_speed.py [--repeats 5] [--threads 2] [--context 112]
                                          [--json benchmarks/results/arch_speed.json]

Every candidate runs as seglab's inference does: batch norm folded, ReLU fused into the
convolutions, channels-last, bfloat16 autocast on the CPU, the strided 2x2 max pool, on
one tile of ``2048 + 2 * context`` pixels a side (a 2048x2048 image with the tile context
of the built-ins). Times are the network alone (no stitching, no postprocessing): median
and min of ``--repeats`` after one warm-up, wall clock and process CPU seconds.

Candidates are the families' own networks, built from an ``architecture`` as a model config
gives it (``new_model``), so what is timed is what a trained model of that layout runs:

- ``unet``: the U-Net family (widths per level, 2 convs per block), full resolution out;
- ``star``: the StarDist family (the decoder stopping at 1/2, grid 2, and its 3x3 + 1x1 head);
- ``*-s2``: with a stride-2 stem (``"stem"``: a 3x3 conv, stride 2), so the U-Net's first level
  runs at half resolution; ``unet-s2`` comes back to full resolution with a sub-pixel layer of
  ``"full_width"`` channels that reads the input's 2x2 pixel blocks beside the features.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from seglab.models.storage import new_model
from seglab.models.unet_net import fold_batchnorm, fuse_conv_relu

_STAR = {"convs_per_block": 2, "n_rays": 32, "grid": 2, "head_width": 64}
_UNET = {"convs_per_block": 2}

CANDIDATES: dict[str, tuple[str, dict]] = {
    # the shipped architectures
    "star 12-24-48-96-192 (stardist-nuclei)": ("stardist", {**_STAR, "widths": [12, 24, 48, 96, 192]}),
    "star 16-32-64-128-256 (stardist-he)": ("stardist", {**_STAR, "widths": [16, 32, 64, 128, 256]}),
    "unet 12-24-48-96-192 (unet-nuclei)": ("unet", {**_UNET, "widths": [12, 24, 48, 96, 192]}),
    # wider, same layout
    "star 32-64-128-256-256": ("stardist", {**_STAR, "widths": [32, 64, 128, 256, 256]}),
    "unet 16-32-64-128-256": ("unet", {**_UNET, "widths": [16, 32, 64, 128, 256]}),
    "unet 32-64-128-256-256": ("unet", {**_UNET, "widths": [32, 64, 128, 256, 256]}),
    # stride-2 stem: the first level at half resolution
    "star-s2 stem 32, 32-64-128-256": ("stardist", {**_STAR, "widths": [32, 64, 128, 256], "stem": 32}),
    "star-s2 stem 32, 64-128-256-256": ("stardist", {**_STAR, "widths": [64, 128, 256, 256], "stem": 32}),
    "star-s2 stem 16, 32-64-128-256-256": ("stardist", {**_STAR, "widths": [32, 64, 128, 256, 256], "stem": 16}),
    "unet-s2 stem 32, 32-64-128-256, full 16": ("unet", {**_UNET, "widths": [32, 64, 128, 256], "stem": 32,
                                                         "full_width": 16}),
    "unet-s2 stem 32, 64-128-256-256, full 16": ("unet", {**_UNET, "widths": [64, 128, 256, 256], "stem": 32,
                                                          "full_width": 16}),
    # narrower at half resolution: what a <= 0.95 s budget allows
    "star-s2 stem 16, 16-32-64-128-256": ("stardist", {**_STAR, "widths": [16, 32, 64, 128, 256], "stem": 16}),
    "unet-s2 stem 16, 16-32-64-128-256, full 16": ("unet", {**_UNET, "widths": [16, 32, 64, 128, 256], "stem": 16,
                                                            "full_width": 16}),
}


def time_candidate(family: str, arch: dict, size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    net = new_model(family, "candidate", architecture=dict(arch)).network
    net.train()
    with torch.no_grad():  # non-trivial batch-norm statistics, as trained weights have
        net(torch.randn(2, 1, 64, 64))
    net.eval()
    params = sum(p.numel() for p in net.parameters())
    net = fuse_conv_relu(fold_batchnorm(net)).to(memory_format=torch.channels_last)
    x = torch.rand(1, 1, size, size).contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            net(x)

    run()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"family": family, "architecture": arch, "parameters": params, "median_s": statistics.median(wall), "min_s": min(wall),
            "cpu_median_s": statistics.median(cpu), "runs": wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--context", type=int, default=112)
    p.add_argument("--only", nargs="*", default=None, help="substrings of candidate names to run")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    size = 2048 + 2 * args.context
    results = {}
    for name, (family, arch) in CANDIDATES.items():
        if args.only and not any(s in name for s in args.only):
            continue
        load = os.getloadavg()[0]
        r = time_candidate(family, arch, size, args.repeats)
        r["load_avg_1min"] = load
        results[name] = r
        print(f"{name:<44} {r['parameters'] / 1e6:5.2f} M  median {r['median_s']:.3f} s  min {r['min_s']:.3f} s"
              f"  cpu {r['cpu_median_s']:.3f} s  (load {load:.1f})", flush=True)
    if args.json:
        from seglab.io.atomic import atomic_file

        with atomic_file(args.json) as tmp:
            tmp.write_text(json.dumps({"tile": f"{size}x{size}", "threads": args.threads,
                                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                       "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
