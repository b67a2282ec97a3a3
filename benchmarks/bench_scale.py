"""Scale benchmark: the DSB2018 ``val`` images resized by 0.5, 1, 2, 3, 4, segmented with
``diameter="auto"``, with the true diameter given, and with no rescaling (issue 11).

    python benchmarks/bench_scale.py [--models unet-nuclei ...] [--factors 0.5 1 2 3 4] [--limit N]
                                     [--modes auto true none] [--skip-none maskrcnn-nuclei:3]
                                     [--augment] [--json benchmarks/results/scale.json]

Each image is resized by the factor (bilinear, antialiased when shrinking), its labels by
nearest neighbour; predictions are scored against the resized labels with pooled AP@0.5
(``seglab.metrics.evaluate``). Modes: ``auto`` (the estimate), ``true`` (``diameter`` =
the model's ``object_diameter`` x factor: the rescale that undoes the resize) and ``none``
(no rescaling, what every model did before). Times are the seconds of ``segment`` summed over
images (the image already in memory); ``auto`` includes its estimate. ``--skip-none
FAMILY:F`` skips the slow no-rescale runs at factors >= F for that model. ``--cost`` only times
``auto`` against the true-diameter pass, interleaved image by image so that both see the same
load (the figure for "auto costs at most 1.3x one pass"); per-image records in every cell.
``--augment``: every run with test-time augmentation (``segment(..., augment=True)``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from machine import cpu_model, load_1min, write_json  # benchmarks/machine.py

from seglab.datasets import load_split
from seglab.evaluation import AnnotatedImage
from seglab.inference import diameter as dm
from seglab.inference.engine import segment
from seglab.inference.rescale import resize_image, resize_labels, scaled_shape
from seglab.metrics import evaluate, image_counts
from seglab.models.registry import get_model

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dsb2018"


def resize_item(item: AnnotatedImage, factor: float) -> AnnotatedImage:
    """An annotated image resized by ``factor`` (image bilinear/antialiased, labels nearest)."""
    if factor == 1:
        return item
    img = np.asarray(item.image, dtype=np.float32)
    ca = item.channel_axis
    chw = img[None] if ca is None else np.moveaxis(img, ca, 0)
    hw = scaled_shape(item.labels.shape, factor)
    out = resize_image(chw, hw)
    out = out[0] if ca is None else np.moveaxis(out, 0, ca)
    return AnnotatedImage(out, resize_labels(item.labels, hw), ca, item.name)




def run_cell(model, items: list[AnnotatedImage], mode: str, factor: float, augment: bool = False) -> dict:
    """Score one (model, factor, mode) cell."""
    preds, seconds, diameters, factors, times = [], 0.0, [], [], []
    for it in items:
        if mode == "auto":
            d: object = "auto"
        elif mode == "true":
            d = float(model.config.object_diameter) * factor
        else:
            d = None
        t0 = time.perf_counter()
        seg = segment(model, it.image, channel_axis=it.channel_axis, diameter=d, augment=augment)
        times.append(time.perf_counter() - t0)
        seconds += times[-1]
        preds.append(seg.labels)
        diameters.append(seg.diameter)
        factors.append(seg.scale_factor)
    metrics = evaluate(zip([it.labels for it in items], preds), thresholds=(0.5,))
    m = metrics["thresholds"]["0.50"]
    return {"ap50": m["ap"], "tp": m["tp"], "fp": m["fp"], "fn": m["fn"], "seconds": round(seconds, 2),
            "diameters": [None if v is None else round(float(v), 2) for v in diameters],
            "scale_factors": [round(float(v), 4) for v in factors],
            "per_image": per_image_records(items, preds, times)}


def per_image_records(items: list[AnnotatedImage], preds: list[np.ndarray], times: list[float]) -> list[dict]:
    """Each image's name, matches at IoU 0.5 and seconds: which images decide the pooled AP."""
    out = []
    for it, pred, sec in zip(items, preds, times):
        c = image_counts(it.labels, pred, (0.5,))[0.5]
        out.append({"name": str(it.name)[:12], "tp": c.tp, "fp": c.fp, "fn": c.fn, "seconds": round(sec, 3)})
    return out


def cost_cell(model, items: list[AnnotatedImage], factor: float, repeats: int = 1) -> dict:
    """``auto`` against one pass with the true diameter, image by image and interleaved (true, auto,
    true, auto, ...; the faster of ``repeats`` runs each), so that both see the same load."""
    t_true, t_auto, per = 0.0, 0.0, []
    if items:  # warm-up outside the timing (first calls of a network are slower)
        segment(model, items[0].image, channel_axis=items[0].channel_axis, diameter="auto")
    for it in items:
        best = {"true": float("inf"), "auto": float("inf")}
        for _ in range(repeats):
            for mode, d in (("true", float(model.config.object_diameter) * factor), ("auto", "auto")):
                t0 = time.perf_counter()
                segment(model, it.image, channel_axis=it.channel_axis, diameter=d)
                best[mode] = min(best[mode], time.perf_counter() - t0)
        t_true += best["true"]
        t_auto += best["auto"]
        per.append({"name": str(it.name)[:12], "true": round(best["true"], 3), "auto": round(best["auto"], 3)})
    return {"seconds_true": round(t_true, 2), "seconds_auto": round(t_auto, 2),
            "ratio": round(t_auto / t_true, 3) if t_true else None, "per_image": per}


def markdown_table(results: dict) -> str:
    """AP@0.5 (and seconds) per model, factor and mode, as a Markdown table."""
    lines = ["| model | factor | auto | true factor | no rescaling | auto s | true s | none s | auto diameters (median) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        factors = sorted({float(k.split("/")[0]) for k in res if "/" in k})
        for f in factors:
            cells = {m: res.get(f"{f:g}/{m}") for m in ("auto", "true", "none")}
            if f == 1:
                cells["true"] = cells["none"]

            def ap(c):
                return "-" if not c or "ap50" not in c else f"{c['ap50']:.3f}"

            def sec(c):
                return "-" if not c or "seconds" not in c else f"{c['seconds']:.0f}"

            ds = [d for d in (cells["auto"] or {}).get("diameters", []) if d is not None]
            med = f"{float(np.median(ds)):.1f}" if ds else "-"
            lines.append(f"| {name} | {f:g} | {ap(cells['auto'])} | {ap(cells['true'])} | {ap(cells['none'])} | "
                         f"{sec(cells['auto'])} | {sec(cells['true'])} | {sec(cells['none'])} | {med} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["unet-nuclei", "stardist-nuclei", "maskrcnn-nuclei"])
    p.add_argument("--factors", nargs="+", type=float, default=[0.5, 1, 2, 3, 4])
    p.add_argument("--modes", nargs="+", default=["auto", "true", "none"], choices=["auto", "true", "none"])
    p.add_argument("--limit", type=int, default=None, help="first N val images only (development)")
    p.add_argument("--skip-none", nargs="*", default=[], metavar="MODEL:F",
                   help="skip the no-rescale runs of MODEL at factors >= F")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--json", default=None, help="write results here (rewritten after every cell)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared, oversubscribed machine two threads spin "
                        "against other jobs and every network call costs seconds)")
    p.add_argument("--cost", action="store_true",
                   help="only time auto against the true-diameter pass, interleaved per image (cost_cell)")
    p.add_argument("--augment", action="store_true", help="test-time augmentation in every run")
    p.add_argument("--table", nargs="+", metavar="JSON", help="print the Markdown table of result files and exit")
    p.add_argument("--aim", nargs=2, type=float, default=None, metavar=("LO", "HI"),
                   help="study: where auto brings small / large objects, in model sizes (default "
                        "seglab.inference.diameter.AUTO_AIM)")
    args = p.parse_args(argv)
    if args.aim:
        dm.AUTO_AIM = (args.aim[0], args.aim[1])
    if args.table:
        merged: dict = {}
        for path in args.table:
            merged.update(json.loads(Path(path).read_text())["results"])
        print(markdown_table(merged))
        return 0
    torch.set_num_threads(args.threads)
    skip = {s.split(":")[0]: float(s.split(":")[1]) for s in args.skip_none}
    items = load_split(Path(args.data), "val")[: args.limit]
    out = {"dataset": "DSB2018 val", "n_images": len(items), "factors": args.factors, "cpu": cpu_model(),
           "cpu_count": os.cpu_count(), "torch_threads": args.threads, "auto_aim": list(dm.AUTO_AIM), "note": "machine shared with other jobs; times under load",
           "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "augment": args.augment, "results": {}}
    for name in args.models:
        model = get_model(name)  # a built-in's name or a model folder
        res = out["results"].setdefault(name, {"object_diameter": model.config.object_diameter})
        for factor in args.factors:
            scaled = [resize_item(it, factor) for it in items]
            if args.cost:
                cell = cost_cell(model, scaled, factor)
                cell["load_avg_1min"] = load_1min()
                res[f"{factor:g}/cost"] = cell
                print(f"{name} x{factor:g} cost: auto {cell['seconds_auto']:.1f}s, true {cell['seconds_true']:.1f}s, "
                      f"ratio {cell['ratio']}", flush=True)
                if args.json:
                    write_json(args.json, out)
                continue
            for mode in args.modes:
                if mode == "true" and factor == 1:
                    continue  # the same run as "none"
                if mode == "none" and name in skip and factor >= skip[name]:
                    res[f"{factor:g}/{mode}"] = {"skipped": "slow; see --skip-none"}
                    continue
                cell = run_cell(model, scaled, mode, factor, args.augment)
                cell["load_avg_1min"] = load_1min()
                res[f"{factor:g}/{mode}"] = cell
                print(f"{name} x{factor:g} {mode:5s} AP@0.5 {cell['ap50']:.3f} {cell['seconds']:.1f}s "
                      f"load {load_1min():.1f}", flush=True)
                if args.json:
                    out["load_avg_1min"] = load_1min()
                    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
