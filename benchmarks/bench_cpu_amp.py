"""bfloat16 autocast vs float32 on this CPU, and on the same CPU limited to AVX2.

Mixed precision pays only where the CPU computes bfloat16 natively (AVX512-BF16, AMX); elsewhere
oneDNN emulates it. ``seglab.torch_env.cpu_bf16`` decides. This benchmark times a built-in model's
network (inference on one tile, and a training forward/backward on a batch of patches) in float32
and under bfloat16 autocast, each in a fresh process: once as the CPU is, once with oneDNN and ATen
limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``, what an AVX2-only CPU runs).
Medians of ``--repeats`` runs after one warm-up.

    python benchmarks/bench_cpu_amp.py --model stardist-nuclei --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def measure(model_name: str, tile: int, batch: int, patch: int, repeats: int) -> dict:
    """Seconds (medians) of inference and of a training step, float32 and bfloat16 autocast."""
    import torch

    from seglab.models.registry import get_model
    from seglab.torch_env import cpu_bf16

    torch.manual_seed(0)
    model = get_model(model_name)
    net = model.network.float().to(memory_format=torch.channels_last)
    c = model.config.input_channels
    out: dict = {"cpu_bf16_native": cpu_bf16()}
    for amp in (False, True):
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else (lambda: torch.autocast("cpu", enabled=False))
        x = torch.rand(1, c, tile, tile).contiguous(memory_format=torch.channels_last)
        net.eval()
        times = []
        for i in range(repeats + 1):
            t = time.perf_counter()
            with torch.inference_mode(), ctx():
                net(x)
            if i:
                times.append(time.perf_counter() - t)
        out[f"infer_s_{'bf16' if amp else 'fp32'}"] = statistics.median(times)
        net.train()
        xb = torch.rand(batch, c, patch, patch).contiguous(memory_format=torch.channels_last)
        times = []
        for i in range(repeats + 1):
            t = time.perf_counter()
            with ctx():
                y = net(xb)
            loss = sum(v.float().mean() for v in (y.values() if isinstance(y, dict) else [y]))
            loss.backward()
            net.zero_grad(set_to_none=True)
            if i:
                times.append(time.perf_counter() - t)
        out[f"train_step_s_{'bf16' if amp else 'fp32'}"] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stardist-nuclei")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.tile, args.batch, args.patch, args.repeats)))
        return
    from machine import cpu_matrix_flags, cpu_model, load_1min, write_json

    rows, loads = [], [load_1min()]
    for isa in ("native", "AVX2"):
        env = dict(os.environ)
        if isa != "native":
            env.update(ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
        cmd = [sys.executable, __file__, "--child", "--model", args.model, "--tile", str(args.tile),
               "--batch", str(args.batch), "--patch", str(args.patch), "--repeats", str(args.repeats)]
        res = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        rows.append({"isa": isa, **res})
        loads.append(load_1min())
    print(f"CPU: {cpu_model()} ({' '.join(cpu_matrix_flags())}), load {loads}; {args.model}; inference on {args.tile}^2, training step {args.batch}x{args.patch}^2")
    print("| ISA | native bf16 (seglab autocast) | inference fp32 s | inference bf16 s | train step fp32 s | train step bf16 s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['isa']} | {'yes' if r['cpu_bf16_native'] else 'no'} | {r['infer_s_fp32']:.3f} | {r['infer_s_bf16']:.3f} | "
              f"{r['train_step_s_fp32']:.3f} | {r['train_step_s_bf16']:.3f} |")
    if args.json:
        write_json(args.json, {"cpu": cpu_model(), "cpu_flags": cpu_matrix_flags(), "load_1min": loads,
                               "model": args.model, "rows": rows})


if __name__ == "__main__":
    main()
