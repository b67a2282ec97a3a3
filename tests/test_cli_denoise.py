"""``--denoise`` of ``seglab segment`` (low light: seglab.inference.denoise)."""

import numpy as np
import pytest
import tifffile

from seglab.cli import main
from tests_helpers import blob_image


@pytest.fixture
def denoising_model_dir(tmp_path, tiny_model):
    """The tiny U-Net with a low-light rule: smooth (sigma 1) from noise 0.1 on."""
    from seglab.models.storage import save_model

    tiny_model.config.denoise = {"steps": [[0.1, 1.0]]}
    return save_model(tiny_model, tmp_path / "tiny-denoise")


@pytest.fixture
def noisy_folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    img, _ = blob_image((160, 192), n=10, seed=5, rmin=6, rmax=9)
    noisy = np.random.default_rng(2).poisson(img / img.max() * 8).astype(np.uint16)
    tifffile.imwrite(d / "dim.tif", noisy)
    return d


@pytest.mark.parametrize("extra", [[], ["--out-of-core"]])
def test_noisy_image_is_smoothed_and_the_line_says_so(tmp_path, noisy_folder, denoising_model_dir, capsys, extra):
    out = tmp_path / "out"
    assert main(["segment", "-m", str(denoising_model_dir), "-o", str(out), str(noisy_folder), "--device", "cpu",
                 "--diameter", "none", *extra]) == 0
    err = capsys.readouterr().err
    assert "dim.tif:" in err and "noisy image (noise 0." in err and "smoothed, sigma 1 px" in err


def test_denoise_off_leaves_it_alone(tmp_path, noisy_folder, denoising_model_dir, capsys):
    assert main(["segment", "-m", str(denoising_model_dir), "-o", str(tmp_path / "o"), str(noisy_folder),
                 "--device", "cpu", "--diameter", "none", "--denoise", "off"]) == 0
    assert "smoothed" not in capsys.readouterr().err


def test_bad_denoise_value_is_refused(tmp_path, noisy_folder, capsys):
    with pytest.raises(SystemExit) as e:
        main(["segment", "-m", "stardist-nuclei", "-o", str(tmp_path / "o"), str(noisy_folder), "--denoise", "maybe"])
    assert e.value.code == 2
    assert "denoise must be 'auto', 'on' or 'off'" in capsys.readouterr().err


@pytest.mark.parametrize("flags, mode", [([], "auto"), (["--denoise", "off"], False),
                                         (["--denoise", "on", "--diameter", "20"], True)])
def test_evaluate_passes_denoise_on(tmp_path, denoising_model_dir, monkeypatch, flags, mode):
    import seglab.evaluation as ev
    from seglab.inference import denoise

    seen = []
    real = denoise.prepared_plane

    def spy(config, plane, m, *a, **kw):
        seen.append(m)
        return real(config, plane, m, *a, **kw)

    monkeypatch.setattr(ev, "prepared_plane", spy)
    monkeypatch.setattr(denoise, "prepared_plane", spy)
    monkeypatch.setattr("seglab.inference.engine.prepared_plane", spy)  # --diameter: through segment()
    imgs, labs = tmp_path / "imgs", tmp_path / "labs"
    imgs.mkdir(), labs.mkdir()
    img, lab = blob_image((96, 96), n=6, seed=1, rmin=6, rmax=9)
    tifffile.imwrite(imgs / "a.tif", img)
    tifffile.imwrite(labs / "a.tif", lab.astype(np.uint16))
    assert main(["evaluate", "-m", str(denoising_model_dir), "--images", str(imgs), "--labels", str(labs),
                 "--device", "cpu", "--quiet", *flags]) == 0
    assert seen and set(seen) == {mode}
