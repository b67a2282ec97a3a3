"""Out-of-core segmentation (seglab.inference.lazy): a large image block by block vs in memory."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from seglab.errors import SeglabError
from seglab.inference.engine import segment
from seglab.inference.tiling import tile_context
from seglab.inference.lazy import (
    WrittenEvent, block_margin, context_margin, inner_tile_size, is_lazy, segment_lazy, segment_lazy_iter,
)
from seglab.models.base import ModelConfig, Prediction
from seglab.models.unet import UNetModel
from tests_helpers import threshold_net, drain


def disc_grid(shape, spacing=24, rmin=4, rmax=9, seed=0, drop=0.2):
    """Discs on a jittered grid (never touching), fast for large images, with their labels."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    k = 0
    for cy in range(spacing // 2, shape[0] - spacing // 2, spacing):
        for cx in range(spacing // 2, shape[1] - spacing // 2, spacing):
            if rng.random() < drop:
                continue
            r = int(rng.integers(rmin, rmax + 1))
            y, x = cy + int(rng.integers(-2, 3)), cx + int(rng.integers(-2, 3))
            yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
            k += 1
            lab[y - r:y + r + 1, x - r:x + r + 1][yy ** 2 + xx ** 2 <= r * r] = k
    img = np.clip((lab > 0) * 180.0 + rng.normal(30, 6, shape), 0, 255).astype(np.uint8)
    return img, lab


def _model(context=24):
    cfg = ModelConfig(name="t", family="unet", tile_context=context,
                      thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5})
    return UNetModel(cfg, network=threshold_net())


def _zarr(tmp_path, img, chunks=(512, 512)):
    z = zarr.create_array(store=str(tmp_path / "in.zarr"), shape=img.shape, chunks=chunks, dtype=img.dtype)
    z[:] = img
    return zarr.open_array(str(tmp_path / "in.zarr"), mode="r")


def _n_pairs(a, b) -> int:
    """Number of distinct (a, b) value pairs."""
    return int(np.unique((np.asarray(a, np.int64) << 32) | np.asarray(b, np.int64)).size)


def _components_match_ids(out: np.ndarray) -> tuple[int, int, int]:
    """(foreground pieces, ids, distinct (piece, id) pairs): all equal when every object is one
    piece with one id (objects never touch in these images)."""
    pieces, n = ndi.label(out > 0)
    fg = out > 0
    pairs = _n_pairs(pieces[fg], out[fg])
    return n, len(np.unique(out[fg])), pairs


def test_blockwise_connected_components_equal_whole_image(tmp_path):
    """The stitching alone, exactly: block-wise connected components == whole-image ones."""
    img, _ = disc_grid((3000, 2500))
    lazy = _zarr(tmp_path, img)

    def block_fn(x, p):
        yield None
        lab, n = ndi.label(x[0] > 0.5)
        return Prediction(lab, {"label": np.arange(1, n + 1), "score": np.ones(n)})

    res = segment_lazy(_model(), lazy, tmp_path / "out.zarr", block_size=512, margin=32, block_fn=block_fn,
                       diameter=None, device="cpu")
    out = np.asarray(res.labels)
    assert out.dtype == np.uint32 and out.shape == img.shape
    assert res.blocks == 6 * 5
    ref, n = ndi.label(np.asarray(res.labels) > 0)
    assert n > 9000 and res.n_objects == n
    pairs = _n_pairs(ref.ravel(), out.ravel())
    assert pairs == n + 1  # one id per whole-image component and vice versa
    # the table: areas and centroids of the whole objects
    t = res.table
    area = np.bincount(out.ravel())[t["label"]]
    np.testing.assert_array_equal(t["area"], area)
    rows = np.bincount(out.ravel(), weights=np.repeat(np.arange(out.shape[0], dtype=float), out.shape[1]))
    np.testing.assert_allclose(t["centroid_y"], rows[t["label"]] / area, atol=1e-6)
    assert not (tmp_path / "out.zarr.partial").exists()


def test_out_of_core_matches_in_memory_crops_object_for_object(tmp_path):
    """A fixed-threshold U-Net-family model on a 3000 x 2500 image in blocks of 512 px against the
    untiled in-memory run on crops around block seams: objects matched at IoU >= 0.9, one id each."""
    img, truth = disc_grid((3000, 2500), seed=1)
    model = _model()
    res = segment_lazy(model, _zarr(tmp_path, img), tmp_path / "out.zarr", block_size=512, diameter=None,
                       device="cpu", amp=False)
    out = np.asarray(res.labels)
    n_pieces, n_ids, pairs = _components_match_ids(out)
    assert n_pieces == n_ids == pairs == res.n_objects  # no object split at a seam, no id used twice
    assert res.n_objects > 0.97 * truth.max()
    # seam-crossing true objects each lie within one predicted id
    seams = np.zeros(img.shape, bool)
    seams[511:513, :] = seams[:, 511:513] = seams[1023:1025, :] = seams[:, 1535:1537] = True
    crossing = np.unique(truth[seams & (truth > 0)])
    assert crossing.size > 50
    for t in crossing[:200]:
        ids = np.unique(out[truth == t])
        assert (ids > 0).sum() == 1, t
    for cy, cx in [(512, 512), (1024, 1536), (2560, 2048), (300, 2100)]:
        ys = slice(max(0, cy - 350), cy + 350)
        xs = slice(max(0, cx - 350), cx + 350)
        crop = img[ys, xs]
        ref = segment(model, crop, tile_size=2048, diameter=None, amp=False, device="cpu").labels
        got = out[ys, xs]
        inner = [i for i in np.unique(ref) if i and not _touches_border(ref == i, 3)]
        assert len(inner) > 200
        for i in inner:
            m = ref == i
            ids, counts = np.unique(got[m], return_counts=True)
            j = ids[np.argmax(counts)]
            assert j > 0
            g = got == j
            iou = (m & g).sum() / (m | g).sum()
            assert iou >= 0.9, (cy, cx, i, iou)


def _touches_border(mask, width):
    return mask[:width].any() or mask[-width:].any() or mask[:, :width].any() or mask[:, -width:].any()


def test_ids_joined_when_two_finished_blocks_gave_one_object_two_ids(tmp_path):
    """A U-shaped object whose arms reach into two blocks of the first row and join below the
    margin: the first row gives the arms two ids, the second row's block joins them (relabelled)."""
    img = np.zeros((1024, 1024), np.uint8)
    img[300:900, 480:500] = 200   # left arm, crosses the vertical seam at x = 512? no: left of it
    img[300:900, 530:550] = 200   # right arm (other block column)
    img[880:900, 480:550] = 200   # the bottom of the U, far below the first row's margin
    img[100:120, 100:120] = 200   # an unrelated object

    def block_fn(x, p):
        yield None
        lab, n = ndi.label(x[0] > 0.5)
        return Prediction(lab, {"label": np.arange(1, n + 1), "score": np.ones(n)})

    res = segment_lazy(_model(), img.view(np.ndarray)[None][0], tmp_path / "u.zarr", block_size=512, margin=16,
                       block_fn=block_fn, diameter=None, device="cpu")
    out = np.asarray(res.labels)
    assert res.merged == 1
    assert len(np.unique(out[img > 0])) == 2
    assert res.n_objects == 2
    big = res.table["area"].max()
    assert big == (img[300:900] > 0).sum()


def test_cancel_leaves_no_store(tmp_path):
    img, _ = disc_grid((1100, 1100))
    gen = segment_lazy_iter(_model(), _zarr(tmp_path, img), tmp_path / "c.zarr", block_size=512, diameter=None,
                            device="cpu", amp=False)
    stages = [next(gen).stage for _ in range(6)]
    assert "block" in stages
    assert (tmp_path / "c.zarr.partial").exists()
    gen.close()
    assert not (tmp_path / "c.zarr.partial").exists() and not (tmp_path / "c.zarr").exists()


def test_progress_fraction_increases_to_one(tmp_path):
    img, _ = disc_grid((700, 1100))
    events = []
    gen = segment_lazy_iter(_model(), _zarr(tmp_path, img), tmp_path / "p.zarr", block_size=512, diameter=None,
                            device="cpu", amp=False)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            res = stop.value
            break
    fr = [e.fraction for e in events]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    assert res.n_objects > 500


def test_each_block_is_announced_once_it_is_in_the_store(tmp_path):
    """Blocks are written by a helper thread while the next one is segmented; a WrittenEvent per
    block says when a viewer may re-read the store: by then the block's objects are there."""
    img, _ = disc_grid((700, 1100))
    gen = segment_lazy_iter(_model(), _zarr(tmp_path, img), tmp_path / "w.zarr", block_size=512, diameter=None,
                            device="cpu", amp=False)
    snapshots, store = [], None
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            res = stop.value
            break
        store = getattr(ev, "labels", store)
        if isinstance(ev, WrittenEvent):
            snapshots.append(np.asarray(store[:]) > 0)
    final = np.asarray(res.labels[:]) > 0
    cores = [(slice(y, y + 512), slice(x, x + 512)) for y in (0, 512) for x in (0, 512, 1024)]
    assert len(snapshots) == len(cores) == res.blocks
    for k, snap in enumerate(snapshots):
        for core in cores[: k + 1]:  # raster order: every block announced so far is complete
            np.testing.assert_array_equal(snap[core], final[core])
        if k + 1 < len(cores):
            assert not snap[cores[k + 1]].any()  # and nothing of the next one yet


def test_stack_ids_unique_across_planes(tmp_path):
    a, _ = disc_grid((600, 700), seed=2)
    b, _ = disc_grid((600, 700), seed=3)
    stack = np.stack([a, b])
    res = segment_lazy(_model(), _zarr(tmp_path, stack, chunks=(1, 256, 256)), tmp_path / "s.zarr", axes="ZYX",
                       block_size=256, diameter=None, device="cpu", amp=False)
    out = np.asarray(res.labels)
    assert out.shape == stack.shape
    ids0, ids1 = set(np.unique(out[0])) - {0}, set(np.unique(out[1])) - {0}
    assert ids0 and ids1 and not ids0 & ids1
    assert set(res.table["plane"].tolist()) == {0, 1}


def test_helpers_and_errors(tmp_path):
    assert is_lazy(zarr.zeros((4, 4))) and not is_lazy(np.zeros((4, 4)))
    m = _model()
    # the segmented margin holds two object diameters; the window read around it the tile context
    assert block_margin(m, 1.0) >= 32 and block_margin(m, 0.5) >= 64
    assert context_margin(m, 1.0) > tile_context(m) and context_margin(m, 0.5) > 2 * tile_context(m)
    # a 4096 block with its margin takes 4 x 4 tiles, as its core would in memory
    t = inner_tile_size((4096 + 256, 4096 + 256), (4096, 4096), 1.0, 1024, 16)
    assert t == 1088
    with pytest.raises(SeglabError, match="block size"):
        segment_lazy(m, zarr.zeros((100, 100)), tmp_path / "x.zarr", block_size=8, diameter=None)
    with pytest.raises(SeglabError, match="axes"):
        segment_lazy(m, zarr.zeros((100, 100)), tmp_path / "x.zarr", axes="ZYX", diameter=None)


def _cc_block(x, p):
    """Connected components of a normalised window: a block segmenter with known answers."""
    yield None
    lab, n = ndi.label(x[0] > 0.5)
    return Prediction(lab, {"label": np.arange(1, n + 1), "score": np.ones(n)})


def test_more_than_65535_objects_get_unique_uint32_ids(tmp_path):
    img, truth = disc_grid((2700, 2700), spacing=10, rmin=2, rmax=2, drop=0.05, seed=4)
    assert truth.max() > 65_535  # discs 1 px apart at least: never touching
    res = segment_lazy(_model(), _zarr(tmp_path, img, chunks=(1024, 1024)), tmp_path / "many.zarr",
                       block_size=1024, margin=16, block_fn=_cc_block, diameter=None, device="cpu")
    out = np.asarray(res.labels)
    assert out.dtype == np.uint32 and res.n_objects == truth.max() and out.max() == truth.max()
    assert _n_pairs(truth.ravel(), out.ravel()) == truth.max() + 1


def test_dask_input_gives_the_zarr_input_result(tmp_path):
    import dask.array as da

    img, _ = disc_grid((900, 1300), seed=6)
    a = segment_lazy(_model(), _zarr(tmp_path, img), tmp_path / "a.zarr", block_size=512, block_fn=_cc_block,
                     diameter=None, device="cpu")
    b = segment_lazy(_model(), da.from_array(img, chunks=(300, 300)), tmp_path / "b.zarr", block_size=512,
                     block_fn=_cc_block, diameter=None, device="cpu")
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))


def test_diameter_auto_from_the_pixel_size(tmp_path):
    """A calibrated image and a model that records its training pixel size: no estimate, the
    ratio of the pixel sizes, recorded in the result."""
    img, _ = disc_grid((600, 500), spacing=56, rmin=14, rmax=17, seed=7)
    cfg = ModelConfig(name="t", family="unet", tile_context=24, object_diameter=16.0,
                      auto_rescale={"pixel_size_um": 0.5},
                      thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5})
    model = UNetModel(cfg, network=threshold_net())
    events, res = drain(segment_lazy_iter(model, _zarr(tmp_path, img), tmp_path / "p.zarr", block_size=512,
                                          diameter="auto", pixel_size=0.25, device="cpu", amp=False))
    assert not any(e.stage == "estimate" for e in events)
    assert res.scale_factor == pytest.approx(0.5) and res.diameter == pytest.approx(32.0) and res.pixel_size == 0.25
    assert np.asarray(res.labels).shape == img.shape and res.n_objects > 0


def test_diameter_auto_estimated_once_and_applied_to_every_block(tmp_path):
    from seglab.inference.diameter import auto_factor

    """Discs of about 32 px for a model of 16 px objects: "auto" finds the size on a few windows,
    every block is rescaled by the same factor, and the objects come out whole at full size."""
    img, truth = disc_grid((1400, 1300), spacing=56, rmin=14, rmax=17, seed=7)
    cfg = ModelConfig(name="t", family="unet", tile_context=24, object_diameter=16.0,
                      thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5})
    model = UNetModel(cfg, network=threshold_net())
    gen = segment_lazy_iter(model, _zarr(tmp_path, img), tmp_path / "d.zarr", block_size=512, diameter="auto",
                            device="cpu", amp=False)
    events, res = drain(gen)
    assert any(e.stage == "estimate" for e in events)
    fr = [e.fraction for e in events]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    true_d = float(np.median(2 * np.sqrt(np.bincount(truth.ravel())[1:] / np.pi)))
    assert res.diameter == pytest.approx(true_d, rel=0.25)
    assert res.scale_factor == pytest.approx(auto_factor(16.0, res.diameter))  # as "auto" in memory
    assert res.scale_factor < 0.8
    assert 16.0 <= res.diameter * res.scale_factor <= 1.25 * 16.0 + 1e-6
    out = np.asarray(res.labels)
    n_pieces, n_ids, pairs = _components_match_ids(out)
    assert n_pieces == n_ids == pairs and abs(res.n_objects - truth.max()) <= 0.03 * truth.max()
    assert np.median(res.table["area"]) == pytest.approx(np.median(np.bincount(truth.ravel())[1:]), rel=0.2)


def test_blocks_cost_the_network_about_what_their_cores_cost_in_memory(tmp_path):
    """A block's tiles take their context from the real pixels read around it, not from a reflected
    margin around the margin: the network sees about as many pixels as in memory (4 blocks with
    seams: 1.057x here; reflecting each block's window instead: 1.12x)."""
    img, _ = disc_grid((2048, 2048), seed=7)
    model = _model()
    seen = []
    real = model.forward_tiles_iter

    def counting(batch):
        seen.append(int(np.prod(batch.shape)))
        return real(batch)

    model.forward_tiles_iter = counting
    mem = segment(model, img, tile_size=1024, diameter=None, amp=False, device="cpu")
    in_memory, seen[:] = sum(seen), []
    res = segment_lazy(model, _zarr(tmp_path, img), tmp_path / "n.zarr", block_size=1024, tile_size=1024,
                       diameter=None, device="cpu", amp=False)
    assert res.blocks == 4 and abs(res.n_objects - mem.n_objects) <= 2
    assert sum(seen) / in_memory < 1.08


@pytest.mark.parametrize("block_size", [1024, 512])
def test_artifact_line_at_the_edge_is_mended_as_in_memory(tmp_path, block_size):
    """A white column at the right edge and a black row at the top (a camera's artifact lines) are
    mended block by block as the in-memory path mends them: no objects along those edges."""
    img, _ = disc_grid((700, 900), seed=8)
    img[:, -1] = 255
    img[0, :] = 0
    model = _model()
    mem = segment(model, img, diameter=None, device="cpu", amp=False).labels
    plain = segment(model, np.ascontiguousarray(img[1:, :-1]), diameter=None, device="cpu", amp=False).labels
    assert mem.max() > 0 and not mem[:, -1].any()
    assert _n_pairs(mem[1:, :-1], plain) == _n_pairs(plain, plain)  # the same objects as without the lines
    res = segment_lazy(model, _zarr(tmp_path, img, chunks=(256, 256)), tmp_path / "out.zarr",
                       block_size=block_size, diameter=None, device="cpu", amp=False)
    out = np.asarray(res.labels)
    assert _n_pairs(out, mem) == _n_pairs(mem, mem) and not out[:, -1].any()


def test_brightfield_padding_is_filled_out_of_core_as_in_memory(tmp_path):
    """A grey model that fills black padding beside a bright background (``fill_black:
    "brightfield"``, the grey built-ins) does so out of core too, with the same percentiles:
    the objects match the in-memory run's; left black they would not."""
    from seglab.metrics import evaluate
    from tests_helpers import cells_image

    img = np.pad(np.tile(cells_image(True, (96, 96)), (3, 3)), 64)  # dark cells on bright, black around
    cfg = ModelConfig(name="t", family="unet", tile_context=24,
                      normalization={"kind": "percentile", "low": 1.0, "high": 99.8, "fill_black": "brightfield"},
                      thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5})
    model = UNetModel(cfg, network=threshold_net(invert=True))
    ref = segment(model, img, diameter=None, device="cpu", amp=False).labels
    res = segment_lazy(model, _zarr(tmp_path, img), tmp_path / "out.zarr", block_size=128, diameter=None,
                       device="cpu", amp=False)
    assert ref.max() >= 27 and not ref[:60].any()  # the 27 cells, nothing in the black
    m = evaluate([(ref, np.asarray(res.labels))], thresholds=(0.9,))["thresholds"]["0.90"]
    assert m["fp"] == m["fn"] == 0


def _debris_field() -> np.ndarray:
    from tests_helpers import nuclei_field

    return np.tile(nuclei_field((256, 256), n=30, seed=1, debris=3), (5, 5))[:1100, :1100].copy()


def _sparse_field() -> np.ndarray:
    from tests_helpers import nuclei_field

    return nuclei_field((1100, 1100), n=4, seed=3)


@pytest.mark.parametrize("rule, image, matters", [
    # lowered past the debris: the dimmer nuclei are found only with the rule
    ("bright_outliers", _debris_field, lambda ref, without: ref.max() > 1.4 * without.max()),
    # raised to the few nuclei's bright end: without it the noise's specks become objects
    ("sparse_objects", _sparse_field, lambda ref, without: 1 <= ref.max() <= 4 < without.max()),
])
def test_white_point_rules_out_of_core_as_in_memory(tmp_path, rule, image, matters):
    """``bright_outliers`` and ``sparse_objects`` (the grey built-ins): out of core the high
    percentile moves from the same strided plane as in memory (here 1.2 M pixels: every 2nd row and
    column), so the labels are alike; with the plain percentiles they differ."""
    import copy

    from seglab.metrics import evaluate

    img = image()
    cfg = ModelConfig(name="t", family="unet", tile_context=24,
                      normalization={"kind": "percentile", "low": 1.0, "high": 99.8, rule: True},
                      thresholds={"prob_thresh": 0.001, "seed_thresh": 0.001, "min_area": 5})
    model = UNetModel(cfg, network=threshold_net())  # foreground where the normalised plane passes ~0.15
    plain = copy.deepcopy(model)
    plain.config.normalization = {**cfg.normalization, rule: False}
    ref = segment(model, img, diameter=None, device="cpu", amp=False).labels
    res = segment_lazy(model, _zarr(tmp_path, img), tmp_path / "out.zarr", block_size=512, diameter=None,
                       device="cpu", amp=False)
    without = segment(plain, img, diameter=None, device="cpu", amp=False).labels
    assert matters(ref, without)
    m = evaluate([(ref, np.asarray(res.labels))], thresholds=(0.9,))["thresholds"]["0.90"]
    assert m["fp"] == m["fn"] == 0
