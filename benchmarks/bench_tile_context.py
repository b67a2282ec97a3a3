"""Tiled vs untiled results, accuracy and cost for a given tile context (docs/benchmarks.md, issue 12).

    python benchmarks/bench_tile_context.py compare MODEL [--tile 128] [--no-amp] [--context C ...]
    python benchmarks/bench_tile_context.py truth maskrcnn-nuclei --context 48 421
    python benchmarks/bench_tile_context.py cost MODEL --context 32

``--context C`` makes the engine use ``C`` as the context (config value and receptive radius
both set to ``C``, rounded up to the size divisor); without it the model's own is used.
``compare``: the ``fluorescence`` sample untiled and with ``--tile``; objects, pixels whose
foreground differs, AP@0.9 between the two, identical up to ids. ``truth``: AP against the
ground truth of three samples (untiled). ``cost``: median seconds on the 1024x1024 sample,
the given context against the model's own, 5 interleaved runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from seglab.inference.engine import segment
from seglab.inference.tiling import tile_context
from seglab.metrics import evaluate
from seglab.models.registry import get_model
from seglab.samples import load_sample


def same_objects(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b)) and bool(np.all((pairs[0] == 0) == (pairs[1] == 0)))


def set_context(model, c: int | None) -> None:
    """Make the engine use context ``c`` (rounded up to the divisor); None: the model's own."""
    if c is not None:
        model.config.tile_context = c
        model.network.receptive_radius = lambda: c


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["compare", "truth", "cost"])
    p.add_argument("model")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--context", type=int, nargs="*", default=[None])
    args = p.parse_args()
    model = get_model(args.model)
    amp = not args.no_amp
    if args.mode == "compare":
        image, _ = load_sample("fluorescence")
        for c in args.context:
            set_context(model, c)
            whole = segment(model, image, tile_size=4096, amp=amp, device="cpu")
            tiled = segment(model, image, tile_size=args.tile, amp=amp, device="cpu")
            e = evaluate([(whole.labels, tiled.labels)], thresholds=(0.5, 0.9))
            print(f"{args.model} context {tile_context(model)} amp {amp}: objects {whole.n_objects} / {tiled.n_objects}, "
                  f"pixels differing {int(((whole.labels > 0) != (tiled.labels > 0)).sum())}, "
                  f"AP@0.9 {e['thresholds']['0.90']['ap']:.3f}, identical {same_objects(whole.labels, tiled.labels)}")
    elif args.mode == "truth":
        for c in args.context:
            set_context(model, c)
            pairs = []
            for key in ("fluorescence", "large_nuclei", "brightfield"):
                image, truth = load_sample(key)
                pairs.append((truth, segment(model, image, amp=amp, device="cpu").labels))
            e = evaluate(pairs)
            print(f"{args.model} context {tile_context(model)}: AP@0.5 {e['thresholds']['0.50']['ap']:.3f} "
                  f"AP@0.75 {e['thresholds']['0.75']['ap']:.3f}")
    else:
        image, _ = load_sample("brightfield")
        own = tile_context(model)
        times: dict[int, list[float]] = {}
        segment(model, image, amp=amp, device="cpu")
        for _ in range(5):
            for c in [*[x for x in args.context if x is not None], own]:
                set_context(model, c)
                t = time.perf_counter()
                segment(model, image, amp=amp, device="cpu")
                times.setdefault(tile_context(model), []).append(time.perf_counter() - t)
        for c, v in times.items():
            print(f"{args.model} context {c}: median {statistics.median(v):.2f} s (min {min(v):.2f})")


if __name__ == "__main__":
    main()
