"""The DSB2018 recipes (seglab.training.recipes) end to end on a tiny fake dataset: train, resume."""

import json

from seglab.models.storage import load_model
from seglab.training.recipes import main
from tests_helpers import fake_dsb


def test_unet_recipe_trains_with_prefetched_batches_then_resumes(tmp_path, capsys):
    data, out = tmp_path / "dsb", tmp_path / "run"
    fake_dsb(data)
    common = ["--data", str(data), "--steps", "3", "--batch-size", "2", "--validate-every", "2", "--device", "cpu"]
    assert main(["unet-nuclei", *common, "--out", str(out)]) in (0, None)
    first = json.loads((out / "train_result.json").read_text())
    assert first["steps"] == 3 and first["n_train_images"] == 11  # one in ten per group held out to tune
    model = load_model(out / "final")
    assert model.config.object_diameter > 0 and "split val" in model.config.scores["dataset"]
    assert model.config.training["replay_set"] == "dsb2018-train"  # what fine-tuning it replays
    assert model.size_model is not None and model.config.training["size_model"]["data"] == "DSB2018 split train"
    # a second phase from the first one's weights keeps the first phase's facts
    again = tmp_path / "run2"
    assert main(["unet-nuclei", *common, "--out", str(again), "--init", str(out / "final")]) in (0, None)
    second = json.loads((again / "train_result.json").read_text())
    assert second["steps"] == 3 and second["previous_phase"]["steps"] == 3
    assert "starting from weights" in capsys.readouterr().out
    # from a model folder on its own (as a shipped model): the phases come from its config
    import shutil

    shipped = tmp_path / "shipped" / "unet-nuclei"
    shutil.copytree(again / "final", shipped)
    third = tmp_path / "run3"
    assert main(["unet-nuclei", *common, "--out", str(third), "--init", str(shipped)]) in (0, None)
    chain = json.loads((third / "train_result.json").read_text())["previous_phase"]
    assert chain["steps"] == 3 and chain["previous_phase"]["steps"] == 3 and "previous_phase" not in chain["previous_phase"]


def test_a_new_architecture_from_the_command_line_and_the_lr_a_finish_records(tmp_path):
    """``--architecture`` puts keys over the recipe's network (here a stride-2 stem); a later
    ``finish-<recipe>`` without ``--lr`` records the learning rate the run trained with."""
    import pytest

    data, out = tmp_path / "dsb", tmp_path / "run"
    fake_dsb(data)
    common = ["--data", str(data), "--steps", "2", "--batch-size", "2", "--validate-every", "2", "--device", "cpu"]
    arch = '{"stem": 8, "widths": [8, 16, 32, 64, 128], "full_width": 8}'
    assert main(["unet-nuclei", *common, "--out", str(out), "--lr", "7e-4", "--architecture", arch]) in (0, None)
    model = load_model(out / "final")
    assert model.config.architecture == {"widths": [8, 16, 32, 64, 128], "convs_per_block": 2, "stem": 8,
                                         "full_width": 8}
    assert model.network.divisor == 32 and model.config.training["lr"] == 7e-4
    assert json.loads((out / "train_result.json").read_text())["lr"] == 7e-4
    assert main(["finish-unet-nuclei", *common, "--out", str(out)]) in (0, None)  # no --lr: the run's
    assert load_model(out / "final").config.training["lr"] == 7e-4
    for bad in (["--architecture", "{stem: 8}"], ["--architecture", "[8]"],
                ["--architecture", '{"stem": 8}', "--init", str(out / "final")]):
        with pytest.raises(SystemExit):
            main(["unet-nuclei", *common, "--out", str(tmp_path / "bad"), *bad])


def test_colour_weight_blur_and_saturate_from_the_command_line_reach_the_recipe_and_its_record(tmp_path, monkeypatch):
    import pytest

    from seglab.training import recipes

    made = []
    real = recipes.Augment
    monkeypatch.setattr(recipes, "Augment", lambda **kw: made.append(kw) or real(**kw))
    data, out = tmp_path / "dsb", tmp_path / "run"
    fake_dsb(data)
    common = ["--data", str(data), "--steps", "2", "--batch-size", "2", "--validate-every", "2", "--device", "cpu"]
    assert main(["unet-nuclei", *common, "--out", str(out), "--colour-weight", "3.5", "--blur", "0.3", "2.5",
                 "--saturate", "0.2"]) in (0, None)
    training = load_model(out / "final").config.training
    weights = training["image_weights"]
    assert weights["colour (stained)"] == 3.5 and weights["grey, bright background"] == 6.0
    assert made[-1]["blur_prob"] == 0.3 and made[-1]["blur_sigma"] == 2.5  # the sampler's augmentation
    assert made[-1]["saturate_prob"] == 0.2
    assert training["augment"]["blur_prob"] == 0.3 and training["augment"]["blur_sigma"] == 2.5
    assert training["augment"]["saturate_prob"] == 0.2
    norm = load_model(out / "final").config.normalization
    assert norm["fill_black"] == "brightfield" and norm["bright_outliers"] is norm["sparse_objects"] is True  # a grey recipe's model
    # finishing the run again (no flag) records the weights and augmentation it trained with, not the recipe's
    assert main(["finish-unet-nuclei", *common, "--out", str(out)]) in (0, None)
    training = load_model(out / "final").config.training
    assert training["image_weights"]["colour (stained)"] == 3.5 and training["augment"]["blur_prob"] == 0.3
    with pytest.raises(SystemExit):  # the H&E recipe draws its images by source, not by DSB2018 kind
        main(["stardist-he", *common, "--out", str(tmp_path / "he"), "--colour-weight", "2"])
    for bad in (["--blur", "0.3", "2"], ["--saturate", "0.2"]):
        with pytest.raises(SystemExit):
            main(["stardist-he", *common, "--out", str(tmp_path / "he"), *bad])
    with pytest.raises(SystemExit):
        main(["unet-nuclei", *common, "--out", str(tmp_path / "bad"), "--saturate", "1.5"])


def test_the_unet_recipe_builds_the_shipped_layout():
    from seglab.models.registry import get_model
    from seglab.training.recipes import RECIPES

    assert RECIPES["unet-nuclei"]["architecture"] == get_model("unet-nuclei").config.architecture



def test_both_recipes_record_where_a_run_started_alike(tmp_path):
    """``record_start`` (shared by the DSB2018 and H&E recipes): tensors copied from a model are
    recorded as the backbone's start, a continued model with the phases before it, and the
    weight average with whether the average won."""
    from argparse import Namespace
    from types import SimpleNamespace

    from seglab.training.recipes import record_start

    settings = SimpleNamespace(ema_decay=0.999)
    result = SimpleNamespace(best_is_average=True)
    copied: dict = {}
    record_start(copied, Namespace(init=None, init_from="stardist-nuclei"), settings, result, {})
    assert copied == {"weight_average": {"decay": 0.999, "best_is_average": True},
                      "backbone_initialised_from": "stardist-nuclei (tensors of the same name and shape)"}
    continued: dict = {}
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    record_start(continued, Namespace(init=str(shipped), init_from=None), SimpleNamespace(ema_decay=0.0), result,
                 {"steps": 7, "lr": 1e-4, "not a run fact": 1})
    assert continued == {"initialised_from": str(shipped), "previous_phase": {"steps": 7, "lr": 1e-4}}
