import numpy as np
import pytest
import torch
from torchvision.ops import roi_align

from seglab.models.detections import Detections, keep_in_core, paste_detections, suppress_duplicates

TH = {"score_thresh": 0.5, "mask_thresh": 0.5, "nms_thresh": 0.5, "min_area": 1.0}


def _dets(boxes, scores, masks=None, m=28, classes=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    if masks is None:
        masks = np.ones((n, m, m), np.float32)
    cls = np.ones(n, np.int64) if classes is None else np.asarray(classes, np.int64)
    return Detections(boxes, np.asarray(scores, np.float32), cls, np.asarray(masks, np.float32))


def test_full_mask_fills_exactly_its_box():
    # x0, y0, x1, y1: columns 10..29, rows 20..39
    pred = paste_detections(_dets([[10, 20, 30, 40]], [0.9]), (64, 50), TH)
    expect = np.zeros((64, 50), np.int32)
    expect[20:40, 10:30] = 1
    np.testing.assert_array_equal(pred.labels, expect)
    assert pred.table["area"].tolist() == [400] and pred.table["class"].tolist() == [1]


def test_disc_mask_is_pasted_where_the_object_was():
    """A disc sampled into a 28x28 mask the way training targets are (RoIAlign) comes back in place."""
    h, w = 90, 120
    yy, xx = np.mgrid[:h, :w]
    truth = ((yy - 47.0) ** 2 + (xx - 61.0) ** 2 <= 13.0**2)
    ys, xs = np.nonzero(truth)
    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    mask = roi_align(torch.from_numpy(truth.astype(np.float32))[None, None], torch.tensor([[0.0, *map(float, box)]]),
                     (28, 28), 1.0)[0, 0].numpy()
    pred = paste_detections(_dets([box], [0.8], mask[None]), (h, w), TH)
    got = pred.labels == 1
    iou = (got & truth).sum() / (got | truth).sum()
    assert iou > 0.95
    assert pred.table["centroid_y"][0] == pytest.approx(47.0, abs=0.3)
    assert pred.table["centroid_x"][0] == pytest.approx(61.0, abs=0.3)


def test_overlaps_go_to_the_higher_score_and_ids_follow_score():
    dets = _dets([[0, 0, 20, 20], [10, 0, 30, 20]], [0.6, 0.9])
    pred = paste_detections(dets, (20, 40), TH)
    assert (pred.labels[:, 10:30] == 1).all()  # the 0.9 detection, id 1
    assert (pred.labels[:, 0:10] == 2).all()
    assert pred.table["score"].tolist() == pytest.approx([0.9, 0.6])
    # a detection that would keep less than half of its mask is a duplicate: dropped
    dup = _dets([[0, 0, 20, 20], [2, 0, 22, 20]], [0.9, 0.8])
    assert paste_detections(dup, (20, 40), TH).table["label"].tolist() == [1]


def test_score_threshold_min_area_and_clipping_at_the_plane_edge():
    dets = _dets([[0, 0, 10, 10], [20, 20, 22, 22], [-5, 30, 5, 45]], [0.4, 0.9, 0.7])
    pred = paste_detections(dets, (40, 40), {**TH, "min_area": 5.0})
    # 0.4 is below the score threshold, the 2x2 box below min_area; the last is clipped to the plane
    assert pred.table["label"].tolist() == [1]
    assert (pred.labels[30:40, 0:5] == 1).all() and (pred.labels == 1).sum() == 50


def test_mask_threshold_is_applied():
    m = np.zeros((1, 28, 28), np.float32)
    m[0, :, :14] = 0.7
    m[0, :, 14:] = 0.3
    low = paste_detections(_dets([[0, 0, 28, 28]], [0.9], m), (28, 28), {**TH, "mask_thresh": 0.2})
    high = paste_detections(_dets([[0, 0, 28, 28]], [0.9], m), (28, 28), {**TH, "mask_thresh": 0.5})
    assert (low.labels == 1).sum() == 28 * 28
    assert (high.labels == 1).sum() < 28 * 28 * 0.6


def test_table_and_shapes_contract():
    dets = _dets([[10, 20, 30, 40], [40, 5, 50, 15]], [0.7, 0.95], classes=[1, 2])
    pred = paste_detections(dets, (64, 64), TH)
    t = pred.table
    assert {"label", "score", "class", "centroid_y", "centroid_x", "area"} <= set(t)
    assert t["class"].tolist() == [2, 1]
    shapes = pred.extras["shapes"]
    assert shapes["type"] == "rectangle" and shapes["label"].tolist() == [1, 2]
    assert all(d.shape == (4, 2) for d in shapes["data"])
    # (y, x) corners around the pixels of each box, pixel centres at whole numbers
    np.testing.assert_allclose(shapes["data"][0].min(0), [4.5, 39.5])
    np.testing.assert_allclose(shapes["data"][0].max(0), [14.5, 49.5])
    assert [t["bbox_y0"][1], t["bbox_x0"][1], t["bbox_y1"][1], t["bbox_x1"][1]] == [20, 10, 40, 30]


def test_no_detections_give_empty_labels():
    pred = paste_detections(Detections.empty((30, 20)), (30, 20), TH)
    assert pred.labels.shape == (30, 20) and not pred.labels.any()
    assert len(pred.table["label"]) == 0 and pred.extras["shapes"]["data"] == []


def test_keep_in_core_assigns_each_centre_to_one_tile():
    # a box centred exactly on the border between two cores (plane x = 64)
    d = _dets([[54, 10, 74, 30]], [0.9])
    left = keep_in_core(d, (0, 100), (0, 64), (0, 0), (100, 128))
    right_tile = _dets([[54 - 40, 10, 74 - 40, 30]], [0.9])  # the same box seen by a tile starting at x = 40
    right = keep_in_core(right_tile, (0, 100), (64, 128), (0, 40), (100, 128))
    assert len(left) + len(right) == 1
    assert len(right) == 1 and right.boxes[0].tolist() == [54, 10, 74, 30]


def test_suppress_duplicates_keeps_the_best_per_class():
    d = _dets([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]], [0.8, 0.9, 0.7], classes=[1, 1, 2])
    out = suppress_duplicates(d, 0.5)
    assert out.classes.tolist() == [1, 2]
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])


@pytest.mark.parametrize("lo, hi, start, stop, m", [(3.2, 40.7, 3, 41, 28), (0.0, 5.0, 0, 5, 28),
                                                    (10.0, 10.5, 10, 11, 28), (0.0, 100.0, 0, 100, 14)])
def test_mask_to_pixel_weights_are_bilinear_and_sum_to_one(lo, hi, start, stop, m):
    """Each pixel row takes two neighbouring mask cells (one, at the clamped ends), weights adding to 1."""
    from seglab.models.detections import _axis_weights

    w = _axis_weights(lo, hi, start, stop, m)
    assert w.shape == (stop - start, m)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    k = np.arange(start, stop)
    u = np.clip((k - lo) / ((hi - lo) / m) - 0.5, 0, m - 1)
    ref = np.zeros_like(w)
    np.add.at(ref, (np.arange(k.size), np.floor(u).astype(int)), 1 - (u - np.floor(u)))
    np.add.at(ref, (np.arange(k.size), np.minimum(np.floor(u).astype(int) + 1, m - 1)), u - np.floor(u))
    np.testing.assert_allclose(w, ref, atol=1e-6)
