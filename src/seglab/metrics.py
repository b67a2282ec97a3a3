"""Instance segmentation metrics: matching by IoU, AP (TP/(TP+FP+FN)), F1, PQ, DSB score, AJI.

Pooled scores sum the match counts over images (as DSB2018 figures here are reported);
histopathology reports AJI and panoptic quality per image, averaged over images
(Kumar et al. 2017; HoVer-Net, Graham et al. 2019): :func:`evaluate` gives both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from seglab.errors import SeglabError

REPORT_THRESHOLDS = (0.5, 0.75, 0.9)
DSB_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    ids, inv = np.unique(labels, return_inverse=True)
    inv = inv.reshape(labels.shape)
    if ids[0] == 0:
        return inv, len(ids) - 1
    return inv + 1, len(ids)


def overlaps(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts: intersections ``(n_true, n_pred)``, true areas ``(n_true,)``, predicted areas ``(n_pred,)``.

    Objects are the distinct non-zero ids of each image, in increasing id order.
    """
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise SeglabError(f"label images differ in shape: {true.shape} vs {pred.shape}")
    t, nt = _relabel(true)
    p, np_ = _relabel(pred)
    overlap = np.bincount((t.ravel().astype(np.int64) * (np_ + 1) + p.ravel()), minlength=(nt + 1) * (np_ + 1))
    overlap = overlap.reshape(nt + 1, np_ + 1)
    return overlap[1:, 1:].astype(np.float64), overlap.sum(axis=1)[1:], overlap.sum(axis=0)[1:]


def iou_from_overlaps(inter: np.ndarray, area_t: np.ndarray, area_p: np.ndarray) -> np.ndarray:
    """IoU of every pair from :func:`overlaps`' counts (intersections, true and predicted areas)."""
    union = area_t[:, None] + area_p[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def iou_matrix(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of every (true object, predicted object) pair, shape (n_true, n_pred)."""
    return iou_from_overlaps(*overlaps(true, pred))


def _aji(inter: np.ndarray, area_t: np.ndarray, area_p: np.ndarray) -> float:
    if inter.size == 0:
        u = float(area_t.sum() + area_p.sum())
        return 1.0 if u == 0 else 0.0
    iou = iou_from_overlaps(inter, area_t, area_p)
    best = iou.argmax(axis=1)
    rows = np.arange(len(area_t))
    hit = inter[rows, best] > 0
    c = float(inter[rows[hit], best[hit]].sum())
    u = float((area_t[hit] + area_p[best[hit]] - inter[rows[hit], best[hit]]).sum()) + float(area_t[~hit].sum())
    used = np.zeros(len(area_p), dtype=bool)
    used[best[hit]] = True
    u += float(area_p[~used].sum())
    return c / u if u else 1.0


def aji(true: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard index of one image (Kumar et al., IEEE TMI 2017).

    Each true object is paired with the predicted object of highest IoU with it (a
    predicted object may serve several); AJI = sum of the pairs' intersections / sum of
    their unions plus the areas of true objects that touch no prediction and of
    predicted objects paired with none. Both images empty: 1.
    """
    return _aji(*overlaps(true, pred))


@dataclass
class MatchCounts:
    """Counts at one IoU threshold for one image (or pooled)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    sum_iou: float = 0.0

    def __add__(self, other: MatchCounts) -> MatchCounts:
        return MatchCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.sum_iou + other.sum_iou)

    @property
    def ap(self) -> float:
        d = self.tp + self.fp + self.fn
        return self.tp / d if d else 1.0

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else 1.0

    @property
    def precision(self) -> float:
        d = self.tp + self.fp
        return self.tp / d if d else 1.0

    @property
    def recall(self) -> float:
        d = self.tp + self.fn
        return self.tp / d if d else 1.0

    @property
    def pq(self) -> float:
        """Panoptic quality = mean IoU of matches (SQ) x F1 (RQ)."""
        if self.tp == 0:
            return 0.0 if (self.fp + self.fn) else 1.0
        return (self.sum_iou / self.tp) * self.f1


def match_counts(iou: np.ndarray, threshold: float) -> MatchCounts:
    """One-to-one matching maximising the number of pairs with IoU >= threshold."""
    n_true, n_pred = iou.shape
    if n_true == 0 or n_pred == 0:
        return MatchCounts(0, n_pred, n_true, 0.0)
    cand = iou >= threshold
    rows = np.flatnonzero(cand.any(axis=1))
    cols = np.flatnonzero(cand.any(axis=0))
    if rows.size == 0:
        return MatchCounts(0, n_pred, n_true, 0.0)
    sub = iou[np.ix_(rows, cols)]
    subc = cand[np.ix_(rows, cols)]
    if (subc.sum(axis=1) <= 1).all() and (subc.sum(axis=0) <= 1).all():
        r, c = np.nonzero(subc)
    else:
        # maximise matches first, then total IoU among equal counts
        cost = -(subc.astype(np.float64) + 1e-3 * sub * subc)
        r, c = linear_sum_assignment(cost)
        ok = subc[r, c]
        r, c = r[ok], c[ok]
    tp = int(len(r))
    return MatchCounts(tp, n_pred - tp, n_true - tp, float(sub[r, c].sum()))


def image_counts(true: np.ndarray, pred: np.ndarray, thresholds: Iterable[float]) -> dict[float, MatchCounts]:
    """Counts at each threshold for one pair of label images."""
    iou = iou_matrix(true, pred)
    return {float(t): match_counts(iou, float(t)) for t in thresholds}


def evaluate(pairs: Iterable[tuple[np.ndarray, np.ndarray]], thresholds: Sequence[float] = REPORT_THRESHOLDS) -> dict:
    """Score (true, pred) label pairs.

    Returns pooled AP, F1, PQ, precision and recall at each threshold (counts
    summed over images); the DSB score: the per-image mean of AP over IoU
    0.5:0.05:0.95, averaged over images; and, as histopathology reports them,
    ``aji`` (:func:`aji`) and ``pq_per_image`` (panoptic quality at IoU 0.5) of each
    image averaged over images, with the per-image values in ``per_image``.
    """
    all_t = sorted(set(float(t) for t in thresholds) | set(float(t) for t in DSB_THRESHOLDS))
    pooled = {t: MatchCounts() for t in all_t}
    dsb_per_image: list[float] = []
    per_image: list[dict[str, float]] = []
    n = 0
    for true, pred in pairs:
        inter, area_t, area_p = overlaps(true, pred)
        iou = iou_from_overlaps(inter, area_t, area_p)
        counts = {t: match_counts(iou, t) for t in all_t}
        for t, c in counts.items():
            pooled[t] = pooled[t] + c
        dsb_per_image.append(float(np.mean([counts[float(t)].ap for t in DSB_THRESHOLDS])))
        per_image.append({"aji": _aji(inter, area_t, area_p), "pq": counts[0.5].pq, "ap50": counts[0.5].ap,
                          "n_true": int(len(area_t)), "n_pred": int(len(area_p))})
        n += 1
    if n == 0:
        raise SeglabError("nothing to evaluate: no image pairs")
    out: dict = {"n_images": n, "n_true": pooled[all_t[0]].tp + pooled[all_t[0]].fn,
                 "n_pred": pooled[all_t[0]].tp + pooled[all_t[0]].fp, "thresholds": {}}
    for t in thresholds:
        c = pooled[float(t)]
        out["thresholds"][f"{float(t):.2f}"] = {
            "ap": c.ap, "f1": c.f1, "pq": c.pq, "precision": c.precision, "recall": c.recall,
            "tp": c.tp, "fp": c.fp, "fn": c.fn,
        }
    out["dsb_score"] = float(np.mean(dsb_per_image))
    out["aji"] = float(np.mean([r["aji"] for r in per_image]))
    out["pq_per_image"] = float(np.mean([r["pq"] for r in per_image]))
    out["per_image"] = per_image
    return out
