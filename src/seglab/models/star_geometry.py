"""Star-convex polygons: training targets (radial distances) and polygon geometry.

An object is described from a point inside it by its distances to the boundary along
``n_rays`` rays at angles ``2 * pi * k / n_rays`` (ray ``k`` points along
``(dy, dx) = (sin, cos)``). Compiled with numba: radial distances of a 1024x1024
label image take well under a second (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Generator

import numba
import numpy as np
from scipy import ndimage as ndi

from seglab.progress import run_to_end


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


def polygon_coords(points: np.ndarray, dists: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``(N, n_rays, 2)`` float64 vertices ``(y, x)`` of the polygons with centres ``points``
    (N, 2) and radial distances ``dists`` (N, n_rays), written into ``out`` when given."""
    points = np.ascontiguousarray(points, dtype=np.float64)
    dists = np.ascontiguousarray(dists)
    if out is None:
        out = np.empty((dists.shape[0], dists.shape[1], 2), dtype=np.float64)
    _fill_polygon_coords(points, dists, ray_directions(dists.shape[1]), out)
    return out


@numba.njit(cache=True, nogil=True)
def _fill_polygon_coords(points, dists, dirs, out):
    for i in range(dists.shape[0]):
        py, px = points[i, 0], points[i, 1]
        for k in range(dists.shape[1]):
            d = np.float64(dists[i, k])
            out[i, k, 0] = py + d * dirs[k, 0]
            out[i, k, 1] = px + d * dirs[k, 1]


@numba.njit(cache=True, nogil=True)
def polygon_areas(coords):
    """Areas of ``(N, n, 2)`` polygons (shoelace formula)."""
    n, m = coords.shape[0], coords.shape[1]
    out = np.empty(n)
    for i in range(n):
        s = 0.0
        for k in range(m):
            q = (k + 1) % m
            s += coords[i, k, 1] * coords[i, q, 0] - coords[i, q, 1] * coords[i, k, 0]
        out[i] = 0.5 * abs(s)
    return out


@numba.njit(cache=True, nogil=True)
def _cross(ay, ax, by, bx):
    return ax * by - ay * bx


@numba.njit(cache=True, nogil=True)
def _insert_sorted(buf, k, value):
    """Insert ``value`` into the sorted ``buf[:k]`` (insertion sort: few values); return the new count."""
    q = k
    while q > 0 and buf[q - 1] > value:
        buf[q] = buf[q - 1]
        q -= 1
    buf[q] = value
    return k + 1


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
    by0, bx0 = b[:, 0].min(), b[:, 1].min()
    by1, bx1 = b[:, 0].max(), b[:, 1].max()
    ts = np.empty(m + 2)
    total = 0.0
    for i in range(n):
        a0y, a0x = a[i, 0], a[i, 1]
        a1y, a1x = a[(i + 1) % n, 0], a[(i + 1) % n, 1]
        dy, dx = a1y - a0y, a1x - a0x
        if dy == 0 and dx == 0:
            continue
        # an edge outside b's bounding box lies outside b
        if max(a0y, a1y) < by0 or min(a0y, a1y) > by1 or max(a0x, a1x) < bx0 or min(a0x, a1x) > bx1:
            continue
        k = 0
        collinear = False
        for j in range(m):
            b0y, b0x = b[j, 0], b[j, 1]
            b1y, b1x = b[(j + 1) % m, 0], b[(j + 1) % m, 1]
            if (max(b0y, b1y) < min(a0y, a1y) or min(b0y, b1y) > max(a0y, a1y)
                    or max(b0x, b1x) < min(a0x, a1x) or min(b0x, b1x) > max(a0x, a1x)):
                continue
            ey, ex = b1y - b0y, b1x - b0x
            den = _cross(dy, dx, ey, ex)
            wy, wx = b0y - a0y, b0x - a0x
            if den == 0:
                if _cross(wy, wx, dy, dx) == 0:
                    collinear = True
                continue
            t = _cross(wy, wx, ey, ex) / den
            u = _cross(wy, wx, dy, dx) / den
            if 0.0 < t < 1.0 and 0.0 <= u <= 1.0:
                k = _insert_sorted(ts, k, t)
        t0 = 0.0
        for s in range(k + 1):
            t1 = ts[s] if s < k else 1.0
            if t1 - t0 > 1e-12:
                tm = 0.5 * (t0 + t1)
                my, mx = a0y + tm * dy, a0x + tm * dx
                shared = _on_edge_direction(my, mx, b, dy, dx, 1e-9) if collinear else 0
                if shared == 0:
                    ins = _inside(my, mx, b)
                else:
                    ins = keep_shared and shared > 0
                if ins:
                    p0y, p0x = a0y + t0 * dy - oy, a0x + t0 * dx - ox
                    p1y, p1x = a0y + t1 * dy - oy, a0x + t1 * dx - ox
                    total += _cross(p0y, p0x, p1y, p1x)
            t0 = t1
    return total


@numba.njit(cache=True, nogil=True)
def intersection_area(a, b):
    """Exact area of the intersection of two simple polygons of the same orientation."""
    oy = 0.5 * (a[:, 0].mean() + b[:, 0].mean())
    ox = 0.5 * (a[:, 1].mean() + b[:, 1].mean())
    s = _boundary_inside(a, b, oy, ox, True) + _boundary_inside(b, a, oy, ox, False)
    return abs(0.5 * s)


@numba.njit(cache=True, nogil=True)
def _ray_to_line(ux, uy, px, py, qx, qy):
    """Distance from the origin along the direction (ux, uy) to the line through p and q, in
    multiples of the direction's length (the point reached is (r * ux, r * uy) either way)."""
    ex, ey = qx - px, qy - py
    return _cross(py, px, ey, ex) / _cross(uy, ux, ey, ex)


@numba.njit(cache=True, nogil=True)
def _direction_key(x, y):
    """A number in [0, 4) that orders directions (x, y) != (0, 0) as their angle from the x axis
    in [0, 2 pi) does (the "diamond angle": one division, no trigonometry)."""
    if y >= 0.0:
        return y / (x + y) if x >= 0.0 else 1.0 - x / (y - x)
    return 2.0 - y / (-x - y) if x < 0.0 else 3.0 + x / (x - y)


@numba.njit(cache=True, nogil=True)
def star_overlap_area(a, b, cy, cx):
    """Area of the intersection of star polygon ``a`` (vertices ``(y, x)`` along the rays from its
    centre ``(cy, cx)``, counter-clockwise in (x, y) as :func:`polygon_coords` makes them) and
    polygon ``b`` of the same orientation, when that centre lies strictly inside the kernel of
    ``b`` (every edge of ``b`` sees it on its inner side); -1 when it does not.

    Both are then star-shaped about the centre, and the intersection is the set of points whose
    distance from it is at most the smaller of the two boundaries' distances in their direction:
    one sweep over the merged vertex directions of both, a triangle per sector (two where the
    boundaries cross), O(n + m) instead of :func:`intersection_area`'s edge pairs."""
    n, m = a.shape[0], b.shape[0]
    bx = np.empty(m)
    by = np.empty(m)
    scale = 0.0
    for q in range(m):
        bx[q], by[q] = b[q, 1] - cx, b[q, 0] - cy
        scale = max(scale, abs(bx[q]) + abs(by[q]))
    eps = 1e-9 * scale * scale
    for q in range(m):  # the centre strictly left of every edge of b (counter-clockwise)
        u = (q + 1) % m
        ex, ey = bx[u] - bx[q], by[u] - by[q]
        if _cross(ey, ex, -by[q], -bx[q]) <= eps:
            return -1.0
    ax = np.empty(n)
    ay = np.empty(n)
    ta = np.empty(n)
    for k in range(n):
        ax[k], ay[k] = a[k, 1] - cx, a[k, 0] - cy
        if ax[k] == 0.0 and ay[k] == 0.0:
            return -1.0
        ta[k] = _direction_key(ax[k], ay[k])
    tb = np.empty(m)
    l0 = 0
    for q in range(m):
        tb[q] = _direction_key(bx[q], by[q])
        if tb[q] < tb[l0]:
            l0 = q
    # a's directions must start at its first vertex and increase (rays at 2 pi k / n)
    for k in range(1, n):
        if ta[k] < ta[k - 1]:
            return -1.0
    # merge the two increasing sequences of directions (b's from its smallest), sweeping sectors
    total = 0.0
    ia, ib = 0, 0  # vertices of a and b passed so far
    prev_x, prev_y = 0.0, 0.0
    first_x, first_y = 0.0, 0.0
    take_a = True
    first = True
    n_break = n + m
    for s_ in range(n_break + 1):
        if s_ < n_break:
            take_a = ib >= m or (ia < n and ta[ia] <= tb[(l0 + ib) % m])
            if take_a:
                vx, vy = ax[ia], ay[ia]
                ia += 1
            else:
                q = (l0 + ib) % m
                vx, vy = bx[q], by[q]
                ib += 1
        else:  # close the sweep at the first direction
            vx, vy = first_x, first_y
        if first:
            first_x, first_y = vx, vy
            first = False
            prev_x, prev_y = vx, vy
            continue
        # the edges of a and b over the sector from (prev_x, prev_y) to (vx, vy): those before the
        # vertices passed up to the sector's start
        if s_ < n_break:
            pa = ia - 1 if take_a else ia
            pb = ib if take_a else ib - 1
        else:
            pa, pb = n, m
        ka0 = (pa - 1) % n
        ka1 = pa % n
        kb0 = (l0 + pb - 1) % m
        kb1 = (l0 + pb) % m
        # the directions are not unit vectors, nor need be: the boundary point r * v along v is the
        # same for any length of v (r scales inversely), and so is each triangle's area
        cross_dirs = _cross(prev_y, prev_x, vy, vx)
        if cross_dirs <= 0.0:  # a sector of no width (directions repeat)
            prev_x, prev_y = vx, vy
            continue
        ra0 = _ray_to_line(prev_x, prev_y, ax[ka0], ay[ka0], ax[ka1], ay[ka1])
        ra1 = _ray_to_line(vx, vy, ax[ka0], ay[ka0], ax[ka1], ay[ka1])
        rb0 = _ray_to_line(prev_x, prev_y, bx[kb0], by[kb0], bx[kb1], by[kb1])
        rb1 = _ray_to_line(vx, vy, bx[kb0], by[kb0], bx[kb1], by[kb1])
        r0, r1 = min(ra0, rb0), min(ra1, rb1)
        d0, d1 = ra0 - rb0, ra1 - rb1
        if (d0 < 0 < d1) or (d1 < 0 < d0):  # the boundaries cross inside the sector
            eax, eay = ax[ka1] - ax[ka0], ay[ka1] - ay[ka0]
            ebx, eby = bx[kb1] - bx[kb0], by[kb1] - by[kb0]
            f = _cross(by[kb0] - ay[ka0], bx[kb0] - ax[ka0], eby, ebx) / _cross(eay, eax, eby, ebx)
            xx, xy = ax[ka0] + f * eax, ay[ka0] + f * eay
            total += 0.5 * _cross(r0 * prev_y, r0 * prev_x, xy, xx)
            total += 0.5 * _cross(xy, xx, r1 * vy, r1 * vx)
        else:
            total += 0.5 * r0 * r1 * cross_dirs
        prev_x, prev_y = vx, vy
    return total


@numba.njit(cache=True, nogil=True)
def _lens_area(dy, dx, r1, r2):
    """Area of the intersection of two discs of radii r1, r2 whose centres are (dy, dx) apart."""
    d = np.sqrt(dy * dy + dx * dx)
    if r1 <= 0 or r2 <= 0 or d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        r = min(r1, r2)
        return np.pi * r * r
    a1 = r1 * r1 * np.arccos(min(1.0, (d * d + r1 * r1 - r2 * r2) / (2 * d * r1)))
    a2 = r2 * r2 * np.arccos(min(1.0, (d * d + r2 * r2 - r1 * r1) / (2 * d * r2)))
    k = (-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2)
    return a1 + a2 - 0.5 * np.sqrt(max(k, 0.0))


@numba.njit(cache=True, nogil=True)
def _bounding_boxes(coords):
    """``(N, 4)`` boxes ``(y0, x0, y1, x1)`` of polygons ``(N, n, 2)`` (one pass, no temporaries)."""
    n, m = coords.shape[0], coords.shape[1]
    out = np.empty((n, 4))
    for i in range(n):
        y0, x0 = coords[i, 0, 0], coords[i, 0, 1]
        y1, x1 = y0, x0
        for k in range(1, m):
            y, x = coords[i, k, 0], coords[i, k, 1]
            y0, y1 = min(y0, y), max(y1, y)
            x0, x1 = min(x0, x), max(x1, x)
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = y0, x0, y1, x1
    return out


@numba.njit(cache=True, nogil=True)
def _nms_buckets(bbox, cell):
    """Candidates bucketed by the grid cell holding their bounding-box centre: (order, starts,
    y0, x0, gh, gw, half), ``half`` the largest half box size."""
    n = bbox.shape[0]
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
    return order, starts, y0, x0, gh, gw, half


@numba.njit(cache=True, nogil=True)
def _nms_range(coords, areas, bbox, cell, thresh, centres, inner, outer, order, starts, y0, x0, gh, gw, half,
               suppressed, keep, i0, i1):
    """Greedy suppression by candidates ``i0 .. i1 - 1`` (best first), updating ``suppressed``
    and ``keep``; calls over consecutive ranges equal one call over all candidates."""
    for i in range(i0, i1):
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
                    small = min(areas[i], areas[j])
                    if small <= 0:
                        suppressed[j] = True
                        continue
                    # the boxes' overlap bounds the polygons' overlap: skip pairs that cannot exceed it
                    box = ((min(bbox[i, 2], bbox[j, 2]) - max(bbox[i, 0], bbox[j, 0]))
                           * (min(bbox[i, 3], bbox[j, 3]) - max(bbox[i, 1], bbox[j, 1])))
                    if box <= thresh * small:
                        continue
                    dy, dx = centres[i, 0] - centres[j, 0], centres[i, 1] - centres[j, 1]
                    # the discs inscribed around the centres bound it from below: enough to suppress
                    if _lens_area(dy, dx, inner[i], inner[j]) > thresh * small:
                        suppressed[j] = True
                        continue
                    # the discs around the centres that hold the polygons bound it from above (with a
                    # margin for rounding): too small to suppress, keep without computing
                    stars = outer[i] < np.inf and outer[j] < np.inf  # given with centres and rays
                    if stars and _lens_area(dy, dx, outer[i], outer[j]) < thresh * small * (1.0 - 1e-9) - 1e-9:
                        continue
                    # star-shaped about a common centre (nearly always, for candidates of one
                    # object): the overlap in one sweep; otherwise by the edge pairs
                    inter = -1.0
                    if stars:
                        inter = star_overlap_area(coords[i], coords[j], centres[i, 0], centres[i, 1])
                        if inter < 0:
                            inter = star_overlap_area(coords[j], coords[i], centres[j, 0], centres[j, 1])
                    if inter < 0:
                        inter = intersection_area(coords[i], coords[j])
                    if inter > thresh * small:
                        suppressed[j] = True


#: candidates (NMS) or polygons (rendering) per compiled call between two progress steps
CHUNK = 2048


def polygon_nms(
    coords: np.ndarray,
    scores: np.ndarray,
    thresh: float,
    points: np.ndarray | None = None,
    dists: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`polygon_nms_iter` run to the end."""
    return run_to_end(polygon_nms_iter(coords, scores, thresh, points, dists))


def polygon_nms_iter(
    coords: np.ndarray,
    scores: np.ndarray,
    thresh: float,
    points: np.ndarray | None = None,
    dists: np.ndarray | None = None,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Indices of the polygons kept by greedy non-maximum suppression, best score first.

    A polygon is suppressed when its overlap with a kept, higher-scoring polygon —
    intersection area over the smaller of the two areas — exceeds ``thresh``. The
    decision is the exact polygon overlap; bounds only save work: the bounding boxes'
    overlap (too small: keep without computing) and, for star-convex polygons given with
    their centres ``points`` and radial ``dists``, the overlap of the discs they contain
    (large enough: suppress without computing) and of the discs that contain them (too
    small: keep without computing). The exact overlap of two star polygons, one of whose
    centres lies in the other's kernel, is one angular sweep (:func:`star_overlap_area`).
    Yields ``(done, total)`` candidates every
    :data:`CHUNK`, so that it can be cancelled.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if len(coords) == 0:
        return np.zeros(0, dtype=np.int64)
    n = len(coords)
    yield (0, n)
    order = np.argsort(-np.asarray(scores), kind="stable")
    c = np.ascontiguousarray(coords[order])
    yield (0, n)
    bbox = _bounding_boxes(c)
    yield (0, n)
    size = float(np.median(np.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1])))
    if points is not None and dists is not None:
        centres = np.ascontiguousarray(np.asarray(points, dtype=np.float64)[order])
        # a star polygon holds the disc of its shortest ray shortened to the chord between rays
        sorted_dists = np.asarray(dists, dtype=np.float64)[order]
        inner = sorted_dists.min(axis=1) * np.cos(np.pi / coords.shape[1])
        # and lies inside the disc of its longest ray (every vertex does, and the disc is convex)
        outer = sorted_dists.max(axis=1)
        del sorted_dists
    else:  # no centres: bounds that never decide
        centres, inner, outer = np.zeros((len(c), 2)), np.zeros(len(c)), np.full(len(c), np.inf)
    inner, outer = np.ascontiguousarray(inner), np.ascontiguousarray(outer)
    cell = max(size, 4.0)
    yield (0, n)
    areas = polygon_areas(c)
    yield (0, n)
    buckets = _nms_buckets(bbox, cell)
    yield (0, n)
    suppressed = np.zeros(n, dtype=np.bool_)
    keep = np.zeros(n, dtype=np.bool_)
    for i0 in range(0, n, CHUNK):
        _nms_range(c, areas, bbox, cell, float(thresh), centres, inner, outer, *buckets, suppressed, keep, i0,
                   min(i0 + CHUNK, n))
        yield (min(i0 + CHUNK, n), n)
    return order[keep]


@numba.njit(cache=True, nogil=True)
def _render_range(labels, coords, i0, i1):
    h, w = labels.shape
    xs = np.empty(coords.shape[1])
    for i in range(i0, i1):
        poly = coords[i]
        n = poly.shape[0]
        r0 = max(int(np.ceil(poly[:, 0].min())), 0)
        r1 = min(int(np.floor(poly[:, 0].max())), h - 1)
        for r in range(r0, r1 + 1):
            # crossings of the row (through pixel centres) with the edges, even-odd rule
            k = 0
            j = n - 1
            for q in range(n):
                yq, yj = poly[q, 0], poly[j, 0]
                if (yq > r) != (yj > r):
                    k = _insert_sorted(xs, k, poly[q, 1] + (r - yq) * (poly[j, 1] - poly[q, 1]) / (yj - yq))
                j = q
            for p in range(0, k - 1, 2):
                c0 = max(int(np.ceil(xs[p])), 0)
                c1 = min(int(np.ceil(xs[p + 1])) - 1, w - 1)
                for c in range(c0, c1 + 1):
                    if labels[r, c] == 0:
                        labels[r, c] = i + 1


def render_polygons(coords: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`render_polygons_iter` run to the end."""
    return run_to_end(render_polygons_iter(coords, shape))


def render_polygons_iter(coords: np.ndarray, shape: tuple[int, int]) -> Generator[tuple[int, int], None, np.ndarray]:
    """Paint polygons ``(N, n, 2)`` (best first) into labels ``1..N``: a pixel belongs to
    the first polygon that holds its centre, so the better polygon wins overlaps.
    Polygons left without pixels keep no pixel of their id. Yields ``(done, total)``
    polygons every :data:`CHUNK`."""
    labels = np.zeros(tuple(int(v) for v in shape), dtype=np.int32)
    if len(coords) == 0:
        return labels
    coords = np.ascontiguousarray(coords, dtype=np.float64)
    n = len(coords)
    for i0 in range(0, n, CHUNK):
        _render_range(labels, coords, i0, min(i0 + CHUNK, n))
        yield (min(i0 + CHUNK, n), n)
    return labels
