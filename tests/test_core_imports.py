"""The core must run headless: importing it (and running the CLI) never imports Qt or napari."""

import subprocess
import sys

CORE_MODULES = [
    "seglab", "seglab.cli", "seglab.models", "seglab.inference", "seglab.metrics", "seglab.io",
    "seglab.training.loop", "seglab.training.recipes", "seglab.training.finetune", "seglab.training.folders",
    "seglab.evaluation", "seglab.datasets", "seglab.samples", "seglab.outlines", "seglab.io.rois",
    "seglab.models.stardist", "seglab.models.maskrcnn", "seglab.triton_guard",
    "seglab.files", "seglab.outputs", "seglab.measure", "seglab.measure_files", "seglab.io.geojson", "seglab.linking",
    "seglab.batch", "seglab.batch.core", "seglab.batch.worker", "seglab.batch.cluster", "seglab.batch.command",
    "seglab.batch.one_file", "seglab.batch.options", "seglab.bmz",
]


def test_core_does_not_import_qt_or_napari():
    code = (
        "import sys\n"
        f"for m in {CORE_MODULES!r}: __import__(m)\n"
        "from seglab.cli import main\n"
        "main(['models'])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy'))\n"
        "print('BAD', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
