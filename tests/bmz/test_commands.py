"""``seglab export-bmz`` and ``seglab import-bmz``: files written, one line of output, one line on errors."""

from __future__ import annotations

import zipfile

from seglab.cli import main
from seglab.models.registry import ModelRegistry


def test_export_then_import_from_the_command_line(tmp_path, tiny_model_dir, models_dir, capsys):
    out = tmp_path / "pkg.zip"
    assert main(["export-bmz", str(tiny_model_dir), str(out), "--author", "Ada", "--license", "CC-BY-4.0",
                 "--no-validate"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out}") and "licence CC-BY-4.0" in line and "not validated" in line
    with zipfile.ZipFile(out) as zf:
        assert {"rdf.yaml", "weights_torchscript.pt", "seglab_weights.safetensors"} <= set(zf.namelist())
    assert main(["import-bmz", str(out), "--name", "from-zoo"]) == 0
    assert "as model 'from-zoo'" in capsys.readouterr().out
    assert "from-zoo" in ModelRegistry().names()


def test_errors_are_one_line(tmp_path, tiny_model_dir, capsys):
    not_zip = tmp_path / "model.zip"
    not_zip.write_text("no")
    assert main(["import-bmz", str(not_zip)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a zip file" in err
    assert main(["export-bmz", str(tiny_model_dir), str(not_zip)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err
    assert main(["export-bmz", "nope", str(tmp_path / "x.zip")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
