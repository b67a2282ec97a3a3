"""Data split and object size of the stardist-he recipe (seglab.training.recipe_he) on tiny fake folders."""

import csv

import numpy as np
import pytest
import tifffile

from seglab.training.recipe_he import MONUSEG_TUNE_COLUMNS, colour_ids, he_data, median_object_diameter
from seglab.training.recipes import main


def _folder(root, rows, shape):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "split", "height", "width", "channels", "objects"])
        for rid, split, ch in rows:
            img = np.full(shape + ((3,) if ch == 3 else ()), 200, np.uint8)
            lab = np.zeros(shape, np.uint16)
            lab[2:8, 2:8] = 1
            lab[2:8, shape[1] - 8 : shape[1] - 2] = 2  # lies in the right strip
            tifffile.imwrite(root / "images" / f"{rid}.tif", img)
            tifffile.imwrite(root / "labels" / f"{rid}.tif", lab)
            w.writerow([rid, split, *shape, ch, 2])


def test_he_data_takes_colour_images_and_holds_out_strips(tmp_path):
    dsb, mo = tmp_path / "dsb", tmp_path / "mo"
    _folder(dsb, [(f"c{i:02d}", "train", 3) for i in range(12)] + [("g0", "train", 1), ("cv", "val", 3)], (32, 40))
    _folder(mo, [("t0", "train", 3), ("t1", "train", 3), ("v0", "val", 3)], (20, MONUSEG_TUNE_COLUMNS + 30))
    assert colour_ids(dsb, "train") == [f"c{i:02d}" for i in range(12)]
    data = he_data(dsb, mo)
    assert [it.name for it in data["tune_dsb"]] == ["c05"]
    assert len(data["train_dsb"]) == 11 and all(it.channel_axis is not None for it in data["train_dsb"])
    assert len(data["train_monuseg"]) == len(data["tune_monuseg"]) == 2
    tr, tu = data["train_monuseg"][0], data["tune_monuseg"][0]
    assert tr.labels.shape == (20, 30) and tu.labels.shape == (20, MONUSEG_TUNE_COLUMNS)
    assert tr.image.shape == (20, 30, 3)
    # each part keeps only its own objects, numbered from 1
    assert set(np.unique(tr.labels)) == {0, 1} and set(np.unique(tu.labels)) == {0, 1}


def test_median_object_diameter_by_hand():
    lab = np.zeros((40, 40), np.int32)
    lab[0:10, 0:10] = 1  # 100 px: d = sqrt(400 / pi) = 11.28
    lab[20:24, 20:24] = 2  # 16 px
    lab[30:40, 30:40] = 5  # 100 px
    assert median_object_diameter([lab]) == pytest.approx(np.sqrt(400 / np.pi))
    with pytest.raises(ValueError):
        median_object_diameter([np.zeros((4, 4), np.int32)])


def test_recipe_cli_knows_stardist_he(capsys):
    with pytest.raises(SystemExit):
        main(["stardist-he"])  # neither --steps nor --time-budget
    assert "give --steps or --time-budget" in capsys.readouterr().err


def test_monuseg_weight_from_the_command_line_reaches_the_sampler(tmp_path, monkeypatch):
    from seglab.models.storage import new_model
    from seglab.training import recipe_he

    seen = {}
    monkeypatch.setattr(recipe_he, "train_he", lambda args, recipe: seen.update(recipe))
    assert main(["stardist-he", "--steps", "1", "--monuseg-weight", "3"]) in (0, None)
    assert seen["monuseg_weight"] == 3.0 and recipe_he.STARDIST_HE["monuseg_weight"] == 1.5
    for bad in (["unet-nuclei", "--steps", "1", "--monuseg-weight", "3"],
                ["stardist-he", "--steps", "1", "--monuseg-weight", "0"]):
        with pytest.raises(SystemExit):
            main(bad)
    # the sampler draws MoNuSeg pixels that much more often than DSB2018 colour ones
    dsb, mo = tmp_path / "dsb", tmp_path / "mo"
    _folder(dsb, [(f"c{i:02d}", "train", 3) for i in range(12)], (32, 40))
    _folder(mo, [("t0", "train", 3)], (32, MONUSEG_TUNE_COLUMNS + 40))
    data = he_data(dsb, mo)
    model = new_model("stardist", "he", architecture={"widths": [8, 16], "n_rays": 8}, input_channels=3)
    for weight in (1.5, 3.0):
        pairs = recipe_he._sampler(model, data, {**recipe_he.STARDIST_HE, "monuseg_weight": weight}, 0).pairs
        by_name = {p.name: p.weight for p in pairs}
        assert by_name["t0"] / by_name["c00"] == pytest.approx(weight)  # same size here: 32 x 40


def test_scale_range_from_the_command_line_reaches_the_sampler_and_the_record(tmp_path, monkeypatch):
    """``--scale-range`` widens the scale augmentation of the H&E training (only there), and the
    finish of such a run takes the range from its record."""
    from seglab.training import recipe_he

    seen = {}
    monkeypatch.setattr(recipe_he, "train_he", lambda args, recipe: seen.update(recipe))
    assert main(["stardist-he", "--steps", "1", "--scale-range", "0.5", "1.6"]) in (0, None)
    assert seen["augment"]["scale_range"] == [0.5, 1.6] and recipe_he.STARDIST_HE["augment"]["scale_range"] == [0.7, 1.4]
    for bad in (["unet-nuclei", "--steps", "1", "--scale-range", "0.5", "1.6"],
                ["stardist-he", "--steps", "1", "--scale-range", "1.2", "1.6"]):
        with pytest.raises(SystemExit):
            main(bad)
    dsb, mo = tmp_path / "dsb", tmp_path / "mo"
    _folder(dsb, [(f"c{i:02d}", "train", 3) for i in range(12)], (32, 40))
    _folder(mo, [("t0", "train", 3)], (32, MONUSEG_TUNE_COLUMNS + 40))
    from seglab.models.storage import new_model

    model = new_model("stardist", "he", architecture={"widths": [8, 16], "n_rays": 8}, input_channels=3)
    sampler = recipe_he._sampler(model, he_data(dsb, mo), seen, 0)
    assert tuple(sampler.augment.scale_range) == (0.5, 1.6)
    finished = {}
    monkeypatch.setattr(recipe_he, "finish_he", lambda m, d, out, recipe, args, run: finished.update(recipe))
    monkeypatch.setattr(recipe_he, "load_model", lambda path: model)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_result.json").write_text('{"scale_range": [0.5, 1.6]}')
    import argparse

    recipe_he.finish_only(argparse.Namespace(out=str(tmp_path / "run"), data=str(dsb), monuseg=str(mo), init=None))
    assert finished["augment"]["scale_range"] == [0.5, 1.6]


def test_a_model_the_recipe_trains_fills_black_padding(tmp_path, monkeypatch):
    """Brightfield: the recipe's model fills black padding with the glass colour, as the shipped one."""
    from seglab.training import recipe_he

    dsb, mo = tmp_path / "dsb", tmp_path / "mo"
    _folder(dsb, [(f"c{i:02d}", "train", 3) for i in range(12)], (32, 40))
    _folder(mo, [("t0", "train", 3)], (32, MONUSEG_TUNE_COLUMNS + 40))
    finished = {}
    monkeypatch.setattr(recipe_he, "finish_he", lambda m, *a, **k: finished.update(m.config.normalization))
    assert main(["stardist-he", "--data", str(dsb), "--monuseg", str(mo), "--steps", "1", "--batch-size", "1",
                 "--validate-every", "100", "--threads", "1", "--device", "cpu", "--architecture",
                 '{"widths": [8, 16], "n_rays": 8}', "--out", str(tmp_path / "run")]) in (0, None)
    assert finished["fill_black"] is True
