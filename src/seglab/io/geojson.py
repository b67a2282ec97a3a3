"""Objects as a GeoJSON FeatureCollection of polygons, as QuPath imports it (File > Import objects).

One Feature per object (per object and plane in stacks), following QuPath's own GeoJSON:

- ``geometry``: a ``Polygon`` (a ``MultiPolygon`` for an object in pieces; holes as interior
  rings), coordinates ``[x, y]`` in pixels of the full image with pixel ``(row, col)`` covering
  ``[col, col + 1) x [row, row + 1)`` (QuPath's and ImageJ's convention); exterior rings
  counter-clockwise, holes clockwise (RFC 7946). In stacks the geometry also carries QuPath's
  ``plane`` member ``{"c": -1, "z": z, "t": t}``.
- ``properties``: ``objectType`` (``"detection"`` or ``"annotation"``), ``name`` (the object id),
  ``classification`` ``{"name", "color": [r, g, b]}`` where the object has a class,
  ``measurements`` (name -> number: every numeric column of the object table; NaN left out, as
  JSON has no NaN), and our own ``label``, ``score`` and, for stacks, ``plane`` (flat plane index).

Outlines from labels follow the pixel edges, so each polygon covers exactly its object's pixels
(area = pixel count). Polygons and boxes a model gives (StarDist, Mask R-CNN) are written as
they are, moved from napari's pixel-centre coordinates to pixel edges (+0.5).
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from seglab.errors import SeglabError
from seglab.io.atomic import atomic_file

OBJECT_TYPES = ("detection", "annotation")
#: table columns that are not written as measurements (they have their own properties)
NOT_MEASUREMENTS = ("label", "plane", "class")
#: class colours (r, g, b) by class id, cycled (QuPath shows objects in their class's colour)
CLASS_COLORS = ((255, 0, 0), (0, 160, 255), (0, 200, 0), (255, 160, 0), (200, 0, 255), (0, 200, 200),
                (255, 0, 160), (160, 120, 60), (128, 128, 128), (120, 200, 0))

# side s of a pixel: 0 top, 1 right, 2 bottom, 3 left; the neighbour across it, and where the
# side's edge starts (corner offsets, y then x) when walking each pixel clockwise on screen
_NEIGHBOUR = ((-1, 0), (0, 1), (1, 0), (0, -1))
_START = ((0, 0), (0, 1), (1, 1), (1, 0))

Ring = list  # [[x, y], ...], closed (first == last)


# --- outlines of labels --------------------------------------------------------------------------

@contextmanager
def _gc_paused() -> Iterator[None]:
    """Build many small lists without the garbage collector scanning them all again and again
    (they hold no cycles); 2-5x faster for images with many objects."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def label_geometries(labels: np.ndarray) -> dict[int, dict[str, Any]]:
    """GeoJSON geometries (``Polygon``/``MultiPolygon`` dicts) of every object of a 2D label image.

    The outlines follow pixel edges: the polygon of an object covers exactly its pixels
    (pieces touching only at a corner are separate polygons of one ``MultiPolygon``; holes are
    interior rings). Every geometry is valid as shapely/JTS define it.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise SeglabError(f"outlines are traced on 2D label images, got shape {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise SeglabError(f"labels must be integers, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise SeglabError("label images cannot hold negative ids")
    out: dict[int, dict[str, Any]] = {}
    with _gc_paused():
        for lab, loops in _label_loops(labels):
            out[lab] = _assemble(lab, loops, labels)
    return out


def _label_loops(labels: np.ndarray) -> Iterator[tuple[int, list[tuple[list, float]]]]:
    """Per label id (ascending): its boundary loops, each a simple closed curve given by its
    corners ``[[x, y], ...]`` (not closed) with its signed area (> 0 outer, < 0 hole)."""
    lab = np.pad(labels, 1)
    h, w = lab.shape
    flat = lab.ravel()
    offs = np.array([dy * w + dx for dy, dx in _NEIGHBOUR], dtype=np.int64)
    fg = np.flatnonzero(flat)
    if fg.size == 0:
        return
    # boundary edges: (pixel, side) where the neighbour across the side holds another id
    code = np.concatenate([fg[flat[fg + offs[s]] != flat[fg]] * 4 + s for s in range(4)])
    code.sort()
    p, s = code // 4, code % 4
    v = flat[p]
    # successor of each edge, walking every object clockwise on screen with the object on the
    # right: turn right round the same pixel when the next side is a boundary (so pieces that
    # touch at a corner are traced apart), else go straight on, else turn left
    s1 = (s + 1) % 4
    n1 = p + offs[s1]
    turn = flat[n1] != v
    n2 = n1 + offs[s]
    straight = ~turn & (flat[n2] != v)
    succ_code = np.where(turn, p * 4 + s1, np.where(straight, n1 * 4 + s, n2 * 4 + (s + 3) % 4))
    succ = np.searchsorted(code, succ_code)
    ring, pos = _cycles(succ)
    order = np.lexsort((pos, ring))
    ring, s_o, p_o = ring[order], s[order], p[order]
    starts = np.flatnonzero(np.r_[True, ring[1:] != ring[:-1]])
    ends = np.r_[starts[1:], ring.size] - 1
    prev_s = np.roll(s_o, 1)
    prev_s[starts] = s_o[ends]
    keep = s_o != prev_s  # corners only: where the direction changes
    sy = np.array([o[0] for o in _START])[s_o[keep]]
    sx = np.array([o[1] for o in _START])[s_o[keep]]
    py, px = np.divmod(p_o[keep], w)
    xy = np.stack([px + sx - 1, py + sy - 1], axis=1)  # padded pixel (r, c) is pixel (r-1, c-1)
    ring_k = ring[keep]
    rstarts = np.flatnonzero(np.r_[True, ring_k[1:] != ring_k[:-1]])
    bounds = np.r_[rstarts, ring_k.size]
    # per ring: signed (shoelace) area, and whether it passes a corner twice
    nxt = np.arange(1, ring_k.size + 1)
    nxt[bounds[1:] - 1] = rstarts
    x, y = xy[:, 0], xy[:, 1]
    area2 = np.add.reduceat(x * y[nxt] - x[nxt] * y, rstarts)
    corner = ring_k * ((h + 1) * (w + 1)) + y * (w + 1) + x
    corner.sort()
    twice = np.zeros(rstarts.size, dtype=bool)
    dup = np.flatnonzero(corner[1:] == corner[:-1])
    twice[corner[dup] // ((h + 1) * (w + 1))] = True
    ring_label = flat[p_o[starts]]
    by_label = np.argsort(ring_label, kind="stable")
    pts_all = xy.tolist()
    for lab_value, group in itertools.groupby(by_label.tolist(), key=lambda r: int(ring_label[r])):
        loops: list[tuple[list, float]] = []
        for r in group:
            pts = pts_all[bounds[r]:bounds[r + 1]]
            if not twice[r]:
                loops.append((pts, 0.5 * float(area2[r])))
            else:  # a ring through a corner twice: split it there into simple loops
                loops.extend((lp, _signed_area(lp)) for lp in _split_loops(pts))
        yield lab_value, loops


def _cycles(succ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a permutation ``succ``: each element's cycle id and its position along the cycle
    (0 at the cycle's smallest element), by pointer jumping (no Python loop per element)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n = succ.size
    graph = csr_matrix((np.ones(n, dtype=np.int8), (np.arange(n), succ)), shape=(n, n))
    _, comp = connected_components(graph, directed=True, connection="weak")
    first = np.full(comp.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n))
    is_head = np.zeros(n, dtype=bool)
    is_head[first] = True
    nxt = succ.astype(np.int64).copy()
    nxt[is_head[succ]] = -1  # cut each cycle before its head
    dist = (nxt >= 0).astype(np.int64)  # steps to the cut end
    active = np.flatnonzero(nxt >= 0)
    while active.size:
        nn = nxt[active]
        dist[active] += dist[nn]
        nxt[active] = nxt[nn]
        active = active[nxt[active] >= 0]
    length = np.bincount(comp)
    return comp, length[comp] - 1 - dist


def _split_loops(pts: list) -> list[list]:
    """A closed ring that passes a corner more than once, as simple loops split at those corners."""
    stack: list[tuple[int, int]] = []
    where: dict[tuple[int, int], int] = {}
    loops: list[list[tuple[int, int]]] = []
    for q in map(tuple, pts):
        if q in where:
            i = where[q]
            loops.append(stack[i:])
            for r in stack[i + 1:]:
                del where[r]
            del stack[i + 1:]
        else:
            where[q] = len(stack)
            stack.append(q)
    loops.append(stack)
    return [[list(q) for q in lp] for lp in loops if len(lp) >= 3]


def _signed_area(pts: list) -> float:
    """Shoelace area in (x, y): positive for exterior rings as traced, negative for holes."""
    a = np.asarray(pts, dtype=np.float64)
    x, y = a[:, 0], a[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _closed(pts: list) -> Ring:
    return pts + [pts[0]]


def _assemble(lab: int, loops: list[tuple[list, float]], labels: np.ndarray) -> dict[str, Any]:
    """One object's loops as a Polygon or MultiPolygon (holes in the smallest shell around them)."""
    shells = [lp for lp, a in loops if a > 0]
    holes = [lp for lp, a in loops if a < 0]
    if len(shells) == 1:
        geom = {"type": "Polygon", "coordinates": [_closed(shells[0])] + [_closed(hl) for hl in holes]}
        if not holes:
            return geom  # one simple loop around the object: valid by construction
    else:
        from shapely.geometry import Polygon

        shell_polys = [Polygon(sh) for sh in shells]
        members: list[list[list]] = [[] for _ in shells]
        for hl in holes:
            inside = Polygon(hl).representative_point()
            owners = [i for i, sp in enumerate(shell_polys) if sp.contains(inside)]
            if owners:
                members[min(owners, key=lambda i: shell_polys[i].area)].append(hl)
        polys = [[_closed(sh)] + [_closed(hl) for hl in hs] for sh, hs in zip(shells, members)]
        geom = ({"type": "Polygon", "coordinates": polys[0]} if len(polys) == 1
                else {"type": "MultiPolygon", "coordinates": polys})
    from shapely.geometry import shape

    if shape(geom).is_valid:
        return geom
    return _pixel_union(lab, labels)  # pieces that only a union can describe validly (rare)


def _pixel_union(lab: int, labels: np.ndarray) -> dict[str, Any]:
    """An object's geometry as the union of its pixel runs (exact, always valid; slower)."""
    import shapely
    from shapely.geometry import mapping
    from shapely.geometry.polygon import orient

    ys, xs = np.nonzero(labels == lab)
    order = np.lexsort((xs, ys))
    ys, xs = ys[order], xs[order]
    brk = np.flatnonzero((np.diff(ys) != 0) | (np.diff(xs) != 1)) + 1
    starts, ends = np.r_[0, brk], np.r_[brk, ys.size] - 1
    boxes = shapely.box(xs[starts], ys[starts], xs[ends] + 1, ys[ends] + 1)
    geom = shapely.union_all(boxes)
    if geom.geom_type == "Polygon":
        geom = orient(geom, 1.0)
    else:
        geom = shapely.MultiPolygon([orient(g, 1.0) for g in geom.geoms])
    return json.loads(json.dumps(mapping(geom)))  # tuples -> lists


# --- outlines a model gives -------------------------------------------------------------------

def outline_geometry(vertices: np.ndarray, shape_type: str = "polygon") -> dict[str, Any] | None:
    """A polygon or rectangle of napari ``(y, x)`` vertices (pixel centres at whole numbers) as a
    GeoJSON Polygon in pixel-edge ``[x, y]`` coordinates; None for a degenerate outline."""
    from shapely.geometry import Polygon, mapping
    from shapely.geometry.polygon import orient

    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] < 2:
        raise SeglabError(f"an outline needs (y, x) vertices, got shape {v.shape}")
    yx = v[:, -2:] + 0.5
    if shape_type == "rectangle":
        y0, x0 = yx.min(axis=0)
        y1, x1 = yx.max(axis=0)
        yx = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
    elif shape_type != "polygon":
        raise SeglabError(f"only polygons and rectangles can be written as GeoJSON, not {shape_type}")
    if len(yx) < 3:
        return None
    poly = Polygon(np.round(yx[:, ::-1], 3))
    if not poly.is_valid:
        poly = poly.buffer(0)
        if poly.geom_type == "MultiPolygon":
            poly = max(poly.geoms, key=lambda g: g.area)
    if poly.is_empty or poly.area == 0 or poly.geom_type != "Polygon":
        return None
    return json.loads(json.dumps(mapping(orient(poly, 1.0))))


# --- features ----------------------------------------------------------------------------------

def qupath_plane(index: Sequence[int], stack_axes: str) -> dict[str, int]:
    """QuPath's plane ``{"c": -1, "z", "t"}`` of a plane's index along each stack axis: Z and T
    from ``stack_axes`` (one letter per axis); other letters follow napari's order (..., T, Z):
    the last unknown axis is Z when there is no Z, the one before it T when there is no T."""
    index = [int(i) for i in index]
    axes = stack_axes if len(stack_axes) == len(index) else "Q" * len(index)
    z = index[axes.index("Z")] if "Z" in axes else 0
    t = index[axes.index("T")] if "T" in axes else 0
    unknown = [i for a, i in zip(axes, index) if a not in "ZT"]
    if "Z" not in axes and unknown:
        z = unknown.pop()
    if "T" not in axes and unknown:
        t = unknown.pop()
    return {"c": -1, "z": z, "t": t}


def plane_position(plane: int, stack_shape: Sequence[int], stack_axes: str) -> dict[str, int]:
    """:func:`qupath_plane` of a flat plane index (C order over ``stack_shape``)."""
    idx = np.unravel_index(int(plane), tuple(stack_shape)) if len(stack_shape) else ()
    return qupath_plane(idx, stack_axes)


def _table_rows(table: Mapping[str, Any] | None) -> tuple[dict[tuple[int, int], int], list[str], bool]:
    """Row of each (label, plane) in the table (plane 0 when rows are keyed by label alone), its
    numeric measurement columns, and whether rows are keyed by plane too."""
    if not table or "label" not in table:
        return {}, [], False
    labels = np.asarray(table["label"]).astype(np.int64)
    # rows by (label, plane) where an id has a row per plane (linked stacks); else by label alone
    has_plane = "plane" in table and np.unique(labels).size != labels.size
    planes = np.asarray(table["plane"]).astype(np.int64) if has_plane else np.zeros(len(labels), dtype=np.int64)
    rows = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(labels.tolist(), planes.tolist()))}
    cols = [k for k, c in table.items() if k not in NOT_MEASUREMENTS and np.asarray(c).dtype.kind in "iufb"
            and np.ndim(c) == 1 and len(c) == len(labels)]
    return rows, cols, has_plane


def _number(v: Any) -> float | int | None:
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    f = float(v)
    return f if math.isfinite(f) else None


def make_feature(
    geometry: dict[str, Any],
    label: int,
    *,
    plane: int | None = None,
    qupath_plane: dict[str, int] | None = None,
    row: Mapping[str, Any] | None = None,
    object_type: str = "detection",
    class_names: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """One QuPath Feature: ``row`` is the object's table row (column -> value)."""
    if object_type not in OBJECT_TYPES:
        raise SeglabError(f"objectType must be one of {', '.join(OBJECT_TYPES)}, got {object_type!r}")
    row = dict(row or {})
    geometry = dict(geometry)
    if qupath_plane is not None:
        geometry["plane"] = dict(qupath_plane)
    props: dict[str, Any] = {"objectType": object_type, "name": str(int(label))}
    cls = row.get("class")
    if cls is not None and _number(cls) is not None:
        c = int(cls)
        name = (class_names or {}).get(c, f"Class {c}")
        props["classification"] = {"name": name, "color": list(CLASS_COLORS[(c - 1) % len(CLASS_COLORS)])}
    measurements = {}
    for k, v in row.items():
        if k in NOT_MEASUREMENTS:
            continue
        num = _number(v)
        if num is not None:
            measurements[k] = num
    props["measurements"] = measurements
    props["label"] = int(label)
    score = _number(row["score"]) if "score" in row else None
    if score is not None:
        props["score"] = score
    if plane is not None:
        props["plane"] = int(plane)
    return {"type": "Feature", "geometry": geometry, "properties": props}


def labels_features(
    labels: np.ndarray,
    *,
    table: Mapping[str, Any] | None = None,
    stack_axes: str = "",
    object_type: str = "detection",
    class_names: Mapping[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Features of every object of a label image (2D, or stacks with leading Z/T axes: one
    Feature per object and plane). ``table``'s numeric columns, keyed by ``label`` (and
    ``plane`` when it has one), become each object's measurements."""
    labels = np.asarray(labels)
    if labels.ndim < 2:
        raise SeglabError(f"labels must have at least 2 dimensions, got shape {labels.shape}")
    rows, cols, has_plane = _table_rows(table)
    stack_shape = labels.shape[:-2]
    indices = list(itertools.product(*[range(s) for s in stack_shape])) if stack_shape else [()]
    feats = []
    columns = {c: np.asarray(table[c]).tolist() for c in [*cols, "class"] if c in (table or {})}
    for p, idx in enumerate(indices):
        plane = p if stack_shape else None
        qp = plane_position(p, stack_shape, stack_axes) if stack_shape else None
        geoms = label_geometries(labels[idx])
        with _gc_paused():
            for lab, geom in geoms.items():
                i = rows.get((lab, p if has_plane else 0))
                row = {c: v[i] for c, v in columns.items()} if i is not None else {}
                feats.append(make_feature(geom, lab, plane=plane, qupath_plane=qp, row=row,
                                          object_type=object_type, class_names=class_names))
    return feats


def outline_features(
    shapes: Sequence[np.ndarray],
    labels: Sequence[int],
    *,
    shape_type: str | Sequence[str] = "polygon",
    planes: Sequence[int] | None = None,
    stack_shape: Sequence[int] = (),
    table: Mapping[str, Any] | None = None,
    stack_axes: str = "",
    object_type: str = "detection",
    class_names: Mapping[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Features of outlines (napari ``(..., y, x)`` vertices) with their object ids; ``planes``
    gives each outline's flat plane index in a stack of ``stack_shape``."""
    if len(labels) != len(shapes) or (planes is not None and len(planes) != len(shapes)):
        raise SeglabError("outlines, labels and planes differ in length")
    types = [shape_type] * len(shapes) if isinstance(shape_type, str) else list(shape_type)
    rows, cols, has_plane = _table_rows(table)
    feats = []
    for k, (verts, lab) in enumerate(zip(shapes, labels)):
        geom = outline_geometry(verts, types[k])
        if geom is None:
            continue
        p = int(planes[k]) if planes is not None else None
        i = rows.get((int(lab), p if (has_plane and p is not None) else 0))
        row = {c: table[c][i] for c in cols} if i is not None else {}
        if i is not None and "class" in table:
            row["class"] = table["class"][i]
        qp = plane_position(p, stack_shape, stack_axes) if (p is not None and len(stack_shape)) else None
        feats.append(make_feature(geom, int(lab), plane=p if len(stack_shape) else None, qupath_plane=qp, row=row,
                                  object_type=object_type, class_names=class_names))
    return feats


def join_tables(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``base``'s rows with ``extra``'s columns added (or replaced) by ``label`` (and ``plane``
    when both have one); rows of ``base`` missing from ``extra`` get NaN there."""
    out = {k: np.asarray(v) for k, v in base.items()}
    if "label" not in extra or "label" not in base:
        raise SeglabError("both tables need a label column")
    by_plane = "plane" in base and "plane" in extra

    def keys(t: Mapping[str, Any]) -> list[tuple[int, int]]:
        lab = np.asarray(t["label"]).astype(np.int64).tolist()
        pl = np.asarray(t["plane"]).astype(np.int64).tolist() if by_plane else [0] * len(lab)
        return list(zip(lab, pl))

    where = {k: i for i, k in enumerate(keys(extra))}
    idx = np.array([where.get(k, -1) for k in keys(base)], dtype=np.int64)
    for key, col in extra.items():
        if key in ("label", "plane"):
            continue
        col = np.asarray(col)
        if col.dtype.kind not in "iufb":
            continue
        vals = col[np.maximum(idx, 0)].astype(np.float64) if len(col) else np.full(len(idx), np.nan)
        vals[idx < 0] = np.nan
        out[key] = vals if (idx < 0).any() or col.dtype.kind == "f" else col[idx]
    return out


def feature_collection(features: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def write_geojson(path: str | os.PathLike, features: Iterable[dict[str, Any]]) -> Path:
    """Write features as a GeoJSON FeatureCollection (strict JSON: no NaN), atomically."""
    path = Path(path)
    collection = feature_collection(features)
    with atomic_file(path, suffix=".geojson") as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(collection, allow_nan=False, separators=(",", ":")))  # the C encoder: ~10x json.dump
    return path


def segmentation_features(
    seg: Any,
    *,
    stack_axes: str = "",
    source: str = "auto",
    table: Mapping[str, Any] | None = None,
    object_type: str = "detection",
    class_names: Mapping[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Features of a :class:`~seglab.inference.engine.Segmentation`.

    ``table`` (e.g. a measurements table keyed by ``label``, and ``plane`` in stacks) is joined onto
    the result's own object table (its columns win), which is used alone without it.
    ``source``: ``"labels"`` traces the label image; ``"outlines"`` writes the polygons or boxes
    the model gave; ``"auto"`` (default) writes polygons where the model gives polygons
    (StarDist), else traces the labels (a Mask R-CNN box is not its object's shape). ``table``
    defaults to the result's own object table.
    """
    from seglab.outlines import collect_outlines

    if source not in ("auto", "labels", "outlines"):
        raise SeglabError(f"GeoJSON source must be auto, labels or outlines, got {source!r}")
    table = seg.table if table is None else join_tables(seg.table, table)
    kw = dict(table=table, stack_axes=stack_axes, object_type=object_type, class_names=class_names)
    outlines = collect_outlines(seg) if source != "labels" else None
    if source == "outlines" and outlines is None:
        raise SeglabError("the model gave no outlines (polygons or boxes) to write as GeoJSON")
    if outlines is not None and (source == "outlines" or outlines.shape_type == "polygon"):
        return outline_features(outlines.data, outlines.label, shape_type=outlines.shape_type,
                                planes=outlines.plane, stack_shape=seg.labels.shape[:-2], **kw)
    return labels_features(seg.labels, **kw)
