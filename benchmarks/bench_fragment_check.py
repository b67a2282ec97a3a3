"""What the size estimate's half-scale fragment check decides, image by image (issue 11).

For every DSB2018 ``val`` image resized by each factor, runs ``diameter="auto"``'s estimate and
records what the factor-1 probe found (object size against the model's, how many of its objects
lie within 1 or 3 px of another object) and whether the half-scale check then found fragments
(the estimate grew by more than 1.4x). The summary shows whether anything the factor-1 probe
already knows could tell, without the check, that there are no fragments (the check costs a
second network call on most images, the main part of ``auto``'s extra time).

    python benchmarks/bench_fragment_check.py --model unet-nuclei --factors 1 2 3 4 \\
        --json benchmarks/results/fragment_check_unet.json
    python benchmarks/bench_fragment_check.py --summary benchmarks/results/fragment_check_unet.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

DSB = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"


def near_others(labels: np.ndarray, gap: int) -> tuple[float, int]:
    """Fraction of the objects with another object within ``gap`` pixels, and the object count."""
    lab = np.asarray(labels).astype(np.int64)
    ids = np.unique(lab)
    ids = ids[ids > 0]
    if ids.size == 0:
        return float("nan"), 0
    size = 2 * gap + 1
    hi = ndi.maximum_filter(lab, size=size)
    lo = ndi.minimum_filter(np.where(lab > 0, lab, int(lab.max()) + 1), size=size)
    close = (lab > 0) & ((hi != lab) | (lo != lab))
    return float(np.unique(lab[close]).size / ids.size), int(ids.size)


def collect(model_name: str, factors: list[float], limit: int | None) -> list[dict]:
    import torch

    import seglab.inference.diameter as dm
    from seglab.datasets import load_split
    from seglab.inference.normalize import model_input
    from seglab.inference.rescale import resize_image
    from seglab.models.registry import get_model
    from seglab.progress import run_to_end

    torch.set_num_threads(1)
    items = load_split(DSB, "val")[:limit]
    model = get_model(model_name)
    th = model.thresholds(None)
    first: list[np.ndarray] = []
    measure = dm.measure

    def recording(labels):  # the first measure of an estimate is the factor-1 probe's
        first.append(np.asarray(labels))
        return measure(labels)

    dm.measure = recording
    rows = []
    try:
        for it in items:
            x0 = model_input(it.image, model.config.input_channels, model.config.normalization, it.channel_axis)
            for f in factors:
                h, w = x0.shape[-2:]
                x = resize_image(x0, (int(round(h * f)), int(round(w * f)))) if f != 1 else x0
                first.clear()
                est = run_to_end(dm.estimate_diameter_iter(model, [x], th, device=torch.device("cpu"),
                                                           tile_size=2048, batch_size=4, amp=True))
                near1, n = near_others(first[0], 1) if first else (float("nan"), 0)
                near3, _ = near_others(first[0], 3) if first else (float("nan"), 0)
                d0 = est.passes[0]["diameter"] if est.passes else float("nan")
                checked = any(p["factor"] < 1 for p in est.passes)
                rows.append({"name": it.name, "factor": f, "d0": d0, "diameter": est.diameter, "checked": checked,
                             "fragments": bool(checked and est.diameter is not None and d0 == d0
                                               and est.diameter > 1.4 * d0),
                             "near1": near1, "near3": near3, "objects": n, "passes": est.passes})
                print(json.dumps({k: rows[-1][k] for k in ("name", "factor", "d0", "diameter", "fragments",
                                                           "near3", "objects")}), flush=True)
    finally:
        dm.measure = measure
    return rows


def summary(rows: list[dict], target: float) -> str:
    out = []
    for f in sorted({r["factor"] for r in rows}):
        r = [x for x in rows if x["factor"] == f]
        frag = [x for x in r if x["fragments"]]
        clean = [x for x in r if x["checked"] and not x["fragments"]]
        line = f"factor {f:g}: {len(r)} images, checked {sum(x['checked'] for x in r)}, fragments {len(frag)}"
        for name, group in (("fragments", frag), ("no fragments", clean)):
            if group:
                near = np.array([x["near3"] for x in group], dtype=float)
                size = np.array([x["d0"] / target for x in group], dtype=float)
                line += (f"\n  {name}: near3 min/median/max {np.nanmin(near):.2f}/{np.nanmedian(near):.2f}/"
                         f"{np.nanmax(near):.2f}; factor-1 size / model's min/median/max {np.nanmin(size):.2f}/"
                         f"{np.nanmedian(size):.2f}/{np.nanmax(size):.2f}")
        out.append(line)
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="unet-nuclei")
    p.add_argument("--factors", type=float, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", type=Path)
    p.add_argument("--summary", type=Path, help="print the summary of a result file and exit")
    args = p.parse_args()
    if args.summary:
        data = json.loads(args.summary.read_text())
        print(summary(data["rows"], data["object_diameter"]))
        return
    from seglab.models.registry import get_model

    rows = collect(args.model, args.factors, args.limit)
    target = float(get_model(args.model).config.object_diameter)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "object_diameter": target, "rows": rows}, indent=1))
    print(summary(rows, target))


if __name__ == "__main__":
    main()
