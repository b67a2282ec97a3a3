"""The stride-2 stem (``stem``) and the full-resolution layer (``full`` / ``full_width``) of the U-Net."""

import numpy as np
import pytest
import torch

from seglab.errors import SeglabError
from seglab.evaluation import AnnotatedImage, predict_maps
from seglab.inference.tiling import tile_context
from seglab.models.storage import load_model, new_model, save_model
from seglab.models.unet_net import UNet, fold_batchnorm
from seglab.training.finetune import freeze_levels

STEM_UNET = {"widths": [4, 8, 16], "convs_per_block": 1, "stem": 4, "full_width": 4}
STEM_STAR = {"widths": [4, 8, 16], "convs_per_block": 1, "n_rays": 8, "grid": 2, "head_width": 8, "stem": 4}


def _trained_stats(model) -> None:
    """Non-trivial batch-norm statistics, as trained weights have."""
    torch.manual_seed(0)
    net = model.network
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(2, model.config.input_channels, 64, 64) * 2 + 0.5)
    net.eval()


@pytest.fixture(params=["unet", "stardist"])
def stem_model(request):
    arch = STEM_UNET if request.param == "unet" else STEM_STAR
    torch.manual_seed(1)
    model = new_model(request.param, f"stem-{request.param}", description="stem test model",
                      architecture=dict(arch), tile_context=8)
    _trained_stats(model)
    return model


def test_shapes_divisor_and_output_stride():
    net = UNet(1, 2, [4, 8, 16], 1, out_stride=1, stem=4, full=4)
    assert net.divisor == 8  # the stem halves, then two pools
    assert net(torch.zeros(1, 1, 32, 48)).shape == (1, 2, 32, 48)
    star = UNet(1, 3, [4, 8, 16], 1, out_stride=2, stem=4)
    assert star(torch.zeros(1, 1, 32, 48)).shape == (1, 3, 16, 24)  # the first level is the output's
    assert len(star.decoders) == 2 and star.full is None
    assert UNet(1, 3, [4, 8, 16], 1, out_stride=4, stem=4)(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 8, 8)


def test_plain_unet_keeps_its_parameter_names():
    """Models saved before the stem existed load unchanged: no new tensors without a stem."""
    names = set(UNet(1, 2, [4, 8], 1).state_dict())
    assert not any(n.startswith(("stem.", "full.")) for n in names)


@pytest.mark.parametrize("kwargs,message", [
    ({"full": 4}, "needs a stride-2 stem"),
    ({"stem": 4}, "needs a full-resolution layer"),
    ({"stem": 4, "full": 4, "out_stride": 2}, "gives output stride 1"),
    ({"stem": 4, "out_stride": 3}, "power of two"),
])
def test_inconsistent_layouts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNet(1, 2, [4, 8, 16], 1, **kwargs)


def test_config_error_is_a_clear_seglab_error():
    with pytest.raises(SeglabError, match="does not make a unet network.*full-resolution layer"):
        new_model("unet", "x", architecture={"widths": [4, 8], "convs_per_block": 1, "stem": 4})


def test_folded_inference_copy_matches_the_network(stem_model):
    x = torch.randn(1, stem_model.config.input_channels, 32, 32)
    with torch.inference_mode():
        ref = stem_model.network(x)
        assert torch.allclose(fold_batchnorm(stem_model.network)(x), ref, atol=1e-4)
        got = stem_model.forward_tiles(x)
    assert got.shape[-2:] == ref.shape[-2:]


def test_tiled_maps_equal_untiled(stem_model):
    """The tile context derived from the layers (stem and full-resolution layer included) makes
    tiles agree with one whole pass."""
    rng = np.random.default_rng(0)
    img = rng.random((150, 203)).astype(np.float32)
    assert tile_context(stem_model) >= stem_model.network.receptive_radius()
    item = AnnotatedImage(img, np.zeros(img.shape, int))
    whole = predict_maps(stem_model, item, tile_size=1024, amp=False, device="cpu")
    tiled = predict_maps(stem_model, item, tile_size=48, amp=False, device="cpu")
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_save_load_round_trip(stem_model, tmp_path):
    folder = save_model(stem_model, tmp_path / "m")
    again = load_model(folder)
    assert again.config.architecture == stem_model.config.architecture
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        assert torch.equal(again.network(x), stem_model.network(x))


def test_stem_is_the_first_level_fine_tuning_freezes(stem_model):
    assert stem_model.encoder_levels()[:2] == ["stem.", "encoders.0."]
    assert freeze_levels(stem_model, 1) == ["stem."]
    frozen = {n for n, p in stem_model.network.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("stem.") for n in frozen)


def test_size_model_reads_the_levels_behind_the_stem(stem_model):
    from seglab.inference.size_model import n_features, window_features

    net = stem_model.network
    n = n_features(net)
    assert n == 2 * (4 + 8 + 16)
    v = window_features(net, np.random.default_rng(0).random((1, 96, 96)).astype(np.float32), slice(16, 80),
                        slice(8, 72))
    assert v is not None and v.shape == (n,) and np.isfinite(v).all()


def test_a_stem_model_trains(stem_model):
    from seglab.training.data import Augment, PatchSampler, make_pair
    from seglab.training.loop import TrainSettings, train_iter
    from tests_helpers import blob_image

    pairs = [make_pair(*blob_image((96, 96), n=8, seed=s), 1, stem_model.config.normalization) for s in range(2)]
    sampler = PatchSampler(pairs, 64, Augment(), seed=0)
    before = {k: v.clone() for k, v in stem_model.network.state_dict().items()}
    events = list(train_iter(stem_model, sampler, TrainSettings(steps=3, batch_size=2, lr=1e-2, warmup_steps=1),
                             device="cpu"))
    assert events
    after = stem_model.network.state_dict()
    assert not torch.equal(before["stem.0.weight"], after["stem.0.weight"])
