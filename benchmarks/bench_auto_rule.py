"""How ``diameter="auto"`` should treat one model's size: measured on the model's *tune* set (issue 11).

    python benchmarks/bench_auto_rule.py --model stardist-he [--factors 0.45 0.55 ...]
                                         [--aims 0.9 1.0 1.1 1.2 1.3 1.4 1.6]
                                         [--json benchmarks/results/auto_rule.json]

Every tune image (the recipe's held-out set, never ``val``: for a 3-channel model the MoNuSeg
tune strips and DSB2018 colour tune images of the ``stardist-he`` recipe, otherwise the DSB2018
tune images of the grey recipes) is resized by each factor as in the scale benchmark (``bench_scale.resize_item``) and
segmented:

- ``auto``: as a user gets it (the rule in the model's config, or the defaults);
- ``none``: not rescaled;
- ``aim A``: rescaled by ``A * object_diameter / estimate``, with ``estimate`` the diameter that
  ``auto`` estimated, i.e. objects brought to ``A`` times the model's size by the same estimate
  that ``auto`` acts on.

Per-image scores (MoNuSeg: PQ at IoU 0.5; DSB2018: AP@0.5) are then grouped by the estimate's
ratio to the model's size (bins), so that the table says, for what ``auto`` sees, whether leaving
the image alone or bringing it to which multiple does best: the ``tolerance`` and ``aim`` of the
model's ``auto_rescale`` config. Scores are means over images of each bin.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_scale import resize_item  # benchmarks/bench_scale.py
from machine import add_he_model_options, cpu_model, open_model, write_json  # benchmarks/machine.py

from seglab.inference.diameter import equivalent_diameters
from seglab.inference.engine import segment
from seglab.metrics import evaluate

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT.parent / "shared" / "data" / "dsb2018"
FACTORS = (0.45, 0.55, 0.65, 0.75, 0.8, 0.9, 1.0, 1.25, 1.75, 2.5)
AIMS = (0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.6)
BINS = (0.0, 0.55, 0.65, 0.75, 0.85, 0.95, 1.05, 1.2, 1.4, 1.6, 2.0, 99.0)


def tune_items(model, dsb: Path, monuseg: Path) -> list[tuple[str, object]]:
    """(kind, item) of the model's recipe tune set: ``mo`` scored by PQ, ``dsb`` by AP@0.5."""
    if model.config.input_channels == 3:
        from seglab.training.recipe_he import he_data

        d = he_data(dsb, monuseg)
        return [("mo", it) for it in d["tune_monuseg"]] + [("dsb", it) for it in d["tune_dsb"]]
    from seglab.datasets import load_split
    from seglab.training.recipes import split_train_tune

    return [("dsb", it) for it in load_split(dsb, "train", split_train_tune(dsb)[1])]


def score(lab: np.ndarray, pred: np.ndarray) -> dict:
    r = evaluate([(lab, pred)], thresholds=(0.5,))["per_image"][0]
    return {"pq": round(float(r["pq"]), 4), "ap": round(float(r["ap50"]), 4)}


def study(model, items, factors, aims) -> list[dict]:
    """One record per (factor, image): estimate, and the scores of auto, none and each aim."""
    md = float(model.config.object_diameter)
    rows = []
    for f in factors:
        t0 = time.perf_counter()
        for kind, it in items:
            scaled = resize_item(it, f)  # the image as float32, bilinear (antialiased when shrinking)
            im, lab = scaled.image, scaled.labels
            if lab.max() == 0:
                continue
            rec = {"kind": kind, "name": str(it.name), "factor": f,
                   "true_diameter": round(float(np.median(equivalent_diameters(lab))), 2)}
            seg = segment(model, im, channel_axis=scaled.channel_axis, diameter="auto")
            est = None if seg.diameter is None else float(seg.diameter)
            rec.update(estimate=est, auto_factor=round(float(seg.scale_factor), 3), auto=score(lab, seg.labels))
            rec["none"] = score(lab, segment(model, im, channel_axis=scaled.channel_axis, diameter=None).labels)
            for a in aims:
                if est is None:
                    rec[f"aim {a}"] = rec["none"]
                    continue
                g = min(a * md / est, 4.0)
                rec[f"aim {a}"] = score(lab, segment(model, im, channel_axis=scaled.channel_axis, diameter=md / g).labels)
            rows.append(rec)
        print(f"factor {f}: {len(items)} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def summary(rows: list[dict], md: float, aims) -> list[dict]:
    """Mean score per bin of estimate / object_diameter: auto, none and each aim."""
    cols = ["auto", "none"] + [f"aim {a}" for a in aims]
    out = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        rs = [r for r in rows if r["estimate"] is not None and lo <= r["estimate"] / md < hi]
        if not rs:
            continue
        means = {c: round(float(np.mean([r[c]["pq" if r["kind"] == "mo" else "ap"] for r in rs])), 4) for c in cols}
        out.append({"ratio": [lo, hi], "images": len(rs), **means})
    return out


def markdown(table: list[dict], aims) -> str:
    cols = ["auto", "none"] + [f"aim {a}" for a in aims]
    lines = ["| estimate / model size | images | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for r in table:
        best = max(r[c] for c in cols[1:])
        cells = [f"**{r[c]:.3f}**" if r[c] == best and c != "auto" else f"{r[c]:.3f}" for c in cols]
        lines.append(f"| {r['ratio'][0]:.2f}-{r['ratio'][1]:.2f} | {r['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_he_model_options(p)
    p.add_argument("--data", default=str(DSB))
    p.add_argument("--factors", nargs="+", type=float, default=list(FACTORS))
    p.add_argument("--aims", nargs="+", type=float, default=list(AIMS))
    args = p.parse_args(argv)
    model = open_model(args)
    if not model.config.object_diameter:
        raise SystemExit(f"{args.model} records no object_diameter")
    items = tune_items(model, Path(args.data), Path(args.monuseg))
    rows = study(model, items, args.factors, args.aims)
    md = float(model.config.object_diameter)
    table = summary(rows, md, args.aims)
    print(markdown(table, args.aims))
    if args.json:
        write_json(args.json, {"model": args.model, "object_diameter": md, "auto_rescale": model.config.auto_rescale,
                               "cpu": cpu_model(), "torch_threads": torch.get_num_threads(),
                               "factors": args.factors, "aims": args.aims, "summary": table, "images": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
