"""seglab.batch is core: it never imports Qt or napari, and ``seglab --help`` does not import it heavily."""

import subprocess
import sys

MODULES = ["seglab.batch", "seglab.batch.core", "seglab.batch.worker", "seglab.batch.cluster",
           "seglab.batch.command", "seglab.batch.one_file", "seglab.batch.options"]


def test_batch_imports_no_qt_nor_napari():
    code = (
        "import sys\n"
        f"for m in {MODULES!r}: __import__(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy'))\n"
        "print('BAD', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_batch_flags_import_nothing_heavy():
    code = ("import sys\nimport seglab.batch.options\n"
            "heavy = [m for m in ('numpy', 'torch', 'distributed', 'dask') if m in sys.modules]\n"
            "print(heavy)\nsys.exit(1 if heavy else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
