"""``--augment`` of ``seglab segment`` and ``seglab evaluate`` (test-time augmentation)."""

import numpy as np
import pytest
import tifffile

from seglab.cli import main
from tests_helpers import blob_image


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    img, lab = blob_image((96, 112), n=6, seed=4, rmin=6, rmax=9)
    tifffile.imwrite(d / "a.tif", img)
    labs = tmp_path / "labs"
    labs.mkdir()
    tifffile.imwrite(labs / "a.tif", lab.astype(np.uint16))
    return d


@pytest.mark.parametrize("extra", [[], ["--out-of-core"]])
def test_segment_augment_reaches_the_network_runs(tmp_path, folder, tiny_star_dir, augment_passes, extra):
    out = tmp_path / "out"
    assert main(["segment", "-m", str(tiny_star_dir), "-o", str(out), str(folder), "--device", "cpu", "--quiet",
                 "--augment", *extra]) == 0
    assert True in augment_passes and augment_passes[-1] is True
    assert any(p.name.startswith("a") for p in out.iterdir())  # its labels written


def test_segment_without_augment_runs_single_passes(tmp_path, folder, tiny_star_dir, augment_passes):
    assert main(["segment", "-m", str(tiny_star_dir), "-o", str(tmp_path / "o"), str(folder), "--device", "cpu",
                 "--quiet", "--diameter", "none"]) == 0
    assert augment_passes and not any(augment_passes)


@pytest.mark.parametrize("flags", [[], ["--diameter", "20"]])
def test_evaluate_augment(tmp_path, folder, tiny_star_dir, augment_passes, flags):
    assert main(["evaluate", "-m", str(tiny_star_dir), "--images", str(folder), "--labels", str(tmp_path / "labs"),
                 "--device", "cpu", "--quiet", "--augment", *flags]) == 0
    assert augment_passes and augment_passes[-1] is True


def test_augment_with_mask_rcnn_is_a_clear_error(tmp_path, folder, capsys):
    from maskrcnn_helpers import tiny_maskrcnn

    from seglab.models.storage import save_model

    path = save_model(tiny_maskrcnn("tiny-boxes"), tmp_path / "tiny-boxes")
    code = main(["segment", "-m", str(path), "-o", str(tmp_path / "o"), str(folder), "--device", "cpu", "--quiet",
                 "--augment"])
    assert code != 0
    assert "test-time augmentation is for U-Net and StarDist models" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
