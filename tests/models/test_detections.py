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


def test_boxes_reaching_past_the_plane_are_reported_clipped_to_it():
    """Detections on the tiles' reflected border used to report y0 = -4.66 or x1 = 266.2 on a 256 px image."""
    dets = _dets([[-5, 30, 5, 45], [30, -4.66, 46.2, 10], [30, 20, 46.2, 44]], [0.9, 0.8, 0.7])
    pred = paste_detections(dets, (40, 40), TH)
    t = pred.table
    boxes = np.stack([t["bbox_y0"], t["bbox_x0"], t["bbox_y1"], t["bbox_x1"]], axis=1)
    np.testing.assert_allclose(boxes, [[30, 0, 40, 5], [0, 30, 10, 40], [20, 30, 40, 40]], atol=1e-5)
    corners = np.concatenate(pred.extras["shapes"]["data"])
    assert corners.min() == pytest.approx(-0.5) and corners.max() == pytest.approx(39.5)
    assert (pred.labels[30:40, 0:5] == 1).all() and (pred.labels == 1).sum() == 50  # masks pasted as before


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


def _reference_paste(dets, shape, thresholds):
    """The paste written with numpy (bilinear weights as matrices), detection by detection."""
    def weights(lo, hi, start, stop, m):
        k = np.arange(start, stop, dtype=np.float64)
        u = np.clip((k - lo) / max((hi - lo) / m, 1e-6) - 0.5, 0, m - 1)
        i0 = np.floor(u).astype(int)
        out = np.zeros((k.size, m))
        np.add.at(out, (np.arange(k.size), i0), 1 - (u - i0))
        np.add.at(out, (np.arange(k.size), np.minimum(i0 + 1, m - 1)), u - i0)
        return out

    labels = np.zeros(shape, np.int32)
    kept = []
    for i in np.argsort(-dets.scores, kind="stable"):
        if dets.scores[i] < thresholds["score_thresh"]:
            break
        x0, y0, x1, y1 = dets.boxes[i]
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), shape[0])
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), shape[1])
        if r1 <= r0 or c1 <= c0:
            continue
        m = dets.masks[i].astype(np.float64)
        mask = weights(y0, y1, r0, r1, m.shape[0]) @ m @ weights(x0, x1, c0, c1, m.shape[1]).T >= thresholds["mask_thresh"]
        region = labels[r0:r1, c0:c1]
        new = mask & (region == 0)
        if new.sum() < max(thresholds["min_area"], 1) or new.sum() < 0.5 * mask.sum():
            continue
        kept.append(i)
        region[new] = len(kept)
    return labels


def test_paste_is_bilinear_mask_sampling_best_first():
    """The compiled paste gives the labels of resampling each mask over its box with bilinear
    weights, thresholding and pasting best first where pixels are free (overlapping, clipped
    and degenerate boxes among them)."""
    rng = np.random.default_rng(4)
    n = 300
    xy = rng.uniform(-10, 190, (n, 2))
    wh = rng.uniform(0.3, 40, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    boxes[:3] = [[5, 5, 5, 20], [200, 10, 230, 40], [-30, -30, -5, -5]]  # empty, outside
    masks = rng.random((n, 28, 28)).astype(np.float32)
    masks = np.stack([np.clip(m + 0.5 - np.hypot(*np.mgrid[-1:1:28j, -1:1:28j]), 0, 1) for m in masks])
    dets = Detections(boxes, rng.random(n).astype(np.float32), np.ones(n, np.int64), masks, (180, 200))
    th = {"score_thresh": 0.2, "mask_thresh": 0.5, "min_area": 5}
    ref = _reference_paste(dets, (180, 200), th)
    got = paste_detections(dets, (180, 200), th)
    assert ref.max() > 50
    differ = got.labels != ref
    assert differ.mean() < 1e-3  # float rounding at the threshold only
    assert got.labels.max() == ref.max()
