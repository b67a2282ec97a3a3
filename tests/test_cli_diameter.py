"""``--diameter`` of ``seglab segment`` and ``seglab evaluate`` (issue 11)."""

import csv
import json

import numpy as np
import pytest
import tifffile

from seglab.cli import main
from seglab.objects import object_table
from tests_helpers import blob_image


@pytest.fixture
def sized_model_dir(tmp_path, tiny_model):
    """The tiny U-Net, recording that it was trained on 8 px objects."""
    from seglab.models.storage import save_model

    tiny_model.config.object_diameter = 8.0
    return save_model(tiny_model, tmp_path / "tiny-sized")


@pytest.fixture
def one_image(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    img, lab = blob_image((96, 128), n=6, seed=3)
    tifffile.imwrite(d / "a.tif", img)
    return d, lab


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_segment_with_a_diameter_writes_original_grid(tmp_path, one_image, capsys):
    d, lab_true = one_image
    out = tmp_path / "out"
    # stardist-nuclei was trained on 16.23 px objects: a diameter of 32.46 px halves the image
    assert main(["segment", "-m", "stardist-nuclei", "-o", str(out), str(d), "--device", "cpu",
                 "--diameter", "32.46", "--rois"]) == 0
    err = capsys.readouterr().err
    assert "a.tif:" in err and "diameter 32.5 px, rescaled x0.5" in err
    lab = tifffile.imread(out / "a_labels.tif")
    assert lab.shape == (96, 128)
    rows = _rows(out / "a_objects.csv")
    assert abs(len(rows) - lab_true.max()) <= 1
    ref = object_table(lab.astype(np.int64))  # the table is in the original image's pixels
    assert [int(r["label"]) for r in rows] == ref["label"].tolist()
    np.testing.assert_allclose([float(r["centroid_x"]) for r in rows], ref["centroid_x"], atol=1e-3)
    np.testing.assert_array_equal([int(r["area"]) for r in rows], ref["area"])


@pytest.mark.parametrize("value, text", [("none", "diameter unknown, not rescaled"), ("8.4", "not rescaled")])
def test_segment_diameter_none_or_within_the_band(tmp_path, one_image, sized_model_dir, capsys, value, text):
    d, _ = one_image
    assert main(["segment", "-m", str(sized_model_dir), "-o", str(tmp_path / "o"), str(d), "--device", "cpu",
                 "--diameter", value]) == 0
    assert text in capsys.readouterr().err


def test_segment_auto_prints_its_estimate(tmp_path, one_image, capsys):
    d, lab = one_image
    assert main(["segment", "-m", "stardist-nuclei", "-o", str(tmp_path / "o"), str(d), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "a.tif:" in err and "diameter " in err and " px" in err


@pytest.mark.parametrize("value", ["big", "-4"])
def test_segment_bad_diameter_is_a_usage_error(tmp_path, one_image, sized_model_dir, capsys, value):
    d, _ = one_image
    with pytest.raises(SystemExit) as e:
        main(["segment", "-m", str(sized_model_dir), "-o", str(tmp_path / "o"), str(d), "--diameter", value])
    assert e.value.code == 2
    assert "diameter" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["segment", "evaluate"])
@pytest.mark.parametrize("value", ["0.001", "1e-300", "1e6"])
def test_a_diameter_far_from_the_models_size_is_one_error_line(tmp_path, one_image, sized_model_dir, capsys,
                                                               command, value):
    d, lab = one_image
    where = ["-o", str(tmp_path / "o"), str(d)]
    if command == "evaluate":
        (tmp_path / "labs").mkdir()
        tifffile.imwrite(tmp_path / "labs" / "a.tif", lab.astype(np.uint16))
        where = ["--images", str(d), "--labels", str(tmp_path / "labs")]
    assert main([command, "-m", str(sized_model_dir), *where, "--device", "cpu", "--diameter", value]) == 2
    err = capsys.readouterr().err
    assert err.count("seglab: error:") == 1 and "Traceback" not in err, err
    assert f"diameter {float(value):g} px" in err and "object size 8 px" in err and "give 0.5 to 128 px" in err
    assert not (tmp_path / "o").exists()


def test_evaluate_with_a_diameter(tmp_path, one_image, sized_model_dir, capsys):
    d, lab = one_image
    labs = tmp_path / "labs"
    labs.mkdir()
    tifffile.imwrite(labs / "a.tif", lab.astype(np.uint16))
    assert main(["evaluate", "-m", str(sized_model_dir), "--images", str(d), "--labels", str(labs), "--json",
                 "-q", "--device", "cpu", "--diameter", "16"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["diameter"] == 16.0 and m["n_true"] == lab.max() and set(m["thresholds"]) == {"0.50", "0.75", "0.90"}
    assert main(["evaluate", "-m", str(sized_model_dir), "--images", str(d), "--labels", str(labs),
                 "--device", "cpu", "--diameter", "16"]) == 0
    assert "a: diameter 16.0 px, rescaled x0.5" in capsys.readouterr().err


def test_auto_reads_the_files_pixel_size(tmp_path, sized_model_dir, capsys):
    """A model trained at 0.25 um per pixel and an ImageJ TIFF calibrated at 0.5 um per pixel:
    ``auto`` rescales by 2 without estimating and says so; the labels keep the file's grid."""
    import json as _json

    cfg_path = sized_model_dir / "config.json"
    cfg = _json.loads(cfg_path.read_text())
    cfg["auto_rescale"] = {"pixel_size_um": 0.25}
    cfg_path.write_text(_json.dumps(cfg))
    img, _ = blob_image((96, 128), n=6, seed=3)
    src = tmp_path / "cal.tif"
    tifffile.imwrite(src, img, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})  # 2 px per um
    out = tmp_path / "out"
    assert main(["segment", str(src), "-m", str(sized_model_dir), "-o", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "from the pixel size (0.5 µm)" in err and "rescaled x2" in err
    assert tifffile.imread(next(out.glob("cal*labels*.tif"))).shape == img.shape
