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


def test_export_takes_a_test_image_file(tmp_path, tiny_model_dir, capsys):
    import io

    import numpy as np
    import tifffile

    image = (np.random.default_rng(1).random((100, 90)) * 200).astype(np.uint8)
    tifffile.imwrite(tmp_path / "mine.tif", image)
    out = tmp_path / "pkg.zip"
    assert main(["export-bmz", str(tiny_model_dir), str(out), "--image", str(tmp_path / "mine.tif"),
                 "--no-validate"]) == 0
    with zipfile.ZipFile(out) as zf:
        test_input = np.load(io.BytesIO(zf.read("test_input.npy")))
    # a 100 x 90 image padded to a 100 x 100 test input (the tiny U-Net takes multiples of 4)
    assert test_input.shape == (1, 1, 100, 100)
    np.testing.assert_array_equal(test_input[0, 0, :100, :90], image)
