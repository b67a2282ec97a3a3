"""Out-of-core segmentation (issue 13): peak resident memory and throughput vs the in-memory path.

1. ``--make``: a 20,000 x 20,000 uint16 OME-Zarr (chunks 1024, pixel size 0.5 µm) synthesised
   chunk by chunk (never whole in memory) as a mosaic of the grey DSB2018 ``val`` images: a
   2048 x 2048 mosaic tile packed from them (fluorescence only: dark background; cropped to at most
   512 px; gaps at each image's own background level), each
   2048 px cell of the big image a flipped / transposed copy of it.
2. Each measurement runs in its own process (so that ``VmHWM``, the peak resident memory the
   kernel records, is that run's): ``ooc`` segments the top-left ``--region`` square of the big
   image out of core into a zarr store; ``mem`` loads the top-left ``--mem-side`` square into memory
   and segments it with :func:`seglab.inference.engine.segment`. Both with ``--diameter`` (default
   none: the throughput of the network and postprocessing, not of the size estimate).
   A thread also samples ``VmRSS`` every 50 ms (the peak of the samples is reported too). Besides
   wall-clock MP/s, MP per CPU second of the process (all its threads) is reported: on a shared,
   overloaded machine it depends much less on what else runs than the wall clock does.

    python benchmarks/bench_out_of_core.py --make /tmp/big.ome.zarr
    python benchmarks/bench_out_of_core.py --image /tmp/big.ome.zarr --models unet-nuclei \\
        --region 8192 --mem-side 2048 --json benchmarks/results/out_of_core.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

DSB = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"
if not DSB.is_dir():
    DSB = Path("/work/shared/data/dsb2018")
SIDE, CHUNK, CELL = 20_000, 1024, 2048


def mosaic_tile(seed: int = 0) -> np.ndarray:
    """A CELL x CELL uint16 mosaic of the grey DSB2018 val images (shelf packing)."""
    import tifffile

    rows = list(csv.DictReader(open(DSB / "manifest.csv")))
    ids = [r["id"] for r in rows if r["split"] == "val" and r["channels"] == "1"]
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    tile = np.zeros((CELL, CELL), np.uint16)
    filled = np.zeros((CELL, CELL), bool)
    y = x = shelf = 0
    for i in range(20 * len(ids)):  # shelves of images cropped to at most 512 px, cycling through val
        img = tifffile.imread(DSB / "images" / f"{ids[i % len(ids)]}.tif")
        img = (img if img.ndim == 2 else img[..., 0])[:512, :512]
        if np.median(img) > 0.5 * np.percentile(img, 99.5):  # brightfield (bright background): fluorescence only
            continue
        img = (img.astype(np.float64) * 257).clip(0, 65535).astype(np.uint16)
        h, w = img.shape
        if x + w > CELL:
            y, x, shelf = y + shelf, 0, 0
        if y >= CELL:
            break
        h = min(h, CELL - y)
        tile[y:y + h, x:x + w] = img[:h]
        filled[y:y + h, x:x + w] = True
        x, shelf = x + w, max(shelf, h)
    tile[~filled] = int(np.percentile(tile[filled], 5))
    return tile


def make_image(path: Path) -> None:
    """The SIDE x SIDE OME-Zarr, chunk by chunk."""
    import zarr

    base = mosaic_tile()
    variants = [base, base[::-1], base[:, ::-1], base.T, base[::-1, ::-1], base.T[::-1]]
    root = zarr.open_group(str(path), mode="w")
    arr = root.create_array("0", shape=(SIDE, SIDE), chunks=(CHUNK, CHUNK), dtype="uint16")
    for cy in range(0, SIDE, CHUNK):
        for cx in range(0, SIDE, CHUNK):
            cell = variants[((cy // CELL) * 7 + (cx // CELL) * 3) % len(variants)]
            oy, ox = cy % CELL, cx % CELL
            h, w = min(CHUNK, SIDE - cy), min(CHUNK, SIDE - cx)
            arr[cy:cy + h, cx:cx + w] = cell[oy:oy + h, ox:ox + w]
    axes = [{"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"name": "mosaic", "axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.5, 0.5]}]}]}]}


class Region:
    """The top-left ``side`` square of a 2D array, sliced lazily."""

    def __init__(self, arr, side: int) -> None:
        self.arr, self.shape, self.dtype = arr, (min(side, arr.shape[0]), min(side, arr.shape[1])), arr.dtype
        self.chunks = arr.chunks

    def __getitem__(self, key):
        ys, xs = key
        return self.arr[ys, xs]


def _status(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.stop = 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, _status("VmRSS:"))
            time.sleep(0.05)


def one(args: argparse.Namespace) -> dict:
    """One measurement in this process."""
    import torch
    import zarr

    from seglab.inference.engine import segment
    from seglab.inference.lazy import segment_lazy
    from seglab.models.registry import get_model

    torch.set_num_threads(args.threads)
    model = get_model(args.model)
    src = zarr.open_group(str(args.image), mode="r")["0"]
    diameter = None if args.diameter == "none" else (args.diameter if args.diameter == "auto" else float(args.diameter))
    sampler = RssSampler()
    rss0 = _status("VmRSS:")
    sampler.start()
    t0, cpu0 = time.perf_counter(), time.process_time()
    if args.one == "ooc":
        side = args.region[0]
        region = Region(src, side)
        out = Path(args.workdir) / f"{args.model}_{side}_labels.zarr"
        res = segment_lazy(model, region, out, block_size=args.block_size, tile_size=args.tile_size,
                           device="cpu", diameter=diameter)
        shape, n = region.shape, res.n_objects
        extra = {"blocks": res.blocks, "merged": res.merged, "block_size": args.block_size}
    else:
        img = np.asarray(src[: args.mem_side, : args.mem_side])
        res = segment(model, img, tile_size=args.tile_size, device="cpu", diameter=diameter)
        shape, n = img.shape, res.n_objects
        extra = {}
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    sampler.stop.set()
    sampler.join()
    mp = shape[0] * shape[1] / 1e6
    return {"mode": args.one, "model": args.model, "shape": list(shape), "megapixels": mp, "seconds": seconds,
            "mp_per_s": mp / seconds, "cpu_seconds": cpu, "mp_per_cpu_s": mp / cpu, "objects": n, "peak_rss_gb": _status("VmHWM:") / 1e9,
            "sampled_peak_rss_gb": sampler.peak / 1e9, "rss_before_gb": rss0 / 1e9, "threads": args.threads,
            "tile_size": args.tile_size, "diameter": args.diameter, **extra}


def table(paths: list[Path]) -> str:
    """A markdown table of the runs in result files."""
    lines = ["| model | path | image | MP | wall s | MP/s (wall) | CPU s | MP per CPU s | peak RSS (VmHWM) GB | objects | load avg (1 min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        for r in json.loads(Path(path).read_text())["runs"]:
            cpu = f"{r['cpu_seconds']:.0f}" if "cpu_seconds" in r else "-"
            per_cpu = f"{r['mp_per_cpu_s']:.3f}" if "mp_per_cpu_s" in r else "-"
            kind = "in memory" if r["mode"] == "mem" else f"out of core, blocks {r.get('block_size')}"
            lines.append(f"| {r['model']} | {kind} | {r['shape'][0]} x {r['shape'][1]} | {r['megapixels']:.1f} | "
                         f"{r['seconds']:.0f} | {r['mp_per_s']:.3f} | {cpu} | {per_cpu} | {r['peak_rss_gb']:.2f} | "
                         f"{r['objects']} | {r['loadavg'][0]} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--make", type=Path, help="write the 20k x 20k OME-Zarr here and exit")
    p.add_argument("--image", type=Path)
    p.add_argument("--models", nargs="+", default=["unet-nuclei", "stardist-nuclei", "maskrcnn-nuclei"])
    p.add_argument("--region", type=int, nargs="+", default=[8192], help="sides of the out-of-core squares")
    p.add_argument("--mem-side", type=int, default=2048, help="side of the in-memory square (0: none)")
    p.add_argument("--block-size", type=int, default=4096)
    p.add_argument("--tile-size", type=int, default=1024)
    p.add_argument("--diameter", default="none")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/seglab-ooc-bench"))
    p.add_argument("--repeats", type=int, default=1, help="rounds of every run, interleaved; medians are printed")
    p.add_argument("--json", type=Path)
    p.add_argument("--table", type=Path, nargs="+", help="print a markdown table of these result files and exit")
    p.add_argument("--one", choices=["ooc", "mem"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.make:
        t0 = time.perf_counter()
        make_image(args.make)
        print(f"wrote {args.make} in {time.perf_counter() - t0:.0f} s")
        return
    if args.one:
        print(json.dumps(one(args)))
        return
    if args.table:
        print(table(args.table))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    results = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
               "loadavg_start": open("/proc/loadavg").read().split()[:3], "runs": []}
    base = [sys.executable, __file__, "--image", str(args.image), "--block-size", str(args.block_size),
            "--tile-size", str(args.tile_size), "--diameter", args.diameter, "--threads", str(args.threads),
            "--workdir", str(args.workdir)]
    for model in args.models:
        jobs = ([["--one", "mem", "--mem-side", str(args.mem_side)]] if args.mem_side else [])
        jobs += [["--one", "ooc", "--region", str(r)] for r in args.region]
        for job in [j for _ in range(args.repeats) for j in jobs]:
            out = subprocess.run(base + ["--model", model] + job, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                continue
            run = json.loads(out.stdout.strip().splitlines()[-1])
            run["loadavg"] = open("/proc/loadavg").read().split()[:3]
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results, indent=2))
    print(medians(results["runs"]))


def medians(runs: list[dict]) -> str:
    """Median wall and CPU throughput per model, path and image side, and out of core / in memory."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["mode"], r["shape"][0]), []).append(r)
    lines = ["| model | path | side | runs | median MP/s (wall) | median MP per CPU s | vs in memory (wall / CPU) |",
             "|---|---|---|---|---|---|---|"]
    mem = {m: statistics.median(x["mp_per_s"] for x in g) for (m, mode, _), g in groups.items() if mode == "mem"}
    mem_cpu = {m: statistics.median(x["mp_per_cpu_s"] for x in g) for (m, mode, _), g in groups.items() if mode == "mem"}
    for (model, mode, side), g in sorted(groups.items()):
        wall = statistics.median(x["mp_per_s"] for x in g)
        cpu = statistics.median(x["mp_per_cpu_s"] for x in g)
        rel = (f"{wall / mem[model] - 1:+.0%} / {cpu / mem_cpu[model] - 1:+.0%}"
               if mode == "ooc" and model in mem else "-")
        lines.append(f"| {model} | {'out of core' if mode == 'ooc' else 'in memory'} | {side} | {len(g)} | "
                     f"{wall:.3f} | {cpu:.3f} | {rel} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
