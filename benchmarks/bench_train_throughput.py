"""Training throughput of the StarDist-style family on this machine (patches per second).

    python benchmarks/bench_train_throughput.py [--threads 2] [--steps 6] [--json out.json]

For each architecture (the widths of ``stardist-nuclei``, wider ones whose channel counts are
multiples of 16/32 so that the CPU's matrix units are filled, and ones behind a stride-2 stem),
with 3-channel input:

* ``data``: one batch of 8 augmented 256x256 patches from the H&E training images
  (MoNuSeg ``train``) with the family's targets (probability + 32 radial distances), as
  ``PatchSampler.batch`` makes them in the training loop, and the share of it spent on targets;
* ``step fp32``: forward + loss + backward + AdamW step on a fixed batch, float32, contiguous;
* ``step bf16 cl``: the same under bfloat16 autocast with channels-last tensors (what the
  training loop does on CPU);
* ``loop serial`` / ``loop prefetch``: patches/s of whole training steps (data + step, bf16
  channels-last) with the data made in the same thread, and with the next batches made by
  :class:`~seglab.training.data.PrefetchSampler`'s thread while the network runs.

Step times: median and minimum over ``--steps`` timed repeats after two warm-up steps (the
minimum is the better estimate on a loaded machine). Loops: wall time of ``--steps`` steps
after two warm-up steps. The machine is shared, so figures vary with other work; compare the
rows of one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from seglab.datasets import load_split
from seglab.models.storage import new_model
from seglab.torch_env import autocast
from seglab.training.data import Augment, PatchSampler, PrefetchSampler, make_pair

from machine import cpu_model  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
MONUSEG = ROOT.parent / "shared" / "data" / "monuseg-kumar"

ARCHITECTURES = {
    "12/24/48/96/192 (stardist-nuclei)": {"widths": [12, 24, 48, 96, 192]},
    "16/32/64/128/256": {"widths": [16, 32, 64, 128, 256]},
    "32/64/128/256": {"widths": [32, 64, 128, 256]},
    "32/64/128/256/256": {"widths": [32, 64, 128, 256, 256]},
    # a stride-2 stem: every level at half resolution (the fast layouts of bench_arch_speed.py)
    "s2 stem 16, 16/32/64/128/256": {"widths": [16, 32, 64, 128, 256], "stem": 16},
    "s2 stem 16, 32/64/128/256/256": {"widths": [32, 64, 128, 256, 256], "stem": 16},
}


def med(times: list[float]) -> float:
    return float(statistics.median(times))


def time_step(model, x, targets, valid, *, bf16: bool, repeats: int) -> list[float]:
    net = model.network
    net.train()
    if bf16:
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    else:
        net.to(memory_format=torch.contiguous_format)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    dev = torch.device("cpu")
    times = []
    for i in range(repeats + 2):
        t0 = time.perf_counter()
        with autocast(dev, bf16):
            loss, _ = model.training_loss(net, x, targets, valid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return times


def loop_rate(model, sampler, *, batch: int, repeats: int) -> float:
    """Patches/s of whole training steps (bf16, channels-last), after two warm-up steps."""
    net = model.network
    net.train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    dev = torch.device("cpu")
    for i in range(repeats + 2):
        if i == 2:
            t0 = time.perf_counter()
        x, targets, valid = sampler.batch(batch, model)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(dev, True):
            loss, _ = model.training_loss(net, x, targets, valid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * repeats / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--only", nargs="*", default=None, help="architecture keys to run")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    items = load_split(MONUSEG, "train")
    rows = []
    for key, arch in ARCHITECTURES.items():
        if args.only and key not in args.only:
            continue
        model = new_model("stardist", "bench", architecture={**arch, "convs_per_block": 2, "n_rays": 32,
                                                            "grid": 2, "head_width": 64},
                          input_channels=3)
        pairs = [make_pair(it.image, it.labels, 3, model.config.normalization, channel_axis=it.channel_axis)
                 for it in items]
        def make_sampler():
            return PatchSampler(pairs, 256, Augment(scale_range=(0.7, 1.4), colour_jitter=0.05), seed=0)

        sampler = make_sampler()
        # data: whole batches, and the targets alone
        data_t, tgt_t = [], []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            x, targets, valid = sampler.batch(args.batch, model)
            data_t.append(time.perf_counter() - t0)
        labs = [sampler.sample(margin=32)[1] for _ in range(args.batch)]
        for _ in range(3):
            t0 = time.perf_counter()
            for lab in labs:
                model.make_targets(lab)
            tgt_t.append(time.perf_counter() - t0)
        f32 = time_step(model, x, targets, valid, bf16=False, repeats=args.steps)
        bf = time_step(model, x, targets, valid, bf16=True, repeats=args.steps)
        serial = loop_rate(model, make_sampler(), batch=args.batch, repeats=args.steps)
        pre = PrefetchSampler(make_sampler())
        try:
            prefetch = loop_rate(model, pre, batch=args.batch, repeats=args.steps)
        finally:
            pre.close()
        row = {
            "architecture": key, "params": sum(p.numel() for p in model.network.parameters()),
            "data_s": round(med(data_t), 3), "targets_s": round(med(tgt_t), 3),
            "step_fp32_s": round(med(f32), 3), "step_fp32_min_s": round(min(f32), 3),
            "step_bf16_cl_s": round(med(bf), 3), "step_bf16_cl_min_s": round(min(bf), 3),
            "loop_serial_patches_per_s": round(serial, 2), "loop_prefetch_patches_per_s": round(prefetch, 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"cpu": cpu_model(), "threads": args.threads, "batch": args.batch, "patch": 256,
            "torch": torch.__version__, "load_average": list(np.round(np.array(__import__("os").getloadavg()), 2))}
    print(json.dumps(meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
