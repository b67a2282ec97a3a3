"""Object ids across blocks: matching a block's objects to its finished neighbours, and merges.

The out-of-core engine (:mod:`seglab.inference.lazy`) segments a large plane block by block;
each block is run on a *window* (its core plus a margin on every side) and writes only its
core. Blocks run in raster order, so when a block is written, the blocks above it and the one
to its left are final. A block's object that has pixels in its core and crosses into those
finished cores is matched, by overlap inside the window, to the object already written there
and takes its id (:func:`match_seam_objects`); objects crossing into blocks not yet run keep a
new id, which those blocks will take in turn. A block object matching two finished ids joins
them (:class:`IdUnion`); the engine relabels the absorbed ids' bounding boxes at the end.
:class:`ObjectStats` accumulates each final id's area, centroid, bounding box and score from
the block cores, so that the object table needs no second pass over the labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: a block object takes a finished object's id when their overlap (inside the finished
#: cores seen by the block's window) covers at least this fraction of the smaller of the two
MATCH_OVERLAP = 0.5


class IdUnion:
    """Union-find over object ids; the smallest id of a group is its root."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        root = a
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(a, a) != root:  # path compression
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        root, other = min(ra, rb), max(ra, rb)
        self.parent[other] = root
        return root

    def absorbed(self) -> dict[int, int]:
        """Every id merged into another: ``{id: root}``."""
        return {a: self.find(a) for a in self.parent if self.find(a) != a}


def processed_bands(core: tuple[slice, slice], shape: tuple[int, int]) -> list[tuple[slice, slice]]:
    """The parts of a window (``shape``) lying in blocks finished before this one (raster order):
    every row above the core, and the rows of the core left of it (window coordinates)."""
    cy, cx = core
    bands = []
    if cy.start > 0:
        bands.append((slice(0, cy.start), slice(0, shape[1])))
    if cx.start > 0:
        bands.append((slice(cy.start, cy.stop), slice(0, cx.start)))
    return bands


def match_seam_objects(
    labels: np.ndarray, final: np.ndarray, core: tuple[slice, slice], union: IdUnion | None = None,
    min_overlap: float = MATCH_OVERLAP,
) -> dict[int, list[int]]:
    """Which finished ids each of a block's core objects continues.

    ``labels``: the block's labels over its window; ``final``: the labels written so far over
    the same window (0 where nothing is written yet); ``core``: the block's core in window
    coordinates. Only the finished parts of the window (:func:`processed_bands`) are compared.
    An object is matched to a finished id when their overlap there is at least ``min_overlap``
    of the smaller of the two areas; each finished id goes to the block object overlapping it
    most. Returns ``{block id: [finished ids]}`` (ids as roots of ``union``) for matched objects
    that have pixels in the core.
    """
    bands = processed_bands(core, labels.shape)
    if not bands:
        return {}
    lp = np.concatenate([labels[b].ravel() for b in bands]).astype(np.int64)
    fp = np.concatenate([final[b].ravel() for b in bands]).astype(np.int64)
    if union is not None and union.parent:
        uf, inv = np.unique(fp, return_inverse=True)
        fp = np.array([union.find(int(f)) if f else 0 for f in uf], dtype=np.int64)[inv]
    both = (lp > 0) & (fp > 0)
    if not both.any():
        return {}
    keys, inter = np.unique((lp[both] << 32) | fp[both], return_counts=True)
    l_of, f_of = keys >> 32, keys & 0xFFFFFFFF
    area_l = np.bincount(lp, minlength=int(l_of.max()) + 1)
    fu, fc = np.unique(fp[fp > 0], return_counts=True)
    area_f = fc[np.searchsorted(fu, f_of)]
    ok = inter >= min_overlap * np.minimum(area_l[l_of], area_f)
    in_core = np.unique(labels[core])
    ok &= np.isin(l_of, in_core[in_core > 0])
    order = np.argsort(-inter[ok], kind="stable")
    taken: set[int] = set()
    out: dict[int, list[int]] = {}
    for l, f in zip(l_of[ok][order].tolist(), f_of[ok][order].tolist()):
        if f in taken:
            continue
        taken.add(f)
        out.setdefault(l, []).append(f)
    return out


@dataclass
class ObjectStats:
    """Per final id: area, sums of y and x, bounding box, score sum (area-weighted), plane."""

    size: int = 1024
    area: np.ndarray = field(init=False)
    sum_y: np.ndarray = field(init=False)
    sum_x: np.ndarray = field(init=False)
    box: np.ndarray = field(init=False)  # (n, 4): y0, x0, y1, x1 (half-open)
    score: np.ndarray = field(init=False)
    scored: np.ndarray = field(init=False)
    plane: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = self.size
        self.area = np.zeros(n, np.int64)
        self.sum_y = np.zeros(n, np.float64)
        self.sum_x = np.zeros(n, np.float64)
        self.box = np.zeros((n, 4), np.int64)
        self.box[:, :2] = np.iinfo(np.int64).max
        self.score = np.zeros(n, np.float64)
        self.scored = np.zeros(n, np.int64)
        self.plane = np.zeros(n, np.int64)

    def _grow(self, need: int) -> None:
        if need < self.area.size:
            return
        n = max(need + 1, 2 * self.area.size)
        for name in ("area", "sum_y", "sum_x", "score", "scored", "plane"):
            old = getattr(self, name)
            new = np.zeros(n, old.dtype)
            new[: old.size] = old
            setattr(self, name, new)
        box = np.zeros((n, 4), np.int64)
        box[:, :2] = np.iinfo(np.int64).max
        box[: self.box.shape[0]] = self.box
        self.box = box

    def add_block(self, core_labels: np.ndarray, lut: np.ndarray, origin: tuple[int, int],
                  scores: np.ndarray | None, plane: int = 0) -> None:
        """Add a block's core (block ids; ``lut[block id]`` = final id) at plane ``origin`` (y, x).
        ``scores[block id]`` (NaN: none) weights by the area each part has in the core."""
        from seglab.label_stats import label_sums

        n = int(lut.size)
        counts, rows, cols, boxes = label_sums(core_labels, n)
        ids = np.flatnonzero(counts)
        ids = ids[ids > 0]
        if ids.size == 0:
            return
        final = lut[ids].astype(np.int64)
        self._grow(int(final.max()))
        y0, x0 = origin
        np.add.at(self.area, final, counts[ids])
        np.add.at(self.sum_y, final, (rows[ids] + y0 * counts[ids]).astype(np.float64))
        np.add.at(self.sum_x, final, (cols[ids] + x0 * counts[ids]).astype(np.float64))
        self.plane[final] = plane
        # several block ids may map to one final id: min / max per final id
        b = boxes[ids] + np.array([y0, x0, y0, x0])
        np.minimum.at(self.box[:, 0], final, b[:, 0])
        np.minimum.at(self.box[:, 1], final, b[:, 1])
        np.maximum.at(self.box[:, 2], final, b[:, 2])
        np.maximum.at(self.box[:, 3], final, b[:, 3])
        if scores is not None:
            s = np.asarray(scores, np.float64)[ids]
            good = np.isfinite(s)
            np.add.at(self.score, final[good], s[good] * counts[ids][good])
            np.add.at(self.scored, final[good], counts[ids][good])

    def merge(self, absorbed: int, root: int) -> None:
        """Fold the statistics of ``absorbed`` into ``root``."""
        self._grow(max(absorbed, root))
        for name in ("area", "sum_y", "sum_x", "score", "scored"):
            arr = getattr(self, name)
            arr[root] += arr[absorbed]
            arr[absorbed] = 0
        a, r = self.box[absorbed], self.box[root]
        r[:2] = np.minimum(r[:2], a[:2])
        r[2:] = np.maximum(r[2:], a[2:])

    def table(self, stack: bool = False) -> dict[str, np.ndarray]:
        """The object table of every id with pixels (``label, score, centroid_y, centroid_x, area``,
        the bounding box as ``bbox_y0, bbox_x0, bbox_y1, bbox_x1``; ``plane`` for stacks)."""
        ids = np.flatnonzero(self.area)
        ids = ids[ids > 0]
        area = self.area[ids].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(self.scored[ids] > 0, self.score[ids] / np.maximum(self.scored[ids], 1), np.nan)
        out = {"label": ids.astype(np.int64), "score": score, "centroid_y": self.sum_y[ids] / area,
               "centroid_x": self.sum_x[ids] / area, "area": self.area[ids].astype(np.int64),
               "bbox_y0": self.box[ids, 0], "bbox_x0": self.box[ids, 1],
               "bbox_y1": self.box[ids, 2], "bbox_x1": self.box[ids, 3]}
        if stack:
            out["plane"] = self.plane[ids]
        return out
