"""Write per-object tables as CSV (for Fiji, Python or R)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from seglab.io.atomic import atomic_file


def write_table_csv(path: str | os.PathLike, table: dict[str, np.ndarray]) -> Path:
    """Write a column table atomically; floats with 6 significant digits."""
    path = Path(path)
    cols = list(table)
    n = len(table[cols[0]]) if cols else 0
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for i in range(n):
            row = []
            for c in cols:
                v = table[c][i]
                if isinstance(v, (float, np.floating)):
                    row.append("" if np.isnan(v) else f"{float(v):.6g}")
                else:
                    row.append(str(v))
            w.writerow(row)
    return path
