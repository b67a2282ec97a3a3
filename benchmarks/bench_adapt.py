"""Adaptation benchmark: fine-tune each built-in on 3 images of a kind it handles badly.

    python benchmarks/bench_adapt.py [--models unet-nuclei] [--scenarios images regions]
                                     [--time-budget 60] [--replay 0.5] [--lr LR] [--freeze-levels 2] [--seed 0]
                                     [--json results.json]

The DSB2018 ``val`` images are grouped by kind (``seglab.datasets.image_kind``). Two scenarios,
each exactly what a user does in the Train widget (no validation pair, so thresholds are
re-tuned on the training annotations):

- ``images``: the kind with the lowest AP@0.5 among kinds with at least 4 images; its first
  3 images (by id) are annotated whole; scored on the other images of that kind.
- ``regions``: the kind with the lowest AP@0.5 of all; on each of its first 3 images the user
  annotates only the top-left quarter and marks it with a rectangle; scored on the other three
  quarters of each image (cells the model never saw, from the same slides).

Both report AP@0.5 on the held-out part of the kind and on every image of the other kinds
("rest of val"), before and after, the training steps done in the budget and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from seglab.datasets import image_kind, load_split
from seglab.evaluation import AnnotatedImage, ap50
from seglab.inference.engine import run_to_end
from seglab.models.registry import ModelRegistry
from seglab.training.finetune import Annotation, FinetuneSettings, finetune_iter, prepare

sys.path.insert(0, str(Path(__file__).resolve().parent))
from val_scores import DATA  # noqa: E402

N_TRAIN = 3


def _quarter(item: AnnotatedImage, y: int, x: int) -> AnnotatedImage:
    """The quarter of an image whose top-left corner is (y, x)."""
    h, w = item.labels.shape
    return item.crop(slice(y, y + h // 2), slice(x, x + w // 2), name=f"{item.name}[{y}:,{x}:]")


def split(scenario: str, groups: dict, per_kind: dict):
    """(kind, annotations to train on, held-out annotated images of the kind, what the user annotated)."""
    if scenario == "images":
        kind = min((k for k in per_kind if len(groups[k]) > N_TRAIN), key=per_kind.get)
        train = groups[kind][:N_TRAIN]
        anns = [Annotation(it.image, it.labels, it.channel_axis, name=it.name, labels_name=it.name) for it in train]
        return kind, anns, groups[kind][N_TRAIN:], train
    kind = min(per_kind, key=per_kind.get)
    anns, seen, held = [], [], []
    for it in groups[kind][:N_TRAIN]:
        h, w = (s // 2 for s in it.labels.shape)
        anns.append(Annotation(it.image, it.labels, it.channel_axis, regions=[(0, 0, h, w)], name=it.name,
                               labels_name=it.name))
        seen.append(_quarter(it, 0, 0))
        held += [_quarter(it, 0, w), _quarter(it, h, 0), _quarter(it, h, w)]
    return kind, anns, held, seen


def adapt(name: str, scenario: str, items, args, registry: ModelRegistry, workdir: Path) -> dict:
    """Fine-tune one built-in in one scenario and score it before and after."""
    model = registry.load(name)
    groups: dict[str, list[AnnotatedImage]] = {}
    for it in sorted(items, key=lambda it: it.name):
        groups.setdefault(image_kind(it), []).append(it)
    per_kind = {k: ap50(model, g, device=args.device) for k, g in groups.items()}
    kind, anns, held, seen = split(scenario, groups, per_kind)
    rest = [it for it in items if image_kind(it) != kind]
    before = {"kind": ap50(model, held, device=args.device), "rest": ap50(model, rest, device=args.device),
              "train": ap50(model, seen, device=args.device)}
    settings = FinetuneSettings(time_budget=args.time_budget, lr=args.lr, device=args.device,
                                patch_size=args.patch_size, batch_size=args.batch_size,
                                anchor_weight=args.anchor_weight, replay=args.replay,
                                freeze_levels=args.freeze_levels, seed=args.seed)
    plan = prepare(anns, start=name, out=workdir / f"{name}-{scenario}", settings=settings, overwrite=True,
                   registry=registry)
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
             "train": ap50(tuned, seen, device=args.device)}
    return {
        "model": name, "scenario": scenario, "kind": kind, "per_kind_before": per_kind,
        "train_annotations": [a.name for a in anns], "n_held_out_of_kind": len(held), "n_rest": len(rest),
        "ap50_kind_before": before["kind"], "ap50_kind_after": after["kind"],
        "ap50_rest_before": before["rest"], "ap50_rest_after": after["rest"],
        "ap50_train_annotations_before": before["train"], "ap50_train_annotations_after": after["train"],
        "gain_kind": after["kind"] - before["kind"], "change_rest": after["rest"] - before["rest"],
        "steps": result.steps, "train_seconds": round(train_end[0] - t0, 1), "total_seconds": round(total, 1),
        "thresholds_before": model.config.thresholds, "thresholds_after": tuned.config.thresholds,
        "settings": plan.provenance["settings"], "replay": plan.provenance["replay"],
        "load_average_1min_at_start": round(load0, 2), "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="*", default=None, help="built-ins to adapt (default: all)")
    p.add_argument("--scenarios", nargs="*", default=["images", "regions"], choices=["images", "regions"])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--time-budget", type=float, default=60.0)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the family's)")
    p.add_argument("--patch-size", type=int, default=FinetuneSettings.patch_size)
    p.add_argument("--batch-size", type=int, default=FinetuneSettings.batch_size)
    p.add_argument("--anchor-weight", type=float, default=FinetuneSettings.anchor_weight,
                   help="L2-SP weight towards the start model's weights")
    p.add_argument("--replay", type=float, default=FinetuneSettings.replay,
                   help="share of patches from the model's replay set (0: off)")
    p.add_argument("--freeze-levels", type=int, default=FinetuneSettings.freeze_levels,
                   help="encoder levels kept fixed, from the input down (0: train every weight)")
    p.add_argument("--seed", type=int, default=FinetuneSettings.seed, help="patch sampling and augmentation seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default="benchmarks/results/adapt.json")
    args = p.parse_args()
    registry = ModelRegistry()
    names = args.models or [m.name for m in registry.list() if m.source == "builtin"]
    items = load_split(args.data, "val")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for scenario in args.scenarios:
                r = adapt(name, scenario, items, args, registry, Path(tmp))
                results.append(r)
                print(f"{name} [{scenario}]: kind '{r['kind']}' AP@0.5 {r['ap50_kind_before']:.3f} -> "
                      f"{r['ap50_kind_after']:.3f} ({r['gain_kind']:+.3f}) on {r['n_held_out_of_kind']} held-out "
                      f"images; rest of val {r['ap50_rest_before']:.3f} -> {r['ap50_rest_after']:.3f} "
                      f"({r['change_rest']:+.3f}); {r['steps']} steps in {r['train_seconds']} s "
                      f"(load {r['load_average_1min_at_start']})", flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
