"""Object size: measuring it, parsing ``diameter``, the ``auto`` estimate, and segmenting with it (issue 11)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from seglab.errors import SeglabError
from seglab.inference import diameter as dm
from seglab.inference.engine import run_to_end, segment
from seglab.inference.rescale import resize_image, resize_labels, scaled_shape
from seglab.models.registry import get_model
from seglab.samples import load_sample
from tests_helpers import disc_grid


# ---- parsing and factors --------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [("auto", "auto"), (" AUTO ", "auto"), ("none", None), (None, None),
                                             ("0", None), (0, None), ("12.5", 12.5), (30, 30.0)])
def test_parse_diameter(value, expected):
    assert dm.parse_diameter(value) == expected


@pytest.mark.parametrize("value", ["big", -3, "nan", float("inf"), True, [10]])
def test_parse_diameter_refuses(value):
    with pytest.raises(SeglabError, match="diameter"):
        dm.parse_diameter(value)


def test_scale_factor_and_band():
    assert dm.scale_factor(16.0, 32.0) == pytest.approx(0.5)
    assert dm.scale_factor(16.0, 8.0) == pytest.approx(2.0)
    assert dm.scale_factor(16.0, 17.0) == 1.0  # within the no-rescale band
    assert dm.scale_factor(None, 32.0) == 1.0 and dm.scale_factor(16.0, None) == 1.0
    # auto: tolerated sizes untouched, others brought to the model's size
    assert dm.auto_factor(16.0, 20.0) == 1.0
    assert dm.auto_factor(16.0, 64.0) == pytest.approx(20.0 / 64.0)  # large: to 1.25x the model's size
    assert dm.auto_factor(16.0, 8.0) == pytest.approx(2.0)  # small: to the model's size
    assert dm.auto_factor(16.0, 64.0, (0.75, 1.1)) == pytest.approx(16.0 * 1.1 / 64.0)  # aim within the band
    assert dm.auto_factor(16.0, 1.3) == dm.AUTO_MAX_ENLARGE  # specks: not enlarged 12x


@pytest.mark.parametrize("diameter", [0.001, 1e-300, 1e6, 16.0 * 17])
def test_a_diameter_beyond_the_rescale_range_is_refused(diameter):
    """A tiny diameter used to enlarge without limit (terabytes), a huge one to shrink the image to a pixel."""
    with pytest.raises(SeglabError, match="object size 16 px .* give 1 to 256 px") as e:
        dm.scale_factor(16.0, diameter)
    assert str(e.value).startswith(f"diameter {diameter:g} px is too far")
    assert dm.scale_factor(16.0, 1.0) == 16.0 and dm.scale_factor(16.0, 256.0) == pytest.approx(1 / 16)


def test_auto_never_shrinks_beyond_the_rescale_range():
    assert dm.auto_factor(16.0, 1e5) == pytest.approx(1 / dm.MAX_RESCALE)


@pytest.mark.parametrize("factor", [1e-3, 100.0])
def test_scaled_plane_iter_refuses_a_factor_beyond_the_range(factor):
    gen = dm.scaled_plane_iter(get_model("unet-nuclei"), np.zeros((1, 32, 32), np.float32), {}, factor)
    with pytest.raises(SeglabError, match="cannot rescale by"):
        next(gen)


def test_auto_aim_is_read_at_each_call(monkeypatch):
    """The scale benchmark's ``--aim`` study sets the module's AUTO_AIM; an explicit ``aim`` wins."""
    monkeypatch.setattr(dm, "AUTO_AIM", (1.0, 1.0))
    assert dm.auto_factor(16.0, 64.0) == pytest.approx(16.0 / 64.0)
    assert dm.auto_factor(16.0, 64.0, aim=(1.0, 1.5)) == pytest.approx(24.0 / 64.0)


def test_tolerated_range_follows_the_training_sizes():
    model = get_model("unet-nuclei")
    assert dm.tolerated_range(model) == dm.AUTO_TOLERANCE  # the built-ins trained on 8-31 px: wider
    model.config.training["object_diameter_range"] = [14.0, 20.0]  # a model trained on one size
    lo, hi = dm.tolerated_range(model)
    assert lo == pytest.approx(14.0 / model.config.object_diameter) and hi == pytest.approx(20.0 / model.config.object_diameter)


def test_a_model_measured_for_auto_brings_its_own_rule():
    """``auto_rescale`` in a config replaces the default tolerance and aim for that model only."""
    model = get_model("unet-nuclei")
    assert dm.model_aim(model) is None  # the grey built-ins use the defaults
    model.config.training["object_diameter_range"] = [14.0, 20.0]
    model.config.auto_rescale = {"tolerance": [0.9, 1.6], "aim": [1.2, 1.3], "measured": "a test"}
    assert dm.tolerated_range(model) == (0.9, 1.6)  # measured: not narrowed to the training sizes
    assert dm.model_aim(model) == (1.2, 1.3)


def test_auto_follows_the_models_own_rule():
    """Discs at 0.7x the model's size: left alone by the default tolerance (0.6-1.5), brought to
    the model's own aim (1.2x) when its config says that it does best there."""
    model = get_model("unet-nuclei")
    md = model.config.object_diameter
    img, _ = disc_grid(0.7 * md, n=8)
    seg = segment(model, img, device="cpu")
    assert seg.scale_factor == 1.0 and seg.diameter / md < 0.9
    model.config.auto_rescale = {"tolerance": [0.9, 1.5], "aim": [1.2, 1.25]}
    seg = segment(model, img, device="cpu")
    assert seg.scale_factor * seg.diameter / md == pytest.approx(1.2, rel=0.02)
    assert seg.labels.shape == img.shape


def test_calibrated_diameter_from_pixel_sizes():
    model = get_model("unet-nuclei")
    md = model.config.object_diameter
    assert dm.calibrated_diameter(model, 0.5) is None  # the grey built-ins record no pixel size
    model.config.auto_rescale = {"pixel_size_um": 0.25}
    assert dm.calibrated_diameter(model, 0.5) == pytest.approx(md / 2)  # pixels twice as large: objects half
    assert dm.calibrated_diameter(model, 0.125) == pytest.approx(2 * md)
    assert dm.calibrated_diameter(model, None) is None
    assert dm.calibrated_diameter(model, 0.25 * 2.54e4 / 72) is None  # a 72 dpi "calibration": not believed
    est = dm.calibrated_estimate(model, 0.5)
    assert est.factor == pytest.approx(2.0) and est.pixel_size == 0.5
    assert dm.calibrated_estimate(model, 0.26).factor == 1.0  # within the no-rescale band


def test_auto_takes_a_calibrated_images_pixel_size(monkeypatch):
    """With the image's and the model's pixel sizes known, ``auto`` rescales by their ratio and
    runs no estimate; a given diameter or ``None`` still win; without a pixel size it estimates."""
    model = get_model("unet-nuclei")
    model.config.auto_rescale = {"pixel_size_um": 0.25}
    img, _ = disc_grid(0.5 * model.config.object_diameter, n=8)
    calls = []
    real = dm.estimate_diameter_iter

    def counting(*a, **k):
        calls.append(1)
        return (yield from real(*a, **k))

    monkeypatch.setattr(dm, "estimate_diameter_iter", counting)
    seg = segment(model, img, device="cpu", pixel_size=0.5)
    assert not calls and seg.scale_factor == pytest.approx(2.0) and seg.pixel_size == 0.5
    assert seg.diameter == pytest.approx(model.config.object_diameter / 2) and seg.labels.shape == img.shape
    assert segment(model, img, device="cpu", pixel_size=0.5, diameter=None).scale_factor == 1.0
    assert segment(model, img, device="cpu", pixel_size=0.5, diameter=16.0).pixel_size is None
    seg = segment(model, img, device="cpu")
    assert calls and seg.pixel_size is None


# ---- measuring ----------------------------------------------------------------------------------
def test_equivalent_and_median_diameters():
    lab = np.zeros((50, 50), np.int32)
    lab[0:10, 0:10] = 1  # touches the border
    lab[20:30, 20:40] = 2
    d = dm.equivalent_diameters(lab)
    np.testing.assert_allclose(d, 2 * np.sqrt(np.array([100, 200]) / np.pi))
    assert dm.equivalent_diameters(lab, exclude_border=True).size == 1
    small = np.zeros((10, 10), np.int32)
    small[2:4, 2:4] = 1  # 4 px
    big = np.zeros((100, 100), np.int32)
    big[10:30, 10:30] = 1
    big[50:70, 50:70] = 2  # 2 x 400 px
    assert dm.median_diameter([small, big]) == pytest.approx(2 * np.sqrt(400 / np.pi))
    # per pixel: the small image's object is shown 100 times as often per object by a patch sampler
    assert dm.median_diameter([small, big], [1.0, 1.0], per_pixel=True) == pytest.approx(2 * np.sqrt(4 / np.pi))
    assert dm.median_diameter([np.zeros((5, 5), int)]) is None


def test_measure_sees_through_fragments():
    """An object cut into pieces by the model is measured whole (the foreground measure)."""
    _, lab = disc_grid(60, n=3)
    cut = lab.copy()
    yy, xx = np.indices(lab.shape)
    for k in range(1, lab.max() + 1):  # quarter every disc around its centre
        cy, cx = ndi.center_of_mass(lab == k)
        quarter = (yy > cy).astype(int) * 2 + (xx > cx)
        cut[lab == k] = (k * 4 + quarter)[lab == k]
    pieces = np.median(dm.equivalent_diameters(cut, exclude_border=True))
    assert pieces < 35
    size, n = dm.measure(cut)
    assert size == pytest.approx(60, rel=0.3) and n >= dm.MIN_OBJECTS
    whole, _ = dm.measure(lab)
    assert whole == pytest.approx(60, rel=0.05)  # correct objects: the per-object median


# ---- the estimate ---------------------------------------------------------------------------------
def _estimate(model, image, **kw):
    return run_to_end(dm.estimate_image_iter(model, image, device="cpu", **kw))


@pytest.mark.parametrize("family, sizes", [("stardist-nuclei", [8, 16, 40, 80, 120]),
                                           ("unet-nuclei", [8, 120]), ("maskrcnn-nuclei", [8, 120])])
def test_estimate_on_discs_of_known_size(family, sizes):
    model = get_model(family)
    for d in sizes:
        img, lab = disc_grid(d)
        est = _estimate(model, img)
        true = float(np.median(dm.equivalent_diameters(lab)))
        assert est.diameter == pytest.approx(true, rel=0.15), (family, d, est.passes)


def test_estimate_on_a_real_sample_resized():
    model = get_model("stardist-nuclei")
    image, truth = load_sample("fluorescence")
    true = float(np.median(dm.equivalent_diameters(truth)))
    for factor in (1.0, 3.0):
        hw = scaled_shape(image.shape, factor)
        big = resize_image(image[None].astype(np.float32), hw)[0]
        est = _estimate(model, big)
        assert est.diameter == pytest.approx(true * factor, rel=0.2), (factor, est.passes)


@pytest.mark.parametrize("family", ["stardist-nuclei", "maskrcnn-nuclei"])
def test_brightfield_nuclei_are_not_taken_for_their_cells(family):
    """The brightfield sample: 20 px nuclei inside 100-150 px cells. Shrunk to the model's size the
    cells look like nuclei to it; the estimate must stay with the nuclei (it gave 96 px and 90 px
    before, shrinking the image x0.17 and losing most nuclei)."""
    model = get_model(family)
    image, truth = load_sample("brightfield")
    true = float(np.median(dm.equivalent_diameters(truth)))  # 20.4 px
    est = _estimate(model, image)
    assert est.diameter == pytest.approx(true, rel=0.3), est.passes
    # at most a slight shrink (it was x0.17); a diameter 30 % above the truth (26.5 px) is 1.6x
    # Mask R-CNN's 16.2 px and asks for x0.77
    assert est.factor >= 0.75


def test_fragment_cover_tells_fragments_from_objects_inside_larger_ones():
    big = np.zeros((100, 100), np.int32)
    yy, xx = np.indices(big.shape)
    big[(yy - 50) ** 2 + (xx - 50) ** 2 <= 40 ** 2] = 1  # one 80 px object at the coarse scale
    quarters = np.where(big > 0, 1 + (yy > 50) * 2 + (xx > 50), 0)  # cut into four at the fine scale
    nucleus = np.where((yy - 50) ** 2 + (xx - 50) ** 2 <= 10 ** 2, 1, 0)  # a 20 px object inside it
    cover, pieces = dm.fragment_cover(quarters, big, 30.0)
    assert cover > 0.9 and pieces == 4
    cover, pieces = dm.fragment_cover(nucleus, big, 30.0)
    assert cover < dm.FRAGMENT_COVER_SPLIT and pieces == 1
    assert dm.fragment_cover(quarters, big, 100.0) == (0.0, 0.0)  # nothing larger than 100 px


def test_estimate_without_objects_or_object_size():
    model = get_model("unet-nuclei")
    flat = np.random.default_rng(0).normal(100, 1, (128, 128)).astype(np.float32)
    est = _estimate(model, flat)
    assert est.factor == 1.0 and est.diameter is None  # nothing to measure: no rescaling
    model.config.object_diameter = None
    img, _ = disc_grid(40)
    assert _estimate(model, img).diameter is None


@pytest.mark.parametrize("name", ["stardist-nuclei", "unet-nuclei", "maskrcnn-nuclei"])
def test_constant_planes_give_no_size(name):
    """A blank plane (padding, a missing frame) or one of white noise (an empty field) has nothing to
    measure: the size model's reading of it (43 px for stardist-nuclei on a blank plane) must not
    rescale the image, nor a stack it is part of."""
    model = get_model(name)
    for blank in (np.zeros((256, 256), np.uint8), np.full((300, 200), 7, np.uint16)):
        seg = segment(model, blank)
        assert seg.diameter is None and seg.scale_factor == 1.0 and seg.n_objects == 0
    image, _ = load_sample("fluorescence")
    alone = segment(model, image)
    noise = np.random.default_rng(1).normal(30, 3, image.shape).round().astype(image.dtype)  # an empty field
    stack = segment(model, np.stack([np.zeros_like(image), image, noise]))
    assert stack.diameter == pytest.approx(alone.diameter) and stack.scale_factor == alone.scale_factor
    assert not stack.labels[0].any()
    assert (stack.labels[1] > 0).sum() == (alone.labels > 0).sum()  # its pass reused or rerun alike


# ---- segmenting with a diameter -------------------------------------------------------------------
def test_segment_reports_diameter_and_returns_original_grid():
    model = get_model("stardist-nuclei")
    img, lab = disc_grid(60, n=4)
    seg = segment(model, img, diameter=60.0, device="cpu")
    assert seg.diameter == 60.0 and seg.scale_factor == pytest.approx(model.config.object_diameter / 60.0)
    assert seg.labels.shape == img.shape
    assert abs(seg.n_objects - lab.max()) <= 1
    # the table is measured on the returned labels; polygons lie on the original grid around them
    ids = seg.table["label"]
    areas = np.bincount(seg.labels.ravel())[ids]
    np.testing.assert_array_equal(seg.table["area"], areas)
    shapes = seg.extras[0]["shapes"]
    assert set(shapes["label"]) == set(ids)
    for verts, i in zip(shapes["data"], shapes["label"]):
        row = int(np.flatnonzero(ids == i)[0])
        assert np.allclose(verts.mean(axis=0), [seg.table["centroid_y"][row], seg.table["centroid_x"][row]], atol=4)
    plain = segment(model, img, diameter=None, device="cpu")
    assert plain.diameter is None and plain.scale_factor == 1.0


def test_auto_at_the_models_size_is_one_plain_pass(monkeypatch):
    """Objects already at the model's size: auto segments nothing twice and changes nothing."""
    model = get_model("unet-nuclei")
    img, _ = disc_grid(16)
    calls = []
    real = dm.scaled_plane_iter

    def counting(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(dm, "scaled_plane_iter", counting)
    auto = segment(model, img, device="cpu")  # "auto" is the default
    assert auto.scale_factor == 1.0 and auto.diameter == pytest.approx(16, rel=0.15)
    assert len(calls) == 1  # the probe covered the whole image at factor 1 and is reused
    plain = segment(model, img, diameter=None, device="cpu")
    np.testing.assert_array_equal(auto.labels, plain.labels)


def test_size_probes_are_one_tile_with_little_context(monkeypatch):
    """Probes that only measure sizes run as one tile with :data:`PROBE_CONTEXT` of reflection (a
    128^2 half-scale probe was 352^2 px with the full 112 px context); the whole-plane probe at
    factor 1, which the run reuses, keeps the model's full context."""
    from seglab.inference import engine
    from seglab.inference.tiling import tile_context

    model = get_model("stardist-nuclei")
    model.size_model = None  # the object measures alone: the half-scale fragment check runs
    assert dm.probe_context(model) == 32 < tile_context(model)
    img, _ = disc_grid(16)  # objects at the model's size: the half-scale check runs
    calls = []
    real = engine.predict_maps_iter

    def spy(model, x, **kw):
        calls.append((tuple(x.shape[-2:]), kw["context"], kw["tile_size"]))
        return real(model, x, **kw)

    monkeypatch.setattr(engine, "predict_maps_iter", spy)
    est = _estimate(model, img, tile_size=128)
    assert [p["factor"] for p in est.passes][:2] == [1.0, 0.5]
    whole, *checks = calls
    assert whole[0] == img.shape and whole[1] == tile_context(model)  # tiled as a run (128 px tiles)
    assert checks and all(c == 32 and t >= max(hw) for hw, c, t in checks)  # one tile each


def test_stack_estimates_once(monkeypatch):
    model = get_model("unet-nuclei")
    img, _ = disc_grid(40, n=3)
    stack = np.stack([img] * 5)
    seen = []
    real = dm.estimate_diameter_iter

    def counting(model, planes, th, **run):
        seen.append(len(planes))
        return (yield from real(model, planes, th, **run))

    monkeypatch.setattr(dm, "estimate_diameter_iter", counting)
    seg = segment(model, stack, device="cpu")
    assert seen == [3]  # once, on three planes
    assert seg.labels.shape == stack.shape
    lo, hi = dm.tolerated_range(model)  # 40 px discs arrive within the sizes the model tolerates
    assert lo <= seg.scale_factor * seg.diameter / model.config.object_diameter <= hi
    assert (seg.labels[0] > 0).sum() == pytest.approx((seg.labels[4] > 0).sum(), rel=0.01)


def test_mask_rcnn_rescaled_boxes_on_original_grid():
    model = get_model("maskrcnn-nuclei")
    img, lab = disc_grid(50, n=3)
    seg = segment(model, img, diameter=50.0, device="cpu")
    assert seg.scale_factor < 0.5 and seg.labels.shape == img.shape
    assert abs(seg.n_objects - lab.max()) <= 1
    t = seg.table
    for k, i in enumerate(t["label"]):  # each box holds its object's pixels (edge convention)
        ys, xs = np.nonzero(seg.labels == i)
        assert t["bbox_y0"][k] - 1 <= ys.min() and ys.max() + 1 <= t["bbox_y1"][k] + 1
        assert t["bbox_x0"][k] - 1 <= xs.min() and xs.max() + 1 <= t["bbox_x1"][k] + 1
        assert (t["bbox_y1"][k] - t["bbox_y0"][k]) == pytest.approx(50, rel=0.25)


def test_resized_labels_keep_ids():
    lab = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert set(np.unique(resize_labels(lab, (9, 12)))) == set(range(12))


# ---- the built-ins record their object size -------------------------------------------------------
def test_every_builtin_records_the_object_size_of_its_training_data():
    from seglab.models.registry import ModelRegistry

    reg = ModelRegistry()
    builtins = [m for m in reg.list() if m.source == "builtin"]
    assert builtins
    for m in builtins:
        cfg = reg.load(m.path).config
        assert cfg.object_diameter is not None and 4 < cfg.object_diameter < 200, m.name
        lo, hi = cfg.training["object_diameter_range"]
        assert lo < cfg.object_diameter < hi


def test_builtin_object_size_is_what_its_recipe_data_gives():
    from conftest import shared_dsb_or_skip
    from seglab.training.recipes import RECIPES, recipe_object_diameter

    root = shared_dsb_or_skip()
    for name, recipe in RECIPES.items():  # each recipe's images as its sampler weighs them
        d, size_range = recipe_object_diameter(root, recipe)
        cfg = get_model(name).config
        assert cfg.object_diameter == pytest.approx(d, abs=0.01), name
        assert cfg.training["object_diameter_range"] == pytest.approx(size_range, abs=0.01), name


def test_auto_does_not_enlarge_a_sparse_field_into_specks():
    """Three nuclei of DSB2018 ``train`` ``20b20ab0`` in a 1024^2 field of its background pixels
    (dark, mostly 0 with sparse counts up to ~30): nothing is found in the factor-1 window, the size
    model reads small objects, and the probe enlarging 2.7x turns the noise into 123 specks of ~5 px
    at its scale; taken for objects they sent ``auto`` to enlarge 4x (tens of thousands of specks).
    Objects below half the model's size at an enlarging probe's scale are not measured
    (``MIN_PROBED_SHARE``), so the field is segmented as it is."""
    from conftest import shared_dsb_or_skip
    from seglab.datasets import load_split, read_manifest

    root = shared_dsb_or_skip()
    iid = next(r["id"] for r in read_manifest(root) if r["id"].startswith("20b20ab0"))
    item = load_split(root, "train", ids=[iid])[0]
    im, labels = item.image.astype(np.float32), item.labels  # 603 x 1272
    near = ndi.binary_dilation(labels > 0, iterations=3)
    field = np.random.default_rng(0).choice(im[~near], size=(1024, 1024)).astype(np.float32)
    shown = ndi.binary_dilation(np.isin(labels, np.unique(labels[labels > 0])[:3]), iterations=3)[:, :1024]
    field[:603][shown] = im[:, :1024][shown]  # those of them in the field's first 1024 columns
    model = get_model("stardist-nuclei")
    est = run_to_end(dm.estimate_image_iter(model, field, device="cpu"))
    assert any(p["factor"] > 2 and p["objects"] > 50 for p in est.passes), est.passes  # the specks were seen ...
    assert est.factor == 1.0, est.passes  # ... and not taken for objects
    assert 1 <= segment(model, field, device="cpu").n_objects <= 6


def test_blob_size_measures_the_objects_of_a_sparse_plane_at_their_edge():
    """Three discs of 90 px in a 2048^2 field of noise: the blobs that stand out, each taken at half
    its own height, measure 90 px (the noise threshold alone reached into the edge: 106 px); a
    dense plane is not sparse (None), nor is one of noise alone (nothing stands out)."""
    rng = np.random.default_rng(0)
    field = rng.normal(20, 3, (2048, 2048)).astype(np.float32)
    yy, xx = np.mgrid[:2048, :2048]
    for cy, cx in ((300, 400), (900, 1500), (1600, 700)):
        field[(yy - cy) ** 2 + (xx - cx) ** 2 < 45 ** 2] += 120
    assert dm.blob_size(field[None]) == pytest.approx(90, rel=0.03)
    dense, _ = disc_grid(20)
    assert dm.blob_size(dense.astype(np.float32)[None]) is None
    assert dm.blob_size(rng.normal(20, 3, (512, 512)).astype(np.float32)[None]) is None


def test_auto_on_a_sparse_field_of_large_nuclei():
    """Three nuclei of 90 px in a 2048^2 field: no 256 px probe window holds one whole, and the size
    model read the mostly empty window small (22 px, not rescaled: the nuclei cut in pieces); the
    sparse plane's blobs give their size, and ``auto`` shrinks the field to bring them to the
    model's (BLOB_DISAGREE)."""
    rng = np.random.default_rng(0)
    field = rng.normal(20, 3, (2048, 2048)).astype(np.float32)
    yy, xx = np.mgrid[:2048, :2048]
    for cy, cx in ((300, 400), (900, 1500), (1600, 700)):
        field[(yy - cy) ** 2 + (xx - cx) ** 2 < 45 ** 2] += 120
    model = get_model("stardist-nuclei")
    est = run_to_end(dm.estimate_image_iter(model, field, device="cpu"))
    assert est.diameter == pytest.approx(90, rel=0.1), est.passes
    assert 0.15 < est.factor < 0.35  # 90 px brought to about the model's 16 px
    assert segment(model, field, device="cpu").n_objects == 3
