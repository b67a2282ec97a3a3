"""``seglab --help`` does not import the batch machinery heavily (that seglab.batch never imports Qt or
napari is checked with the rest of the core in tests/test_core_imports.py)."""

import subprocess
import sys


def test_batch_flags_import_nothing_heavy():
    code = ("import sys\nimport seglab.batch.options\n"
            "heavy = [m for m in ('numpy', 'torch', 'distributed', 'dask') if m in sys.modules]\n"
            "print(heavy)\nsys.exit(1 if heavy else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
