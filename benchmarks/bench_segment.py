"""Time ``segment`` end to end (read file -> labels TIFF written) on images built from real data.

    python benchmarks/bench_segment.py [--model unet-nuclei] [--repeats 5] [--devices cpu cuda]
    python benchmarks/bench_segment.py --untrained maskrcnn-nuclei -t score_thresh=0 --arch detections_per_img=300 --sizes 1024

``--untrained RECIPE`` times a randomly initialised model of a recipe's real-size
architecture (for families whose built-in is not trained yet); ``-t NAME=VALUE`` overrides
thresholds. For detection families the time grows with the number of detections, so
read it together with the object count.

Each (size, device) runs in its own process so its peak memory (max RSS) is its own.
Reports median and min seconds of the repeats after one warm-up run, megapixels per
second, peak RSS and, on GPU, peak CUDA memory. Source images: DSB2018 val 1024x1024 images
(grey); the 4096x4096 image is a 4x4 mosaic of them (flipped), so it holds real nuclei.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "dsb2018"
SAMPLE_1024 = ROOT / "sample_data" / "images" / "1b44d22643830cd4f23c9deadb0bd499fb392fb2cd9526d81547d93077d983df.tif"


def real_1024_images() -> list[np.ndarray]:
    import tifffile

    out = []
    if (SHARED / "manifest.csv").is_file():
        import csv

        rows = [r for r in csv.DictReader(open(SHARED / "manifest.csv")) if r["split"] == "val"
                and r["height"] == "1024" and r["width"] == "1024" and r["channels"] == "1"]
        out = [tifffile.imread(SHARED / "images" / f"{r['id']}.tif") for r in rows]
    return out or [tifffile.imread(SAMPLE_1024)]


def build_image(size: int) -> np.ndarray:
    imgs = real_1024_images()
    if size == 1024:
        return imgs[0]
    n = size // 1024
    rows = []
    k = 0
    for i in range(n):
        row = []
        for j in range(n):
            im = imgs[k % len(imgs)]
            im = im[::-1] if (i + j) % 2 else im
            im = im[:, ::-1] if i % 2 else im
            row.append(im)
            k += 1
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def untrained_model_dir(recipe_name: str, folder: Path, arch: dict | None = None) -> Path:
    """A randomly initialised (seed 0) model with the architecture of a training recipe
    (``arch`` overrides entries, e.g. a detection cap to fix the number of detections)."""
    import torch

    from seglab.models.storage import new_model, save_model
    from seglab.training.recipes import RECIPES

    recipe = RECIPES[recipe_name]
    torch.manual_seed(0)
    model = new_model(recipe["family"], f"untrained-{recipe_name}", architecture={**recipe["architecture"], **(arch or {})},
                      tile_context=recipe["tile_context"])
    return save_model(model, folder / model.config.name, overwrite=True)


def run_one(model_name: str, size: int, device: str, repeats: int, tile_size: int,
            thresholds: dict[str, float] | None = None, arch: dict | None = None) -> dict:
    import tifffile
    import torch

    from seglab.inference.engine import segment
    from seglab.io import read_image, write_labels
    from seglab.models.registry import get_model

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"img{size}.tif"
        tifffile.imwrite(src, build_image(size))
        model = get_model(str(untrained_model_dir(model_name[len("untrained:"):], Path(tmp), arch))
                          if model_name.startswith("untrained:") else model_name)
        times, n_obj = [], 0
        for r in range(repeats + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            image = read_image(src)
            res = segment(model, image, device=device, tile_size=tile_size, thresholds=thresholds)
            write_labels(Path(tmp) / "out_labels.tif", res.labels)
            if device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            n_obj = res.n_objects
            if r > 0:
                times.append(dt)
    out = {
        "model": model_name, "size": f"{size}x{size}", "device": device, "repeats": repeats,
        "median_s": statistics.median(times), "min_s": min(times),
        "mpx_per_s": size * size / 1e6 / statistics.median(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "objects": n_obj,
        "tile_size": tile_size, "torch_threads": torch.get_num_threads(), "thresholds": res.thresholds, "arch_overrides": arch or {},
        "load_avg_1min": __import__("os").getloadavg()[0],
    }
    if device == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cores": __import__("os").cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="unet-nuclei")
    p.add_argument("--untrained", default=None, metavar="RECIPE",
                   help="time a randomly initialised model of this recipe's architecture instead of --model")
    p.add_argument("--arch", action="append", default=[], metavar="KEY=JSON",
                   help="with --untrained: override an architecture entry, e.g. --arch detections_per_img=300")
    p.add_argument("-t", "--threshold", action="append", default=[], metavar="NAME=VALUE",
                   help="override a model threshold (repeatable)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--devices", nargs="+", default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tile-size", type=int, default=1024)
    p.add_argument("--one", nargs=2, metavar=("SIZE", "DEVICE"), help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args()
    if args.untrained:
        args.model = f"untrained:{args.untrained}"
    th = {k: float(v) for k, v in (t.split("=", 1) for t in args.threshold)}
    arch = {k: json.loads(v) for k, v in (a.split("=", 1) for a in args.arch)}
    if args.one:
        print(json.dumps(run_one(args.model, int(args.one[0]), args.one[1], args.repeats, args.tile_size, th, arch)))
        return 0
    import torch

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    results = []
    for dev in devices:
        for size in args.sizes:
            reps = args.repeats if size <= 1024 else max(3, args.repeats // 2)
            r = subprocess.run([sys.executable, __file__, "--model", args.model, "--repeats", str(reps),
                                "--tile-size", str(args.tile_size), "--one", str(size), dev,
                                *[f"-t{t}" for t in args.threshold], *[f"--arch={a}" for a in args.arch]],
                               capture_output=True, text=True, check=True)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            results.append(res)
            print(f"{res['model']:<12} {res['size']:>9} {dev:<4} median {res['median_s']:.3f} s  "
                  f"min {res['min_s']:.3f} s  {res['mpx_per_s']:.2f} MPx/s  peak RSS {res['peak_rss_mb']:.0f} MB"
                  + (f"  peak CUDA {res['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in res else "")
                  + f"  ({res['objects']} objects, {res['repeats']} runs, load {res['load_avg_1min']:.1f})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
