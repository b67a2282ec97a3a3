import numpy as np
import pytest
import torch
from torch import nn

from seglab.errors import SeglabError
from seglab.inference.engine import ProgressEvent, segment, segment_iter
from seglab.models.base import ModelConfig
from seglab.models.unet import UNetModel
from tests_helpers import threshold_net


class LocalNet(nn.Module):
    """Three 3x3 convolutions: receptive field radius 3, far inside the tile context."""

    divisor = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(4, 2, 3, padding=1))

    def forward(self, x):
        return self.body(x)


def _model(net, context=16):
    cfg = ModelConfig(name="t", family="unet", tile_context=context, thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5})
    return UNetModel(cfg, network=net)


def _maps(model, image, tile):
    from seglab.evaluation import AnnotatedImage, predict_maps

    return predict_maps(model, AnnotatedImage(image, np.zeros(image.shape[:2], int)), tile_size=tile, amp=False, device="cpu")


def test_tiled_maps_equal_untiled_when_context_covers_receptive_field():
    rng = np.random.default_rng(1)
    img = rng.random((150, 203)).astype(np.float32)
    model = _model(LocalNet())
    whole = _maps(model, img, 1024)
    tiled = _maps(model, img, 64)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


@pytest.mark.parametrize("border", [0, 8, 16])
def test_tiled_maps_equal_untiled_whatever_the_border(border):
    """The padding at the image's edges may be less than the tile context (down to none): tiles
    at the edges start or end where the padded image does, so they still compute what one
    untiled pass computes, through a network that pools (its windows stay on the pooling grid)."""
    from seglab.inference.engine import predict_maps_iter, run_to_end

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                        nn.Tanh(), nn.Upsample(scale_factor=2), nn.Conv2d(4, 2, 3, padding=1))
    net.divisor = 8
    model = _model(net)
    x = np.random.default_rng(2).random((1, 150, 203)).astype(np.float32)

    def maps(tile, px):
        model.image_border = px  # this model only: the family keeps its own
        return run_to_end(predict_maps_iter(model, x, tile_size=tile, device=torch.device("cpu"), amp=False))

    whole = maps(1024, border)
    np.testing.assert_allclose(maps(48, border), whole, atol=1e-5)
    # the border is what the network sees beyond the edge: none of it (zero padding) changes
    # the edge pixels only; one above the receptive radius (about 8 px here) changes nothing
    ref = maps(1024, 16)
    if border == 0:
        assert np.abs(whole - ref)[:, :2].max() > 1e-4
        np.testing.assert_allclose(whole[:, 20:-20, 20:-20], ref[:, 20:-20, 20:-20], atol=1e-5)
    else:
        np.testing.assert_allclose(whole, ref, atol=1e-5)


@pytest.mark.parametrize("tile", [48, 1024])
def test_channel_last_maps_are_the_same_maps(tile):
    """A model that keeps its maps channel-last (StarDist) gets the same ``(K, h, w)`` values, in
    ``(h, w, K)`` memory, tiled or not."""
    from seglab.inference.engine import predict_maps_iter, run_to_end

    x = np.random.default_rng(3).random((1, 150, 203)).astype(np.float32)
    model = _model(LocalNet())

    def maps(last):
        model.maps_channel_last = last  # this instance only
        return run_to_end(predict_maps_iter(model, x, tile_size=tile, device=torch.device("cpu"), amp=False))

    planar, last = maps(False), maps(True)
    assert planar.shape == last.shape == (2, 150, 203)
    assert planar.flags.c_contiguous
    assert np.moveaxis(last, 0, -1).flags.c_contiguous
    np.testing.assert_array_equal(last, planar)


def test_tiled_instances_equal_untiled_no_cut_or_duplicate_objects():
    from tests_helpers import blob_image

    img, truth = blob_image((300, 340), n=40, seed=3)
    model = _model(threshold_net(), context=24)
    a = segment(model, img, tile_size=1024, amp=False, device="cpu")
    b = segment(model, img, tile_size=96, amp=False, device="cpu")
    assert a.n_objects > 30
    np.testing.assert_array_equal(a.labels, b.labels)


def test_progress_events_and_cancel(discs):
    img, _ = discs
    model = _model(threshold_net())
    gen = segment_iter(model, img, tile_size=64, amp=False, device="cpu")
    events = []
    for ev in gen:
        events.append(ev)
    assert all(isinstance(e, ProgressEvent) for e in events)
    tiles = [e for e in events if e.stage == "tile"]
    assert tiles[-1].done == tiles[-1].total > 1
    fr = [e.fraction for e in events]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    # cancelling: closing the generator mid-run stops it without a result
    gen = segment_iter(model, img, tile_size=64, amp=False, device="cpu")
    next(gen)
    next(gen)
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


def test_stack_ids_unique_across_planes(discs):
    img, truth = discs
    stack = np.stack([img, img[::-1], img])
    model = _model(threshold_net())
    res = segment(model, stack, amp=False, device="cpu")
    assert res.labels.shape == stack.shape
    per_plane = [set(np.unique(p)) - {0} for p in res.labels]
    assert all(len(s) == 3 for s in per_plane)
    assert not (per_plane[0] & per_plane[1]) and not (per_plane[1] & per_plane[2])
    assert list(res.table["plane"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert sorted(res.table["label"]) == sorted(set().union(*per_plane))


def test_found_objects_and_table(discs):
    img, truth = discs
    res = segment(_model(threshold_net()), img, amp=False, device="cpu")
    assert res.n_objects == 3
    t = res.table
    assert set(t) >= {"label", "score", "centroid_y", "centroid_x", "area"}
    order = np.argsort(t["centroid_y"])
    np.testing.assert_allclose(t["centroid_y"][order], [30, 60, 80], atol=1)
    assert (np.abs(t["area"] - np.pi * 100) < 40).all()
    assert ((t["score"] > 0.5) & (t["score"] <= 1)).all()


@pytest.mark.parametrize("image", [np.zeros((64, 64)), np.full((50, 40), 7, np.uint16), np.zeros((1, 1)),
                                   np.full((30, 30), np.nan)])
def test_empty_constant_tiny_and_nan_images_give_no_objects(image):
    res = segment(_model(threshold_net()), image, amp=False, device="cpu")
    assert res.labels.shape == image.shape and res.n_objects == 0


def test_nan_pixels_do_not_break_segmentation(discs):
    img, _ = discs
    f = img.astype(np.float32)
    f[:5, :5] = np.nan
    res = segment(_model(threshold_net()), f, amp=False, device="cpu")
    assert res.n_objects == 3


def test_bad_inputs_are_clear():
    model = _model(threshold_net())
    with pytest.raises(SeglabError, match="fewer than two spatial axes"):
        segment(model, np.zeros(10), device="cpu")
    with pytest.raises(SeglabError, match="at most T, Z, Y, X"):
        segment(model, np.zeros((2, 2, 2, 2, 8, 8)), device="cpu")
    with pytest.raises(SeglabError, match="pick 1 channel"):
        segment(model, np.zeros((5, 8, 8)), channel_axis=0, device="cpu")
    with pytest.raises(SeglabError, match="unknown threshold"):
        segment(model, np.zeros((8, 8)), thresholds={"nope": 1}, device="cpu")
    with pytest.raises(SeglabError, match="no CUDA"):
        if torch.cuda.is_available():
            raise SeglabError("no CUDA (skipped: a GPU exists)")
        segment(model, np.zeros((8, 8)), device="cuda")


def test_rgb_given_to_grey_model_is_converted(discs):
    img, _ = discs
    rgb = np.stack([img, img, img], -1)
    res = segment(_model(threshold_net()), rgb, channel_axis=-1, amp=False, device="cpu")
    assert res.labels.shape == img.shape and res.n_objects == 3


def test_model_predict_is_the_engine(discs):
    img, _ = discs
    model = _model(threshold_net())
    a = model.predict(img, amp=False, device="cpu")
    b = segment(model, img, amp=False, device="cpu")
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.n_objects == 3 and list(a.table["label"]) == [1, 2, 3]


def test_default_tile_size_makes_a_2048_image_one_tile():
    """Issue 11 (speed): the context is computed once around a 2048x2048 image, not four times."""
    from seglab.inference.engine import DEFAULT_TILE_SIZE
    from seglab.inference.tiling import make_grid

    assert make_grid(2048, 2048, DEFAULT_TILE_SIZE, 112, 16).n_tiles == 1
    assert make_grid(2049, 2048, DEFAULT_TILE_SIZE, 112, 16).n_tiles == 2


@pytest.mark.parametrize("tile", [1024, 48])
def test_a_plane_with_its_surround_gets_the_whole_image_maps(tile):
    """A block cut out of a larger image brings its surroundings: its tiles take their context from
    them, so its maps equal the whole image's there, to the block's edge; reflecting the block
    itself instead differs within the receptive radius of its edges."""
    from seglab.inference.engine import predict_maps_iter
    from seglab.inference.tiling import Surround
    from seglab.progress import run_to_end

    model = _model(LocalNet(), context=8)
    x = np.random.default_rng(3).random((1, 150, 170)).astype(np.float32)
    kw = dict(tile_size=tile, device=torch.device("cpu"), amp=False)
    whole = run_to_end(predict_maps_iter(model, x, **kw))
    ys, xs = slice(40, 112), slice(0, 120)  # touches the image's left edge
    block = run_to_end(predict_maps_iter(model, x[:, ys, xs], surround=Surround(x, ys.start, xs.start), **kw))
    np.testing.assert_allclose(block, whole[:, ys, xs], atol=1e-5)
    alone = run_to_end(predict_maps_iter(model, x[:, ys, xs], **kw))
    assert np.abs(alone - whole[:, ys, xs]).max() > 1e-3


def test_the_network_sees_the_image_with_its_family_border_not_the_whole_context():
    """Issue 11 (speed): a small image is padded by ``image_border`` (16 px), not by the tile
    context, before the network; a 2048x2048 image is one 2080x2080 tile."""
    from seglab.models.base import SegmentationModel

    seen = []
    net = LocalNet()
    net.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    model = _model(net, context=48)
    assert model.image_border == SegmentationModel.image_border == 16
    from tests_helpers import textured

    segment(model, textured((100, 130)), amp=False, device="cpu", diameter=None)
    assert seen == [(136, 168)]  # 100 + 2 x 16 -> 136 (a multiple of 8), 130 + 32 -> 168


def test_default_tile_of_a_2048_image_is_its_border_only():
    from seglab.inference.engine import DEFAULT_TILE_SIZE
    from seglab.inference.tiling import make_grid, plane_borders

    grid = make_grid(2048, 2048, DEFAULT_TILE_SIZE, 112, 16, plane_borders(2048, 2048, 112, 16, None))
    assert grid.n_tiles == 1 and (grid.tile_h, grid.tile_w) == (2080, 2080)
