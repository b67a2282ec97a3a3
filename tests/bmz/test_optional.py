"""Without the bioimage.io libraries seglab still exports and imports; only validation needs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from seglab.bmz import export_bmz, load_bmz
from seglab.errors import SeglabError

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def no_bioimageio(monkeypatch):
    for name in ("bioimageio", "bioimageio.spec", "bioimageio.core"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails


def test_export_and_import_without_bioimageio(tmp_path, tiny_model, no_bioimageio):
    result = export_bmz(tiny_model, tmp_path / "p.zip")
    assert not result.validated
    assert load_bmz(result.path).config.architecture == tiny_model.config.architecture
    from seglab.bmz.validation import offline_validation

    with pytest.raises(SeglabError, match="needs bioimageio.spec"):
        offline_validation(result.path)


def test_importing_seglab_bmz_and_the_cli_loads_no_bioimageio_nor_torch():
    code = ("import sys\nimport seglab.bmz, seglab.bmz.commands, seglab.cli\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'bioimageio', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
