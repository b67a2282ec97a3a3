import numpy as np
import pytest

from seglab.errors import SeglabError
from seglab.metrics import evaluate, iou_matrix, match_counts


def _boxes(shape, boxes):
    lab = np.zeros(shape, dtype=np.int32)
    for i, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        lab[y0:y1, x0:x1] = i
    return lab


def test_iou_matrix_hand_computed():
    true = _boxes((10, 10), [(0, 4, 0, 4)])           # 16 px
    pred = _boxes((10, 10), [(0, 4, 2, 6)])           # 16 px, overlap 8
    iou = iou_matrix(true, pred)
    assert iou.shape == (1, 1)
    assert iou[0, 0] == pytest.approx(8 / 24)


def test_counts_and_scores_hand_computed():
    # true: A (16 px), B (16 px), C (4 px); pred: A exact, B shifted (IoU 12/20 = 0.6), D spurious
    true = _boxes((20, 20), [(0, 4, 0, 4), (10, 14, 10, 14), (18, 20, 18, 20)])
    pred = _boxes((20, 20), [(0, 4, 0, 4), (10, 14, 11, 15), (5, 7, 5, 7)])
    m = evaluate([(true, pred)], thresholds=(0.5, 0.75))
    t50, t75 = m["thresholds"]["0.50"], m["thresholds"]["0.75"]
    assert (t50["tp"], t50["fp"], t50["fn"]) == (2, 1, 1)
    assert t50["ap"] == pytest.approx(2 / 4)
    assert t50["f1"] == pytest.approx(4 / 6)
    assert t50["pq"] == pytest.approx((1.0 + 0.6) / 2 * 4 / 6)
    assert (t75["tp"], t75["fp"], t75["fn"]) == (1, 2, 2)
    assert t75["ap"] == pytest.approx(1 / 5)
    # DSB: per-image mean of AP over 0.5..0.95: IoU 0.6 counts at 0.5, 0.55, 0.6
    aps = [2 / 4] * 3 + [1 / 5] * 7
    assert m["dsb_score"] == pytest.approx(np.mean(aps))


def test_pooling_sums_counts_over_images():
    a = _boxes((8, 8), [(0, 4, 0, 4)])
    empty = np.zeros((8, 8), dtype=np.int32)
    m = evaluate([(a, a), (a, empty)], thresholds=(0.5,))
    t = m["thresholds"]["0.50"]
    assert (t["tp"], t["fp"], t["fn"]) == (1, 0, 1)
    assert t["ap"] == pytest.approx(0.5)
    assert m["dsb_score"] == pytest.approx((1.0 + 0.0) / 2)


def test_both_empty_is_perfect_and_label_ids_do_not_matter():
    empty = np.zeros((5, 5), dtype=np.int32)
    assert evaluate([(empty, empty)])["dsb_score"] == 1.0
    a = _boxes((8, 8), [(0, 4, 0, 4), (4, 8, 4, 8)])
    b = np.where(a == 1, 70, np.where(a == 2, 3, 0))
    assert evaluate([(a, b)])["thresholds"]["0.90"]["ap"] == 1.0


def test_one_to_one_matching_when_candidates_conflict():
    iou = np.array([[0.6, 0.55], [0.58, 0.0]])
    c = match_counts(iou, 0.5)
    assert (c.tp, c.fp, c.fn) == (2, 0, 0)
    assert c.sum_iou == pytest.approx(0.55 + 0.58)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(SeglabError, match="differ in shape"):
        iou_matrix(np.zeros((3, 3), int), np.zeros((3, 4), int))
