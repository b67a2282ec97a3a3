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


def test_aji_and_pq_perfect_match_are_one():
    from seglab.metrics import aji

    true = _boxes((12, 12), [(0, 4, 0, 4), (6, 10, 6, 11)])
    pred = np.where(true > 0, 7 - true, 0)  # same objects, other ids
    assert aji(true, pred) == 1.0
    m = evaluate([(true, pred)], thresholds=(0.5,))
    assert m["aji"] == 1.0 and m["pq_per_image"] == 1.0


def test_aji_pq_split_by_hand():
    from seglab.metrics import aji

    # one true 4x4 object (16 px) split into 4x3 (12 px, IoU 0.75) and 4x1 (4 px, IoU 0.25)
    true = _boxes((8, 8), [(0, 4, 0, 4)])
    pred = _boxes((8, 8), [(0, 4, 0, 3), (0, 4, 3, 4)])
    # pair: the 12 px part, C = 12, U = 16; the 4 px part is unpaired: U += 4
    assert aji(true, pred) == pytest.approx(12 / 20)
    m = evaluate([(true, pred)], thresholds=(0.5,))
    # PQ at 0.5: 1 TP (IoU 0.75), 1 FP: F1 = 2/3, SQ = 0.75
    assert m["pq_per_image"] == pytest.approx(0.75 * 2 / 3)


def test_aji_pq_merge_by_hand():
    from seglab.metrics import aji

    # two true objects 4x3 (12 px) and 4x1 (4 px) merged into one 4x4 prediction (16 px)
    true = _boxes((8, 8), [(0, 4, 0, 3), (0, 4, 3, 4)])
    pred = _boxes((8, 8), [(0, 4, 0, 4)])
    # both pair with the one prediction: C = 12 + 4, U = 16 + 16 (its pixels count twice)
    assert aji(true, pred) == pytest.approx(16 / 32)
    m = evaluate([(true, pred)], thresholds=(0.5,))
    assert m["pq_per_image"] == pytest.approx(0.75 * 2 / 3)  # 1 TP (0.75), 1 FN


def test_aji_counts_missed_and_spurious_objects():
    from seglab.metrics import aji

    # true: A 16 px (found exactly), B 4 px (missed); pred: A, and a spurious 3x3 (9 px)
    true = _boxes((12, 12), [(0, 4, 0, 4), (10, 12, 10, 12)])
    pred = _boxes((12, 12), [(0, 4, 0, 4), (5, 8, 5, 8)])
    assert aji(true, pred) == pytest.approx(16 / (16 + 4 + 9))
    empty = np.zeros((12, 12), dtype=np.int32)
    assert aji(true, empty) == 0.0 and aji(empty, pred) == 0.0 and aji(empty, empty) == 1.0


def test_aji_and_pq_are_averaged_over_images_not_pooled():
    true = _boxes((8, 8), [(0, 4, 0, 4)])
    split = _boxes((8, 8), [(0, 4, 0, 3), (0, 4, 3, 4)])
    big = _boxes((40, 40), [(i, i + 4, j, j + 4) for i in range(0, 40, 5) for j in range(0, 40, 5)])
    m = evaluate([(true, split), (big, big)], thresholds=(0.5,))
    assert m["aji"] == pytest.approx((0.6 + 1.0) / 2)
    assert m["pq_per_image"] == pytest.approx((0.5 + 1.0) / 2)
    assert [r["n_true"] for r in m["per_image"]] == [1, 64]
    # the pooled PQ weighs the 64-object image: (1 + 64 TP, 1 FP)
    t = m["thresholds"]["0.50"]
    assert t["pq"] == pytest.approx((0.75 + 64) / 65 * 2 * 65 / (2 * 65 + 1))
