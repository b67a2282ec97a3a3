"""``seglab segment``'s batch flags (no heavy imports: ``seglab --help`` loads this)."""

from __future__ import annotations

import argparse

#: local cluster workers: processes or threads (chosen by benchmarks/bench_batch.py, see docs/benchmarks.md)
DEFAULT_PROCESSES = False


def add_batch_options(p: argparse.ArgumentParser) -> None:
    """``seglab segment``'s batch options."""
    g = p.add_argument_group("batches (dask.distributed)", "with --workers or --scheduler, files already finished "
                             "(their label image exists) are skipped, a failing file is reported at the end and "
                             "the others go on; the exit status is 0 only if every file succeeded")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="segment the files on a local Dask cluster of N workers (0: in this process, still "
                        "with resume and the report at the end)")
    g.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="segment on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (its workers need seglab "
                        "and the input and output paths)")
    g.add_argument("--worker-kind", choices=["processes", "threads"], default=None,
                   help="local workers as processes or threads (default "
                        f"{'processes' if DEFAULT_PROCESSES else 'threads'}: they start in a fraction of a second "
                        "and share this process's loaded model code)")


