"""Star-convex polygons: training targets (radial distances) and polygon geometry.

An object is described from a point inside it by its distances to the boundary along
``n_rays`` rays at angles ``2 * pi * k / n_rays`` (ray ``k`` points along
``(dy, dx) = (sin, cos)``). Compiled with numba: radial distances of a 1024x1024
label image take well under a second (see docs/benchmarks.md).
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage as ndi


def ray_directions(n_rays: int) -> np.ndarray:
    """``(n_rays, 2)`` unit vectors ``(dy, dx)`` of the rays."""
    phi = 2 * np.pi * np.arange(n_rays) / n_rays
    return np.stack([np.sin(phi), np.cos(phi)], axis=1)


def fill_label_holes(labels: np.ndarray) -> np.ndarray:
    """Labels with the holes inside each object filled by that object (other objects kept)."""
    out = np.asarray(labels).copy()
    for i, sl in enumerate(ndi.find_objects(out), start=1):
        if sl is None:
            continue
        # pad by one so that a hole touching the crop's edge is not taken for background
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        mask = out[sl] == i
        filled = ndi.binary_fill_holes(mask)
        out[sl][filled & (out[sl] == 0)] = i
    return out


@numba.njit(cache=True, nogil=True)
def _radial_distances(labels, dirs, stride):
    h, w = labels.shape
    n_rays = dirs.shape[0]
    hs = (h + stride - 1) // stride
    ws = (w + stride - 1) // stride
    out = np.zeros((n_rays, hs, ws), dtype=np.float32)
    for i in range(hs):
        y = i * stride
        for j in range(ws):
            x = j * stride
            lab = labels[y, x]
            if lab == 0:
                continue
            for k in range(n_rays):
                dy = dirs[k, 0]
                dx = dirs[k, 1]
                t = 0.0
                while True:
                    t += 0.5
                    yy = int(np.floor(y + t * dy + 0.5))
                    xx = int(np.floor(x + t * dx + 0.5))
                    if yy < 0 or yy >= h or xx < 0 or xx >= w or labels[yy, xx] != lab:
                        # the boundary lies between the last sample inside and this one
                        out[k, i, j] = t - 0.25
                        break
    return out


def radial_distances(labels: np.ndarray, n_rays: int, stride: int = 1) -> np.ndarray:
    """``(n_rays, ceil(H/stride), ceil(W/stride))`` distances from each sampled pixel to
    the boundary of its object along every ray (0 on background).

    Rays are followed in half-pixel steps; the boundary is placed midway between the
    last step inside the object and the first outside it (or outside the image).
    """
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    return _radial_distances(labels, ray_directions(n_rays), int(stride))


def polygon_coords(points: np.ndarray, dists: np.ndarray) -> np.ndarray:
    """``(N, n_rays, 2)`` vertices ``(y, x)`` of the polygons with centres ``points`` (N, 2)
    and radial distances ``dists`` (N, n_rays)."""
    dirs = ray_directions(dists.shape[1])
    return points[:, None, :].astype(np.float64) + dists[:, :, None].astype(np.float64) * dirs[None]


def polygon_areas(coords: np.ndarray) -> np.ndarray:
    """Areas of ``(N, n, 2)`` polygons (shoelace formula)."""
    y, x = coords[..., 0], coords[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y, axis=-1))


@numba.njit(cache=True, nogil=True)
def _cross(ay, ax, by, bx):
    return ax * by - ay * bx


@numba.njit(cache=True, nogil=True)
def _inside(py, px, poly):
    """Even-odd point-in-polygon test."""
    n = poly.shape[0]
    inside = False
    j = n - 1
    for i in range(n):
        yi, xi = poly[i, 0], poly[i, 1]
        yj, xj = poly[j, 0], poly[j, 1]
        if (yi > py) != (yj > py):
            xc = xi + (py - yi) * (xj - xi) / (yj - yi)
            if px < xc:
                inside = not inside
        j = i
    return inside


@numba.njit(cache=True, nogil=True)
def _on_edge_direction(py, px, poly, dy, dx, eps):
    """+1 / -1 if (py, px) lies on an edge of ``poly`` running in the same / opposite
    direction as (dy, dx); 0 if it lies on no edge."""
    n = poly.shape[0]
    for i in range(n):
        ay, ax = poly[i, 0], poly[i, 1]
        by, bx = poly[(i + 1) % n, 0], poly[(i + 1) % n, 1]
        ey, ex = by - ay, bx - ax
        length2 = ey * ey + ex * ex
        if length2 <= 0:
            continue
        t = ((py - ay) * ey + (px - ax) * ex) / length2
        if t < 0 or t > 1:
            continue
        qy, qx = ay + t * ey - py, ax + t * ex - px
        if qy * qy + qx * qx <= eps * eps:
            return 1 if dy * ey + dx * ex > 0 else -1
    return 0


@numba.njit(cache=True, nogil=True)
def _boundary_inside(a, b, oy, ox, keep_shared):
    """Sum of cross products over the parts of ``a``'s edges that lie inside ``b``
    (coordinates relative to (oy, ox)); the Green's-theorem share of a's boundary
    in the intersection. Edges shared with ``b`` in the same direction count when
    ``keep_shared``; edges shared in opposite directions never count."""
    n, m = a.shape[0], b.shape[0]
    ts = np.empty(m + 2)
    total = 0.0
    for i in range(n):
        a0y, a0x = a[i, 0] - oy, a[i, 1] - ox
        a1y, a1x = a[(i + 1) % n, 0] - oy, a[(i + 1) % n, 1] - ox
        dy, dx = a1y - a0y, a1x - a0x
        if dy == 0 and dx == 0:
            continue
        k = 0
        ts[k] = 0.0
        k += 1
        ts[k] = 1.0
        k += 1
        for j in range(m):
            b0y, b0x = b[j, 0] - oy, b[j, 1] - ox
            b1y, b1x = b[(j + 1) % m, 0] - oy, b[(j + 1) % m, 1] - ox
            ey, ex = b1y - b0y, b1x - b0x
            den = _cross(dy, dx, ey, ex)
            if den == 0:
                continue
            wy, wx = b0y - a0y, b0x - a0x
            t = _cross(wy, wx, ey, ex) / den
            u = _cross(wy, wx, dy, dx) / den
            if 0.0 < t < 1.0 and 0.0 <= u <= 1.0:
                ts[k] = t
                k += 1
        tt = np.sort(ts[:k])
        for s in range(k - 1):
            t0, t1 = tt[s], tt[s + 1]
            if t1 - t0 <= 1e-12:
                continue
            tm = 0.5 * (t0 + t1)
            my, mx = a0y + tm * dy + oy, a0x + tm * dx + ox
            shared = _on_edge_direction(my, mx, b, dy, dx, 1e-9)
            if shared == 0:
                ins = _inside(my, mx, b)
            else:
                ins = keep_shared and shared > 0
            if ins:
                p0y, p0x = a0y + t0 * dy, a0x + t0 * dx
                p1y, p1x = a0y + t1 * dy, a0x + t1 * dx
                total += _cross(p0y, p0x, p1y, p1x)
    return total


@numba.njit(cache=True, nogil=True)
def intersection_area(a, b):
    """Exact area of the intersection of two simple polygons of the same orientation."""
    oy = 0.5 * (a[:, 0].mean() + b[:, 0].mean())
    ox = 0.5 * (a[:, 1].mean() + b[:, 1].mean())
    s = _boundary_inside(a, b, oy, ox, True) + _boundary_inside(b, a, oy, ox, False)
    return abs(0.5 * s)


@numba.njit(cache=True, nogil=True)
def _nms(coords, areas, bbox, cell, thresh):
    n = coords.shape[0]
    suppressed = np.zeros(n, dtype=np.bool_)
    keep = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return keep
    # bucket candidates by the cell holding their bounding-box centre
    cy = (0.5 * (bbox[:, 0] + bbox[:, 2]) // cell).astype(np.int64)
    cx = (0.5 * (bbox[:, 1] + bbox[:, 3]) // cell).astype(np.int64)
    y0, x0 = cy.min(), cx.min()
    gh, gw = cy.max() - y0 + 1, cx.max() - x0 + 1
    cid = (cy - y0) * gw + (cx - x0)
    order = np.argsort(cid, kind="mergesort")
    starts = np.zeros(gh * gw + 1, dtype=np.int64)
    for i in range(n):
        starts[cid[i] + 1] += 1
    for c in range(gh * gw):
        starts[c + 1] += starts[c]
    half = 0.0
    for i in range(n):
        half = max(half, 0.5 * max(bbox[i, 2] - bbox[i, 0], bbox[i, 3] - bbox[i, 1]))
    for i in range(n):
        if suppressed[i]:
            continue
        keep[i] = True
        # cells whose candidates' boxes can reach this box
        r0 = max(int((bbox[i, 0] - half) // cell) - y0, 0)
        r1 = min(int((bbox[i, 2] + half) // cell) - y0, gh - 1)
        c0 = max(int((bbox[i, 1] - half) // cell) - x0, 0)
        c1 = min(int((bbox[i, 3] + half) // cell) - x0, gw - 1)
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                g = r * gw + c
                for q in range(starts[g], starts[g + 1]):
                    j = order[q]
                    if j <= i or suppressed[j]:
                        continue
                    if (bbox[j, 0] >= bbox[i, 2] or bbox[j, 2] <= bbox[i, 0]
                            or bbox[j, 1] >= bbox[i, 3] or bbox[j, 3] <= bbox[i, 1]):
                        continue
                    inter = intersection_area(coords[i], coords[j])
                    small = min(areas[i], areas[j])
                    if small <= 0 or inter / small > thresh:
                        suppressed[j] = True
    return keep


def polygon_nms(coords: np.ndarray, scores: np.ndarray, thresh: float) -> np.ndarray:
    """Indices of the polygons kept by greedy non-maximum suppression, best score first.

    A polygon is suppressed when its overlap with a kept, higher-scoring polygon —
    intersection area over the smaller of the two areas, computed exactly on the
    polygons — exceeds ``thresh``. Bounding boxes only pre-filter the pairs.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if len(coords) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    c = np.ascontiguousarray(coords[order])
    bbox = np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1)
    size = float(np.median(np.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1])))
    keep = _nms(c, polygon_areas(c), bbox, max(size, 4.0), float(thresh))
    return order[keep]
