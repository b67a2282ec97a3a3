"""``seglab segment --measure`` and ``seglab measure`` end to end on tiny files."""

import csv

import numpy as np
import pytest
import tifffile

from seglab.cli import main
from seglab.measure import measure
from seglab.outputs import output_kinds
from tests_helpers import blob_image


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return rows


def _pairs(tmp_path):
    """Two calibrated two-channel images (ImageJ, µm as 'micron', anisotropic) and their labels."""
    images, labels = tmp_path / "imgs", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    rng = np.random.default_rng(0)
    truth = {}
    for i, suffix in enumerate(["", "_labels", "_masks"]):
        img, lab = blob_image((60, 80), n=4, seed=i)
        second = rng.integers(0, 4000, img.shape).astype(np.uint16)
        stack = np.stack([img.astype(np.uint16), second])  # (C, Y, X)
        tifffile.imwrite(images / f"im{i}.tif", stack, imagej=True, resolution=(1 / 0.2, 1 / 0.5),
                         metadata={"axes": "CYX", "unit": "micron"})
        tifffile.imwrite(labels / f"im{i}{suffix}.tif", lab.astype(np.uint16))
        truth[f"im{i}"] = (stack, lab)
    return images, labels, truth


def test_measure_command_pairs_by_name_and_writes_csv(tmp_path, capsys):
    images, labels, truth = _pairs(tmp_path)
    out = tmp_path / "out"
    assert main(["measure", "--images", str(images), "--labels", str(labels), "-o", str(out)]) == 0
    for stem, (stack, lab) in truth.items():
        rows = _read_csv(out / f"{stem}_measurements.csv")
        want = measure(lab, stack, channel_axis=0, pixel_size=(0.5, 0.2), unit="µm")
        assert [int(r["label"]) for r in rows] == want["label"].tolist()
        assert [int(r["sum_intensity_ch1"]) for r in rows] == want["sum_intensity_ch1"].tolist()
        assert [int(r["max_intensity_ch0"]) for r in rows] == want["max_intensity_ch0"].tolist()
        np.testing.assert_allclose([float(r["area_um2"]) for r in rows], want["area"] * 0.1, rtol=1e-5)
        np.testing.assert_allclose([float(r["perimeter_um"]) for r in rows], want["perimeter_um"], rtol=1e-5)
    assert "3 objects" not in capsys.readouterr().out  # progress lines go to stderr
    # existing files are kept unless --overwrite
    assert main(["measure", "--images", str(images), "--labels", str(labels), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["measure", "--images", str(images), "--labels", str(labels), "-o", str(out), "--overwrite",
                 "-q"]) == 0
    assert not list(out.glob(".*"))  # no temporary files left


def test_measure_command_bad_pairs_are_one_line_each(tmp_path, capsys):
    images, labels, _ = _pairs(tmp_path)
    tifffile.imwrite(labels / "im1_labels.tif", np.zeros((50, 80), np.uint16))  # wrong shape
    out = tmp_path / "out"
    assert main(["measure", "--images", str(images), "--labels", str(labels), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    bad = [line for line in err if line.startswith("seglab: error")]
    assert bad == ["seglab: error: im1.tif: image (60, 80) (without its channel axis, of axes CYX) and labels "
                   "(50, 80) differ in shape"]
    assert (out / "im0_measurements.csv").is_file() and not (out / "im1_measurements.csv").exists()
    (labels / "im2_masks.tif").unlink()
    assert main(["measure", "--images", str(images), "--labels", str(labels), "-o", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "have no label file" in err and "Traceback" not in err


def test_measure_command_without_calibration_has_no_physical_columns(tmp_path):
    images, labels = tmp_path / "i", tmp_path / "l"
    images.mkdir(), labels.mkdir()
    img, lab = blob_image((40, 50), n=3, seed=2)
    tifffile.imwrite(images / "a.tif", img)
    tifffile.imwrite(labels / "a.tif", lab.astype(np.uint16))
    assert main(["measure", "--images", str(images), "--labels", str(labels), "-o", str(tmp_path / "o"), "-q"]) == 0
    header = (tmp_path / "o" / "a_measurements.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["label", "area", "perimeter"] and "mean_intensity_ch0" in header
    assert not [c for c in header if c.endswith(("_um", "_um2"))]


def test_measurements_is_a_registered_output():
    kind = output_kinds()["measurements"]
    assert kind.suffix == "_measurements.csv" and kind.check is None


def test_segment_measure_writes_measurements_of_the_labels(tmp_path, tiny_model_dir):
    img, _ = blob_image((70, 90), n=5, seed=1)
    rgbish = np.stack([img, (255 - img)])  # (C, Y, X): two channels, first
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "two.tif", rgbish, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "CYX", "unit": "um"})
    out = tmp_path / "out"
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(src), "--device", "cpu", "--tile-size", "64",
               "--prob-thresh", "0.3", "--diameter", "none", "--channels", "0", "--measure", "-q"])
    assert rc == 0
    lab = tifffile.imread(out / "two_labels.tif")
    rows = _read_csv(out / "two_measurements.csv")
    objects = _read_csv(out / "two_objects.csv")
    want = measure(lab, rgbish, channel_axis=0, pixel_size=0.5, unit="µm")
    assert len(rows) == len(want["label"]) == len(objects)
    assert [int(r["label"]) for r in rows] == want["label"].tolist()
    assert [int(r["sum_intensity_ch1"]) for r in rows] == want["sum_intensity_ch1"].tolist()  # every channel
    assert [r["score"] for r in rows] == [o["score"] for o in objects]
    assert rows and float(rows[0]["area_um2"]) == pytest.approx(0.25 * int(rows[0]["area"]), rel=1e-5)


def test_segment_measure_for_a_stack_has_planes(tmp_path, tiny_model_dir):
    img, _ = blob_image((48, 64), n=3, seed=4)
    stack = np.stack([img, img[::-1]])
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "out"
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(tmp_path / "z.tif"), "--device", "cpu",
               "--tile-size", "64", "--prob-thresh", "0.3", "--diameter", "none", "--measure", "-q"])
    assert rc == 0
    lab = tifffile.imread(out / "z_labels.tif")
    rows = _read_csv(out / "z_measurements.csv")
    want = measure(lab, stack)
    assert [(int(r["plane"]), int(r["label"])) for r in rows] == list(zip(want["plane"].tolist(),
                                                                           want["label"].tolist()))
    assert {int(r["plane"]) for r in rows} <= {0, 1}


@pytest.mark.parametrize("flag", [["--measure"], []])
def test_segment_outputs_names(flag):
    from seglab.cli import build_parser, segment_outputs

    args = build_parser().parse_args(["segment", "-m", "x", "-o", "o", "in.tif", *flag])
    assert ("measurements" in segment_outputs(args)) == bool(flag)


def test_measure_command_stacks_and_rgb(tmp_path):
    images, labels = tmp_path / "i", tmp_path / "l"
    images.mkdir(), labels.mkdir()
    img, lab = blob_image((40, 50), n=3, seed=5)
    zimg, zlab = np.stack([img, img[:, ::-1]]), np.stack([lab, np.where(lab[:, ::-1] > 0, lab[:, ::-1] + 10, 0)])
    tifffile.imwrite(images / "z.tif", zimg, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(labels / "z_masks.tif", zlab.astype(np.uint16))
    rgb = np.stack([img, img // 2, 255 - img], axis=-1)
    tifffile.imwrite(images / "c.tif", rgb, photometric="rgb")
    tifffile.imwrite(labels / "c.tif", lab.astype(np.uint16))
    assert main(["measure", "--images", str(images), "--labels", str(labels), "-o", str(tmp_path / "o"), "-q"]) == 0
    z = _read_csv(tmp_path / "o" / "z_measurements.csv")
    assert [int(r["plane"]) for r in z] == [0] * 3 + [1] * 3
    assert [int(r["label"]) for r in z] == [1, 2, 3, 11, 12, 13]
    c = _read_csv(tmp_path / "o" / "c_measurements.csv")
    want = measure(lab, rgb)
    assert [int(r["sum_intensity_ch2"]) for r in c] == want["sum_intensity_ch2"].tolist()


def test_measure_command_names_ome_tiffs_as_segment_does(tmp_path):
    """``x.ome.tif`` gives ``x_measurements.csv`` (as ``seglab segment --measure``), its labels
    ``x_labels.tif`` beside it in the same folder."""
    img, lab = blob_image((40, 50), n=3, seed=2)
    tifffile.imwrite(tmp_path / "a.ome.tif", img)
    tifffile.imwrite(tmp_path / "a_labels.tif", lab.astype(np.uint16))
    out = tmp_path / "out"
    assert main(["measure", "--images", str(tmp_path), "--labels", str(tmp_path), "-o", str(out), "-q"]) == 0
    assert [p.name for p in out.iterdir()] == ["a_measurements.csv"]
    assert len(_read_csv(out / "a_measurements.csv")) == lab.max()
