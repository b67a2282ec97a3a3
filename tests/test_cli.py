import contextlib
import json

import numpy as np
import pytest
import tifffile

from seglab.cli import main
from seglab.io.labels import write_labels
from tests_helpers import blob_image


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        img, lab = blob_image((70, 90), n=5, seed=i)
        tifffile.imwrite(d / f"img{i}.tif", img, resolution=(1 / 0.5, 1 / 0.5))
    return d


def test_models_lists_builtin(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "unet-nuclei" in out and "unet" in out
    assert main(["models", "--json"]) == 0
    assert any(m["name"] == "unet-nuclei" for m in json.loads(capsys.readouterr().out))


def test_segment_folder_writes_labels_same_size(tmp_path, image_dir, tiny_model_dir, capsys):
    out = tmp_path / "out"
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(image_dir), "--device", "cpu",
               "--tile-size", "64", "--prob-thresh", "0.4", "-t", "seed_thresh=0.3", "-q"])
    assert rc == 0
    for i in range(2):
        lab = tifffile.imread(out / f"img{i}_labels.tif")
        assert lab.shape == (70, 90) and lab.dtype == np.uint16
        assert (out / f"img{i}_objects.csv").read_text().startswith("label,score,centroid_y,centroid_x,area")
    from seglab.io.labels import read_resolution

    assert read_resolution(out / "img0_labels.tif") == pytest.approx((0.5, 0.5))


def test_segment_refuses_to_overwrite(tmp_path, image_dir, tiny_model_dir, capsys):
    out = tmp_path / "out"
    out.mkdir()
    write_labels(out / "img0_labels.tif", np.ones((3, 3), np.uint8))
    before = (out / "img0_labels.tif").read_bytes()
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(image_dir / "img0.tif"), "-q"])
    err = capsys.readouterr().err
    assert rc != 0 and "already exists" in err and "Traceback" not in err
    assert (out / "img0_labels.tif").read_bytes() == before
    assert main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(image_dir / "img0.tif"), "-q",
                 "--overwrite"]) == 0


def test_segment_series_option(tmp_path, tiny_model_dir, capsys):
    """``--series``: a bad value or a position the file lacks is one clear line; an existing output
    of any position stops the run before any work; ``first`` writes the file's name."""
    src = tmp_path / "wells.ome.tif"
    with tifffile.TiffWriter(src, ome=True) as w:
        for k in range(2):
            w.write(blob_image((64, 64), n=3, seed=k)[0], metadata={"axes": "YX"})
    base = ["segment", "-m", str(tiny_model_dir), str(src), "-q", "--device", "cpu", "--diameter", "none"]
    for value, msg in (("x", "--series takes 'all', 'first' or series numbers"),
                       ("0,2", "wells.ome.tif holds 2 image(s) (series 0, 1); no series 2")):
        rc = main([*base, "-o", str(tmp_path / "a"), "--series", value])
        err = capsys.readouterr().err.strip()
        assert rc != 0 and msg in err and len(err.splitlines()) == 1 and "Traceback" not in err
    out = tmp_path / "b"
    out.mkdir()
    write_labels(out / "wells_s1_labels.tif", np.ones((3, 3), np.uint8))
    rc = main([*base, "-o", str(out)])
    assert rc != 0 and "wells_s1_labels.tif already exists" in capsys.readouterr().err
    assert not (out / "wells_s0_labels.tif").exists()
    assert main([*base, "-o", str(out), "--series", "first"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["wells_labels.tif", "wells_objects.csv", "wells_s1_labels.tif"]


@pytest.mark.parametrize("make,msg", [
    (lambda p: p.write_bytes(b"junk"), "cannot read"),
    (lambda p: p.with_suffix(".txt").write_text("x"), "unsupported file type"),
])
def test_segment_bad_files_one_line_error(tmp_path, tiny_model_dir, capsys, make, msg):
    p = tmp_path / "bad.tif"
    make(p)
    target = p if p.exists() else p.with_suffix(".txt")
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(tmp_path / "o"), str(target), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and msg in err and len(err.splitlines()) == 1


def test_segment_unknown_model_and_threshold(tmp_path, image_dir, tiny_model_dir, capsys):
    assert main(["segment", "-m", "nope", "-o", str(tmp_path), str(image_dir)]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["segment", "-m", str(tiny_model_dir), "-o", str(tmp_path / "o"), str(image_dir), "-t", "bogus=1"]) == 2
    assert "unknown threshold" in capsys.readouterr().err


def test_evaluate_json(tmp_path, tiny_model_dir, capsys):
    imgs, labs = tmp_path / "i", tmp_path / "l"
    imgs.mkdir()
    labs.mkdir()
    img, lab = blob_image((64, 64), n=4)
    tifffile.imwrite(imgs / "a.tif", img)
    tifffile.imwrite(labs / "a.tif", lab.astype(np.uint16))
    assert main(["evaluate", "-m", str(tiny_model_dir), "--images", str(imgs), "--labels", str(labs), "--json",
                 "-q", "--device", "cpu"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert set(m["thresholds"]) == {"0.50", "0.75", "0.90"} and 0 <= m["dsb_score"] <= 1
    assert m["n_true"] == 4 and 0 <= m["aji"] <= 1 and 0 <= m["pq_per_image"] <= 1
    assert main(["evaluate", "-m", str(tiny_model_dir), "--images", str(imgs), "--labels", str(labs),
                 "-q", "--device", "cpu"]) == 0
    assert "per image, averaged: AJI" in capsys.readouterr().out
    (labs / "a.tif").unlink()
    assert main(["evaluate", "-m", str(tiny_model_dir), "--images", str(imgs), "--labels", str(labs)]) == 2
    assert "no label file" in capsys.readouterr().err


def test_segment_writes_imagej_roi_sets_for_polygon_models(tmp_path, image_dir, tiny_star_dir):
    import roifile

    out = tmp_path / "out"
    assert main(["segment", "-m", str(tiny_star_dir), "-o", str(out), str(image_dir), "--device", "cpu",
                 "--rois", "-q"]) == 0
    for i in range(2):
        labels = tifffile.imread(out / f"img{i}_labels.tif")
        rois = roifile.roiread(out / f"img{i}_rois.zip")
        assert len(rois) == len(np.unique(labels)) - 1 > 0
        # each ROI is named after its object's id, and that object lies within the ROI's box
        for roi in rois:
            xy = roi.coordinates() - 0.5
            (x0, y0), (x1, y1) = np.floor(xy.min(axis=0)).astype(int), np.ceil(xy.max(axis=0)).astype(int)
            ys, xs = np.nonzero(labels == int(roi.name))
            assert ys.size and ys.min() >= y0 and ys.max() <= y1 and xs.min() >= x0 and xs.max() <= x1
    # --rois with a model that has no outlines is refused before any work
    rc = main(["segment", "-m", "unet-nuclei", "-o", str(tmp_path / "o2"), str(image_dir), "--rois", "-q"])
    assert rc != 0 and not (tmp_path / "o2").exists()
    # existing ROI sets are not overwritten without --overwrite
    rc = main(["segment", "-m", str(tiny_star_dir), "-o", str(out), str(image_dir), "--rois", "--no-table", "-q"])
    assert rc != 0


def test_rois_of_a_stack_of_two_stack_axes_are_refused_before_segmenting(tmp_path, tiny_star_dir, monkeypatch,
                                                                          capsys):
    """An ImageJ ROI set holds one stack axis: for a TZYX file --rois is refused before the model
    runs, and nothing of that image is written (no object table left to block a rerun)."""
    import seglab.inference.engine as engine

    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, np.zeros((2, 2, 64, 64), np.uint8), imagej=True, metadata={"axes": "TZYX"})

    def never(*args, **kwargs):
        raise AssertionError("segmented")

    monkeypatch.setattr(engine, "segment_iter", never)
    out = tmp_path / "out"
    assert main(["segment", "-m", str(tiny_star_dir), "-o", str(out), str(path), "--rois", "-q"]) != 0
    assert "stack axes TZ" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
@pytest.fixture
def tiny_maskrcnn_dir(tmp_path):
    from maskrcnn_helpers import tiny_maskrcnn
    from seglab.models.storage import save_model

    model = tiny_maskrcnn()
    # untrained: keep every detection and its whole box, so there are boxes to write
    model.config.thresholds = {**model.config.thresholds, "score_thresh": 0.0, "mask_thresh": 0.0}
    return save_model(model, tmp_path / "tiny-maskrcnn")


def _read_csv(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_segment_boxes_csv_round_trip(tmp_path, image_dir, tiny_maskrcnn_dir, capsys):
    from seglab.inference.engine import segment
    from seglab.io import read_image
    from seglab.models.storage import load_model

    out = tmp_path / "out"
    assert main(["segment", "-m", str(tiny_maskrcnn_dir), "-o", str(out), str(image_dir / "img0.tif"), "--device",
                 "cpu", "--boxes", "-q", "--no-amp"]) == 0
    rows = _read_csv(out / "img0_boxes.csv")
    assert list(rows[0]) == ["label", "score", "class", "y0", "x0", "y1", "x1"]
    expect = segment(load_model(tiny_maskrcnn_dir), read_image(image_dir / "img0.tif"), device="cpu", amp=False)
    assert len(rows) == expect.n_objects > 0
    t = expect.table
    for i, r in enumerate(rows):
        assert int(r["label"]) == t["label"][i] and int(r["class"]) == t["class"][i]
        got = [float(r[k]) for k in ("score", "y0", "x0", "y1", "x1")]
        want = [t[k][i] for k in ("score", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")]
        assert got == pytest.approx(want, rel=1e-5, abs=1e-4)
    # like the other outputs, an existing boxes file is kept unless --overwrite
    (out / "img0_labels.tif").unlink()
    before = (out / "img0_boxes.csv").read_bytes()
    assert main(["segment", "-m", str(tiny_maskrcnn_dir), "-o", str(out), str(image_dir / "img0.tif"), "--boxes",
                 "-q"]) == 2
    assert "img0_boxes.csv already exists" in capsys.readouterr().err
    assert (out / "img0_boxes.csv").read_bytes() == before


def test_segment_boxes_for_stacks_have_a_plane_column(tmp_path, tiny_maskrcnn_dir):
    img, _ = blob_image((70, 90), n=5, seed=0)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([img, img[::-1]]))
    out = tmp_path / "out"
    assert main(["segment", "-m", str(tiny_maskrcnn_dir), "-o", str(out), str(tmp_path / "stack.tif"), "--device",
                 "cpu", "--boxes", "-q", "--axes", "ZYX"]) == 0  # 2 undeclared planes: say so
    rows = _read_csv(out / "stack_boxes.csv")
    assert list(rows[0])[-1] == "plane" and {r["plane"] for r in rows} == {"0", "1"}


def test_segment_boxes_needs_a_model_with_boxes(tmp_path, image_dir, tiny_model_dir, capsys):
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(tmp_path / "o"), str(image_dir), "--boxes", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "does not detect boxes" in err
    assert not (tmp_path / "o").exists()
@pytest.fixture
def train_dirs(tmp_path):
    """Two annotated images, labels named <stem>_labels.tif, and region masks."""
    dirs = {k: tmp_path / k for k in ("images", "labels", "regions")}
    for d in dirs.values():
        d.mkdir()
    for i in range(2):
        img, lab = blob_image((64, 64), n=6, seed=i, rmin=4, rmax=7)
        tifffile.imwrite(dirs["images"] / f"im{i}.tif", img)
        tifffile.imwrite(dirs["labels"] / f"im{i}_labels.tif", lab.astype(np.uint16))
        mask = np.zeros((64, 64), np.uint8)
        mask[:40, :50] = 255
        tifffile.imwrite(dirs["regions"] / f"im{i}_regions.tif", mask)
    return dirs


def _train_args(d, *extra):
    return ["train", "--images", str(d["images"]), "--labels", str(d["labels"]), "--epochs", "1",
            "--patch-size", "32", "--batch-size", "2", "--device", "cpu", "-q", *extra]


def test_train_round_trip(tmp_path, train_dirs, tiny_model_dir, capsys):
    from seglab.models.storage import load_model

    out = tmp_path / "mymodel"
    rc = main(_train_args(train_dirs, "--from", str(tiny_model_dir), "--regions", str(train_dirs["regions"]),
                          "-o", str(out), "--val-images", str(train_dirs["images"]),
                          "--val-labels", str(train_dirs["labels"]), "--lr", "5e-4", "--no-augment",
                          "--replay", "0.3", "--freeze-levels", "1"))
    assert rc == 0, capsys.readouterr().err
    assert f"saved mymodel to {out}" in capsys.readouterr().out
    cfg = load_model(out).config
    assert cfg.training["parent"]["path"] == str(tiny_model_dir)
    assert [p["annotated_pixels"] for p in cfg.training["pairs"]] == [40 * 50, 40 * 50]
    assert cfg.training["settings"]["lr"] == 5e-4 and cfg.training["settings"]["augment"] is False
    assert cfg.training["settings"]["replay"] == 0.3 and cfg.training["settings"]["freeze_levels"] == 1
    assert cfg.training["frozen_levels"] == ["encoders.0."]
    assert cfg.scores["validation_images"] == ["im0.tif", "im1.tif"]
    seg = tmp_path / "seg"
    assert main(["segment", "-m", str(out), "-o", str(seg), str(train_dirs["images"]), "-q", "--device", "cpu"]) == 0
    assert tifffile.imread(seg / "im0_labels.tif").shape == (64, 64)
    # the same name again is refused, and kept
    assert main(_train_args(train_dirs, "--from", str(tiny_model_dir), "-o", str(out))) == 2
    assert "already exists" in capsys.readouterr().err


def test_train_into_models_folder_is_listed(train_dirs, models_dir, capsys):
    assert main(_train_args(train_dirs, "--family", "unet", "--name", "from-scratch")) == 0
    assert (models_dir / "from-scratch" / "config.json").is_file()
    capsys.readouterr()
    assert main(["models"]) == 0
    assert "from-scratch" in capsys.readouterr().out


@pytest.mark.parametrize("extra,msg", [
    (["--name", "x"], "one of the arguments --from --family is required"),
    (["--family", "unet"], "-o MODEL_DIR or --name NAME"),
    (["--family", "unet", "--name", "x", "--val-images", "."], "both --val-images and --val-labels"),
    (["--family", "unet", "--name", "x", "--regions", "MISSING"], "no such folder"),
    (["--family", "unet", "--name", "x", "--time-budget", "0.1"], "not allowed with argument --epochs"),
    (["--family", "unet", "--name", "x", "--replay", "1.5"], "replay share must be at least 0 and below 1"),
])
def test_train_bad_arguments(train_dirs, models_dir, capsys, extra, msg):
    with pytest.raises(SystemExit) if "argument" in msg else contextlib.nullcontext():
        rc = main(_train_args(train_dirs, *extra))
        assert rc == 2
    assert msg in capsys.readouterr().err
    assert not any(models_dir.iterdir())


def test_train_missing_region_mask(train_dirs, models_dir, capsys):
    (train_dirs["regions"] / "im1_regions.tif").unlink()
    assert main(_train_args(train_dirs, "--family", "unet", "--name", "x", "--regions",
                            str(train_dirs["regions"]))) == 2
    err = capsys.readouterr().err
    assert "no region mask for im1" in err and len(err.strip().splitlines()) == 1



def test_train_and_evaluate_pick_channels_of_multichannel_images(tmp_path, train_dirs, models_dir, capsys):
    """Two-channel images (nuclei in channel 1, noise in channel 0) are refused without --channels
    (never mixed), and train and evaluate on channel 1 with it."""
    for d in ("images",):
        for p in sorted(train_dirs[d].glob("*.tif")):
            img = tifffile.imread(p)
            noise = np.random.default_rng(0).integers(0, 255, img.shape).astype(img.dtype)
            tifffile.imwrite(p, np.stack([noise, img]))  # (2, H, W): channels first
    assert main(_train_args(train_dirs, "--family", "unet", "--name", "two")) == 2
    assert "channel" in capsys.readouterr().err
    assert main(_train_args(train_dirs, "--family", "unet", "--name", "two", "--channels", "1")) == 0
    capsys.readouterr()
    assert main(["evaluate", "-m", "two", "--images", str(train_dirs["images"]), "--labels",
                 str(train_dirs["labels"]), "--channels", "1", "--device", "cpu", "-q", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_true"] > 0
    assert main(_train_args(train_dirs, "--family", "unet", "--name", "three", "--channels", "2")) == 2
    assert "channel(s) [2] do not exist" in capsys.readouterr().err


def test_channels_option_is_a_comma_list_and_repeats_add():
    from seglab.cli import build_parser

    p = build_parser()
    assert p.parse_args(["segment", "-m", "unet-nuclei", "-o", "out", "--channels", "1", "a.tif"]).channels == [1]
    args = p.parse_args(["segment", "-m", "unet-nuclei", "-o", "out", "--channels", "0,2", "--channels", "3", "a.tif", "b.tif"])
    assert args.channels == [0, 2, 3] and args.inputs == ["a.tif", "b.tif"]
    assert p.parse_args(["segment", "-m", "unet-nuclei", "-o", "out", "a.tif"]).channels is None


def test_segment_warns_when_an_he_model_gets_fluorescence_as_rgb(tmp_path, capsys):
    """Fluorescence exported as RGB (nuclei in blue on black) through the H&E model: one warning
    line that says what the image looks like and which kind of model reads it."""
    from seglab.samples import load_sample

    grey, _ = load_sample("fluorescence")
    rgb = np.zeros(grey.shape[:2] + (3,), np.uint8)
    rgb[:256, :256, 2] = grey[:256, :256]
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "dapi.tif", rgb[:256, :256], photometric="rgb")
    rc = main(["segment", "-m", "stardist-he", "-o", str(tmp_path / "out"), str(tmp_path / "in"), "--device", "cpu",
               "--diameter", "none"])
    assert rc == 0
    err = capsys.readouterr().err
    assert err.count("seglab: warning:") == 1
    # on a line of its own, not glued to the file's progress bar
    (line,) = [ln for ln in err.replace("\r", "\n").splitlines() if "seglab: warning:" in ln]
    assert line.startswith("seglab: warning: stardist-he reads RGB colour, as in stained brightfield tissue, but this "
                           "image looks like fluorescence (dark background) in blue")


def test_segment_tells_which_model_reads_the_colour_of_stained_tissue(tmp_path, capsys):
    """A grey model on a stained RGB file: one line naming the H&E model; none when a
    channel is picked, or for a grey file."""
    from seglab.samples import load_sample

    stained, _ = load_sample("stained")
    grey, _ = load_sample("large_nuclei")
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "he.tif", stained, photometric="rgb")
    tifffile.imwrite(tmp_path / "in" / "grey.tif", grey)
    args = ["segment", "-m", "stardist-nuclei", "-o", str(tmp_path / "out"), "--device", "cpu", "--diameter", "none",
            "-q", "--overwrite"]
    assert main(args + [str(tmp_path / "in")]) == 0
    err = capsys.readouterr().err
    assert ("seglab: warning: this RGB image looks like stained brightfield tissue: stardist-nuclei reads it as "
            "grey, the model stardist-he reads its colour") in err
    assert err.count("seglab: warning:") == 1
    assert main(args + ["--channels", "0", str(tmp_path / "in" / "he.tif")]) == 0
    assert "seglab: warning" not in capsys.readouterr().err
    # a fluorescence composite (a second stain in green beside the nuclei in blue) is mixed into grey
    fluo, _ = load_sample("fluorescence")
    composite = np.zeros(fluo.shape + (3,), np.uint8)
    composite[..., 1], composite[..., 2] = np.roll(fluo, (101, 57), axis=(0, 1)), fluo
    tifffile.imwrite(tmp_path / "composite.tif", composite, photometric="rgb")
    assert main(args + [str(tmp_path / "composite.tif")]) == 0
    err = capsys.readouterr().err
    assert ("seglab: warning: this RGB image looks like fluorescence (dark background) in green and blue: "
            "stardist-nuclei reads their mixture as grey; if the nuclei are in one colour, pick it") in err


def test_segment_time_stack_labels_are_frames_with_the_interval(tmp_path, tiny_model_dir, capsys):
    """A TYX ImageJ stack (60 s between frames) gives labels Fiji opens as frames 60 s apart,
    and a stack without Z spacing gets none (not 1.0)."""
    img = np.stack([blob_image((48, 40), n=3, seed=i)[0] for i in range(3)]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "t.tif", img, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TYX", "unit": "micron", "finterval": 60.0, "tunit": "s"})
    tifffile.imwrite(tmp_path / "z.tif", img, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "unit": "um"})
    out = tmp_path / "out"
    assert main(["segment", "-m", str(tiny_model_dir), "-o", str(out), str(tmp_path / "t.tif"), str(tmp_path / "z.tif"),
                 "--device", "cpu", "--diameter", "none", "-q"]) == 0
    with tifffile.TiffFile(out / "t_labels.tif") as tif:
        ij = tif.imagej_metadata
        assert tif.series[0].axes == "TYX" and ij["frames"] == 3 and "spacing" not in ij
        assert (ij["finterval"], ij["tunit"], ij["unit"]) == (60.0, "sec", "micron")
    with tifffile.TiffFile(out / "z_labels.tif") as tif:
        assert tif.series[0].axes == "ZYX" and "spacing" not in tif.imagej_metadata


@pytest.mark.parametrize("option, value", [("--tile-size", "0"), ("--tile-size", "-64"), ("--batch-size", "0"),
                                           ("--block-size", "0")])
def test_sizes_and_counts_below_one_are_usage_errors(tmp_path, image_dir, tiny_model_dir, capsys, option, value):
    with pytest.raises(SystemExit) as e:
        main(["segment", "-m", str(tiny_model_dir), "-o", str(tmp_path / "out"), str(image_dir), option, value])
    assert e.value.code == 2
    assert f"argument {option}: must be at least 1, got {int(value)}" in capsys.readouterr().err


def test_channels_picked_twice_on_a_grey_image_say_so(tmp_path, image_dir, tiny_model_dir, capsys):
    rc = main(["segment", "-m", str(tiny_model_dir), "-o", str(tmp_path / "out"), str(image_dir / "img0.tif"),
               "--channels", "0,0", "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("seglab: error:") == 1
    assert "takes 1 channel(s) but 2 were picked (channels 0,0 of the image's 1)" in err and "non-RGB" not in err
