"""Smoothing noisy (low-light) planes before the model (seglab.inference.denoise)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr

from seglab.errors import SeglabError
from seglab.inference.denoise import (
    MIN_STRUCTURE, Smoothing, choose_smoothing, describe_planes, noise_level, parse_denoise, prepared_plane,
    rule_sigma, structure_ratio,
)
from seglab.inference.engine import segment
from seglab.inference.lazy import LazyPlanes, _Input, segment_lazy
from seglab.models.base import ModelConfig
from seglab.models.storage import read_config
from seglab.models.unet import UNetModel
from seglab.models.registry import ModelRegistry
from tests_helpers import threshold_net

STEPS = [[0.1, 1.0], [0.2, 1.5]]


def discs(shape=(256, 320), spacing=32, r=9, seed=0):
    """Bright discs on a dark background (photon counts at ``scale``) and their labels."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    k = 0
    for cy in range(spacing // 2, shape[0] - spacing // 2 + 1, spacing):
        for cx in range(spacing // 2, shape[1] - spacing // 2 + 1, spacing):
            k += 1
            y, x = cy + rng.integers(-2, 3), cx + rng.integers(-2, 3)
            lab[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = k
    return (lab > 0).astype(np.float32) * 0.9 + 0.05, lab


def low_light(clean: np.ndarray, photons: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).poisson(clean * photons).astype(np.uint16)


def _model(steps=STEPS):
    cfg = ModelConfig(name="t", family="unet", tile_context=24, denoise={"steps": steps} if steps else {},
                      thresholds={"prob_thresh": 0.5, "seed_thresh": 0.5, "min_area": 5})
    return UNetModel(cfg, network=threshold_net())


def test_parse_denoise():
    assert parse_denoise("auto") == "auto" and parse_denoise("AUTO ") == "auto"
    assert parse_denoise("on") is True and parse_denoise(True) is True
    assert parse_denoise("off") is False and parse_denoise(None) is False
    with pytest.raises(SeglabError, match="'auto', 'on' or 'off'"):
        parse_denoise("maybe")


def test_noise_level_grows_with_shot_noise_and_is_unknown_without_objects():
    clean, _ = discs()
    x = lambda im: (im - np.percentile(im, 1)) / (np.percentile(im, 99.8) - np.percentile(im, 1))  # noqa: E731
    levels = [noise_level(x(low_light(clean, ph).astype(np.float32))) for ph in (3000, 300, 30, 10)]
    assert noise_level(x(clean)) < 0.01
    assert all(a < b for a, b in zip(levels, levels[1:])), levels
    assert levels[0] < 0.06 and levels[-1] > 0.15
    assert math.isnan(noise_level(np.zeros((64, 64), np.float32)))
    # channels are averaged: a (C, H, W) plane of one channel reads as the plane
    assert noise_level(x(clean)[None]) == pytest.approx(noise_level(x(clean)))


def test_structure_ratio_tells_white_noise_from_objects():
    rng = np.random.default_rng(0)
    for shape in ((64, 64), (128, 96), (512, 512)):
        assert structure_ratio(rng.normal(100, 1, shape)) == pytest.approx(1.0, abs=0.15)
    assert structure_ratio(np.full((32, 32), 7.0)) == 0.0 and structure_ratio(np.zeros((1, 5))) == 0.0
    clean, _ = discs()
    assert structure_ratio(clean) > 3.0
    # small discs under shot noise, and a few in a large empty field, are structure
    assert structure_ratio(low_light(discs(r=3, spacing=12)[0], 10).astype(np.float32)) > 2 * MIN_STRUCTURE
    sparse = rng.normal(100, 5, (1024, 1024))
    yy, xx = np.mgrid[:1024, :1024]
    for cy, cx in ((200, 200), (600, 300), (800, 800)):  # three nuclei: drowned in the whole plane, not in their tiles
        sparse[(yy - cy) ** 2 + (xx - cx) ** 2 < 100] += 30
    assert structure_ratio(sparse) > 1.5 * MIN_STRUCTURE and structure_ratio(sparse, tile=1024) < MIN_STRUCTURE
    assert structure_ratio(rng.normal(100, 5, (2048, 2048))) < MIN_STRUCTURE  # the largest of 256 tiles of noise
    # channels are averaged
    assert structure_ratio(np.stack([clean, clean])) == pytest.approx(structure_ratio(clean))


def test_rule_sigma_takes_the_highest_step_reached():
    assert rule_sigma(0.05, STEPS) == 0.0
    assert rule_sigma(0.1, STEPS) == 1.0 and rule_sigma(0.19, STEPS) == 1.0
    assert rule_sigma(0.5, STEPS) == 1.5
    assert rule_sigma(float("nan"), STEPS) == 0.0


def test_choose_smoothing_by_mode():
    clean, _ = discs()
    cfg = _model().config
    noisy = prepared_plane(cfg, low_light(clean, 10), False)[0]
    assert choose_smoothing(STEPS, noisy, "auto").sigma > 0
    assert choose_smoothing(STEPS, prepared_plane(cfg, clean, False)[0], "auto").sigma == 0
    assert choose_smoothing(STEPS, noisy, False) == Smoothing()
    assert choose_smoothing([[0.1, 0.7]], prepared_plane(cfg, clean, False)[0], True).sigma == 0.7  # the first step's
    assert choose_smoothing([], noisy, "auto") == Smoothing()  # no measured rule: never on its own
    assert choose_smoothing([], noisy, True).sigma == 1.0
    assert choose_smoothing(STEPS, noisy, "off") == Smoothing()  # the words parse_denoise takes, too
    assert choose_smoothing(STEPS, noisy, "on").sigma > 0
    with pytest.raises(SeglabError, match="'auto', 'on' or 'off'"):
        choose_smoothing(STEPS, noisy, "maybe")


def test_noisy_image_is_smoothed_and_segmented_better():
    """Shot noise at 10 photons: the threshold model finds speckles; smoothed, the discs."""
    clean, lab = discs()
    img = low_light(clean, 10)
    model = _model()
    off = segment(model, img, diameter=None, denoise="off", device="cpu", amp=False)
    auto = segment(model, img, diameter=None, device="cpu", amp=False)
    assert off.smoothing == [Smoothing()]
    assert auto.smoothing[0].sigma > 0 and auto.smoothing[0].level > 0.1
    assert abs(auto.n_objects - lab.max()) < abs(off.n_objects - lab.max()) / 4  # 510 speckles -> 115 objects
    # a clean image is left alone: the same labels as with smoothing off
    clean_auto = segment(model, low_light(clean, 3000), diameter=None, device="cpu", amp=False)
    clean_off = segment(model, low_light(clean, 3000), diameter=None, denoise=False, device="cpu", amp=False)
    assert clean_auto.smoothing[0].sigma == 0
    np.testing.assert_array_equal(clean_auto.labels, clean_off.labels)


def test_stack_planes_are_judged_one_by_one():
    clean, _ = discs()
    stack = np.stack([low_light(clean, 3000), low_light(clean, 10)])
    res = segment(_model(), stack, diameter=None, device="cpu", amp=False)
    assert [s.sigma > 0 for s in res.smoothing] == [False, True]
    assert describe_planes(res.smoothing).startswith("1 of 2 planes noisy (up to 0.")
    assert describe_planes([Smoothing()]) == ""
    assert describe_planes([Smoothing(1.0, 0.12)]) == "noisy image (noise 0.12): smoothed, sigma 1 px"
    assert describe_planes([Smoothing(1.5, None)]) == "smoothed, sigma 1.5 px (as asked)"


def test_out_of_core_windows_equal_the_in_memory_smoothing(tmp_path):
    """A smoothed plane's windows, read with the kernel's halo, are the in-memory plane's pixels
    (interior windows and windows at every edge); the noise level is read on the same pixels.
    Without the halo an interior window's border pixels would differ by far more."""
    clean, _ = discs((300, 400))
    img = low_light(clean, 10)
    model = _model()
    ref, smoothing = prepared_plane(model.config, img, "auto")
    assert smoothing.sigma > 0
    inp = _Input(LazyPlanes(img, "YX"), model, None, None)
    list(inp.normalizer_iter((), 0, 1))
    assert inp.smoothing[()] == smoothing
    for ys, xs in [(slice(50, 120), slice(60, 200)), (slice(0, 40), slice(0, 400)), (slice(260, 300), slice(350, 400)),
                   (slice(0, 300), slice(0, 400))]:
        # (the two paths' normalisations differ by a rounding step; the smoothing adds nothing to it)
        np.testing.assert_allclose(inp.window((), ys, xs), ref[:, ys, xs], rtol=0, atol=1e-6)
    no_halo = smoothing.apply(inp.normalized((), slice(50, 120), slice(60, 200)))
    assert np.abs(no_halo - ref[:, 50:120, 60:200]).max() > 1e-3


def test_out_of_core_run_smooths_as_in_memory(tmp_path):
    clean, _ = discs((600, 700))
    img = low_light(clean, 10)
    model = _model()
    mem = segment(model, img, diameter=None, device="cpu", amp=False)
    z = zarr.create_array(store=str(tmp_path / "in.zarr"), shape=img.shape, chunks=(256, 256), dtype=img.dtype)
    z[:] = img
    res = segment_lazy(model, zarr.open_array(str(tmp_path / "in.zarr"), mode="r"), tmp_path / "out.zarr",
                       block_size=256, diameter=None, device="cpu", amp=False)
    assert res.smoothing == mem.smoothing and res.smoothing[0].sigma > 0
    out = np.asarray(res.labels)
    assert res.n_objects == mem.n_objects
    pairs = np.unique(np.stack([out.ravel(), mem.labels.ravel()]), axis=1)
    assert pairs.shape[1] == mem.n_objects + 1  # the same objects, one to one


def test_config_steps_are_checked():
    from seglab.models.config import ModelConfig as Cfg

    Cfg.from_dict({"name": "a", "family": "unet", "denoise": {"steps": [[0.1, 1.0], [0.2, 1.5]]}})
    for bad in ([[0.2, 1.0], [0.1, 1.5]], [[0.1]], [[0.1, -1.0]], "x"):
        with pytest.raises(SeglabError, match="denoise"):
            Cfg.from_dict({"name": "a", "family": "unet", "denoise": {"steps": bad}})


@pytest.mark.parametrize("name", ["stardist-nuclei", "unet-nuclei", "maskrcnn-nuclei"])
def test_grey_built_ins_have_a_measured_rule(name):
    cfg = read_config(ModelRegistry().resolve(name))
    steps = cfg.denoise["steps"]
    assert steps and all(0.05 <= level <= 0.4 and 0.5 <= sigma <= 2.5 for level, sigma in steps)
    assert "measured" in cfg.denoise


def test_the_he_model_is_never_smoothed_on_its_own():
    assert not read_config(ModelRegistry().resolve("stardist-he")).denoise.get("steps")


def test_auto_leaves_planes_without_a_dark_background_alone():
    """An empty field of pure noise, or a noisy brightfield plane: noisy, but no fluorescence on a
    dark background, which is what the rules were measured on (asked, they are smoothed)."""
    rng = np.random.default_rng(0)
    empty = rng.normal(100, 1, (128, 128)).astype(np.float32)
    clean, _ = discs()
    brightfield = rng.poisson((1.0 - 0.6 * (clean > 0.5)) * 10).astype(np.uint16)  # dark nuclei, bright light
    cfg = _model().config
    for plane in (empty, brightfield):
        x = prepared_plane(cfg, plane, False)[0]
        assert noise_level(x) > 0.1
        assert choose_smoothing(STEPS, x, "auto").sigma == 0
        assert choose_smoothing(STEPS, x, True).sigma > 0


def test_the_structure_meter_fed_in_bands_equals_the_whole_plane():
    """Out of core the plane's structure is measured band by band as it is read: any bands give the
    in-memory figure exactly (the same tiles, the same arithmetic); NaN counts as 0."""
    from seglab.inference.denoise import StructureMeter

    rng = np.random.default_rng(1)
    plane = rng.normal(100, 3, (700, 530)).astype(np.float32)
    plane[300:310, 200:212] += 40  # one object
    plane[5, 5] = np.nan
    whole = structure_ratio(plane)
    assert whole > 1.5
    for bands in ([700], [1] * 3 + [697], [100, 250, 350], [129, 1, 570]):
        meter = StructureMeter(*plane.shape)
        r0 = 0
        for n in bands:
            meter.add(plane[r0 : r0 + n])
            r0 += n
        assert meter.ratio == whole


@pytest.mark.parametrize("name", ["unet-nuclei", "maskrcnn-nuclei"])
def test_an_empty_view_gives_no_objects(name, monkeypatch):
    """A field of camera noise (Poisson counts over an offset) has nothing to segment; the models
    found specks in it (unet-nuclei 38, maskrcnn-nuclei 21 here without the rule). The plane is
    blank (its structure ratio below MIN_STRUCTURE), skips the network, and the user is told."""
    import seglab.inference.denoise as dn
    from seglab.models.registry import get_model

    noise = (np.random.default_rng(0).poisson(3, (1024, 1024)) + 100).astype(np.uint16)
    model = get_model(name)
    res = segment(model, noise)
    assert res.n_objects == 0 and res.labels.max() == 0 and res.smoothing[0].blank
    assert "white noise or blank" in describe_planes(res.smoothing)
    assert set(res.table) >= {"label", "score", "area"} and len(res.table["label"]) == 0
    monkeypatch.setattr(dn, "is_blank", lambda ratio: False)
    assert segment(model, noise).n_objects > 5  # the specks the rule saves the user


def test_a_stack_with_an_empty_plane_keeps_the_other_planes_and_the_family_columns():
    """Mask R-CNN's table has box columns: a blank plane's (empty) table has them too, so a stack
    whose first plane is an empty view joins its planes' tables; the other plane is segmented as
    alone; outlines come from it alone."""
    from seglab.models.registry import get_model
    from seglab.outlines import collect_outlines
    from tests_helpers import nuclei_field

    nuclei = nuclei_field((256, 256), n=12, seed=5)
    empty = np.random.default_rng(2).normal(10, 2, (256, 256)).astype(np.float32)
    model = get_model("maskrcnn-nuclei")
    alone = segment(model, nuclei, diameter=None)
    stack = segment(model, np.stack([empty, nuclei]), diameter=None)
    assert [s.blank for s in stack.smoothing] == [True, False]
    assert alone.n_objects >= 8 and stack.n_objects == alone.n_objects
    np.testing.assert_array_equal(stack.labels[0], 0)
    np.testing.assert_array_equal(stack.labels[1], alone.labels)
    assert set(stack.table) == set(alone.table) | {"plane"} and "bbox_y0" in stack.table
    assert set(stack.table["plane"].tolist()) == {1}
    outlines = collect_outlines(stack)
    assert outlines.shape_type == "rectangle" and set(outlines.plane.tolist()) == {1}
    assert describe_planes(stack.smoothing).startswith("1 of 2 planes white noise or blank")


def test_an_empty_view_out_of_core_is_blank_as_in_memory(tmp_path):
    """Out of core the blank test reads the plane at full resolution band by band (a strided
    sample would turn small objects into noise): a stack of an empty view and a field of 3x3 px
    objects (in a 2100 px plane, sampled every 3rd pixel for the percentiles) gives the in-memory
    labels and the same blank flags."""
    import dask.array as da

    rng = np.random.default_rng(3)
    empty = rng.normal(10, 2, (2100, 2100)).astype(np.float32)
    dots = rng.normal(10, 2, (2100, 2100)).astype(np.float32)
    yy, xx = np.mgrid[-2:3, -2:3]
    disc = (yy ** 2 + xx ** 2 <= 2) * 80.0
    for cy in range(20, 2080, 40):
        for cx in range(20, 2080, 40):
            dots[cy - 2 : cy + 3, cx - 2 : cx + 3] += disc
    assert structure_ratio(dots[::3, ::3]) < MIN_STRUCTURE < structure_ratio(dots)  # why full resolution
    stack = np.stack([empty, dots])
    cfg = ModelConfig(name="t", family="unet", tile_context=24, normalization={"kind": "percentile"},
                      thresholds={"prob_thresh": 0.001, "seed_thresh": 0.001, "min_area": 5})
    model = UNetModel(cfg, network=threshold_net())
    mem = segment(model, stack, diameter=None, device="cpu", amp=False)
    lazy = segment_lazy(model, da.from_array(stack, chunks=(1, 700, 2100)), tmp_path / "out.zarr", block_size=1024,
                        diameter=None, device="cpu", amp=False)
    assert [s.blank for s in mem.smoothing] == [s.blank for s in lazy.smoothing] == [True, False]
    assert mem.n_objects == lazy.n_objects == 52 * 52
    np.testing.assert_array_equal(np.asarray(lazy.labels) > 0, mem.labels > 0)
