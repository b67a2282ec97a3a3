"""Per-object measurements shared by every family: id, score, centroid, area."""

from __future__ import annotations

import numpy as np

TABLE_COLUMNS = ("label", "score", "centroid_y", "centroid_x", "area")


def object_table(labels: np.ndarray, scores: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Table of the objects in a 2D label image.

    ``scores`` is either a per-pixel map (mean over each object is taken) or a
    1D array indexed by label id; without it the score column is NaN.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"object_table takes a 2D label image, got shape {labels.shape}")
    flat = labels.ravel()
    if flat.size == 0 or flat.max() <= 0:
        return {c: np.zeros(0, dtype=np.int64 if c in ("label", "area") else np.float64) for c in TABLE_COLUMNS}
    if flat.min() < 0:
        raise ValueError("label images cannot hold negative ids")
    from seglab.label_stats import label_sums  # compiled: imported when a table is first made

    n = int(flat.max()) + 1
    # one pass: area, sum of y, sum of x per label id
    counts, sum_y, sum_x, _ = label_sums(labels, n)
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    area = counts[ids].astype(np.float64)
    cy = sum_y[ids] / area
    cx = sum_x[ids] / area
    if scores is None:
        sc = np.full(ids.size, np.nan)
    elif np.ndim(scores) == labels.ndim:  # mean of a per-pixel map, over object pixels only
        where = np.flatnonzero(flat)
        sc = np.bincount(flat[where], weights=np.asarray(scores, dtype=np.float64).ravel()[where],
                         minlength=n)[ids] / area
    else:
        sc = np.asarray(scores, dtype=np.float64)[ids]
    return {
        "label": ids.astype(np.int64),
        "score": sc,
        "centroid_y": cy.astype(np.float64),
        "centroid_x": cx.astype(np.float64),
        "area": area.astype(np.int64),
    }


def concat_tables(tables: list[dict[str, np.ndarray]], extra: dict[str, list] | None = None) -> dict[str, np.ndarray]:
    """Stack tables of several planes; ``extra`` adds per-table constant columns (e.g. plane index)."""
    out: dict[str, np.ndarray] = {}
    if not tables:
        return object_table(np.zeros((1, 1), dtype=np.int32))
    for key in tables[0]:
        out[key] = np.concatenate([t[key] for t in tables])
    for key, values in (extra or {}).items():
        out[key] = np.concatenate([np.full(len(t["label"]), v) for t, v in zip(tables, values)])
    return out
