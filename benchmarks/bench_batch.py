"""Files per second of a batch (``seglab segment --workers N``) in this process and on local Dask clusters.

    python benchmarks/bench_batch.py [--n 20] [--model unet-nuclei] [--rounds 2] [--out FILE]

Segments the first ``--n`` DSB2018 ``val`` images (manifest order) with ``seglab.batch.batch_iter``
into a fresh folder for each configuration: in this process (``--workers 0``), and on a local
cluster of 1 and 2 workers as threads and as processes. For each it reports the start-up time
(call to the cluster being ready: the ``start`` event), the time from there to the last file
(which includes each worker loading the model once), files/s over that time and over the whole
run. A warm-up of three images in this process comes first (numba compiles, torch's first calls);
worker processes pay their own warm-up inside their run. Configurations run in order, then in
reverse order for the next round, so that a load that
changes over time on a shared machine weighs on all of them alike. Also records the CPU model,
the cores, and the load average before and after each run.

``--thread-check`` instead times this process alone on the same images (after one pass over all
of them): in the main thread with 2 and with 1 torch threads, and in another thread.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DSB = ROOT.parent / "shared" / "data" / "dsb2018"
if not DSB.exists():
    DSB = Path("/work/shared/data/dsb2018")

CONFIGS = [("in-process", 0, False), ("threads", 1, False), ("threads", 2, False),
           ("processes", 1, True), ("processes", 2, True)]




def val_images(n: int) -> list[Path]:
    with open(DSB / "manifest.csv") as f:
        ids = [r["id"] for r in csv.DictReader(f) if r["split"] == "val"]
    paths = []
    for i in ids[:n]:
        found = sorted((DSB / "images").glob(f"{i}.*"))
        paths.append(found[0])
    return paths


def run_one(model, ref: str, paths: list[Path], workers: int, processes: bool, options) -> dict:
    from seglab.batch.core import BatchSettings, batch_iter

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        started = None
        gen = batch_iter(model, paths, out, ["objects"], options,
                         BatchSettings(workers=workers, processes=processes), model_ref=ref)
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                summary = stop.value
                break
            if ev.stage == "start" and started is None:
                started = time.perf_counter()
        end = time.perf_counter()
    if not summary.ok:
        raise SystemExit(f"failed: {[(o.path.name, o.error) for o in summary.failed]}")
    work = end - started
    return {"startup_s": round(started - t0, 3), "work_s": round(work, 3), "total_s": round(end - t0, 3),
            "files_per_s": round(len(paths) / work, 4), "files_per_s_total": round(len(paths) / (end - t0), 4),
            "where": summary.where, "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def thread_check(model, ref: str, paths: list[Path], options) -> dict:
    """Files/s in this process: in the main thread with 2 and 1 torch threads, and in another thread."""
    import threading

    import torch

    run_one(model, ref, paths, 0, False, options)  # every image shape seen once
    before = torch.get_num_threads()
    out = {}
    for label, n, in_thread in [("main thread, 2 torch threads", 2, False), ("main thread, 1 torch thread", 1, False),
                                ("another thread (torch threads 2)", 2, True)]:
        torch.set_num_threads(n)
        box: dict = {}
        if in_thread:
            t = threading.Thread(target=lambda: box.update(r=run_one(model, ref, paths, 0, False, options)))
            t.start()
            t.join()
        else:
            box["r"] = run_one(model, ref, paths, 0, False, options)
        out[label] = box["r"]
        print(f"{label}: {box['r']['files_per_s']:.2f} files/s (load {box['r']['load_before']})", flush=True)
    torch.set_num_threads(before)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--model", default="unet-nuclei")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--thread-check", action="store_true",
                   help="instead: files/s in this process, main thread with 2 or 1 torch threads, and another thread")
    args = p.parse_args()

    from seglab.batch.cluster import model_reference
    from seglab.files import SegmentOptions
    from seglab.models.registry import get_model

    model = get_model(args.model)
    ref = model_reference(args.model)
    options = SegmentOptions(device="cpu", diameter=None, thresholds=model.thresholds({}))
    paths = val_images(args.n)
    if args.thread_check:
        res = thread_check(model, ref, paths, options)
        if args.out:
            Path(args.out).write_text(json.dumps({"benchmark": "batch thread check", "model": args.model,
                                                  "n_images": len(paths), "cpu": cpu_model(), "cores": os.cpu_count(),
                                                  "note": "shared machine: other jobs ran at the same time",
                                                  "runs": res}, indent=2) + "\n")
        return
    warm = run_one(model, ref, paths[:3], 0, False, options)  # first calls: numba compiles, torch warms up
    print(f"warm-up (3 images in this process, not counted): {warm['total_s']:.1f} s", flush=True)
    runs: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        order = CONFIGS if r % 2 == 0 else CONFIGS[::-1]
        for kind, workers, processes in order:
            key = kind if workers == 0 else f"{kind} x{workers}"
            res = run_one(model, ref, paths, workers, processes, options)
            runs.setdefault(key, []).append(res)
            print(f"round {r + 1} {key}: start-up {res['startup_s']:.1f} s, {res['files_per_s']:.2f} files/s after "
                  f"start-up, {res['files_per_s_total']:.2f} files/s overall (load {res['load_before']} -> "
                  f"{res['load_after']})", flush=True)
    summary = {k: {"startup_s_median": statistics.median(x["startup_s"] for x in v),
                   "files_per_s_median": statistics.median(x["files_per_s"] for x in v),
                   "files_per_s_total_median": statistics.median(x["files_per_s_total"] for x in v)}
               for k, v in runs.items()}
    result = {"benchmark": "batch", "model": args.model, "n_images": len(paths), "diameter": None,
              "images": "first DSB2018 val images in manifest order", "cpu": cpu_model(), "cores": os.cpu_count(),
              "torch_threads_in_process": __import__("torch").get_num_threads(),
              "note": "shared machine: other jobs ran at the same time (see load averages)",
              "runs": runs, "median": summary}
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
