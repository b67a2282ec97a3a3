"""seglab.measure against hand-computed shapes: a disc, a square, two channels, physical units, stacks."""

import math

import numpy as np
import pytest
from skimage.measure import regionprops_table

from seglab.errors import SeglabError
from seglab.measure import anisotropic_perimeter, measure, physical_columns, unit_token
from tests_helpers import blob_image


def _disc(r=20, shape=(64, 64), centre=(31, 33)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r).astype(np.int32) * 3


def test_disc_area_diameter_eccentricity():
    r = 20
    t = measure(_disc(r))
    assert t["label"].tolist() == [3]
    assert t["area"][0] == pytest.approx(math.pi * r * r, rel=0.01)
    assert t["equivalent_diameter"][0] == pytest.approx(2 * r, rel=0.01)
    assert t["eccentricity"][0] < 0.05
    assert (t["centroid_y"][0], t["centroid_x"][0]) == (31.0, 33.0)
    # scikit-image's 4-connected perimeter follows the border pixels' staircase: ~5 % over 2 pi r here
    assert 2 * math.pi * (r - 1) < t["perimeter"][0] < 1.06 * 2 * math.pi * r
    assert 0.95 < t["solidity"][0] <= 1.0  # the hull of the pixel squares holds a little more


def test_square_area_perimeter_bbox_solidity():
    lab = np.zeros((30, 40), np.uint16)
    lab[5:15, 12:22] = 7  # 10 x 10
    t = measure(lab)
    assert t["area"].tolist() == [100]
    # scikit-image's perimeter: the border pixels' chain through pixel centres, 4 * (side - 1)
    assert t["perimeter"][0] == 36.0
    assert [t[k][0] for k in ("bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x")] == [5, 12, 15, 22]
    assert t["solidity"][0] == 1.0
    assert t["eccentricity"][0] == pytest.approx(0.0, abs=1e-12)
    assert (t["centroid_y"][0], t["centroid_x"][0]) == (9.5, 16.5)
    assert t["equivalent_diameter"][0] == pytest.approx(math.sqrt(400 / math.pi))


def test_rectangle_orientation_and_eccentricity():
    lab = np.zeros((50, 50), np.int32)
    lab[10:40, 20:26] = 1  # tall: major axis along the rows
    t = measure(lab)
    assert t["orientation"][0] == pytest.approx(0.0, abs=1e-9)
    a2, b2 = (30 ** 2 - 1) / 12, (6 ** 2 - 1) / 12  # variances along y and x
    assert t["eccentricity"][0] == pytest.approx(math.sqrt(1 - b2 / a2))
    wide = measure(lab.T.copy())
    assert abs(wide["orientation"][0]) == pytest.approx(math.pi / 2)


def test_two_channels_mean_min_max_sum_exactly():
    lab = np.zeros((20, 30), np.int32)
    lab[2:6, 3:8] = 1
    lab[10:18, 20:29] = 2
    rng = np.random.default_rng(1)
    image = rng.integers(0, 60000, (20, 30, 2)).astype(np.uint16)
    t = measure(lab, image)
    for k in (1, 2):
        for ch in (0, 1):
            px = image[..., ch][lab == k]
            i = t["label"].tolist().index(k)
            assert t[f"sum_intensity_ch{ch}"][i] == int(px.astype(np.int64).sum())
            assert t[f"min_intensity_ch{ch}"][i] == int(px.min())
            assert t[f"max_intensity_ch{ch}"][i] == int(px.max())
            assert t[f"mean_intensity_ch{ch}"][i] == int(px.astype(np.int64).sum()) / px.size
    # channels first, with the axis given; float images
    t2 = measure(lab, np.moveaxis(image, -1, 0).astype(np.float32), channel_axis=0)
    np.testing.assert_array_equal(t2["sum_intensity_ch1"], t["sum_intensity_ch1"].astype(float))
    np.testing.assert_array_equal(t2["max_intensity_ch0"], t["max_intensity_ch0"].astype(float))


def test_intensities_are_not_normalised_and_one_channel_image_has_ch0():
    lab = np.zeros((8, 8), np.int32)
    lab[1:3, 1:3] = 1
    image = np.full((8, 8), 1000.0)
    image[1, 1] = 5000.0
    t = measure(lab, image)
    assert t["mean_intensity_ch0"][0] == 2000.0 and t["max_intensity_ch0"][0] == 5000.0
    assert "mean_intensity_ch1" not in t


def test_physical_units_with_anisotropic_pixels():
    lab = np.zeros((30, 40), np.int32)
    lab[5:15, 10:25] = 1  # 10 rows x 15 columns
    sy, sx = 0.5, 0.2
    t = measure(lab, pixel_size=(sy, sx), unit="micron")
    assert t["area_um2"][0] == pytest.approx(150 * sy * sx)
    # the perimeter's chain through border pixel centres: 2 (w - 1) sx + 2 (h - 1) sy
    assert t["perimeter_um"][0] == pytest.approx(2 * 14 * sx + 2 * 9 * sy)
    assert t["equivalent_diameter_um"][0] == pytest.approx(math.sqrt(4 * 150 * sy * sx / math.pi))
    assert t["centroid_y_um"][0] == pytest.approx(9.5 * sy) and t["centroid_x_um"][0] == pytest.approx(17 * sx)
    assert t["area"][0] == 150 and t["perimeter"][0] == 2 * 14 + 2 * 9  # pixel columns unchanged


@pytest.mark.parametrize("spelling", ["µm", "um", "micron", "microns", "μm", "micrometer"])
def test_micrometre_spellings_give_um_columns(spelling):
    assert unit_token(spelling) == "um"
    t = measure(_disc(5), pixel_size=0.5, unit=spelling)
    assert {"area_um2", "perimeter_um", "equivalent_diameter_um"} <= set(t)
    assert physical_columns("nm")[0] == "area_nm2"


def test_isotropic_physical_perimeter_is_scaled_regionprops_perimeter():
    _, lab = blob_image((120, 140), n=12, seed=3)
    lab[lab == 2] = 0
    lab[50:53, 60:90] = 40  # a thin bar, touching nothing
    lab[0:6, 0:9] = 41  # at the image border
    ids = np.unique(lab)[1:]
    ref = regionprops_table(lab, properties=("label", "perimeter"))
    np.testing.assert_allclose(anisotropic_perimeter(lab, ids, (1.0, 1.0)), ref["perimeter"], rtol=1e-12)
    t = measure(lab, pixel_size=0.25, unit="mm")
    np.testing.assert_allclose(t["perimeter_mm"], 0.25 * ref["perimeter"], rtol=1e-12)
    np.testing.assert_allclose(t["area_mm2"], 0.0625 * t["area"])


def test_anisotropic_perimeter_of_touching_objects_is_per_object():
    lab = np.zeros((20, 20), np.int32)
    lab[2:8, 2:10] = 1
    lab[8:14, 2:10] = 2  # touches object 1
    got = anisotropic_perimeter(lab, np.array([1, 2]), (2.0, 3.0))
    assert got.tolist() == pytest.approx([2 * 7 * 3.0 + 2 * 5 * 2.0] * 2)


def test_stack_measured_plane_by_plane():
    lab = np.zeros((3, 20, 20), np.int32)
    lab[0, 2:6, 2:6] = 1
    lab[2, 10:13, 4:9] = 2
    lab[2, 1:3, 1:3] = 1  # the same id in another plane: one row per plane
    image = np.zeros((3, 20, 20), np.uint8)
    image[2] = 7
    t = measure(lab, image, table={"label": np.array([1, 2]), "score": np.array([0.9, 0.4]),
                                   "class": np.array([1, 1])})
    assert list(t)[:3] == ["label", "plane", "area"]
    rows = sorted(zip(t["plane"].tolist(), t["label"].tolist(), t["area"].tolist()))
    assert rows == [(0, 1, 16), (2, 1, 4), (2, 2, 15)]
    assert t["sum_intensity_ch0"][(t["plane"] == 2) & (t["label"] == 2)][0] == 7 * 15
    assert t["score"].tolist() == [0.9, 0.9, 0.4] and t["class"].tolist() == [1, 1, 1]
    # ZT stacks: the plane is the flat index of the leading axes
    lab4 = np.zeros((2, 3, 10, 10), np.int32)
    lab4[1, 2, 3:5, 3:5] = 5
    t4 = measure(lab4)
    assert t4["plane"].tolist() == [5] and t4["label"].tolist() == [5]


def test_scores_joined_by_label_missing_ones_nan():
    lab = np.zeros((10, 10), np.int32)
    lab[1:3, 1:3], lab[5:8, 5:8] = 4, 9
    t = measure(lab, table={"label": np.array([9, 100]), "score": np.array([0.7, 0.1])})
    assert t["label"].tolist() == [4, 9]
    assert np.isnan(t["score"][0]) and t["score"][1] == 0.7
    assert "class" not in t


def test_empty_labels_give_every_column_and_no_rows():
    t = measure(np.zeros((2, 9, 9), np.int32), np.zeros((2, 9, 9, 3), np.uint16), pixel_size=1.0, unit="nm")
    assert all(len(v) == 0 for v in t.values())
    assert {"plane", "area_nm2", "mean_intensity_ch2", "sum_intensity_ch2", "solidity"} <= set(t)
    assert t["sum_intensity_ch2"].dtype == np.int64


@pytest.mark.parametrize("kwargs, msg", [
    ({"image": np.zeros((9, 8))}, "differ in shape"),
    ({"image": np.zeros((2, 9, 8)), "channel_axis": 0}, "differ in shape"),
    ({"image": np.zeros((9, 9, 2)), "channel_axis": 5}, "does not exist"),
    ({"pixel_size": 0.5}, "needs its unit"),
    ({"pixel_size": 0.5, "unit": "furlong"}, "unknown length unit"),
    ({"pixel_size": (0.5, -1), "unit": "um"}, "positive"),
    ({"pixel_size": (0.5, 1, 2), "unit": "um"}, "one or two"),
])
def test_bad_input_is_one_seglab_error(kwargs, msg):
    with pytest.raises(SeglabError, match=msg):
        measure(np.ones((9, 9), np.int32), **kwargs)


def test_bad_labels():
    with pytest.raises(SeglabError, match="negative"):
        measure(-np.ones((4, 4), np.int32))
    with pytest.raises(SeglabError, match="fractions"):
        measure(np.full((4, 4), 0.5))
    with pytest.raises(SeglabError, match="at least 2 axes"):
        measure(np.ones(4, np.int32))
    assert measure(np.ones((4, 4), np.float32))["area"].tolist() == [16]


def _irregular_labels(seed=0, shape=(90, 110)):
    """Touching blobs, random shapes (thresholded smoothed noise), objects at the border, squares."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.normal(size=shape), 3)
    lab, _ = ndi.label(noise > 0.02)
    _, blobs = blob_image(shape, n=8, seed=seed)
    lab = np.where(blobs > 0, blobs + lab.max(), lab)  # blobs over (and touching) the random shapes
    lab[70:80, 5:15] = lab.max() + 1  # a square: a degenerate orientation
    lab[0:4, 100:110] = lab.max() + 1  # a bar at the border
    lab[40, 50] = lab.max() + 1  # one pixel
    return lab.astype(np.int32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shape_columns_equal_regionprops_table(seed):
    from seglab.measure import REGIONPROPS_NAMES

    lab = _irregular_labels(seed)
    ref = regionprops_table(lab, properties=("label", "area", "perimeter", "centroid", "bbox",
                                             "equivalent_diameter_area", "eccentricity", "solidity", "orientation"))
    got = measure(lab)
    assert len(got["label"]) > 20
    for name, col in REGIONPROPS_NAMES.items():
        if col == "orientation":  # an axis: pi/2 and -pi/2 are the same one (scikit-image's rounding picks either)
            turn = np.mod(got[col] - ref[name] + np.pi / 2, np.pi) - np.pi / 2
            np.testing.assert_allclose(turn, 0, atol=1e-9, err_msg=col)
            assert np.all(np.abs(got[col]) <= np.pi / 2)
        else:
            np.testing.assert_allclose(got[col], ref[name], rtol=1e-9, atol=1e-9, err_msg=col)
