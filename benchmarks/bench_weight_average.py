"""Tune AP@0.5 of a weight average ("model soup") of two folders of one model layout, beside each alone.

    python benchmarks/bench_weight_average.py A B [--alpha 0.5 ...] [--out /tmp/soup] [--json out.json]

The average takes ``alpha`` of A's weights and ``1 - alpha`` of B's (floating-point tensors;
others are B's) into a copy of B's folder (its config, thresholds and size model), scored on the
recipes' tune set (DSB2018 ``train`` images held out of training), as training picks its weights.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from machine import cpu_model, write_json  # benchmarks/machine.py
from splits import split_items  # benchmarks/splits.py

from seglab.evaluation import ap50
from seglab.models.registry import get_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--alpha", nargs="+", type=float, default=[0.5])
    p.add_argument("--out", default="/tmp/weight-average", help="folders of the averages: OUT-<alpha>")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tune = split_items(args.data, "tune")
    a, b = Path(args.a), Path(args.b)
    wa, wb = load_file(a / "weights.safetensors"), load_file(b / "weights.safetensors")
    if wa.keys() != wb.keys() or any(wa[k].shape != wb[k].shape for k in wb):
        raise SystemExit("the two folders hold different network layouts")
    scores = {"A": ap50(get_model(a), tune, device="cpu"), "B": ap50(get_model(b), tune, device="cpu")}
    print(f"A {scores['A']:.4f}  B {scores['B']:.4f}", flush=True)
    for alpha in args.alpha:
        folder = Path(f"{args.out}-{alpha}")
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(b, folder)
        mixed = {k: (alpha * wa[k].float() + (1 - alpha) * v.float()).to(v.dtype) if v.is_floating_point() else v
                 for k, v in wb.items()}
        save_file(mixed, str(folder / "weights.safetensors"))
        scores[str(alpha)] = ap50(get_model(folder), tune, device="cpu")
        print(f"{alpha} x A + {1 - alpha} x B: {scores[str(alpha)]:.4f}", flush=True)
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "a": str(a), "b": str(b), "tune_ap50": scores})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
