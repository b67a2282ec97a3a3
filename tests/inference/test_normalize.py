import numpy as np
import pytest

from seglab.errors import SeglabError
from seglab.inference.normalize import percentile_normalize, select_channels
from tests_helpers import cells_image, nuclei_field


def test_percentiles_map_to_unit_range():
    x = np.linspace(0, 1000, 10000, dtype=np.float32).reshape(1, 100, 100)
    y = percentile_normalize(x, 1, 99)
    assert np.percentile(y, 1) == pytest.approx(0, abs=1e-3)
    assert np.percentile(y, 99) == pytest.approx(1, abs=1e-3)


def test_constant_and_nan_images_are_safe():
    assert not percentile_normalize(np.full((1, 8, 8), 7.0)).any()
    x = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    x[0, :4] = np.nan
    y = percentile_normalize(x)
    assert np.isfinite(y).all() and (y[0, :4] == 0).all()
    assert not percentile_normalize(np.full((1, 4, 4), np.nan)).any()


def test_channels_grey_rgb_multichannel():
    grey = np.ones((6, 7), np.uint8)
    assert select_channels(grey, 1).shape == (1, 6, 7)
    assert select_channels(grey, 3).shape == (3, 6, 7)
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 1] = 100
    g = select_channels(rgb, 1, channel_axis=2)
    assert g.shape == (1, 6, 7) and g[0, 0, 0] == pytest.approx(58.7)
    multi = np.stack([np.full((6, 7), i) for i in range(5)])
    picked = select_channels(multi, 1, channel_axis=0, channels=[3])
    assert (picked == 3).all()
    with pytest.raises(SeglabError, match="pick 1 channel"):
        select_channels(multi, 1, channel_axis=0)
    with pytest.raises(SeglabError, match="do not exist"):
        select_channels(multi, 1, channel_axis=0, channels=[9])
    with pytest.raises(SeglabError, match="2D image plane"):
        select_channels(np.zeros((2, 3, 4)), 1)
    with pytest.raises(SeglabError, match="data type"):
        select_channels(np.array([["a"]]), 1)


def test_luma_only_for_rgb():
    three = np.stack([np.full((6, 7), 10.0), np.full((6, 7), 200.0), np.zeros((6, 7))], -1)
    assert select_channels(three, 1, channel_axis=2, rgb=True).shape == (1, 6, 7)
    assert select_channels(three, 1, channel_axis=2).shape == (1, 6, 7)  # rule: last axis of 3 -> RGB
    with pytest.raises(SeglabError, match="3 non-RGB channel.*--channels.*'Channels'"):
        select_channels(three, 1, channel_axis=2, rgb=False)
    with pytest.raises(SeglabError, match="non-RGB"):
        select_channels(np.moveaxis(three, -1, 0), 1, channel_axis=0)  # channels first: not RGB by the rule
    picked = select_channels(three, 1, channel_axis=2, rgb=False, channels=[1])
    assert (picked == 200).all()


def test_too_many_picked_channels_are_named_as_picked():
    """``--channels 0,0`` on a grey image used to say that the image has 2 non-RGB channels."""
    with pytest.raises(SeglabError, match=r"takes 1 channel\(s\) but 2 were picked \(channels 0,0 of the image's 1\)"):
        select_channels(np.zeros((6, 7)), 1, channels=[0, 0])
    with pytest.raises(SeglabError, match=r"2 were picked \(channels 0,2 of the image's 3\)"):
        select_channels(np.zeros((3, 6, 7)), 1, channel_axis=0, channels=[0, 2])


def test_rgb_into_a_three_channel_model_stays_three_channels():
    rgb = np.random.default_rng(0).integers(0, 255, (6, 7, 3)).astype(np.uint8)
    out = select_channels(rgb, 3, channel_axis=2, rgb=True)
    np.testing.assert_array_equal(out, np.moveaxis(rgb, -1, 0).astype(np.float32))
    rgba = np.concatenate([rgb, np.full((6, 7, 1), 255, np.uint8)], -1)
    np.testing.assert_array_equal(select_channels(rgba, 3, channel_axis=2, rgb=True), out)  # alpha dropped
    with pytest.raises(SeglabError, match="4 non-RGB"):
        select_channels(rgba, 3, channel_axis=2, rgb=False)


def test_model_input_is_shared_by_training_and_inference():
    from seglab.inference.normalize import model_input

    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3)).astype(np.uint8)
    a = model_input(rgb, 1, {}, channel_axis=2)
    b = model_input(rgb, 1, {}, channel_axis=2, rgb=True)
    np.testing.assert_array_equal(a, b)


def _plane(bright_background: bool, shape=(200, 240), seed=0):
    """Blobs, some cut by the edges: bright on dark (fluorescence) or dark on bright (brightfield)."""
    from tests_helpers import blob_image

    img = blob_image(shape, n=20, seed=seed)[0].astype(np.float32)
    return 255 - img if bright_background else img


@pytest.mark.parametrize("side,k,value,bright", [("right", 1, 20.0, True), ("top", 2, 255.0, False),
                                                 ("left", 1, 0.0, True), ("bottom", 2, 5.0, True)])
def test_artifact_lines_at_an_edge_take_their_inner_neighbour(side, k, value, bright):
    from seglab.inference.normalize import edge_lines

    art = _plane(bright)
    edge_lines(art, side)[:k] = value
    before = art.copy()
    out = percentile_normalize(art[None])[0]
    np.testing.assert_array_equal(art, before)  # the caller's pixels are never changed
    lines = edge_lines(out, side)
    for j in range(k):
        np.testing.assert_array_equal(lines[j], lines[k])
    plain = edge_lines(percentile_normalize(art[None], mend=False)[0], side)
    assert np.abs(plain[:k] - lines[:k]).max() > 0.5
    np.testing.assert_array_equal(lines[k:], plain[k:])  # nothing else changes


@pytest.mark.parametrize("case", ["blobs", "vignetting", "noise", "wide frame", "dense stripes"])
def test_natural_edges_are_left_alone(case):
    from tests_helpers import blob_image

    rng = np.random.default_rng(3)
    if case == "blobs":  # objects cut by the edges
        img = blob_image((128, 128), n=30, seed=4, rmin=8, rmax=20)[0].astype(np.float32)
    elif case == "vignetting":  # a steep but smooth fall towards the edges
        yy, xx = np.mgrid[-1:1:128j, -1:1:128j]
        img = (200 * np.exp(-3 * (yy ** 2 + xx ** 2)) + rng.normal(0, 3, (128, 128))).astype(np.float32)
    elif case == "noise":
        img = rng.random((128, 128)).astype(np.float32)
    elif case == "wide frame":  # wider than MAX_EDGE_LINES: content (a frame), not an artifact line
        img = np.full((128, 128), 200.0, np.float32) + rng.normal(0, 3, (128, 128)).astype(np.float32)
        img[:, :6] = 0
    else:  # alternating bright and dark columns: every line differs from its neighbours
        img = np.tile(np.float32([0.0, 255.0]), (128, 64))
    x = img[None]
    np.testing.assert_array_equal(percentile_normalize(x), percentile_normalize(x, mend=False))


def test_edge_artifact_depth():
    from seglab.inference.normalize import edge_artifact_depth

    assert edge_artifact_depth([0.1, 0.9, 0.9, 0.92]) == 1
    assert edge_artifact_depth([1.6, 0.0, 0.6, 0.61]) == 2
    assert edge_artifact_depth([0.0, 0.0, 0.9, 0.9]) == 2
    assert edge_artifact_depth([0.1, 0.9, 0.5, 0.2]) == 0  # the inner lines do not agree
    assert edge_artifact_depth([0.6, 0.9, 0.9, 0.9]) == 0  # a jump of less than half the range
    assert edge_artifact_depth([0.0, 0.0, 0.0, 1.0]) == 0


def test_small_planes_are_never_mended():
    x = np.full((1, 12, 12), 200.0, np.float32)
    x[0, :, -1] = 0
    np.testing.assert_array_equal(percentile_normalize(x), percentile_normalize(x, mend=False))


def test_grey_models_fill_black_padding_only_beside_a_bright_background():
    """``fill_black: "brightfield"`` (the grey built-ins): a brightfield image's black padding is
    filled with its background; a fluorescence image's black is its background and stays."""
    from seglab.inference.normalize import model_input, padding_of

    norm = {"low": 1.0, "high": 99.8, "fill_black": "brightfield"}
    for bright in (True, False):
        padded = np.pad(cells_image(bright), 32)
        found = padding_of(padded[None], norm)
        assert (found is not None) == bright
        assert (padding_of(padded[None], {**norm, "fill_black": True}) is not None)  # the H&E model's rule: any
        assert padding_of(padded[None], {"low": 1.0, "high": 99.8}) is None  # not asked for
    bf = np.pad(cells_image(True), 32)
    filled, plain = model_input(bf, 1, norm), model_input(bf, 1, {"low": 1.0, "high": 99.8})
    inner = (slice(None), slice(33, -33), slice(33, -33))  # (the pixel beside the padding is filled too)
    alone = model_input(cells_image(True), 1, norm)[:, 1:-1, 1:-1]
    # filled, the cells keep the contrast they have without the padding; left black they lose a third and more
    np.testing.assert_allclose(filled[inner], alone, atol=0.02)
    assert np.ptp(plain[inner]) < 0.7 * np.ptp(alone)
    fl = np.pad(cells_image(False), 32)
    np.testing.assert_array_equal(model_input(fl, 1, norm), model_input(fl, 1, {"low": 1.0, "high": 99.8}))


def test_a_rotated_images_interpolated_edge_is_filled_with_its_padding():
    """Rotated with bilinear interpolation, an image's edge ramps from black to its background: the
    ramp is filled too, or it would read as a dark line (a row of nuclei) on brightfield."""
    from scipy import ndimage as ndi

    from seglab.inference.normalize import padding_of

    rotated = ndi.rotate(cells_image(True, (128, 128)), 25, order=1, reshape=True, cval=0, mode="grid-constant")[None]
    pad = padding_of(rotated, {"fill_black": "brightfield"})
    filled = pad.fill(rotated)
    inside = ndi.binary_erosion(rotated[0] > pad.level, iterations=3)  # the image, away from its edge
    np.testing.assert_array_equal(filled[0][inside], rotated[0][inside])
    # no pixel left darker than the cells (90) outside the image's inner part: the ramp is gone
    assert filled[0][~inside].min() > 150
    assert rotated[0][~inside & (rotated[0] > pad.level)].min() < 90  # (it was there)


def test_bright_debris_does_not_set_the_high_percentile():
    """``outliers=True``: a few discs far brighter than the nuclei (dust over ~1 % of the image)
    no longer squeeze the nuclei into a sixth of their contrast: the range becomes 3.5x the typical
    nucleus' peak (in this field the peaks are even, so without debris the range is 1.2x it); a
    field without debris, a bright background and a plane with too few objects keep their plain
    percentiles."""
    from seglab.inference.normalize import OUTLIER_RATIO, outlier_robust_high, typical_peak

    clean, dusty = nuclei_field(), nuclei_field(debris=5)
    assert 0.006 < (dusty >= 1000).mean() < 0.02
    nuclei = clean > 60  # the nuclei's bright cores (the same pixels in both fields)

    def nuclei_level(x, outliers):
        return float(np.median(percentile_normalize(x[None], outliers=outliers)[0][nuclei & (dusty < 1000)]))

    plain_clean, plain_dusty = nuclei_level(clean, False), nuclei_level(dusty, False)
    robust_dusty = nuclei_level(dusty, True)
    assert plain_dusty < 0.2 * plain_clean  # the problem: the debris sets the range
    lo_c, hi_c = np.percentile(clean, [1, 99.8])
    ratio_clean = (hi_c - lo_c) / (typical_peak(clean, lo_c, hi_c) - lo_c)
    assert 1.0 < ratio_clean < 1.5
    # the nuclei as in a field whose typical peak is 1 / 3.5 of the range (the dimmest 1 % of DSB2018's)
    assert robust_dusty == pytest.approx(plain_clean * ratio_clean / OUTLIER_RATIO, rel=0.1)
    assert robust_dusty > 1.8 * plain_dusty
    np.testing.assert_array_equal(percentile_normalize(clean[None], outliers=True),
                                  percentile_normalize(clean[None]))  # nothing to change without debris
    lo, hi = np.percentile(dusty, [1, 99.8])
    peak = typical_peak(dusty, lo, hi)
    assert 60 < peak < 250  # a nucleus' height, not the debris' 1000
    assert outlier_robust_high(dusty, lo, hi) == pytest.approx(lo + OUTLIER_RATIO * (peak - lo))
    bright = 1000.0 - dusty  # a bright background (brightfield): left to the plain percentiles
    lo_b, hi_b = np.percentile(bright, [1, 99.8])
    assert typical_peak(bright, lo_b, hi_b) is None and outlier_robust_high(bright, lo_b, hi_b) == hi_b
    few = nuclei_field(n=3, debris=1)
    lo_f, hi_f = np.percentile(few, [1, 99.8])
    assert typical_peak(few, lo_f, hi_f) is None  # fewer than 5 objects: no typical one to go by


def test_model_input_ignores_debris_only_when_the_config_says_so():
    from seglab.inference.normalize import model_input

    dusty = nuclei_field(debris=5)
    norm = {"low": 1.0, "high": 99.8}
    with_rule = model_input(dusty, 1, {**norm, "bright_outliers": True})
    np.testing.assert_array_equal(model_input(dusty, 1, {**norm, "bright_outliers": False}), model_input(dusty, 1, norm))
    plain = model_input(dusty, 1, norm)
    nuclei = (nuclei_field() > 60) & (dusty < 1000)
    assert np.median(with_rule[0][nuclei]) > 1.8 * np.median(plain[0][nuclei])  # the nuclei brighter
    assert with_rule.max() == 1.0  # the debris saturates at the lowered white point


def test_saturated_debris_far_brighter_than_the_nuclei():
    """16-bit dust saturated at 65535 over 12-bit nuclei: the peak floor is read without the
    saturated pixels (else 5 % of the debris' range is above every nucleus), the debris saturates
    at 1 after the lowered white point, and the dark field is not taken for brightfield padding
    beside a bright background of debris (it was, and was filled with the debris' value)."""
    from seglab.inference.normalize import model_input, padding_of, typical_peak

    field = nuclei_field(debris=5) * 20 + 100  # nuclei ~2,000-4,000 above an offset of 300
    dusty = np.where(field >= 20000, 65535.0, field).astype(np.float32)
    lo, hi = np.percentile(dusty, [1, 99.8])
    assert hi == 65535.0 and 1500 < typical_peak(dusty, lo, hi) - lo < 5000
    norm = {"low": 1.0, "high": 99.8, "fill_black": "brightfield"}
    assert padding_of(dusty[None], norm) is None
    x = model_input(dusty, 1, {**norm, "bright_outliers": True})[0]
    nuclei = (nuclei_field() > 60) & (dusty < 65535)
    assert x.max() == 1.0 and np.median(x[nuclei]) > 0.15  # the nuclei visible, the debris saturated
    plain = model_input(dusty, 1, norm)[0]
    assert np.median(plain[nuclei]) < 0.05  # without the rule: the nuclei at a twentieth of the range


def test_a_few_nuclei_in_a_large_field_set_the_white_point():
    """``sparse=True``: three nuclei in a 1024 x 1024 field (on 0.03 % of it) leave the 99.8th
    percentile in the background's noise, so the plain scaling stretches the noise over the whole
    range and puts the nuclei at several times 1; with the rule the high percentile is raised to
    ``SPARSE_SHARE`` of their bright end, the noise stays dark and the nuclei at about 1."""
    from seglab.inference.normalize import SPARSE_SHARE, sparse_robust_high

    sparse = nuclei_field((1024, 1024), n=3, seed=2)
    cores = sparse > 100  # the nuclei's bright centres
    assert cores.mean() < 0.0005
    background = sparse < 20
    plain = percentile_normalize(sparse[None])[0]
    robust = percentile_normalize(sparse[None], sparse=True)[0]
    assert np.std(plain[background]) > 0.15 and np.median(plain[cores]) > 5  # the problem
    assert np.std(robust[background]) < 0.03 and 0.4 < np.median(robust[cores]) < 1.5
    lo, hi = np.percentile(sparse, [1, 99.8])
    top = np.percentile(sparse[sparse > 40], 99)  # the nuclei's bright end (what stands out)
    assert sparse_robust_high(sparse, lo, hi) == pytest.approx(lo + SPARSE_SHARE * (top - lo), rel=0.1)


@pytest.mark.parametrize("case", ["dense", "empty", "bright background", "hot pixels"])
def test_sparse_rule_leaves_other_planes_alone(case):
    """Nothing changes where the objects set the white point themselves (40 nuclei in 256 x 256),
    where nothing stands out of the noise (an empty view: no white point to go by), on a bright
    background (brightfield) or where only a few single hot pixels stand out."""
    if case == "dense":
        x = nuclei_field()
    elif case == "empty":
        x = nuclei_field((1024, 1024), n=0)
    elif case == "bright background":
        x = 1000.0 - nuclei_field((1024, 1024), n=3, seed=2)
    else:
        x = nuclei_field((1024, 1024), n=0)
        x[np.random.default_rng(1).integers(0, 1024, (2, 6)).tolist()] = 4000.0
    np.testing.assert_array_equal(percentile_normalize(x[None], sparse=True), percentile_normalize(x[None]))


def test_model_input_raises_the_white_point_only_when_the_config_says_so():
    from seglab.inference.normalize import model_input

    sparse = nuclei_field((1024, 1024), n=3, seed=2)
    norm = {"low": 1.0, "high": 99.8}
    np.testing.assert_array_equal(model_input(sparse, 1, {**norm, "sparse_objects": False}), model_input(sparse, 1, norm))
    with_rule = model_input(sparse, 1, {**norm, "sparse_objects": True, "bright_outliers": True})[0]
    cores = sparse > 100
    assert 0.4 < np.median(with_rule[cores]) < 1.5  # the debris rule does not undo it (no debris here)
    assert np.median(model_input(sparse, 1, norm)[0][cores]) > 5
