"""Adaptation benchmark: fine-tune each built-in on 3 images of the kind it handles worst.

    python benchmarks/bench_adapt.py [--models unet-nuclei] [--time-budget 60] [--json results.json]

For every built-in model (or those named), the DSB2018 ``val`` images are grouped by kind
(``val_scores.kind_of``); the kind with the lowest AP@0.5 among those with at least 4 images
is chosen, its first 3 images (by id) are the training images, exactly as a user would give
them in the Train widget (no validation image: thresholds are re-tuned on the training
images). Reported: AP@0.5 on the remaining images of that kind and on the rest of ``val``,
before and after, the training steps done in the budget, and the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from seglab.datasets import load_split
from seglab.evaluation import ap50
from seglab.inference.engine import run_to_end
from seglab.models.registry import ModelRegistry
from seglab.training.finetune import Annotation, FinetuneSettings, finetune_iter, prepare

sys.path.insert(0, str(Path(__file__).resolve().parent))
from val_scores import DATA, kind_of  # noqa: E402

N_TRAIN = 3


def adapt(name: str, items, args, registry: ModelRegistry, workdir: Path) -> dict:
    """Fine-tune one built-in and score it before and after."""
    model = registry.load(name)
    kinds = sorted({kind_of(it) for it in items})
    groups = {k: sorted((it for it in items if kind_of(it) == k), key=lambda it: it.name) for k in kinds}
    per_kind = {k: ap50(model, g, device=args.device) for k, g in groups.items() if len(g) > N_TRAIN}
    kind = args.kind or min(per_kind, key=per_kind.get)
    train, held = groups[kind][:N_TRAIN], groups[kind][N_TRAIN:]
    rest = [it for it in items if kind_of(it) != kind]
    before = {"kind": ap50(model, held, device=args.device), "rest": ap50(model, rest, device=args.device),
              "train": ap50(model, train, device=args.device)}
    settings = FinetuneSettings(time_budget=args.time_budget, lr=args.lr, device=args.device,
                                patch_size=args.patch_size, batch_size=args.batch_size,
                                anchor_weight=args.anchor_weight)
    plan = prepare([Annotation(it.image, it.labels, it.channel_axis, name=it.name, labels_name=it.name)
                    for it in train], start=name, out=workdir / f"{name}-adapted", settings=settings,
                   overwrite=True, registry=registry)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    train_end = []

    def note_end_of_training(ev) -> None:
        if ev.stage == "tune" and not train_end:
            train_end.append(time.perf_counter())

    result = run_to_end(finetune_iter(plan), note_end_of_training)
    total = time.perf_counter() - t0
    tuned = result.model
    after = {"kind": ap50(tuned, held, device=args.device), "rest": ap50(tuned, rest, device=args.device),
             "train": ap50(tuned, train, device=args.device)}
    return {
        "model": name, "kind": kind, "per_kind_before": per_kind,
        "train_images": [it.name for it in train], "n_held_out_of_kind": len(held), "n_rest": len(rest),
        "ap50_kind_before": before["kind"], "ap50_kind_after": after["kind"],
        "ap50_rest_before": before["rest"], "ap50_rest_after": after["rest"],
        "ap50_train_images_before": before["train"], "ap50_train_images_after": after["train"],
        "gain_kind": after["kind"] - before["kind"], "change_rest": after["rest"] - before["rest"],
        "steps": result.steps, "train_seconds": round(train_end[0] - t0, 1), "total_seconds": round(total, 1),
        "thresholds_after": tuned.config.thresholds, "settings": plan.provenance["settings"],
        "load_average_1min_at_start": round(load0, 2), "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="*", default=None, help="built-ins to adapt (default: all)")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--kind", default=None, help="image kind to adapt to (default: the model's worst)")
    p.add_argument("--time-budget", type=float, default=60.0)
    p.add_argument("--lr", type=float, default=FinetuneSettings.lr)
    p.add_argument("--patch-size", type=int, default=FinetuneSettings.patch_size)
    p.add_argument("--batch-size", type=int, default=FinetuneSettings.batch_size)
    p.add_argument("--anchor-weight", type=float, default=FinetuneSettings.anchor_weight,
                   help="L2-SP weight towards the start model's weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default="benchmarks/results/adapt.json")
    args = p.parse_args()
    registry = ModelRegistry()
    names = args.models or [m.name for m in registry.list() if m.source == "builtin"]
    items = load_split(args.data, "val")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            r = adapt(name, items, args, registry, Path(tmp))
            results.append(r)
            print(f"{name}: kind '{r['kind']}' AP@0.5 {r['ap50_kind_before']:.3f} -> {r['ap50_kind_after']:.3f} "
                  f"({r['gain_kind']:+.3f}) on {r['n_held_out_of_kind']} held-out images; rest of val "
                  f"{r['ap50_rest_before']:.3f} -> {r['ap50_rest_after']:.3f} ({r['change_rest']:+.3f}); "
                  f"{r['steps']} steps in {r['train_seconds']} s (load {r['load_average_1min_at_start']})",
                  flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
