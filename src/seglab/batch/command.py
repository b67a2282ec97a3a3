"""``seglab segment --workers N`` / ``--scheduler ADDR``: the batch on the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from seglab.batch.core import DEFAULT_PROCESSES, BatchSettings, BatchSummary, batch_iter
from seglab.errors import SeglabError

EXIT_FAILED = 1


def wants_batch(args: argparse.Namespace) -> bool:
    return getattr(args, "workers", None) is not None or bool(getattr(args, "scheduler", None))


def settings_from_args(args: argparse.Namespace) -> BatchSettings:
    if args.workers is not None and args.workers < 0:
        raise SeglabError(f"--workers needs 0 or more, got {args.workers}")
    kind = args.worker_kind
    return BatchSettings(workers=1 if args.workers is None else args.workers, scheduler=args.scheduler,
                         processes=DEFAULT_PROCESSES if kind is None else kind == "processes",
                         overwrite=args.overwrite)


def run_segment_batch(args: argparse.Namespace, outdir: Path, model: Any, outputs: list[str], options: Any) -> int:
    """Run ``seglab segment`` as a batch: a bar over files, a line per file, failures at the end."""
    from tqdm import tqdm

    from seglab.batch.cluster import model_reference
    from seglab.batch.core import batch_inputs
    from seglab.io.atomic import check_writable_folder

    paths = batch_inputs(args.inputs)
    settings = settings_from_args(args)
    check_writable_folder(outdir)
    gen = batch_iter(model, paths, outdir, outputs, options, settings, model_ref=model_reference(args.model))
    bar = tqdm(total=len(paths), desc="files", unit="file", disable=args.quiet, file=sys.stderr, leave=False)
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                summary: BatchSummary = stop.value
                break
            if ev.stage == "start":
                bar.update(ev.done - bar.n)
                bar.write(f"seglab: {len(paths)} file(s), {ev.done} finished earlier (skipped); running in {ev.where}",
                          file=sys.stderr)
            elif ev.stage == "file":
                bar.update(ev.done - bar.n)
                o = ev.outcome
                if o.status == "done" and not args.quiet:
                    labels = ", ".join(str(p) for _, p in o.images) or o.outputs["labels"]
                    bar.write(f"{o.path.name}: {o.n_objects} objects ({o.size}) -> {labels}", file=sys.stderr)
                elif o.status == "failed":
                    bar.write(f"seglab: {o.path.name} failed: {o.error}", file=sys.stderr)
    finally:
        bar.close()
        gen.close()
    return report(summary)


def report(summary: BatchSummary) -> int:
    """The end of a batch on stderr: counts, then each failure with its error; the exit status."""
    counts = {s: len(summary.with_status(s)) for s in ("done", "skipped", "failed")}
    print(f"seglab: {counts['done']} segmented, {counts['skipped']} skipped (finished earlier), "
          f"{counts['failed']} failed, in {summary.seconds:.1f} s ({summary.where})", file=sys.stderr)
    for o in summary.failed:
        print(f"seglab: error: {o.path}: {o.error}", file=sys.stderr)
    return 0 if summary.ok else EXIT_FAILED
