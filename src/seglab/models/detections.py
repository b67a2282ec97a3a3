"""Detections (Mask R-CNN's plane path): keep per tile, merge over a plane, paste into labels.

A detection family (Mask R-CNN) returns, per tile, boxes, scores, classes and
fixed-size mask probabilities over each box. :func:`detect_plane_iter` (the family's
``raw_output_iter``) keeps a detection only in the tile whose core holds its box centre
(the cores partition the plane, so nothing is duplicated and, with a tile context larger
than the largest object, nothing is cut), moves it to plane coordinates and suppresses
duplicates across tile borders; :func:`paste_detections_iter` (its ``postprocess_iter``)
pastes the plane's detections into a label image.

Coordinates: a box ``(x0, y0, x1, y1)`` has pixel ``k`` spanning ``[k, k + 1)``, so
an object covering columns 10..29 has ``x0 = 10, x1 = 30``. A mask of ``M x M``
probabilities covers its box the way torchvision's RoIAlign (``aligned=False``)
sampled it in training: mask cell ``j`` is centred at ``x0 + (j + 0.5) * (x1 - x0) / M``
in coordinates where pixel ``k`` sits at ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import torch

from seglab.progress import run_to_end
from seglab.triton_guard import guard_triton

guard_triton()  # torchvision.ops imports torch._dynamo, which imports Triton: not after Mesa's LLVM

from torchvision.ops import batched_nms  # noqa: E402

from seglab.models.base import Prediction, Step
from seglab.objects import object_table

if TYPE_CHECKING:
    from seglab.inference.engine import ProgressEvent, Tile, TileRun
    from seglab.models.base import SegmentationModel

@dataclass
class Detections:
    """Detections of one tile or plane (numpy, float32 boxes/scores/masks)."""

    boxes: np.ndarray  # (N, 4) x0, y0, x1, y1
    scores: np.ndarray  # (N,)
    classes: np.ndarray  # (N,) int64, 1 = first foreground class
    masks: np.ndarray  # (N, M, M) probabilities over each box
    shape: tuple[int, int] = (0, 0)  # (H, W) of the plane (or tile) they belong to

    def __len__(self) -> int:
        return len(self.scores)

    def rescaled(self, sy: float, sx: float, shape: tuple[int, int]) -> Detections:
        """Detections made on a plane resized by ``(sy, sx)`` with their boxes in the pixels of the
        original plane of ``shape`` (edge convention). The masks stay as they are: they are
        relative to their box, so pasting them in the original plane draws them at full resolution."""
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4).copy()
        boxes[:, [0, 2]] /= sx
        boxes[:, [1, 3]] /= sy
        return Detections(boxes, self.scores, self.classes, self.masks, tuple(shape))

    @classmethod
    def empty(cls, shape: tuple[int, int], mask_size: int = 28) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   np.zeros((0, mask_size, mask_size), np.float32), tuple(shape))

    @classmethod
    def from_torch(cls, d: dict[str, torch.Tensor], shape: tuple[int, int]) -> Detections:
        """From a family's per-tile dict: ``boxes``, ``scores``, ``labels``, ``masks`` (N, M, M)."""
        masks = d["masks"]
        if masks.ndim == 4:
            masks = masks[:, 0]
        return cls(
            d["boxes"].detach().float().cpu().numpy().reshape(-1, 4),
            d["scores"].detach().float().cpu().numpy().reshape(-1),
            d["labels"].detach().cpu().numpy().astype(np.int64).reshape(-1),
            masks.detach().float().cpu().numpy(),
            tuple(shape),
        )

    def select(self, keep: np.ndarray) -> Detections:
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep], self.masks[keep], self.shape)

    @classmethod
    def concat(cls, parts: list[Detections], shape: tuple[int, int]) -> Detections:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(shape)
        return cls(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.classes for p in parts]), np.concatenate([p.masks for p in parts]),
                   tuple(shape))


def keep_in_core(dets: Detections, core_y: tuple[int, int], core_x: tuple[int, int],
                 offset: tuple[int, int], shape: tuple[int, int]) -> Detections:
    """Detections of a tile whose box centre lies in its core, moved to plane coordinates.

    ``core_y``/``core_x`` are half-open ranges in plane coordinates, ``offset`` the plane
    coordinate (y, x) of the tile's pixel (0, 0).
    """
    if not len(dets):
        return Detections.empty(shape, dets.masks.shape[-1] if dets.masks.ndim == 3 else 28)
    boxes = dets.boxes.astype(np.float32).copy()
    boxes[:, [0, 2]] += offset[1]
    boxes[:, [1, 3]] += offset[0]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    keep = (cy >= core_y[0]) & (cy < core_y[1]) & (cx >= core_x[0]) & (cx < core_x[1])
    out = dets.select(keep)
    out.boxes = boxes[keep]
    out.shape = tuple(shape)
    return out


def suppress_duplicates(dets: Detections, iou: float) -> Detections:
    """Per-class non-maximum suppression over a whole plane (after merging tiles).

    On detections that were already suppressed at the same IoU within one tile it
    changes nothing, so a single-tile run is unaffected.
    """
    if len(dets) < 2:
        return dets
    keep = batched_nms(torch.from_numpy(dets.boxes), torch.from_numpy(dets.scores),
                       torch.from_numpy(dets.classes), float(iou)).numpy()
    return dets.select(np.sort(keep))


def detect_plane_iter(
    model: SegmentationModel, x: np.ndarray, thresholds: dict[str, float], run: TileRun,
    batch_size: int | None = None, forward: Callable[[Any], Any] | None = None,
) -> Generator[ProgressEvent, None, Detections]:
    """Detections of a normalised ``(C, H, W)`` plane, tile by tile.

    ``model.forward_tiles(batch, thresholds=...)`` gives one detection set per tile (a
    :class:`Detections` or a dict as :meth:`Detections.from_torch` takes); each tile keeps
    the detections whose box centre lies in its core (so every object is found in exactly
    one tile, whole when the tile context exceeds the largest object), moved to plane
    coordinates; duplicates across tile borders are then suppressed at ``nms_thresh``.
    ``forward(batch)`` replaces ``forward_tiles`` (e.g. a generator over the network's stages,
    see :meth:`~seglab.inference.engine.TileRun.tile_outputs`).
    """
    h, w = x.shape[-2:]
    n_tiles = 0

    def keep(tile: Tile, d: Any) -> Detections:
        nonlocal n_tiles
        n_tiles += 1
        dets = d if isinstance(d, Detections) else Detections.from_torch(d, tile.shape)
        return keep_in_core(dets, tile.core_y, tile.core_x, tile.origin, tile.plane_shape)

    if forward is None:
        forward = lambda b: model.forward_tiles(b, thresholds=thresholds)  # noqa: E731
    parts = yield from run.tile_outputs(model, x, forward, keep, batch_size=batch_size)
    merged = Detections.concat(parts, (h, w))
    return suppress_duplicates(merged, thresholds.get("nms_thresh", 1.0)) if n_tiles > 1 else merged


@numba.njit(cache=True, nogil=True)
def _cell_weights(lo, hi, start, n, m):
    """Bilinear sampling of ``m`` mask cells over ``[lo, hi)`` at pixels ``start .. start + n - 1``:
    for each pixel its two cells (the same one at the clamped ends) and the second's weight."""
    i0 = np.empty(n, np.int64)
    i1 = np.empty(n, np.int64)
    f = np.empty(n, np.float64)
    step = max((hi - lo) / m, 1e-6)
    for a in range(n):
        u = min(max((start + a - lo) / step - 0.5, 0.0), m - 1.0)
        k = int(np.floor(u))
        i0[a], i1[a], f[a] = k, min(k + 1, m - 1), u - k
    return i0, i1, f


@numba.njit(cache=True, nogil=True)
def _paste_range(labels, boxes, masks, order, mask_thresh, min_area, kept, next_id):
    """Paste detections ``order`` (best first) into ``labels`` where still free, each mask
    resampled bilinearly over its box and thresholded; one that keeps fewer than ``min_area``
    pixels or less than half its mask is skipped. Marks ``kept``; returns the last id given."""
    h, w = labels.shape
    for j in range(order.size):
        i = order[j]
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), h)
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), w)
        if r1 <= r0 or c1 <= c0:
            continue
        mk = masks[i]
        ri0, ri1, rf = _cell_weights(y0, y1, r0, r1 - r0, mk.shape[0])
        ci0, ci1, cf = _cell_weights(x0, x1, c0, c1 - c0, mk.shape[1])
        inside = np.zeros((r1 - r0, c1 - c0), np.bool_)
        total = 0
        free = 0
        for a in range(r1 - r0):
            for b in range(c1 - c0):
                top = (1.0 - cf[b]) * mk[ri0[a], ci0[b]] + cf[b] * mk[ri0[a], ci1[b]]
                bottom = (1.0 - cf[b]) * mk[ri1[a], ci0[b]] + cf[b] * mk[ri1[a], ci1[b]]
                if (1.0 - rf[a]) * top + rf[a] * bottom >= mask_thresh:
                    inside[a, b] = True
                    total += 1
                    if labels[r0 + a, c0 + b] == 0:
                        free += 1
        if free < min_area or free < 0.5 * total:
            continue
        next_id += 1
        kept[j] = True
        for a in range(r1 - r0):
            for b in range(c1 - c0):
                if inside[a, b] and labels[r0 + a, c0 + b] == 0:
                    labels[r0 + a, c0 + b] = next_id
    return next_id


#: detections pasted between two progress steps (about 20 ms of 2048x2048 nuclei; a cancel waits
#: at most that long)
PASTE_CHUNK = 256


def paste_detections(dets: Detections, shape: tuple[int, int], thresholds: dict[str, float]) -> Prediction:
    """:func:`paste_detections_iter` run to the end."""
    return run_to_end(paste_detections_iter(dets, shape, thresholds))


def paste_detections_iter(dets: Detections, shape: tuple[int, int], thresholds: dict[str, float]
                          ) -> Generator[Step, None, Prediction]:
    """Labels, table and box shapes of a plane's detections, yielding ``(done, total)`` every
    :data:`PASTE_CHUNK` detections.

    Detections below ``score_thresh`` are dropped; masks are thresholded at
    ``mask_thresh`` and pasted at full resolution in order of decreasing score, so
    where objects overlap the higher score wins. An object that keeps fewer than
    ``min_area`` pixels, or less than half of its own mask, is dropped (a fragment or
    a duplicate of a better detection). Ids are 1..n in order of decreasing score.
    """
    h, w = int(shape[0]), int(shape[1])
    labels = np.zeros((h, w), dtype=np.int32)
    score_thresh = float(thresholds.get("score_thresh", 0.0))
    mask_thresh = float(thresholds.get("mask_thresh", 0.5))
    min_area = max(float(thresholds.get("min_area", 1.0)), 1.0)
    order = np.argsort(-dets.scores, kind="stable")
    order = order[dets.scores[order] >= score_thresh]
    boxes = np.ascontiguousarray(dets.boxes, dtype=np.float64).reshape(-1, 4)
    masks = np.ascontiguousarray(dets.masks, dtype=np.float32)
    flags = np.zeros(order.size, dtype=np.bool_)
    total = int(order.size)
    next_id = 0
    yield (0, total)
    for start in range(0, total, PASTE_CHUNK):
        part = slice(start, start + PASTE_CHUNK)
        next_id = _paste_range(labels, boxes, masks, order[part], mask_thresh, min_area, flags[part], next_id)
        yield (min(start + PASTE_CHUNK, total), total)
    kept_idx = order[flags].astype(np.int64)
    score_by_id = np.concatenate([[np.nan], dets.scores[kept_idx].astype(np.float64)])
    table = object_table(labels, score_by_id)
    ids = table["label"]  # every kept object has pixels, so ids == 1..n
    src = kept_idx[ids - 1]
    boxes = clip_boxes(dets.boxes[src], (h, w))
    table["class"] = dets.classes[src].astype(np.int64)
    table["bbox_y0"], table["bbox_x0"] = boxes[:, 1], boxes[:, 0]
    table["bbox_y1"], table["bbox_x1"] = boxes[:, 3], boxes[:, 2]
    return Prediction(labels=labels, table=table, extras={"shapes": box_shapes(boxes, ids)})


def clip_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boxes ``(x0, y0, x1, y1)`` (float64) cut to a plane of ``shape``: ``[0, W] x [0, H]``.

    A detection near the edge may reach into the tiles' reflected border; its mask is pasted over
    its whole box (the mask is relative to it), but the box it is reported with covers only the image."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0.0, float(shape[1]))
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0.0, float(shape[0]))
    return out


def box_shapes(boxes: np.ndarray, ids: np.ndarray) -> dict:
    """napari-ready rectangles for boxes ``(x0, y0, x1, y1)``: (y, x) corners where pixel centres
    are whole numbers (so a box of pixels 10..29 has its edges at 9.5 and 29.5)."""
    data = []
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4) - 0.5:
        data.append(np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=np.float64))
    return {"type": "rectangle", "data": data, "label": np.asarray(ids, dtype=np.int64)}
