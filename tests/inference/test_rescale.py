"""Rescaling a plane for the model and bringing labels, outlines, boxes and the table back (issue 11)."""

import numpy as np
import pytest

from seglab.models.detections import Detections
from seglab.inference.rescale import (
    points_to_original,
    resize_image,
    resize_labels,
    restore_prediction,
    scaled_shape,
)
from seglab.models.base import Prediction
from seglab.objects import object_table


def _squares(shape=(120, 160)):
    """Labels with three squares (ids 3, 7, 9: not 1..n, to see that ids survive)."""
    lab = np.zeros(shape, dtype=np.int32)
    lab[10:30, 20:40] = 3
    lab[60:100, 80:120] = 7
    lab[40:50, 130:150] = 9
    return lab


def _square_polygon(y0, x0, y1, x1):
    """Corners of the pixel block rows y0..y1-1, cols x0..x1-1 at pixel edges (centres at whole numbers)."""
    return np.array([[y0 - 0.5, x0 - 0.5], [y0 - 0.5, x1 - 0.5], [y1 - 0.5, x1 - 0.5], [y1 - 0.5, x0 - 0.5]])


@pytest.mark.parametrize("factor", [0.5, 0.25, 2.0, 1 / 3])
def test_restore_prediction_round_trip(factor):
    big = _squares()
    blocks = {3: (10, 20, 30, 40), 7: (60, 80, 100, 120), 9: (40, 130, 50, 150)}
    hw = scaled_shape(big.shape, factor)
    sy, sx = hw[0] / big.shape[0], hw[1] / big.shape[1]
    small = resize_labels(big, hw)
    table = object_table(small, np.array([np.nan, 0, 0, 0.3, 0, 0, 0, 0.7, 0, 0.9]))
    ids = table["label"]
    # boxes in the edge convention and polygons (pixel centres at whole numbers) at the model's scale
    table["bbox_y0"] = np.array([blocks[i][0] * sy for i in ids])
    table["bbox_x0"] = np.array([blocks[i][1] * sx for i in ids])
    table["bbox_y1"] = np.array([blocks[i][2] * sy for i in ids])
    table["bbox_x1"] = np.array([blocks[i][3] * sx for i in ids])
    table["class"] = np.ones(len(ids), dtype=np.int64)
    polys = []
    for i in ids:
        y0, x0, y1, x1 = blocks[i]
        edges = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=np.float64) * [sy, sx]
        polys.append((edges - 0.5).astype(np.float32))  # edge coordinates -> centre convention
    pred = Prediction(small, table, {"shapes": {"type": "polygon", "data": polys, "label": ids.copy()}})

    out = restore_prediction(pred, big.shape)
    assert out.labels.shape == big.shape
    assert list(out.table["label"]) == [3, 7, 9]  # ids intact
    for i in (3, 7, 9):
        inter = np.sum((out.labels == i) & (big == i))
        union = np.sum((out.labels == i) | (big == i))
        assert inter / union > 0.6  # blocks of 4 px at factor 0.25
    # table measured on the original grid, scores follow the ids, boxes in original pixels
    ref = object_table(out.labels)
    np.testing.assert_allclose(out.table["centroid_y"], ref["centroid_y"])
    np.testing.assert_array_equal(out.table["area"], ref["area"])
    np.testing.assert_allclose(out.table["score"], [0.3, 0.7, 0.9])
    for k, i in enumerate(out.table["label"]):
        np.testing.assert_allclose([out.table["bbox_y0"][k], out.table["bbox_x0"][k], out.table["bbox_y1"][k],
                                    out.table["bbox_x1"][k]], blocks[i], atol=1e-9)
    assert out.table["class"].tolist() == [1, 1, 1]
    # outlines back in original coordinates
    shapes = out.extras["shapes"]
    assert list(shapes["label"]) == [3, 7, 9]
    for verts, i in zip(shapes["data"], shapes["label"]):
        np.testing.assert_allclose(verts, _square_polygon(*blocks[i]), atol=1e-4)


def test_restore_drops_objects_lost_when_shrinking_back():
    small = np.zeros((40, 40), dtype=np.int32)
    small[10:20, 10:20] = 1
    small[30, 31] = 2  # one pixel at twice the original size: none of it survives the shrink
    pred = Prediction(small, object_table(small), {"shapes": {"type": "polygon", "data": [np.zeros((3, 2))] * 2,
                                                              "label": np.array([1, 2])}})
    out = restore_prediction(pred, (20, 20))
    assert set(np.unique(out.labels)) == {0, 1}
    assert out.table["label"].tolist() == [1] and out.extras["shapes"]["label"].tolist() == [1]


def test_points_and_detections_to_original():
    # pixel centre 0 of a half-size plane covers original pixels 0 and 1: its centre is at 0.5
    np.testing.assert_allclose(points_to_original(np.array([[0.0, 0.0], [1.0, 2.0]]), 0.5, 0.5),
                               [[0.5, 0.5], [2.5, 4.5]])
    dets = Detections(np.array([[2, 4, 6, 8]], np.float32), np.array([0.9], np.float32), np.array([1]),
                      np.ones((1, 28, 28), np.float32), (50, 50))
    out = dets.rescaled(0.5, 0.25, (100, 200))
    np.testing.assert_allclose(out.boxes, [[8, 8, 24, 16]])  # x / sx, y / sy
    assert out.shape == (100, 200) and out.masks is dets.masks


def test_resize_image_and_labels_shapes():
    x = np.random.default_rng(0).random((2, 30, 40)).astype(np.float32)
    assert resize_image(x, (15, 20)).shape == (2, 15, 20)
    assert resize_image(x, (60, 80)).shape == (2, 60, 80)
    assert resize_image(x, (30, 40)) is x
    lab = _squares((30, 40))
    assert set(np.unique(resize_labels(lab, (90, 120)))) == set(np.unique(lab))
    assert scaled_shape((3, 5), 0.01) == (1, 1)


@pytest.mark.parametrize("factor", [0.5, 1.7])
def test_a_plane_rescaled_with_its_surround_is_the_part_of_the_rescaled_surround(factor):
    from seglab.inference.rescale import rescale_with_surround, resize_image, scaled_shape
    from seglab.inference.tiling import Surround

    big = np.random.default_rng(0).random((2, 300, 260)).astype(np.float32)
    top, left, h, w = 60, 40, 150, 170
    small, sur = rescale_with_surround(Surround(big, top, left), (h, w), factor)
    whole = resize_image(big, scaled_shape(big.shape, factor))
    assert sur.pixels.shape == whole.shape and np.array_equal(sur.pixels, whole)
    assert np.shares_memory(small, sur.pixels)  # a view: the plane lies in its surround
    assert (sur.top, sur.left) == (round(top * factor), round(left * factor))
    assert abs(small.shape[1] - h * factor) <= 1 and abs(small.shape[2] - w * factor) <= 1
    np.testing.assert_array_equal(small, whole[:, sur.top : sur.top + small.shape[1], sur.left : sur.left + small.shape[2]])
