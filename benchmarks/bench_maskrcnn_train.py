"""Mask R-CNN training steps on this machine: torchvision's RoIAlign gradient against seglab's.

    python benchmarks/bench_maskrcnn_train.py [--threads 2] [--steps 12] [--json out.json]

``maskrcnn-nuclei`` (the built-in weights), batches of 4 augmented 256x256 patches from the
DSB2018 ``train`` images (as the recipe draws them; made once, before timing, so both arms see
the same batches): forward + losses + backward + AdamW step under the training loop's bfloat16
autocast and channels-last layout. Two arms, alternated step by step on the same batch:
``torchvision`` (its ``MultiScaleRoIAlign`` poolers, whose CPU gradient kernel runs on one core)
and ``separable`` (:class:`seglab.models.roi_align.SeparableRoIAlign`, what the recipe trains with
now). Each arm has its own copy of the network and optimizer. Reports median and minimum seconds
per step and patches per second, and the regions per step through the box and mask heads.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

from machine import cpu_matrix_flags, cpu_model, load_1min, write_json  # benchmarks/machine.py

from seglab.datasets import load_split
from seglab.models.registry import get_model
from seglab.models.roi_align import use_torchvision_poolers
from seglab.torch_env import autocast, cpu_bf16
from seglab.training.data import Augment, PatchSampler, make_pair
from seglab.training.recipes import MASKRCNN_NUCLEI, split_train_tune

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT.parent / "shared" / "data" / "dsb2018"


def _arm(model, pools: str):
    """A training copy of ``model``'s network with the given poolers, and its optimizer."""
    net = copy.deepcopy(model.network).train().to(memory_format=torch.channels_last)
    if pools == "torchvision":
        use_torchvision_poolers(net.maskrcnn.roi_heads)
    return net, torch.optim.AdamW(net.parameters(), lr=1e-5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--images", type=int, default=80, help="training images to draw patches from")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = get_model("maskrcnn-nuclei")
    ids, _ = split_train_tune(DSB)
    items = load_split(DSB, "train", ids[:: max(1, len(ids) // args.images)])
    pairs = [make_pair(it.image, it.labels, 1, model.config.normalization, channel_axis=it.channel_axis)
             for it in items]
    sampler = PatchSampler(pairs, MASKRCNN_NUCLEI["patch_size"], Augment(**MASKRCNN_NUCLEI["augment"]), seed=0)
    batches = [sampler.batch(MASKRCNN_NUCLEI["batch_size"], model) for _ in range(args.steps + 2)]
    arms = {name: _arm(model, name) for name in ("torchvision", "separable")}
    times: dict[str, list[float]] = {name: [] for name in arms}
    regions = {"box": 0, "mask": 0}
    rh = arms["separable"][0].maskrcnn.roi_heads
    counts = {"box": rh.box_roi_pool, "mask": rh.mask_roi_pool}
    hooks = [m.register_forward_hook(lambda _m, inp, _o, k=k: regions.__setitem__(k, regions[k] + sum(len(b) for b in inp[1])))
             for k, m in counts.items()]
    dev = torch.device("cpu")
    load = [load_1min()]
    for i, (x, targets, valid) in enumerate(batches):
        x = x.contiguous(memory_format=torch.channels_last)
        for name, (net, opt) in arms.items():
            torch.manual_seed(i)  # the same proposal sampling in both arms
            t0 = time.perf_counter()
            with autocast(dev, cpu_bf16()):
                loss, _ = model.training_loss(net, x, targets, valid)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
        if i == 1:
            regions = {"box": 0, "mask": 0}
    for h in hooks:
        h.remove()
    load.append(load_1min())
    batch = MASKRCNN_NUCLEI["batch_size"]
    out = {"cpu": cpu_model(), "cpu_flags": cpu_matrix_flags(), "threads": args.threads, "load_1min": load,
           "steps": args.steps, "batch": batch, "patch": MASKRCNN_NUCLEI["patch_size"],
           "regions_per_step": {k: v / args.steps for k, v in regions.items()},
           "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "arms": {}}
    for name, ts in times.items():
        med = statistics.median(ts)
        out["arms"][name] = {"median_s": round(med, 3), "min_s": round(min(ts), 3),
                             "patches_per_s": round(batch / med, 2), "times": [round(t, 3) for t in ts]}
        print(f"{name:12s} median {med:.3f} s/step (min {min(ts):.3f}), {batch / med:.2f} patches/s", flush=True)
    print(f"regions per step: {out['regions_per_step']}; load {load}; {out['cpu']}")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
