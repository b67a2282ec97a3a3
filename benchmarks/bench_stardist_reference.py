"""The original StarDist (TensorFlow) on this machine: the speed reference of issue 11.

Issue 11 asks every shipped model to be at least 3x faster than the original StarDist on a
2048x2048 mosaic of grey nuclei; its reference figure (2.83 s: CNN 2.18 s, NMS 0.56 s) was measured
on another machine. This benchmark measures that reference here, in two steps and two environments:

    # 1. in seglab's environment: the mosaic of bench_speed.py and stardist-nuclei's maps of it
    python benchmarks/bench_stardist_reference.py export /tmp/stardist_reference.npz
    # 2. in an environment with the original StarDist (not a seglab dependency), e.g.
    #    python3.11 -m venv /tmp/tfref && /tmp/tfref/bin/pip install tensorflow-cpu==2.15.1 stardist==0.9.1
    PYTHONPATH=src /tmp/tfref/bin/python benchmarks/bench_stardist_reference.py tf /tmp/stardist_reference.npz \
        [--repeats 5] [--threads 2] [--json benchmarks/results/stardist_tf_reference.json]

``tf`` builds ``StarDist2D`` with StarDist's default 2D configuration (32 rays, grid (2, 2), a
U-Net of depth 3 with 32 base filters and 128 channels after it: the configuration of the
published ``2D_versatile_fluo``, whose weights cannot be downloaded here). Weights do not change
the CNN's time, so the CNN (``model.predict`` on the normalised mosaic) runs with StarDist's
random initial weights. The NMS and label painting (``model._instances_from_prediction``, what
``predict_instances`` runs after the CNN) need realistic probabilities, so they run on
``stardist-nuclei``'s own probability and distance maps of the mosaic (the same representation:
object probability and 32 radial distances in pixels on a grid of 2), at StarDist's
``prob_thresh`` 0.5 / ``nms_thresh`` 0.3 (those of ``stardist-nuclei``). Reported: medians of
``--repeats`` runs after one warm-up, wall clock and process CPU seconds; ``total`` = CNN + NMS
medians. Compare with ``bench_speed.py``'s end-to-end figures measured on the same machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # both need only seglab's src on the path, not torch
import bench_speed  # benchmarks/bench_speed.py: the mosaic and the timing
from machine import cpu_model, write_json  # benchmarks/machine.py


def _timed(fn, repeats: int) -> tuple[dict, object]:
    """:func:`bench_speed._timed` (one warm-up, then ``repeats`` runs) summarised, and the last result."""
    times, cpu, out = bench_speed._timed(fn, repeats)
    return bench_speed._summary(times, cpu), out


def export(path: str) -> None:
    """Save the bench_speed mosaic and stardist-nuclei's (1 + 32, H/2, W/2) maps of it."""
    import torch

    from seglab.inference.device import resolve_device
    from seglab.inference.engine import TileRun, place_network
    from seglab.inference.normalize import model_input
    from seglab.models.registry import get_model
    from seglab.progress import run_to_end

    torch.set_num_threads(2)
    image, n_src = bench_speed.build_mosaic()
    model = get_model("stardist-nuclei")
    cfg = model.config
    dev = resolve_device("cpu")
    place_network(model, dev)
    x = model_input(image, cfg.input_channels, cfg.normalization, None, None, None)
    maps = run_to_end(model.raw_output_iter(x, model.thresholds(None), TileRun(device=dev)))
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[0] != 1 + 32 or maps.shape[1:] != (image.shape[0] // 2, image.shape[1] // 2):
        raise SystemExit(f"unexpected map shape {maps.shape} for a {image.shape} image")
    np.savez(path, image=image, prob=maps[0], dist=np.moveaxis(maps[1:], 0, -1), n_sources=n_src)
    print(f"wrote {path}: image {image.shape}, {int((maps[0] > 0.5).sum())} candidates above 0.5")


def tf_reference(path: str, repeats: int, threads: int, out_json: str | None) -> None:
    """Time the original StarDist's CNN and NMS on the exported mosaic and maps."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import stardist
    from csbdeep.utils import normalize
    from stardist.models import Config2D, StarDist2D

    data = np.load(path)
    image, prob, dist = data["image"], data["prob"], data["dist"]
    load_before = os.getloadavg()[0]
    conf = Config2D(n_rays=32, grid=(2, 2), n_channel_in=1)
    model = StarDist2D(conf, name="reference", basedir=None)
    x = normalize(image.astype(np.float32), 1, 99.8)
    cnn, (p_tf, d_tf) = _timed(lambda: model.predict(x), repeats)
    if p_tf.shape != prob.shape or d_tf.shape != dist.shape:
        raise SystemExit(f"map shapes differ: StarDist {p_tf.shape} {d_tf.shape}, exported {prob.shape} {dist.shape}")
    nms, (_, details) = _timed(
        lambda: model._instances_from_prediction(image.shape, prob, dist, prob_thresh=0.5, nms_thresh=0.3), repeats)
    norm, _ = _timed(lambda: normalize(image.astype(np.float32), 1, 99.8), repeats)
    res = {
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": threads,
        "tensorflow": tf.__version__, "stardist": stardist.__version__, "python": platform.python_version(),
        "image": list(image.shape), "candidates_above_0.5": int((prob > 0.5).sum()),
        "objects": len(details["points"]),
        "normalise": norm, "cnn": cnn, "nms_and_labels": nms,
        "total_median_s": norm["median_s"] + cnn["median_s"] + nms["median_s"],
        "total_cpu_median_s": norm["cpu_median_s"] + cnn["cpu_median_s"] + nms["cpu_median_s"],
        "load_avg_1min": [load_before, os.getloadavg()[0]],
        "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"{res['cpu']}, {threads} threads, load {res['load_avg_1min']}: normalise {norm['median_s']:.3f} s, "
          f"CNN {cnn['median_s']:.3f} s (CPU {cnn['cpu_median_s']:.2f}), NMS + labels {nms['median_s']:.3f} s "
          f"(CPU {nms['cpu_median_s']:.2f}), total {res['total_median_s']:.3f} s; {res['objects']} objects")
    if out_json:
        write_json(out_json, res)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["export", "tf"])
    p.add_argument("npz")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.mode == "export":
        export(args.npz)
    else:
        tf_reference(args.npz, args.repeats, args.threads, args.json)


if __name__ == "__main__":
    main()
