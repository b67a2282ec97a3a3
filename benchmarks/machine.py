"""What every benchmark records about the machine it ran on, and how it writes its results."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from seglab.io.atomic import atomic_file


def cpu_model() -> str:
    """The ``lscpu`` model name (the processor name where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def write_json(path: str | Path, results: Any) -> None:
    """Write a benchmark's results as indented JSON, atomically (a reader never sees half a file)."""
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(results, indent=1))
