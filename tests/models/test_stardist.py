import numpy as np
import pytest
import torch

from seglab.evaluation import AnnotatedImage, predict_maps
from seglab.inference.engine import run_to_end, predict_maps_iter, segment
from seglab.models.families import family_class
from seglab.models.star_geometry import polygon_coords, radial_distances
from seglab.models.star_geometry import render_polygons
from seglab.models.stardist import StarDistModel
from seglab.models.storage import load_model, new_model, save_model
from seglab.training.data import Augment, PatchSampler, make_pair
from seglab.training.loop import TrainSettings, train_iter
from tests_helpers import blob_image

TINY = {"widths": [4, 8, 16], "convs_per_block": 1, "n_rays": 16, "grid": 2, "head_width": 8}


@pytest.fixture
def tiny_star():
    return new_model("stardist", "tiny-star", architecture=dict(TINY), tile_context=16)


def test_family_is_registered_and_round_trips(tiny_star, tmp_path):
    assert family_class("stardist") is StarDistModel
    folder = save_model(tiny_star, tmp_path / "m")
    again = load_model(folder)
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        np.testing.assert_allclose(again.forward_tiles(x).numpy(), tiny_star.forward_tiles(x).numpy(), atol=1e-5)


def test_network_output_is_subsampled_by_the_grid(tiny_star):
    with torch.no_grad():
        out = tiny_star.forward_tiles(torch.randn(2, 1, 64, 48))
    assert out.shape == (2, 17, 32, 24)
    assert float(out[:, 0].min()) >= 0 and float(out[:, 0].max()) <= 1  # probability
    assert float(out[:, 1:].min()) >= 0  # distances


def test_engine_stitches_subsampled_maps_of_odd_sized_planes(tiny_star):
    x = np.random.default_rng(0).random((1, 75, 61)).astype(np.float32)
    maps = run_to_end(predict_maps_iter(tiny_star, x, tile_size=1024, device=torch.device("cpu"), amp=False))
    assert maps.shape == (17, 38, 31)


@pytest.mark.parametrize("tile", [1024, 32])
def test_engine_maps_are_the_activated_maps_of_forward_tiles(tiny_star, tile, monkeypatch):
    """The engine stitches the head's maps before their activation and activates the plane's float32
    maps once (``activate_maps``): the very same values as stitching ``forward_tiles``' activated
    maps of every tile, whole or tiled, in bfloat16 or float32."""
    tiny_star.network.eval()
    x = np.random.default_rng(1).random((1, 64, 96)).astype(np.float32)

    def maps(amp):
        return run_to_end(predict_maps_iter(tiny_star, x, tile_size=tile, device=torch.device("cpu"), amp=amp))

    def activated_tiles(self, batch):  # what the engine stitched before: each tile's activated maps
        return self.forward_tiles(batch)
        yield  # a generator

    now = {amp: maps(amp) for amp in (False, True)}
    monkeypatch.setattr(StarDistModel, "forward_tiles_iter", activated_tiles)
    monkeypatch.setattr(StarDistModel, "activate_maps", lambda self, m: None)
    for amp in (False, True):
        np.testing.assert_array_equal(now[amp], maps(amp))
    assert now[False].min() >= 0 and now[False][0].max() <= 1


def test_targets_are_the_subsampled_probability_and_distances(tiny_star):
    yy, xx = np.mgrid[:64, :64]
    lab = (((yy - 32) ** 2 + (xx - 30) ** 2) <= 12**2).astype(np.int32)
    t = tiny_star.make_targets(lab)
    assert t["prob"].shape == (32, 32) and t["dist"].shape == (16, 32, 32)
    assert t["prob"][16, 15] == pytest.approx(1.0)
    np.testing.assert_allclose(t["dist"][:, 16, 15], 12, atol=1.0)
    assert t["prob"][0, 0] == 0 and np.all(t["dist"][:, 0, 0] == 0)


def test_training_patches_measure_objects_cut_by_the_patch_border(tiny_star):
    """With the target margin, distances near a patch border reach beyond it."""
    img, lab = blob_image((200, 200), n=12, seed=1)
    pair = make_pair(img, lab, 1, tiny_star.config.normalization)
    sampler = PatchSampler([pair], 32, Augment(flips=False, scale_range=(1.0, 1.0), intensity=False, noise_std=0),
                           seed=0)
    beyond = 0
    for _ in range(20):
        _, t, _ = sampler.batch(1, tiny_star)
        d = t["dist"][0].numpy()
        # a distance larger than the way out of the patch along that ray can only come from context
        beyond += int((d[0, :, -1] > 2.5).sum())  # ray 0 points along +x from the last column
    assert beyond > 0


def test_render_polygons_higher_score_wins_and_ids_follow_score():
    pts = np.array([[20.0, 20.0], [20.0, 30.0]])
    coords = polygon_coords(pts, np.full((2, 32), 8.0))
    lab = render_polygons(coords, (40, 50))
    assert lab[20, 20] == 1 and lab[20, 30] == 2
    assert lab[20, 25] == 1  # the overlap goes to the first (best) polygon
    assert lab[0, 0] == 0


def test_postprocess_keeps_one_polygon_per_object_and_gives_shapes(tiny_star):
    # hand-made maps: two blobs of probability with exact radial distances
    h, w = 40, 60
    yy, xx = np.mgrid[:h, :w] * 2  # grid positions in plane pixels
    lab = np.zeros((2 * h, 2 * w), dtype=np.int32)
    fy, fx = np.mgrid[: 2 * h, : 2 * w]
    lab[(fy - 30) ** 2 + (fx - 30) ** 2 <= 100] = 1
    lab[(fy - 40) ** 2 + (fx - 80) ** 2 <= 144] = 2
    prob = np.zeros((h, w), dtype=np.float32)
    for cy, cx, r in [(30, 30, 10), (40, 80, 12)]:
        prob = np.maximum(prob, np.clip(1 - np.hypot(yy - cy, xx - cx) / r, 0, None))
    maps = np.concatenate([prob[None], radial_distances(lab, 16, 2)])
    pred = tiny_star.postprocess(maps, {"prob_thresh": 0.3, "nms_thresh": 0.3}, shape=lab.shape)
    assert pred.labels.max() == 2 and len(pred.table["label"]) == 2
    shapes = pred.extras["shapes"]
    assert shapes["type"] == "polygon" and len(shapes["data"]) == 2
    assert list(shapes["label"]) == [1, 2]
    assert shapes["data"][0].shape == (16, 2)
    # scores are the centre probabilities, areas close to the discs'
    assert np.all(pred.table["score"] > 0.3)
    areas = sorted(pred.table["area"])
    assert abs(areas[0] - np.pi * 100) < 40 and abs(areas[1] - np.pi * 144) < 50


def test_engine_maps_are_channel_last_and_read_alike_either_way(tiny_star):
    """StarDist's maps come back as a view of (h, w, K) memory; its candidates are the same from a
    planar copy of the same maps."""
    x = np.random.default_rng(1).random((1, 75, 61)).astype(np.float32)
    maps = run_to_end(predict_maps_iter(tiny_star, x, tile_size=1024, device=torch.device("cpu"), amp=False))
    assert np.moveaxis(maps, 0, -1).flags.c_contiguous
    planar = np.ascontiguousarray(maps)
    thresh = float(np.median(maps[0]))
    for a, b in zip(tiny_star.candidates(maps, thresh), tiny_star.candidates(planar, thresh)):
        assert len(a) > 0
        np.testing.assert_array_equal(a, b)
    pa = tiny_star.postprocess(maps, {"prob_thresh": thresh, "nms_thresh": 0.3}, shape=(75, 61))
    pb = tiny_star.postprocess(planar, {"prob_thresh": thresh, "nms_thresh": 0.3}, shape=(75, 61))
    np.testing.assert_array_equal(pa.labels, pb.labels)


def test_tiled_equals_untiled(tiny_star):
    # a trained-looking network is not needed: any weights give maps; the test is about stitching and NMS.
    # Untrained maps are nearly flat, so the probability threshold is their 90th percentile, whatever
    # the random weights are (they depend on which tests ran before)
    img, lab = blob_image((150, 170), n=10, seed=4)
    maps = predict_maps(tiny_star, AnnotatedImage(img, lab), device="cpu", amp=False)
    kw = dict(device="cpu", amp=False, thresholds={"prob_thresh": float(np.quantile(maps[0], 0.9)), "nms_thresh": 0.3})
    whole = segment(tiny_star, img, tile_size=1024, **kw)
    tiled = segment(tiny_star, img, tile_size=48, **kw)
    assert whole.n_objects > 0
    np.testing.assert_array_equal(tiled.labels, whole.labels)


def test_short_training_lowers_the_loss(tiny_star):
    pairs = [make_pair(*blob_image((96, 96), n=8, seed=s), 1, tiny_star.config.normalization) for s in range(3)]
    sampler = PatchSampler(pairs, 64, Augment(), seed=0)
    events = list(train_iter(tiny_star, sampler, TrainSettings(steps=60, batch_size=4, lr=1e-2, warmup_steps=5),
                             device="cpu", report_every=10))
    assert events[-1].loss < 0.8 * events[0].loss


def test_no_candidates_give_empty_labels_and_no_shapes(tiny_star):
    maps = np.zeros((17, 20, 30), dtype=np.float32)
    pred = tiny_star.postprocess(maps, {"prob_thresh": 0.5, "nms_thresh": 0.4}, shape=(40, 59))
    assert pred.labels.shape == (40, 59) and pred.labels.max() == 0
    assert len(pred.table["label"]) == 0 and pred.extras["shapes"]["data"] == []


def test_encoder_levels_follow_the_encoder_from_the_input(tiny_star):
    levels = tiny_star.encoder_levels()
    assert levels == [f"encoders.{i}." for i in range(len(TINY["widths"]))]
    first = [n for n, _ in tiny_star.network.named_parameters() if n.startswith(levels[0])]
    assert first and tiny_star.network.get_parameter(first[0]).shape[1] == tiny_star.config.input_channels
