"""The model information line and the choice of a model for RGB images."""

import pytest

pytest.importorskip("napari")

from seglab.inference.appearance import Appearance  # noqa: E402
from seglab.models.base import ModelConfig  # noqa: E402
from seglab.models.registry import ModelRegistry  # noqa: E402
from seglab.models.storage import new_model, read_config, save_model  # noqa: E402
from seglab.plugin.model_info import describe, describe_name, rgb_proposal  # noqa: E402


def test_builtin_model_line():
    reg = ModelRegistry()
    cfg = read_config(reg.resolve("stardist-nuclei"))
    ap = f"{cfg.scores['thresholds']['0.50']['ap']:.2f}"  # the recorded val score (it changes with each training phase)
    assert 0.7 < float(ap) < 1.0
    assert describe(cfg) == f"StarDist · trained on DSB2018 split train minus tune · objects ≈ 16 px across · val AP@0.5 {ap}"
    long = describe(cfg, short=False)  # the tooltip: every detail
    assert long.startswith("stardist-nuclei: StarDist-style") and "(every tenth per channel group)" in long
    assert f"val AP@0.5 {ap} (DSB2018 stage1 (corrected), split val)" in long


def test_user_model_line_with_object_size():
    cfg = ModelConfig(name="mine", family="unet", object_diameter=17.6,
                      training={"parent": {"name": "unet-nuclei"},
                                "pairs": [{"image": "a"}, {"image": "b"}]},
                      scores={"ap50_tuned_thresholds": 0.812, "validation_images": ["c"]})
    assert describe(cfg) == ("U-Net · trained on 2 image(s): a, b (fine-tuned from unet-nuclei) · "
                             "objects ≈ 18 px across · val AP@0.5 0.81 on c")
    bare = ModelConfig(name="x", family="maskrcnn", input_channels=3)
    assert describe(bare) == ("Mask R-CNN · RGB input · training data not recorded · "
                              "no validation score recorded")


def test_unreadable_model_gives_a_message_not_an_error():
    assert describe_name(ModelRegistry(), "no-such-model").startswith("cannot read this model: unknown model")


STAINED = Appearance("stained", 0.5, 0.05, (0, 1, 2))
BLUE = Appearance("fluorescence", 0.2, 0.95, (2,))
GREY = Appearance("grey", 0.0, 0.9, (0, 1, 2))
COMPOSITE = Appearance("fluorescence", 0.4, 0.9, (1, 2))
BRIGHT_GREY = Appearance("grey", 0.0, 0.05, (0, 1, 2))


def test_rgb_proposal(models_dir, grey_builtins):
    reg = ModelRegistry(builtin_dir=grey_builtins)
    assert rgb_proposal(reg, "unet-nuclei", STAINED) is None  # no RGB model installed
    model = new_model("stardist", "he-model", input_channels=3, training={"data": "H&E tissue"},
                      architecture={"widths": [4, 8], "convs_per_block": 1, "n_rays": 8, "grid": 2,
                                    "head_width": 8})
    save_model(model, models_dir / "he-model")
    reg = ModelRegistry(builtin_dir=grey_builtins)
    name, reason = rgb_proposal(reg, "unet-nuclei", STAINED)
    assert name == "he-model" and "trained on H&E tissue" in reason and "override" in reason
    assert reason.startswith("RGB image, stained brightfield (bright background, coloured): proposing he-model")
    assert rgb_proposal(reg, "he-model", STAINED) is None  # already an RGB model
    # a dark background (fluorescence, grey stored as RGB): an RGB model gives way to the default
    # grey one, a grey one stays, and the line says why
    for look in (BLUE, GREY):
        name, reason = rgb_proposal(reg, "he-model", look)
        assert name == "stardist-nuclei" and "not stained tissue" in reason and "(he-model reads colour)" in reason
        name, reason = rgb_proposal(reg, "unet-nuclei", look)
        assert name == "unet-nuclei"
        assert reason.endswith("keeping unet-nuclei, which reads it as grey; he-model is for stained tissue and "
                               "finds little here")
    assert rgb_proposal(reg, "he-model", BLUE)[1].startswith(
        "RGB image, fluorescence (dark background) in blue, not stained tissue: proposing stardist-nuclei")
    # grey brightfield keeps whichever model is chosen (neither kind is the better on all of it)
    assert rgb_proposal(reg, "he-model", BRIGHT_GREY) == (
        "he-model", "RGB image, grey stored as RGB (the three channels alike, bright background): keeping he-model; "
                    "for cytology rather than tissue a grey model may do better")
    assert rgb_proposal(reg, "unet-nuclei", BRIGHT_GREY)[1].endswith(
        "keeping unet-nuclei; for tissue sections he-model may do better")
    # a composite of two colours keeps the grey model and is told about Channels
    name, reason = rgb_proposal(reg, "unet-nuclei", COMPOSITE)
    assert name == "unet-nuclei" and reason.endswith(
        "finds little here; unet-nuclei mixes the colours into grey: if the nuclei are in one, enter it under "
        "Channels (0 red, 1 green, 2 blue)")


def test_builtin_he_model_is_proposed_with_its_data_and_licence():
    name, reason = rgb_proposal(ModelRegistry(), "stardist-nuclei", STAINED)
    assert name == "stardist-he"
    assert reason == ("RGB image, stained brightfield (bright background, coloured): proposing stardist-he, "
                      "trained on DSB2018 colour + MoNuSeg (non-commercial use: CC BY-NC-SA 4.0); "
                      "choose another model to override")
