"""Network time per 2048x2048 image for candidate architectures (random weights), so that a
training run can pick one that is fast enough (issue 11, speed).

    python benchmarks/bench_arch_speed.py [--repeats 5] [--threads 2] [--context 112]
                                          [--json benchmarks/results/arch_speed.json]

Every candidate runs as seglab's inference does: batch norm folded, ReLU fused into the
convolutions, channels-last, bfloat16 autocast on the CPU, the strided 2x2 max pool, on
one tile of ``2048 + 2 * context`` pixels a side (a 2048x2048 image with the tile context
of the built-ins). Times are the network alone (no stitching, no postprocessing): median
and min of ``--repeats`` after one warm-up, wall clock and process CPU seconds.

Candidates (``out`` is the output's stride, as the family needs it):

- ``unet``: seglab's U-Net (widths per level, 2 convs per block), full resolution out;
- ``star``: the same with the decoder stopping at 1/2 (StarDist's grid 2) and StarDist's
  3x3 + 1x1 head;
- ``*-s2``: a stride-2 stem (3x3 conv, stride 2) in front, so the U-Net's first level runs
  at half resolution; ``unet-s2`` brings its 1/2 output back to full resolution with a
  nearest upsampling and one light full-resolution 3x3 layer of ``full`` channels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from seglab.models.unet_net import UNet, features_iter, fold_batchnorm, fuse_conv_relu
from seglab.progress import run_to_end


def _star_head(cin: int, hidden: int = 64, n_out: int = 33) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden),
                         nn.ReLU(inplace=True), nn.Conv2d(hidden, n_out, 1))


class Candidate(nn.Module):
    """An optional stride-2 stem, a U-Net, a head; optionally back to full resolution."""

    def __init__(self, widths: list[int], kind: str, stem: int = 0, full: int = 0, head: int = 64) -> None:
        super().__init__()
        self.stem = None
        cin = 1
        if stem:
            self.stem = nn.Sequential(nn.Conv2d(1, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
            cin = stem
        out_stride = 2 if kind == "star" and not stem else 1
        self.unet = UNet(cin, 2, widths, 2, out_stride)
        if kind == "star":
            self.unet.head = _star_head(self.unet.out_features, head)
        self.full = None
        if kind == "unet" and stem:  # back to full resolution
            self.full = nn.Sequential(nn.Conv2d(self.unet.out_features, full, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(full), nn.ReLU(inplace=True), nn.Conv2d(full, 2, 1))
            self.unet.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = self.stem(x)
        y = self.unet.head(run_to_end(features_iter(self.unet, x)))
        if self.full is not None:
            y = self.full(F.interpolate(y, scale_factor=2, mode="nearest"))
        return y


CANDIDATES: dict[str, dict] = {
    # the shipped architectures
    "star 12-24-48-96-192 (stardist-nuclei)": {"widths": [12, 24, 48, 96, 192], "kind": "star"},
    "star 16-32-64-128-256 (stardist-he)": {"widths": [16, 32, 64, 128, 256], "kind": "star"},
    "unet 12-24-48-96-192 (unet-nuclei)": {"widths": [12, 24, 48, 96, 192], "kind": "unet"},
    # wider, same layout
    "star 32-64-128-256-256": {"widths": [32, 64, 128, 256, 256], "kind": "star"},
    "unet 16-32-64-128-256": {"widths": [16, 32, 64, 128, 256], "kind": "unet"},
    "unet 32-64-128-256-256": {"widths": [32, 64, 128, 256, 256], "kind": "unet"},
    # stride-2 stem: the first level at half resolution
    "star-s2 stem 32, 32-64-128-256": {"widths": [32, 64, 128, 256], "kind": "star", "stem": 32},
    "star-s2 stem 32, 64-128-256-256": {"widths": [64, 128, 256, 256], "kind": "star", "stem": 32},
    "star-s2 stem 16, 32-64-128-256-256": {"widths": [32, 64, 128, 256, 256], "kind": "star", "stem": 16},
    "unet-s2 stem 32, 32-64-128-256, full 16": {"widths": [32, 64, 128, 256], "kind": "unet", "stem": 32,
                                                 "full": 16},
    "unet-s2 stem 32, 64-128-256-256, full 16": {"widths": [64, 128, 256, 256], "kind": "unet", "stem": 32,
                                                  "full": 16},
    # narrower at half resolution: what a <= 0.95 s budget allows
    "star-s2 stem 16, 16-32-64-128-256": {"widths": [16, 32, 64, 128, 256], "kind": "star", "stem": 16},
    "unet-s2 stem 16, 16-32-64-128-256, full 16": {"widths": [16, 32, 64, 128, 256], "kind": "unet", "stem": 16,
                                                    "full": 16},
}


def time_candidate(spec: dict, size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    net = Candidate(**spec)
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
    return {"spec": spec, "parameters": params, "median_s": statistics.median(wall), "min_s": min(wall),
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
    for name, spec in CANDIDATES.items():
        if args.only and not any(s in name for s in args.only):
            continue
        load = os.getloadavg()[0]
        r = time_candidate(spec, size, args.repeats)
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
