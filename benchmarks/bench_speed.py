"""Seconds per 2048x2048 image for every built-in model, end to end and split into parts (issue 11).

    python benchmarks/bench_speed.py [--models stardist-nuclei unet-nuclei ...] [--repeats 7]
                                     [--threads 2] [--json benchmarks/results/speed.json]

The image is a 2048x2048 mosaic of real grey fluorescence nuclei: 256x256 crops of the
DSB2018 ``val`` images with a dark background (``seglab.datasets.image_kind``), in id order,
placed on an 8x8 grid (the ``sample_data`` fluorescence image when the data set is missing).
With ``--he``, a model that reads three channels gets a mosaic of real H&E tissue instead: 256x256
crops of the four MoNuSeg ``val`` tiles (about 3,000 nuclei in 2048x2048), as its users' images are.
For each model, after one warm-up run of each column, the median (and min) of ``--repeats``
runs (wall clock, and the process's CPU seconds, which a shared machine inflates less) of:

- ``segment(model, image, diameter=None)``: end to end, no rescaling (the model's own scale);
- ``segment(model, image)``: the default ``diameter="auto"`` (estimate + rescale + segment);
- its parts, timed separately on the same image: ``normalise`` (``model_input``), ``network``
  (the family's ``raw_output_iter`` through the engine's ``TileRun``: tiles, network,
  stitching or detections) and ``postprocess`` (``postprocess_iter`` on that raw output).

Each model runs in its own process (``--one``), with ``torch.set_num_threads(--threads)``, so
its peak RSS is its own. The JSON records the CPU model name (``lscpu``), the load average
before and after each model, torch version and threads.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from machine import cpu_model  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018"
MONUSEG = ROOT.parent / "shared" / "data" / "monuseg-kumar"
SAMPLE = ROOT / "src" / "seglab" / "sample_data"
MODELS = ("stardist-nuclei", "unet-nuclei", "maskrcnn-nuclei", "stardist-he")
CROP = 256
SIZE = 2048


def _fluorescence_images() -> list[np.ndarray]:
    """Grey val images with a dark background, in id order (or the sample fluorescence image)."""
    import tifffile

    if (DATA / "manifest.csv").is_file():
        rows = [r for r in csv.DictReader(open(DATA / "manifest.csv", newline="")) if r["split"] == "val"
                and r["channels"] == "1"]
        out = []
        for r in sorted(rows, key=lambda r: r["id"]):
            im = tifffile.imread(DATA / "images" / f"{r['id']}.tif")
            if im.ndim == 2 and np.median(im) <= 128:  # seglab.datasets.image_kind: dark background
                out.append(im)
        if out:
            return out
    candidates = sorted(SAMPLE.rglob("*.tif")) + sorted((ROOT / "sample_data").rglob("*.tif"))
    for p in candidates:
        if "label" in p.parts[-2] or "label" in p.name:
            continue
        im = tifffile.imread(p)
        if im.ndim == 2 and np.median(im) <= 128:
            return [im]
    raise SystemExit("no grey fluorescence image found (neither DSB2018 val nor sample data)")


def _he_tiles() -> list[np.ndarray]:
    """The MoNuSeg ``val`` tiles (RGB), in id order."""
    import tifffile

    if not (MONUSEG / "manifest.csv").is_file():
        raise SystemExit(f"--he needs the MoNuSeg data in {MONUSEG}")
    with open(MONUSEG / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "val"]
    return [tifffile.imread(MONUSEG / "images" / f"{r['id']}.tif")[..., :3] for r in sorted(rows, key=lambda r: r["id"])]


def build_mosaic(size: int = SIZE, crop: int = CROP, he: bool = False) -> tuple[np.ndarray, int]:
    """A ``size`` x ``size`` uint8 mosaic of ``crop`` x ``crop`` crops of real fluorescence images
    (``he``: of the MoNuSeg ``val`` H&E tiles, RGB) taken round-robin over the images, so that every
    image contributes (repeated when there are fewer crops than cells), and the number of source images."""
    images = _he_tiles() if he else _fluorescence_images()
    by_image = [[im[y : y + crop, x : x + crop] for y in range(0, im.shape[0] - crop + 1, crop)
                 for x in range(0, im.shape[1] - crop + 1, crop)] for im in images]
    longest = max(len(c) for c in by_image)
    pool = [c[j] for j in range(longest) for c in by_image if j < len(c)]
    n = size // crop
    cells = [pool[i % len(pool)] for i in range(n * n)]
    rows = [np.concatenate(cells[i * n : (i + 1) * n], axis=1) for i in range(n)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0).astype(np.uint8)), len(images)




def _timed(fn, repeats: int) -> tuple[list[float], list[float], object]:
    """Wall-clock and process-CPU seconds of ``repeats`` runs after one warm-up, and the last result."""
    fn()  # warm-up
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu, out


def _summary(times: list[float], cpu: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "cpu_median_s": statistics.median(cpu),
            "runs": times}


def run_one(model_name: str, repeats: int, threads: int, auto: bool = True, tile_size: int | None = None,
            he: bool = False) -> dict:
    import torch

    torch.set_num_threads(threads)
    from seglab.inference.device import resolve_device
    from seglab.inference.engine import DEFAULT_TILE_SIZE, TileRun, place_network, segment
    from seglab.inference.normalize import model_input
    from seglab.models.registry import get_model
    from seglab.progress import run_to_end

    load_before = os.getloadavg()
    model = get_model(model_name)
    cfg = model.config
    he = he and cfg.input_channels == 3
    image, n_src = build_mosaic(he=he)
    if cfg.input_channels == 3 and not he:
        image = np.repeat(image[..., None], 3, axis=-1)  # grey as RGB, as a user's grey image would come
    ca = -1 if image.ndim == 3 else None
    dev = resolve_device("cpu")
    th = model.thresholds(None)
    place_network(model, dev)
    tile = int(tile_size or DEFAULT_TILE_SIZE)
    run = TileRun(device=dev, tile_size=tile)

    def normalise() -> np.ndarray:
        return model_input(image, cfg.input_channels, cfg.normalization, ca, None, None)

    x = normalise()

    def network():
        return run_to_end(model.raw_output_iter(x, th, run))

    raw = network()

    def post():
        return run_to_end(model.postprocess_iter(raw, th, x.shape[-2:]))

    def end_to_end(diameter):
        return lambda: segment(model, image, channel_axis=ca, device="cpu", diameter=diameter, tile_size=tile)

    parts = {}
    for name, fn in (("normalise", normalise), ("network", network), ("postprocess", post)):
        t, c, _ = _timed(fn, repeats)
        parts[name] = _summary(t, c)
    t_none, c_none, seg = _timed(end_to_end(None), repeats)
    out = {
        "model": model_name,
        "image": (f"{SIZE}x{SIZE} mosaic of {CROP}x{CROP} crops of the {n_src} MoNuSeg val H&E tiles" if he else
                  f"{SIZE}x{SIZE} mosaic of {CROP}x{CROP} crops of {n_src} DSB2018 val fluorescence images"
                  + (" (grey repeated to RGB)" if ca is not None else "")),
        "architecture": cfg.architecture, "tile_context": cfg.tile_context,
        "parameters": int(sum(p.numel() for p in model.network.parameters())),
        "torch_threads": torch.get_num_threads(), "repeats": repeats, "tile_size": tile,
        "diameter_none": {**_summary(t_none, c_none), "objects": seg.n_objects},
        "parts": parts,
    }
    if auto:
        t_auto, c_auto, seg_a = _timed(end_to_end("auto"), repeats)
        out["diameter_auto"] = {**_summary(t_auto, c_auto), "objects": seg_a.n_objects, "diameter": seg_a.diameter,
                                "scale_factor": seg_a.scale_factor}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["load_avg_before"] = load_before
    out["load_avg_after"] = os.getloadavg()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-auto", action="store_true", help="skip the diameter='auto' column")
    p.add_argument("--tile-size", type=int, default=None, help="tile size (default: the engine's)")
    p.add_argument("--json", default=None, help="write results here (e.g. benchmarks/results/speed.json)")
    p.add_argument("--he", action="store_true",
                   help="models that read three channels get a mosaic of MoNuSeg val H&E tiles")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.repeats, args.threads, not args.no_auto, args.tile_size, args.he)))
        return 0
    import torch

    results = []
    for name in args.models:
        r = subprocess.run([sys.executable, __file__, "--one", name, "--repeats", str(args.repeats),
                            "--threads", str(args.threads), *(["--no-auto"] if args.no_auto else []),
                            *(["--tile-size", str(args.tile_size)] if args.tile_size else []),
                            *(["--he"] if args.he else [])],
                           capture_output=True, text=True, check=False)
        if r.returncode:
            print(r.stderr[-3000:], file=sys.stderr)
            return r.returncode
        res = json.loads(r.stdout.strip().splitlines()[-1])
        results.append(res)
        pt = res["parts"]
        auto = res.get("diameter_auto")
        print(f"{name:<16} none {res['diameter_none']['median_s']:.3f} s (min {res['diameter_none']['min_s']:.3f}, "
              f"cpu {res['diameter_none']['cpu_median_s']:.3f})"
              + (f"  auto {auto['median_s']:.3f} s (factor {auto['scale_factor']:.2f})" if auto else "")
              + f"  | normalise {pt['normalise']['median_s']:.3f}  network {pt['network']['median_s']:.3f}"
              f" (cpu {pt['network']['cpu_median_s']:.3f})  postprocess {pt['postprocess']['median_s']:.3f}"
              f" (cpu {pt['postprocess']['cpu_median_s']:.3f})  | {res['diameter_none']['objects']} objects"
              f"  peak RSS {res['peak_rss_mb']:.0f} MB  load {res['load_avg_before'][0]:.2f}->"
              f"{res['load_avg_after'][0]:.2f}", flush=True)
    if args.json:
        from seglab.io.atomic import atomic_file

        machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                   "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(args.json) as tmp:
            tmp.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
