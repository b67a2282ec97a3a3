"""What every benchmark records about the machine it ran on, and how it writes its results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from seglab.io.atomic import atomic_file

#: the MoNuSeg (Kumar split) folder beside the repository, where CI and these sessions have it
MONUSEG = Path(__file__).resolve().parents[2] / "shared" / "data" / "monuseg-kumar"


def cpu_model() -> str:
    """The ``lscpu`` model name (the processor name where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def cpu_matrix_flags() -> list[str]:
    """The CPU's bfloat16 / matrix-unit flags from ``/proc/cpuinfo`` (``avx512_bf16``, ``amx_bf16``,
    ...): what decides whether bfloat16 pays (machines differ between sessions)."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith("amx") or f in ("avx512_bf16", "avx512f", "avx2"))


def load_1min() -> float:
    """The 1-minute load average (other work on the cores inflates wall-clock times)."""
    return round(os.getloadavg()[0], 2)


def write_json(path: str | Path, results: Any) -> None:
    """Write a benchmark's results as indented JSON, atomically (a reader never sees half a file)."""
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=1))


def add_he_model_options(p: Any) -> None:
    """``--model`` (default ``stardist-he``), ``--monuseg``, ``--threads`` and ``--json`` of the H&E benchmarks."""
    p.add_argument("--model", default="stardist-he")
    p.add_argument("--monuseg", default=str(MONUSEG))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)


def open_model(args: Any) -> Any:
    """The model ``args.model``, after setting ``args.threads`` torch threads (when given)."""
    import torch

    from seglab.models.registry import get_model

    if args.threads:
        torch.set_num_threads(args.threads)
    return get_model(args.model)
