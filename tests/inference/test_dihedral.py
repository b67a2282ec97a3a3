"""Test-time augmentation: orientations of tiles, their maps turned back, and the engine's averaged maps."""

import numpy as np
import pytest
import torch
from torch import nn

from seglab.errors import SeglabError
from seglab.inference.dihedral import ORIENTATIONS, Orientation, ray_channels
from seglab.inference.engine import predict_maps_iter, run_to_end, segment
from seglab.models.base import ModelConfig
from seglab.models.stardist import StarDistModel
from seglab.models.unet import UNetModel
from tests_helpers import blob_image


def test_eight_distinct_orientations_identity_first():
    assert len(set(ORIENTATIONS)) == 8 and ORIENTATIONS[0] == Orientation()
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    seen = {o.apply(x).numpy().tobytes() for o in ORIENTATIONS}
    assert len(seen) == 8  # each a different image of the same tile


@pytest.mark.parametrize("o", ORIENTATIONS)
@pytest.mark.parametrize("stride", [1, 2])
def test_restore_undoes_apply_on_the_sampled_pixels(o, stride):
    """A tile's pixel ``s * j`` lands on a sampled pixel of the oriented tile, and the maps of that
    tile turned back hold it at ``j`` again (but for the one row/column taken from the context)."""
    x = torch.rand(1, 2, 16, 24)
    sampled = x[..., ::stride, ::stride]
    back = o.restore(o.apply(x, stride)[..., ::stride, ::stride], stride)
    edge = 1 if stride > 1 else 0
    np.testing.assert_array_equal(back[..., edge:, edge:].numpy(), sampled[..., edge:, edge:].numpy())


@pytest.mark.parametrize("n_rays", [8, 32])
def test_ray_channels_are_a_permutation_keeping_the_probability(n_rays):
    for o in ORIENTATIONS:
        ch = ray_channels(n_rays, o)
        assert ch[0] == 0 and sorted(ch) == list(range(n_rays + 1))
    assert ray_channels(n_rays, ORIENTATIONS[0]) == list(range(n_rays + 1))
    with pytest.raises(SeglabError, match="multiple of 4"):
        ray_channels(6, Orientation(flip_x=True))


@pytest.mark.parametrize("o", ORIENTATIONS[1:])
def test_stardist_targets_of_an_oriented_tile_turned_back_are_the_tiles_targets(o):
    """The whole convention checked against geometry: the star distances (and probability) of an
    oriented label image, turned back pixel by pixel and channel by channel, are those of the
    labels themselves; a family that kept its ray channels would fail here."""
    labels = np.pad(blob_image((80, 112), n=10, seed=3)[1], 8)  # objects off the edges: the rolled row is blank
    model = StarDistModel(ModelConfig(name="s", family="stardist", architecture={"n_rays": 32, "grid": 2}))
    s = model.output_stride

    def maps(lab):
        t = model.make_targets(lab)
        return torch.from_numpy(np.concatenate([t["prob"][None], t["dist"]]))[None]

    oriented = o.apply(torch.from_numpy(labels)[None, None], s)[0, 0].numpy()
    back = o.restore(maps(oriented), s)
    own = maps(labels)
    turned = back[:, model.dihedral_channels(o)]
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # off the rolled edge row/column
    err = (turned - own)[inner].abs()
    assert float(err[:, 0].max()) < 1e-4  # probability where it was
    assert float(err[:, 1:].mean()) < 0.02 and float(np.quantile(err[:, 1:].numpy(), 0.99)) < 0.75
    kept = (back - own)[inner].abs()  # the rays left where they were: wrong by pixels
    assert float(kept[:, 1:].mean()) > 10 * float(err[:, 1:].mean()) + 0.1


class LocalNet(nn.Module):
    """Three 3x3 convolutions without any symmetry of their own (random weights)."""

    divisor = 8

    def __init__(self, out=2):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(4, out, 3, padding=1))

    def forward(self, x):
        return self.body(x)


def _unet(net):
    cfg = ModelConfig(name="t", family="unet", tile_context=16, thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5})
    return UNetModel(cfg, network=net)


def _maps(model, x, tile=1024, augment=True):
    return run_to_end(predict_maps_iter(model, x, tile_size=tile, device=torch.device("cpu"), amp=False, augment=augment))


def test_augmented_maps_are_the_mean_of_the_oriented_passes_turned_back():
    model = _unet(LocalNet())
    x = np.random.default_rng(1).random((1, 64, 80)).astype(np.float32)
    t = torch.from_numpy(x)[None]
    with torch.no_grad():
        expected = sum(o.restore(torch.sigmoid(model.network(o.apply(t)))) for o in ORIENTATIONS) / 8
    got = _maps(model, x)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # the engine reflects the image at its edges, not zeros
    np.testing.assert_allclose(got[inner], expected[0].numpy()[inner], atol=1e-5)
    assert np.abs(got - _maps(model, x, augment=False)).max() > 1e-3  # not the single pass


def test_augmented_maps_turn_with_the_image():
    """Averaged over all eight orientations, the maps of a flipped or rotated image are the
    image's maps flipped or rotated, though the network itself has no symmetry."""
    model = _unet(LocalNet())
    x = np.random.default_rng(2).random((1, 64, 64)).astype(np.float32)
    own = torch.from_numpy(_maps(model, x))[None]
    single = torch.from_numpy(_maps(model, x, augment=False))[None]
    for o in ORIENTATIONS[1:]:
        turned = _maps(model, o.apply(torch.from_numpy(x)[None])[0].numpy())
        np.testing.assert_allclose(turned, o.apply(own)[0].numpy(), atol=1e-5)
        plain = _maps(model, o.apply(torch.from_numpy(x)[None])[0].numpy(), augment=False)
        assert np.abs(plain - o.apply(single)[0].numpy()).max() > 1e-3


@pytest.mark.parametrize("family", ["unet", "stardist"])
def test_augmented_tiled_maps_equal_untiled(family, tiny_star_dir):
    from seglab.models.storage import load_model

    model = _unet(LocalNet()) if family == "unet" else load_model(tiny_star_dir)
    x = np.random.default_rng(3).random((1, 150, 203)).astype(np.float32)
    np.testing.assert_allclose(_maps(model, x, tile=64), _maps(model, x), atol=1e-4)


def test_segment_with_augment_finds_the_objects(tiny_star_dir):
    from seglab.models.storage import load_model

    model = load_model(tiny_star_dir)
    image, labels = blob_image((128, 128), n=8, seed=5)
    plain = segment(model, image, diameter=None)
    aug = segment(model, image, diameter=None, augment=True)
    assert aug.n_objects == plain.n_objects == labels.max()


def test_the_size_estimate_stays_a_single_pass_and_its_plane_is_segmented_again(augment_passes):
    """``auto``'s probe at factor 1 segments the plane; without augmentation that pass is the
    result, with it the plane is run again augmented (the probe itself stays single)."""
    from seglab.models.registry import get_model

    model = get_model("stardist-nuclei")
    image = blob_image((192, 192), n=12, seed=6, rmin=7, rmax=9)[0]  # about the model's object size
    plain = segment(model, image)
    assert augment_passes == [False] * len(augment_passes) and plain.scale_factor == 1.0
    del augment_passes[:]
    aug = segment(model, image, augment=True)
    assert aug.scale_factor == 1.0 and augment_passes[-1] is True and augment_passes[0] is False
    assert augment_passes.count(True) == 1 and abs(aug.n_objects - plain.n_objects) <= 1


def test_augment_is_refused_clearly_for_mask_rcnn():
    from maskrcnn_helpers import tiny_maskrcnn

    with pytest.raises(SeglabError, match="U-Net and StarDist"):
        segment(tiny_maskrcnn(), np.zeros((64, 64), np.float32), augment=True)
