"""Keep a labels layer's object table (``layer.features``) in step with the user's edits.

After a paint, fill, erase or ``layer.data = ...`` the table is recomputed (label, area,
centroid, and plane for stacks). An object whose pixels did not change keeps its score;
an edited or new object gets score NaN and ``edited = True``.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pandas as pd
from qtpy.QtCore import QTimer

from seglab.objects import object_table

#: edits are gathered for this long (ms) before one recomputation (a stroke fires many events)
DEBOUNCE_MS = 150
#: past this largest id (relative to the pixel count) ids are compacted before counting
_SPARSE_IDS = 4


def measure(labels: np.ndarray, only: set[int] | None = None) -> pd.DataFrame:
    """Per object: ``index`` (label id), ``area``, ``centroid_y``, ``centroid_x`` and, for stacks,
    ``plane`` (flat index of the leading axes); any number of axes. ``only``: just these ids."""
    labels = np.asarray(labels)
    flat = labels.ravel()
    if only is None and flat.size and 0 <= flat.min() and flat.max() <= _SPARSE_IDS * flat.size:
        return _measure_planes(labels)  # the core's per-plane table: fastest on whole images
    if only is not None:
        pos = np.flatnonzero(np.isin(flat, np.fromiter(only, dtype=flat.dtype if flat.dtype.kind in "iu" else np.int64)))
        values = flat[pos]
    else:
        pos, values = np.arange(flat.size, dtype=np.int64), flat
    return _measure_pixels(labels.shape, pos, values)


def _empty(stack: bool) -> pd.DataFrame:
    cols = ["index", "area", "centroid_y", "centroid_x"] + (["plane"] if stack else [])
    return pd.DataFrame({c: np.zeros(0, np.int64 if c in ("index", "area", "plane") else np.float64) for c in cols})


def _measure_planes(labels: np.ndarray) -> pd.DataFrame:
    """Whole images: :func:`seglab.objects.object_table` plane by plane (ids may span planes)."""
    stack = labels.ndim > 2
    parts = []
    for i, plane in enumerate(labels.reshape((-1, *labels.shape[-2:]))):
        t = object_table(plane)
        part = pd.DataFrame({"index": t["label"], "area": t["area"],
                             "centroid_y": t["centroid_y"], "centroid_x": t["centroid_x"]})
        if stack:
            part["plane"] = i
        parts.append(part)
    df = pd.concat(parts, ignore_index=True) if parts else _empty(stack)
    if df.empty:
        return _empty(stack)
    if not stack or not df["index"].duplicated().any():
        return df.sort_values("index", kind="stable").reset_index(drop=True)
    # an id in several planes: one row, area-weighted means
    w = df["area"].astype(np.float64)
    sums = df.assign(**{c: df[c] * w for c in ("centroid_y", "centroid_x", "plane")}).groupby("index").sum()
    out = pd.DataFrame({"index": sums.index.to_numpy(np.int64), "area": sums["area"].to_numpy(np.int64)})
    for c in ("centroid_y", "centroid_x"):
        out[c] = sums[c].to_numpy() / sums["area"].to_numpy()
    out["plane"] = np.rint(sums["plane"].to_numpy() / sums["area"].to_numpy()).astype(np.int64)
    return out


def _measure_pixels(shape: tuple[int, ...], pos: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """Objects of the pixels at flat positions ``pos`` holding ``values`` (any ids)."""
    stack = len(shape) > 2
    if not values.size or values.max() <= 0:
        return _empty(stack)
    ids, codes = np.unique(values, return_inverse=True)
    codes = codes.ravel()
    n = len(ids)
    counts = np.bincount(codes, minlength=n)
    present = np.flatnonzero((counts > 0) & (ids > 0))
    h, w = shape[-2:]
    plane_of, within = np.divmod(pos, h * w)
    area = counts[present].astype(np.float64)

    def mean(coord: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=coord.astype(np.float64), minlength=n)[present] / area

    out = {"index": ids[present].astype(np.int64), "area": counts[present].astype(np.int64),
           "centroid_y": mean(within // w), "centroid_x": mean(within % w)}
    if stack:
        out["plane"] = np.rint(mean(plane_of)).astype(np.int64)
    return pd.DataFrame(out)


def _as_table(old: Any) -> pd.DataFrame:
    table = pd.DataFrame(old) if old is not None else pd.DataFrame()
    if "index" in table.columns:
        table = table.drop_duplicates("index").reset_index(drop=True)
    return table


def _with_columns(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``rows`` with every column of ``columns`` (unknown values: NaN), in that order first."""
    for c in columns:
        if c not in rows.columns:
            rows[c] = np.nan
    return rows[columns + [c for c in rows.columns if c not in columns]]


def refreshed_features(old: Any, labels: np.ndarray, touched: set[int] | None = None,
                       origin: Any = None) -> pd.DataFrame:
    """The object table of ``labels`` after an edit, keeping what is known of unchanged objects.

    ``touched``: the ids an edit changed (a paint event reports them): only those rows are
    measured again. None: every object is measured. An object is unchanged when its area and
    centroid equal those of its row in ``origin`` (the table as the segmentation gave it;
    default ``old``), so an undone edit gets its score back. Changed or new objects get score
    NaN and ``edited`` True; other columns of unchanged objects (score, class, ...) are kept.
    """
    old = _as_table(old)
    if "index" not in old.columns:
        new = measure(labels)
        new["score"] = np.nan
        new["edited"] = True
        return new
    if "edited" not in old.columns:
        old["edited"] = False
    columns = list(old.columns)
    ref = _as_table(origin)
    if "index" not in ref.columns:
        ref = old
    if touched is None:
        return _merge(ref, measure(labels), columns)
    # only the touched objects can have changed: measure those, keep every other row as it is
    rows = _merge(ref[ref["index"].isin(list(touched))], measure(labels, only=touched), columns)
    new = pd.concat([old[~old["index"].isin(list(touched))], rows], ignore_index=True)
    return new.sort_values("index", kind="stable").reset_index(drop=True)


def _merge(old: pd.DataFrame, rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``rows`` (fresh measurements) with the other columns of ``old`` for objects whose
    geometry did not change; changed or new objects: NaN and ``edited`` True."""
    prev = old.set_index("index").reindex(rows["index"])
    same = rows["index"].isin(old["index"]).to_numpy().copy()
    for c in ("area", "centroid_y", "centroid_x", "plane"):
        if c in rows.columns and c in prev.columns:
            same &= np.isclose(prev[c].to_numpy(dtype=np.float64), rows[c].to_numpy(dtype=np.float64))
    for c in columns:
        if c in rows.columns or c == "index":
            continue
        if c == "edited":
            rows[c] = ~same
            continue
        if c not in prev.columns:
            rows[c] = np.nan
            continue
        values = prev[c].to_numpy()
        if values.dtype.kind in "iubfc":
            rows[c] = np.where(same, values.astype(np.float64), np.nan)
        else:
            rows[c] = np.where(same, values, None)
    return _with_columns(rows, columns)


def _touched_ids(event: Any) -> set[int] | None:
    """Label ids a ``paint`` event changed (old and new values), or None when not reported."""
    atoms = getattr(event, "value", None)
    if not isinstance(atoms, list):
        return None
    ids: set[int] = set()
    try:
        for atom in atoms:
            if hasattr(atom, "old_values"):  # a masked paint/fill atom
                old_values, new_value = atom.old_values, atom.new_value
            else:  # (indices, old values, new values)
                _, old_values, new_value = atom
            ids.update(np.unique(np.asarray(old_values)).tolist())
            ids.update(np.unique(np.asarray(new_value)).tolist())
    except (TypeError, ValueError):
        return None
    ids.discard(0)
    return ids


class TableKeeper:
    """Refreshes one labels layer's features after edits (debounced, on the GUI thread)."""

    def __init__(self, layer: Any) -> None:
        self._layer = weakref.ref(layer)
        self._touched: set[int] | None = set()
        self._origin = layer.features.copy()  # the table as the segmentation (or the user) gave it
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.refresh)
        layer.events.paint.connect(self._on_paint)
        layer.events.data.connect(self._on_data)
        self._watch_history(layer)

    def _watch_history(self, layer: Any) -> None:
        """napari's undo and redo change the data without an event: wrap this layer's methods."""
        me = weakref.ref(self)
        for name in ("undo", "redo"):
            original = getattr(layer, name, None)
            if original is None:
                continue

            def wrapped(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                out = _original(*args, **kwargs)
                keeper = me()
                if keeper is not None:
                    keeper._on_data()
                return out

            setattr(layer, name, wrapped)

    def _on_paint(self, event: Any) -> None:
        ids = _touched_ids(event)
        if ids is None or self._touched is None:
            self._touched = None  # unknown: compare every object's geometry
        else:
            self._touched |= ids
        self._timer.start()

    def _on_data(self, event: Any = None) -> None:
        self._touched = None  # new data: any object may have changed
        self._timer.start()

    def discard_pending(self) -> None:
        """Forget the changes seen so far (the plugin itself just replaced data and table)."""
        self._timer.stop()
        self._touched = set()
        layer = self._layer()
        if layer is not None:
            self._origin = layer.features.copy()

    @property
    def pending(self) -> bool:
        return self._timer.isActive()

    def refresh(self) -> None:
        """Recompute the layer's table now."""
        self._timer.stop()
        layer = self._layer()
        if layer is None:
            return
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        touched, self._touched = self._touched, set()
        layer.features = refreshed_features(layer.features, np.asarray(data), touched, self._origin)


_KEEPERS: weakref.WeakKeyDictionary[Any, TableKeeper] = weakref.WeakKeyDictionary()


def keep_table_fresh(layer: Any) -> TableKeeper:
    """Watch ``layer`` (once) so its features follow the user's edits."""
    keeper = _KEEPERS.get(layer)
    if keeper is None:
        keeper = _KEEPERS[layer] = TableKeeper(layer)
    return keeper


# --- full measurements (seglab.measure) as the layer's features --------------------------------

def layer_calibration(geometry: dict[str, Any]) -> dict[str, Any]:
    """``pixel_size`` and ``unit`` for :func:`seglab.measure.measure` from a layer's ``scale`` and
    ``units`` (as :func:`seglab.plugin.layers.spatial_geometry` gives them); empty when the
    units are not a known length (napari's default 'pixel')."""
    from seglab.io.images import normalize_unit

    units = geometry.get("units")
    scale = geometry.get("scale")
    if units is None or scale is None or len(scale) < 2:
        return {}
    unit = normalize_unit(str(units[-1]))
    if unit is None or normalize_unit(str(units[-2])) != unit:
        return {}
    return {"pixel_size": (float(scale[-2]), float(scale[-1])), "unit": unit}


def _one_row_per_id(df: pd.DataFrame) -> pd.DataFrame:
    """napari looks objects up by ``index``: an id measured in several planes keeps the row of
    its largest plane (the saved CSV of ``seglab measure`` has them all)."""
    if not df["index"].duplicated().any():
        return df
    order = df.sort_values(["index", "area"], ascending=[True, False], kind="stable")
    return order.drop_duplicates("index").reset_index(drop=True)


def measured_features(labels: np.ndarray, image: np.ndarray | None = None, channel_axis: int | None = None,
                      calibration: dict[str, Any] | None = None, old: Any = None) -> pd.DataFrame:
    """The layer's features: :func:`seglab.measure.measure` of ``labels`` (``index`` = label id),
    with the columns of ``old`` (score, class, edited, ...) that it does not compute, by id."""
    from seglab.measure import measure as measure_objects

    table = measure_objects(np.asarray(labels), image, channel_axis=channel_axis, **(calibration or {}))
    df = _one_row_per_id(pd.DataFrame(table).rename(columns={"label": "index"}))
    old = _as_table(old)
    if "index" in old.columns:
        extra = [c for c in old.columns if c not in df.columns]
        if extra:
            df = df.merge(old[["index", *extra]], on="index", how="left")
    return df.sort_values("index", kind="stable").reset_index(drop=True)


def intensity_image(layer: Any, labels_shape: tuple[int, ...]) -> tuple[np.ndarray, int | None]:
    """The data of an image layer to measure a labels layer of ``labels_shape`` with, and its
    channel axis (RGB: the last; otherwise the one axis whose removal gives the labels' shape)."""
    from seglab.errors import SeglabError
    from seglab.plugin.layers import image_array

    data = image_array(layer)
    shape = tuple(data.shape)
    if getattr(layer, "rgb", False):
        if shape[:-1] != tuple(labels_shape):
            raise SeglabError(f"image '{layer.name}' {shape[:-1]} and labels {tuple(labels_shape)} differ in shape")
        return np.asarray(data), len(shape) - 1
    if shape == tuple(labels_shape):
        return np.asarray(data), None
    axes = [i for i in range(len(shape)) if shape[:i] + shape[i + 1:] == tuple(labels_shape)]
    if len(axes) == 1:
        return np.asarray(data), axes[0]
    raise SeglabError(f"image '{layer.name}' {shape} does not fit labels {tuple(labels_shape)}"
                      + (" (which axis holds channels is ambiguous)" if axes else ""))


def remeasured(layer: Any, image_layer: Any = None) -> pd.DataFrame:
    """Fresh measurements of a labels layer's current data (intensities of ``image_layer``),
    keeping its other feature columns (score, class, edited) by id."""
    from seglab.plugin.layers import spatial_geometry

    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    labels = np.asarray(data)
    image = channel_axis = None
    if image_layer is not None:
        image, channel_axis = intensity_image(image_layer, labels.shape)
    return measured_features(labels, image, channel_axis, layer_calibration(spatial_geometry(layer, None)),
                             layer.features)


def set_features(layer: Any, features: pd.DataFrame) -> None:
    """Give ``layer`` new features that are not a user's edit (the keeper's reference moves)."""
    layer.features = features
    keeper = _KEEPERS.get(layer)
    if keeper is not None:
        keeper.discard_pending()
