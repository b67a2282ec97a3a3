"""Does a time-budgeted retraining finish within its budget? (issue 12)

    python benchmarks/bench_budget.py MODEL BUDGET_SECONDS

Fine-tunes MODEL (e.g. unet-nuclei) on the top-left quarters of the first two DSB2018
``train`` images (regions, no validation pair: thresholds are tuned on the regions with
the replay crops kept), as the Train widget does, and prints the wall time of the run,
the time spent per stage (time from one event to the next) and what tuning did.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from seglab.datasets import load_annotated
from seglab.training.finetune import Annotation, FinetuneSettings, finetune_iter, prepare

ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"


def main(model: str, budget: float) -> None:
    rows = (ROOT / "manifest.csv").read_text().splitlines()[1:]
    ids = [r.split(",")[0] for r in rows if ",train," in r][:2]
    anns = []
    for i in ids:
        it = load_annotated(next((ROOT / "images").glob(i + "*")), next((ROOT / "labels").glob(i + "*")))
        h, w = it.labels.shape
        anns.append(Annotation(it.image, it.labels, it.channel_axis, regions=[(0, 0, h // 2, w // 2)], name=i[:8]))
    out = Path(tempfile.mkdtemp()) / "budget-run"
    t0 = time.perf_counter()
    plan = prepare(anns, out=out, start=model, settings=FinetuneSettings(time_budget=budget, device="cpu"))
    t1 = time.perf_counter()
    stages: dict[str, float] = {}
    last, n_tune = t1, 0
    gen = finetune_iter(plan)
    while True:
        try:
            ev = next(gen)
        except StopIteration as s:
            res = s.value
            break
        now = time.perf_counter()
        stages[ev.stage] = stages.get(ev.stage, 0.0) + now - last
        last = now
        n_tune += ev.stage == "tune"
    t2 = time.perf_counter()
    print(f"{model} budget {budget:g} s: prepare {t1 - t0:.1f} s, run {t2 - t1:.1f} s, {res.steps} steps, "
          f"{n_tune} tune events")
    print({k: round(v, 1) for k, v in stages.items()}, res.scores.get("tuning"))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
