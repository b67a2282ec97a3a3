"""Linking a stack's objects across consecutive planes by overlap, so one nucleus keeps one id
through a Z stack (``seglab segment --link-z``, the Segment widget's *Link objects across Z*).

The rule (:func:`link_planes`), plane by plane along the linking axis:

- each object of plane ``k + 1`` is compared with the objects of plane ``k`` by IoU
  (intersection over union of their pixels); pairs with IoU >= ``min_iou`` are matched one to
  one, greedily from the highest IoU down (ties: lower ids first), and a matched object takes
  its partner's id;
- **split** (one object in plane ``k`` overlaps two in ``k + 1``): the one with the higher IoU
  keeps the id, the other starts a new id;
- **merge** (two objects in plane ``k`` overlap one in ``k + 1``): the merged object keeps the id
  of the one with the higher IoU; the other's id ends at plane ``k``;
- an object without a partner starts a new id; an id never skips a plane (an object missing
  from one plane and back in the next gets a new id).

New ids are 1..n in order of first appearance (plane, then old id), so they stay unique over the
whole image; other stack axes (T of a TZYX stack) are linked independently, never with each
other. Input ids may repeat from plane to plane (labels from elsewhere) or be unique over the stack
(the engine's). The object table keeps one row per object and plane (``label`` renumbered, the
``plane`` column as it was), so several rows may share an id: one per plane it spans.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seglab.errors import SeglabError

DEFAULT_MIN_IOU = 0.3


@dataclass
class Linking:
    """Linked labels, and for every object of every plane: its flat plane index (C order over the
    stack axes), old id and new id."""

    labels: np.ndarray
    plane: np.ndarray
    old: np.ndarray
    new: np.ndarray

    def mapping(self) -> dict[tuple[int, int], int]:
        """(flat plane, old id) -> new id."""
        return {(int(p), int(o)): int(n) for p, o, n in zip(self.plane, self.old, self.new)}


def _check(labels: np.ndarray, axis: int, min_iou: float) -> int:
    if labels.dtype.kind not in "iu":
        raise SeglabError(f"labels must be integers, got {labels.dtype}")
    if labels.ndim < 3:
        raise SeglabError(f"linking needs a stack of planes, got labels of shape {labels.shape}")
    if not -labels.ndim <= axis < labels.ndim - 2 or (axis < 0 and axis >= -2):
        raise SeglabError(f"axis {axis} is not a stack axis of labels with shape {labels.shape}")
    try:
        ok = 0 < float(min_iou) <= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SeglabError(f"the minimum overlap (IoU) must be in (0, 1], got {min_iou!r}")
    if labels.size and labels.min() < 0:
        raise SeglabError("label images cannot hold negative ids")
    return axis % labels.ndim


def _dense(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plane's object ids (sorted) and the plane with ids replaced by 1..n (0 stays 0)."""
    ids = np.unique(plane)
    ids = ids[ids > 0]
    dense = np.searchsorted(ids, plane) + 1
    dense[plane == 0] = 0
    return ids, dense


def match_by_iou(prev: np.ndarray, cur: np.ndarray, n_prev: int, n_cur: int, min_iou: float) -> np.ndarray:
    """For dense planes (ids 1..n): the partner in ``prev`` of each object of ``cur`` (0: none),
    one to one, greedily by decreasing IoU among pairs with IoU >= ``min_iou``."""
    partner = np.zeros(n_cur + 1, dtype=np.int64)
    both = (prev > 0) & (cur > 0)
    if not both.any():
        return partner
    code = prev[both].astype(np.int64) * (n_cur + 1) + cur[both]
    pairs, inter = np.unique(code, return_counts=True)
    pa, pb = np.divmod(pairs, n_cur + 1)
    area_a = np.bincount(prev.ravel(), minlength=n_prev + 1)
    area_b = np.bincount(cur.ravel(), minlength=n_cur + 1)
    iou = inter / (area_a[pa] + area_b[pb] - inter)
    ok = iou >= min_iou
    pa, pb, iou = pa[ok], pb[ok], iou[ok]
    taken = np.zeros(n_prev + 1, dtype=bool)
    for i in np.lexsort((pb, pa, -iou)).tolist():  # highest IoU first; ties: lower ids first
        a, b = int(pa[i]), int(pb[i])
        if not taken[a] and not partner[b]:
            taken[a] = True
            partner[b] = a
    return partner


def link_planes(labels: np.ndarray, *, axis: int = 0, min_iou: float = DEFAULT_MIN_IOU) -> Linking:
    """Link the objects of consecutive planes along stack ``axis`` by overlap (see the module's rule)."""
    labels = np.asarray(labels)
    axis = _check(labels, axis, min_iou)
    stack_shape = labels.shape[:-2]
    moved = np.moveaxis(labels, axis, 0)  # (Z, other stack axes..., Y, X)
    other_shape = moved.shape[1:-2]
    out = np.zeros(moved.shape, dtype=np.int64)
    planes, olds, news = [], [], []
    next_id = 1
    # objects of each series (each index of the other stack axes) along the linking axis;
    # ids are given in order of first appearance: plane by plane over all series
    series = list(itertools.product(*[range(s) for s in other_shape]))
    tracks: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # series -> (dense prev plane, its track ids)
    for k in range(moved.shape[0]):
        for s in series:
            plane = moved[(k, *s)]
            ids, dense = _dense(plane)
            track = np.zeros(ids.size + 1, dtype=np.int64)
            if s in tracks:
                prev_dense, prev_track = tracks[s]
                partner = match_by_iou(prev_dense, dense, prev_track.size - 1, ids.size, float(min_iou))
                track[partner > 0] = prev_track[partner[partner > 0]]
            fresh = np.flatnonzero(track[1:] == 0) + 1
            track[fresh] = np.arange(next_id, next_id + fresh.size)
            next_id += fresh.size
            out[(k, *s)] = track[dense]
            tracks[s] = (dense, track)
            full = list(s)
            full.insert(axis, k)
            planes.append(np.full(ids.size, np.ravel_multi_index(tuple(full), stack_shape), dtype=np.int64))
            olds.append(ids.astype(np.int64))
            news.append(track[1:])
    out = np.moveaxis(out, 0, axis)
    top = next_id - 1
    dtype = labels.dtype if top <= np.iinfo(labels.dtype).max else (np.int32 if top < 2**31 else np.int64)
    return Linking(out.astype(dtype, copy=False), np.concatenate(planes), np.concatenate(olds),
                   np.concatenate(news))


def relabel_table(table: Mapping[str, Any], linking: Linking) -> dict[str, np.ndarray]:
    """The object table with ``label`` renumbered as linked (rows and their order kept); rows are
    matched by (plane, label), or by label alone when ids are unique over the stack and the
    table has no ``plane`` column. Rows of objects not in the labels get fresh ids."""
    out = {k: np.asarray(v) for k, v in table.items()}
    if "label" not in out:
        return out
    old = out["label"].astype(np.int64)
    if "plane" in out:
        mapping = linking.mapping()
        keys = zip(out["plane"].astype(np.int64).tolist(), old.tolist())
        new = np.array([mapping.get(key, 0) for key in keys], dtype=np.int64)
    else:
        if np.unique(linking.old).size != linking.old.size:
            raise SeglabError("the table has no plane column and object ids repeat across planes")
        by_old = dict(zip(linking.old.tolist(), linking.new.tolist()))
        new = np.array([by_old.get(o, 0) for o in old.tolist()], dtype=np.int64)
    missing = new == 0
    top = int(linking.new.max()) if linking.new.size else 0
    new[missing] = np.arange(top + 1, top + 1 + int(missing.sum()))
    out["label"] = new
    return out


def z_axis(stack_axes: str) -> int | None:
    """Which stack axis to link along: Z; else the last stack axis that is not T (an undeclared
    axis of planes; napari's order is T, Z); None when there is none."""
    if "Z" in stack_axes:
        return stack_axes.index("Z")
    others = [i for i, a in enumerate(stack_axes) if a != "T"]
    return others[-1] if others else None


Z_NAMES = ("z", "depth", "plane", "slice")
T_NAMES = ("t", "time", "frame")


def stack_letters(names: Sequence[str]) -> str:
    """Axis names (napari's ``axis_labels``) as axis letters: Z, T, or Q for a name that says neither."""
    return "".join("Z" if n in Z_NAMES else "T" if n in T_NAMES else "Q" for n in (str(a).lower() for a in names))


def one_row_per_object(table: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A linked table (a row per object and plane) with one row per object, as napari's layer
    features want: ``area`` summed, ``plane`` and every other numeric column area-weighted means
    (``plane`` rounded), ``n_planes`` the planes the object spans; rows ordered by label."""
    cols = {k: np.asarray(v) for k, v in table.items()}
    if "label" not in cols or "area" not in cols:
        raise SeglabError("the table needs label and area columns")
    ids, inv, n_planes = np.unique(cols["label"], return_inverse=True, return_counts=True)
    area = np.bincount(inv, weights=cols["area"].astype(np.float64), minlength=ids.size)
    out: dict[str, np.ndarray] = {"label": ids}
    for key, col in cols.items():
        if key in ("label", "area") or col.dtype.kind not in "iufb":
            continue
        w = cols["area"].astype(np.float64)
        vals = col.astype(np.float64)
        ok = np.isfinite(vals)
        num = np.bincount(inv, weights=np.where(ok, vals * w, 0.0), minlength=ids.size)
        den = np.bincount(inv, weights=np.where(ok, w, 0.0), minlength=ids.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        out[key] = np.rint(mean).astype(np.int64) if key == "plane" else mean
    out["area"] = area.astype(np.int64)
    out["n_planes"] = n_planes.astype(np.int64)
    return out


def link_segmentation(seg: Any, *, axis: int = 0, min_iou: float = DEFAULT_MIN_IOU) -> Any:
    """A :class:`~seglab.inference.engine.Segmentation` with its objects linked along stack
    ``axis``: labels, table (``label``; ``plane`` kept) and outlines' ids (``extras``) alike."""
    linking = link_planes(seg.labels, axis=axis, min_iou=min_iou)
    table = relabel_table(seg.table, linking)
    mapping = linking.mapping()
    extras = []
    for p, extra in enumerate(seg.extras):
        if "shapes" in extra:
            shapes = dict(extra["shapes"])
            shapes["label"] = np.array([mapping.get((p, int(v)), 0) for v in shapes["label"]], dtype=np.int64)
            extra = {**extra, "shapes": shapes}
        extras.append(extra)
    return dataclasses.replace(seg, labels=linking.labels, table=table, extras=extras)


def link_stack(seg: Any, axes: str, min_iou: float = DEFAULT_MIN_IOU, name: str = "the image") -> Any:
    """:func:`link_segmentation` along the Z axis of an image read with ``axes`` (all its axes, as
    segmented); an image without Z planes is returned as it is, with a warning when it has other
    planes (T) that are not linked."""
    import warnings

    from seglab.errors import SeglabWarning

    stack_axes = "".join(a for a in axes if a not in "YXCS")
    axis = z_axis(stack_axes)
    if axis is None:
        if stack_axes:
            warnings.warn(f"{name} has no Z axis (planes: {stack_axes}), so its objects are not linked",
                          SeglabWarning, stacklevel=2)
        return seg
    return link_segmentation(seg, axis=axis, min_iou=min_iou)
