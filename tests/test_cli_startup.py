"""The command line starts fast and ends in one line, never a traceback: imports, thresholds,
output folders, broken model folders."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from seglab.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("torch", "torchvision", "numpy", "scipy", "skimage", "tifffile", "sympy")


def _python(code: str, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=600)


def _imported_after(args: list[str]) -> set[str]:
    code = ("import sys\nfrom seglab.cli import main\n"
            f"rc = main({args!r})\n"
            "print('MODULES', sorted({m.split('.')[0] for m in sys.modules}))\nsys.exit(rc)\n")
    r = _python(code)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("MODULES")][-1]
    return set(eval(line[len("MODULES "):]))


def test_models_and_help_import_no_torch_nor_numpy():
    assert not _imported_after(["models"]) & set(HEAVY)
    assert not _imported_after(["models", "--json"]) & set(HEAVY)
    r = _python("import sys\nfrom seglab.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                "print('MODULES', sorted({m.split('.')[0] for m in sys.modules}))")
    assert "usage: seglab" in r.stdout
    assert not set(eval(r.stdout.splitlines()[-1][len("MODULES "):])) & set(HEAVY)


def test_unet_and_stardist_segmentation_never_import_torchvision(tmp_path):
    from seglab.samples import load_sample

    image, _ = load_sample("fluorescence")
    tifffile.imwrite(tmp_path / "crop.tif", image[:160, :200])
    modules = set()
    for name in ("unet-nuclei", "stardist-nuclei"):
        modules |= _imported_after(["segment", str(tmp_path / "crop.tif"), "-m", name, "-o", str(tmp_path / name),
                                    "-q", "--device", "cpu"])
        assert (tmp_path / name / "crop_labels.tif").is_file()
    assert "torch" in modules and "torchvision" not in modules and "sympy" not in modules


@pytest.mark.parametrize("args", [["-t", "prob_thresh=nan"], ["-t", "seed_thresh=inf"], ["-t", "prob_thresh=-Infinity"],
                                  ["--prob-thresh", "nan"]])
def test_non_finite_thresholds_are_refused_in_one_line(tmp_path, tiny_model_dir, capsys, args):
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.zeros((32, 32), np.uint8))
    rc = main(["segment", str(img), "-m", str(tiny_model_dir), "-o", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not a finite number" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_threshold_that_is_not_a_number_is_a_usage_error(tmp_path, tiny_model_dir, capsys):
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.zeros((32, 32), np.uint8))
    with pytest.raises(SystemExit) as e:
        main(["segment", str(img), "-m", str(tiny_model_dir), "-o", str(tmp_path / "o"), "-t", "prob_thresh=abc"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "needs a number" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_train_refuses_non_finite_numbers(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--family", "unet", "--images", str(tmp_path), "--labels", str(tmp_path), "--name", "x",
              "--lr", "nan"])
    assert "must be a finite number" in capsys.readouterr().err


def _no_inference(monkeypatch):
    """Fail if inference starts (the output folder must be checked before)."""
    import seglab.inference.engine as engine

    def refuse(*a, **k):
        raise AssertionError("inference ran before the output folder was checked")

    monkeypatch.setattr(engine, "segment_iter", refuse)


def test_uncreatable_output_folder_is_refused_before_inference(tmp_path, tiny_model_dir, capsys, monkeypatch):
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.zeros((32, 32), np.uint8))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _no_inference(monkeypatch)
    rc = main(["segment", str(img), "-m", str(tiny_model_dir), "-o", str(blocker / "out"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cannot write to the output folder" in err and str(blocker / "out") in err
    assert len(err.splitlines()) == 1


def test_read_only_output_folder_is_refused_before_inference(tmp_path, tiny_model_dir, capsys, monkeypatch):
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.zeros((32, 32), np.uint8))
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        probe = out / "probe"
        probe.touch()  # root may write anyway: then pretend the file system is read-only
        probe.unlink()
        import tempfile

        def read_only(*a, **k):
            raise PermissionError(13, "Read-only file system")

        monkeypatch.setattr(tempfile, "mkstemp", read_only)
    except PermissionError:
        pass
    _no_inference(monkeypatch)
    rc = main(["segment", str(img), "-m", str(tiny_model_dir), "-o", str(out), "-q"])
    out.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cannot write to the output folder" in err and len(err.splitlines()) == 1
    assert not any(out.iterdir())


def test_train_into_an_uncreatable_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    from tests_helpers import blob_image

    img, lab = blob_image((64, 64), n=6, seed=0, rmin=4, rmax=7)
    tifffile.imwrite(imgs / "a.tif", img)
    labs = tmp_path / "labs"
    labs.mkdir()
    tifffile.imwrite(labs / "a.tif", lab.astype(np.uint16))
    rc = main(["train", "--family", "unet", "--images", str(imgs), "--labels", str(labs), "-o",
               str(tmp_path / "file" / "m"), "--epochs", "1", "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cannot write" in err and len(err.splitlines()) == 1


def test_broken_user_model_is_skipped_with_a_warning(models_dir, tiny_model_dir, capsys):
    import shutil

    shutil.copytree(tiny_model_dir, models_dir / "good")
    shutil.copytree(tiny_model_dir, models_dir / "typed")
    cfg = json.loads((models_dir / "typed" / "config.json").read_text())
    cfg["tile_context"] = "lots"
    (models_dir / "typed" / "config.json").write_text(json.dumps(cfg))
    (models_dir / "broken").mkdir()
    (models_dir / "broken" / "config.json").write_text("{oops")
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    assert "good" in captured.out and "broken" not in captured.out and "typed" not in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("seglab: warning: skipped model folder") for line in lines)
    assert str(models_dir / "broken") in lines[0] and "not valid JSON" in lines[0]
    assert "'tile_context' must be a whole number" in lines[1]
    assert main(["models", "--json"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out) if m["source"] == "user"] == ["good"]


class _Marker:
    """Unpickling this creates a file: the proof that a pickle was (not) loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickle_weights_are_refused_without_being_loaded(tmp_path, tiny_model_dir, capsys):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "weights.safetensors").unlink()
    marker = tmp_path / "code-ran"
    (folder / "model.pt").write_bytes(pickle.dumps(_Marker(str(marker))))
    img = tmp_path / "a.tif"
    tifffile.imwrite(img, np.zeros((32, 32), np.uint8))
    rc = main(["segment", str(img), "-m", str(folder), "-o", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "model.pt instead of weights.safetensors" in err and len(err.splitlines()) == 1
    assert not marker.exists()
