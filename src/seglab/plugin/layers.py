"""Conversions between napari layers and core arrays, and ownership of the plugin's output layers."""

from __future__ import annotations

import weakref
import zlib
from typing import Any

import numpy as np

from seglab.inference.appearance import centre_slices

OWNER_KEY = "seglab"


def image_array(layer: Any) -> np.ndarray:
    """The full-resolution data of an Image layer as an array (dask stays lazy until used)."""
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return data


def rgb_preview(layer: Any) -> np.ndarray:
    """One ``(H, W, 3|4)`` plane of an RGB layer to judge its look: the smallest level of a
    multiscale layer, the middle plane of a stack; of a lazy array only a central window of at
    most :data:`~seglab.inference.appearance.LOOK_SIDE` a side is read."""
    data = layer.data[-1] if getattr(layer, "multiscale", False) else layer.data
    index = tuple(n // 2 for n in data.shape[:-3])
    plane = data[index] if index else data
    if isinstance(plane, np.ndarray):
        return plane
    return np.asarray(plane[centre_slices(plane.shape[0], plane.shape[1])])


def channel_axis_of(layer: Any, data_ndim: int, user_axis: int | None) -> int | None:
    """RGB layers keep colour on the last axis; otherwise what the user chose (None = no channels)."""
    if getattr(layer, "rgb", False):
        return data_ndim - 1
    return user_axis


#: the properties that place a layer's data in the world, in the order napari composes them
#: (``affine`` after ``rotate``, ``shear`` and ``scale``, ``translate`` last)
TRANSFORM_KEYS = ("scale", "translate", "rotate", "shear", "affine")


def _kept_axes(layer: Any, channel_axis: int | None) -> list[int]:
    ndim = int(layer.ndim)
    keep = list(range(ndim))
    if channel_axis is not None and not getattr(layer, "rgb", False):
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"channel axis {channel_axis} does not exist for a layer with {ndim} dimensions")
        keep.remove(channel_axis % ndim)
    return keep


def spatial_geometry(layer: Any, channel_axis: int | None = None) -> dict[str, Any]:
    """The full placement of a layer's data in the world (:data:`TRANSFORM_KEYS`: ``scale``,
    ``translate``, ``rotate``, ``shear``, ``affine``; and ``units``, ``axis_labels`` where napari has
    them), without its channel axis: the keyword arguments that give a layer of its labels (or
    outlines) the same place, so that ``out.data_to_world(p) == layer.data_to_world(p)``.

    ``channel_axis`` is in the layer's data coordinates; RGB layers have no channel axis in
    napari's transforms, so nothing is dropped for them. ``rotate``, ``shear`` and ``affine``
    lose the channel axis's row and column (a channel axis is not mixed with the others).
    """
    keep = _kept_axes(layer, channel_axis)
    ndim = int(layer.ndim)
    out: dict[str, Any] = {
        "scale": np.asarray(layer.scale, dtype=float)[keep],
        "translate": np.asarray(layer.translate, dtype=float)[keep],
    }
    rotate = getattr(layer, "rotate", None)
    if rotate is not None:
        out["rotate"] = np.asarray(rotate, dtype=float)[np.ix_(keep, keep)]
    shear = getattr(layer, "shear", None)
    if shear is not None:
        shear = np.asarray(shear, dtype=float)
        if shear.ndim == 1:  # napari keeps the upper triangle's entries, row by row
            from napari.utils.transforms.transform_utils import expand_upper_triangular

            shear = expand_upper_triangular(shear) if shear.size else np.eye(ndim)
        out["shear"] = shear[np.ix_(keep, keep)]
    affine = getattr(layer, "affine", None)
    if affine is not None:
        idx = keep + [ndim]
        out["affine"] = np.asarray(affine.affine_matrix, dtype=float)[np.ix_(idx, idx)]
    for key in ("units", "axis_labels"):
        values = getattr(layer, key, None)
        if values is not None and len(values) == ndim:
            out[key] = tuple(values[i] for i in keep)
    return out


def apply_geometry(layer: Any, geometry: dict[str, Any]) -> None:
    """Give an existing layer the placement :func:`spatial_geometry` returned (for a layer reused in place)."""
    for key, value in geometry.items():
        setattr(layer, key, value)


def world_matrix(layer: Any, channel_axis: int | None = None) -> np.ndarray:
    """The homogeneous matrix taking ``layer``'s data coordinates (its channel axis left out) to
    world coordinates, as napari shows the layer: the composition of all of :data:`TRANSFORM_KEYS`."""
    keep = _kept_axes(layer, channel_axis)
    n = len(keep)
    ndim = int(layer.ndim)

    def world(point: np.ndarray) -> np.ndarray:
        full = np.zeros(ndim)
        full[keep] = point
        return np.asarray(layer.data_to_world(full), dtype=float)[-ndim:][keep]

    origin = world(np.zeros(n))
    m = np.eye(n + 1)
    m[:n, n] = origin
    for i in range(n):
        m[:n, i] = world(np.eye(n)[i]) - origin
    return m


def geometry_differences(first: Any, second: Any, first_channel_axis: int | None = None) -> list[str]:
    """Which of :data:`TRANSFORM_KEYS` differ between two layers (``first`` without its channel
    axis), as 'scale (1, 1) vs (2, 2)'; empty when they place their data in the world alike.
    Layers of different dimensions are not compared (their shapes say what is wrong)."""
    if len(_kept_axes(first, first_channel_axis)) != int(second.ndim):
        return []
    a, b = world_matrix(first, first_channel_axis), world_matrix(second)
    tol = 1e-6 * max(1.0, float(np.abs(a).max()), float(np.abs(b).max()))
    if np.allclose(a, b, rtol=0, atol=tol):
        return []
    ga, gb = spatial_geometry(first, first_channel_axis), spatial_geometry(second)
    out = []
    for key in TRANSFORM_KEYS:
        x, y = np.asarray(ga[key], dtype=float), np.asarray(gb[key], dtype=float)
        if x.shape != y.shape or not np.allclose(x, y, rtol=0, atol=1e-9):
            if x.ndim == 1:
                out.append(f"{key} ({', '.join(f'{v:g}' for v in x)}) vs ({', '.join(f'{v:g}' for v in y)})")
            else:
                out.append(key)
    return out or ["transform"]


STACK_LABELS = ("z", "t", "time", "depth", "plane", "frame")


def ambiguous_axes_note(layer: Any, shape: tuple[int, ...], channel_axis: int | None) -> str | None:
    """A message when a non-RGB layer without a channel axis has a leading axis of 2-4 entries
    that nothing labels as planes (Z/T): it is segmented plane by plane, but may be channels."""
    if channel_axis is not None or getattr(layer, "rgb", False):
        return None
    labels = tuple(getattr(layer, "axis_labels", None) or ())
    for i, n in enumerate(shape[:-2]):
        label = str(labels[i]).lower() if i < len(labels) else ""
        if n in (2, 3, 4) and label not in STACK_LABELS:
            return (f"seglab: '{layer.name}' axis {i} has {n} entries and is segmented as {n} separate planes; "
                    f"if it holds channels, set 'Channel axis' to {i} and pick 'Channels'")
    return None


def checksum(data: np.ndarray | list[np.ndarray]) -> int:
    """A cheap fingerprint of label data (or of a list of shapes), to notice edits by the user."""
    if isinstance(data, list):
        if not data:
            return 0
        # shapes: vertex counts and coordinates (float64, as napari stores them)
        counts = np.array([len(d) for d in data], dtype=np.int64)
        return zlib.crc32(np.concatenate([np.asarray(d, dtype=np.float64).ravel() for d in data]).tobytes(),
                          zlib.crc32(counts.tobytes()))
    arr = np.ascontiguousarray(data)
    return zlib.crc32(arr.view(np.uint8).ravel()) if arr.size else 0


def _layer_data(layer: Any) -> np.ndarray | list[np.ndarray]:
    data = layer.data
    return list(data) if isinstance(data, (list, tuple)) else np.asarray(data)


def is_unedited(layer: Any, role: str = "labels") -> bool:
    """True when ``layer`` holds a ``role`` output of this plugin that nobody changed since it was
    written (its data still has the fingerprint the plugin recorded)."""
    meta = getattr(layer, "metadata", {}).get(OWNER_KEY)
    if not isinstance(meta, dict) or meta.get("role", "labels") != role:
        return False
    return meta.get("checksum") == checksum(_layer_data(layer))


class OwnedLayers:
    """The output layers a widget made, known by identity, never by name or metadata.

    Each entry: the output layer object (weakly held), the source it was made for (a layer
    object, weakly held, or a value such as a file path), its role ("labels", "outlines", ...) and
    the name the plugin gave it. A layer is the widget's output for a source only when it is that
    very object, made for that very source, and still has that name: a renamed layer is the
    user's, a napari duplicate (a new object, metadata copied) was never registered, and another
    image that took a renamed image's old name is another source.
    """

    def __init__(self) -> None:
        self._made: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def add(self, layer: Any, source: Any, role: str = "labels") -> None:
        """Record ``layer`` (under its present name) as this widget's ``role`` output for ``source``."""
        self._made[layer] = (_source_key(source), role, layer.name)

    def forget(self, layer: Any) -> None:
        self._made.pop(layer, None)

    def owns(self, layer: Any, source: Any, role: str = "labels") -> bool:
        """Whether ``layer`` is the ``role`` output this widget made for ``source``, under the name it gave."""
        try:
            key, made_role, name = self._made[layer]
        except (KeyError, TypeError):
            return False
        return made_role == role and layer.name == name and _same_source(key, source)

    def reusable(self, layer: Any, source: Any, role: str = "labels") -> bool:
        """Whether a new run may overwrite ``layer``: :meth:`owns` it and nobody edited it."""
        return self.owns(layer, source, role) and is_unedited(layer, role)

    def layers(self, viewer: Any, source: Any, role: str = "labels") -> list[Any]:
        """The ``role`` outputs of ``source`` in ``viewer`` that this widget still owns, in layer order."""
        return [lyr for lyr in viewer.layers if self.owns(lyr, source, role)]


def _source_key(source: Any) -> Any:
    """A layer (any object a weak reference can follow) by identity; a plain value (a path) as it is."""
    if isinstance(source, (str, bytes, int, float, tuple)) or source is None:
        return ("value", source)
    try:
        return ("ref", weakref.ref(source))
    except TypeError:
        return ("value", source)


def _same_source(key: Any, source: Any) -> bool:
    kind, value = key
    return value() is source if kind == "ref" else value == source


def output_metadata(
    source: str, model: str, thresholds: dict[str, float], data: np.ndarray | list[np.ndarray], role: str = "labels"
) -> dict:
    return {OWNER_KEY: {"source": source, "model": model, "thresholds": dict(thresholds), "role": role,
                        "checksum": checksum(data)}}


def table_to_features(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Object table as napari Labels features (the ``index`` column holds the label id)."""
    feats = {"index": np.asarray(table["label"])}
    feats.update({k: np.asarray(v) for k, v in table.items() if k != "label"})
    return feats
