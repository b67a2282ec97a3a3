"""Per-tile scores of an H&E model on MoNuSeg ``val``, unscaled, with ``diameter="auto"`` and with
each tile's true median nucleus diameter given (times ``--rel``): does object size explain a tile?

    python benchmarks/bench_he_tiles.py [--model stardist-he] [--rel 1.0 0.8] [--json out.json]

AJI and PQ@0.5 per tile (``seglab.metrics``), averaged over the tiles as HoVer-Net reports them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile

from machine import cpu_model  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "monuseg-kumar"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="stardist-he")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--rel", type=float, nargs="*", default=[1.0, 0.8],
                   help="multiples of each tile's true median diameter to give as diameter")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from seglab.datasets import read_manifest
    from seglab.inference.diameter import equivalent_diameters
    from seglab.inference.engine import segment
    from seglab.metrics import aji, evaluate
    from seglab.models.registry import get_model

    model = get_model(args.model)
    root = Path(args.data)
    tiles = [r["id"] for r in read_manifest(root) if r["split"] == "val"]
    modes: list[tuple[str, float | str | None]] = [("none", None), ("auto", "auto")]
    modes += [(f"true x{r:g}", r) for r in args.rel]
    out = {"model": args.model, "model_diameter": model.config.object_diameter, "cpu": cpu_model(), "modes": {}}
    for name, mode in modes:
        rows = []
        for tid in tiles:
            img = tifffile.imread(root / "images" / f"{tid}.tif")
            lab = tifffile.imread(root / "labels" / f"{tid}.tif")
            true_d = float(np.median(equivalent_diameters(lab)))
            d = true_d * mode if isinstance(mode, float) else mode
            res = segment(model, img, diameter=d)
            pq = evaluate([(lab, res.labels)])["thresholds"]["0.50"]["pq"]
            rows.append({"tile": tid, "true_diameter": round(true_d, 1), "estimate": res.diameter,
                         "factor": round(res.scale_factor, 3), "aji": aji(lab, res.labels), "pq": pq})
            print(f"{name:10s} {tid[:12]} true {true_d:5.1f} px  estimate {res.diameter}  factor "
                  f"{res.scale_factor:.2f}  AJI {rows[-1]['aji']:.3f}  PQ {pq:.3f}", flush=True)
        mean = {"aji": float(np.mean([r["aji"] for r in rows])), "pq": float(np.mean([r["pq"] for r in rows]))}
        print(f"{name:10s} mean AJI {mean['aji']:.3f}  PQ {mean['pq']:.3f}", flush=True)
        out["modes"][name] = {"tiles": rows, "mean": mean}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
