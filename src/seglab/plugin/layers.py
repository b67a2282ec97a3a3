"""Conversions between napari layers and core arrays, and ownership of the plugin's output layers."""

from __future__ import annotations

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


def spatial_geometry(layer: Any, channel_axis: int | None) -> dict[str, Any]:
    """``scale``, ``translate``, ``affine`` (and ``units``, ``axis_labels`` where napari has
    them) of an image layer without its channel axis, for a layer of its labels.

    ``channel_axis`` is in the layer's data coordinates; RGB layers have no channel axis in
    napari's transforms, so nothing is dropped for them.
    """
    ndim = int(layer.ndim)
    keep = list(range(ndim))
    if channel_axis is not None and not getattr(layer, "rgb", False):
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"channel axis {channel_axis} does not exist for a layer with {ndim} dimensions")
        keep.remove(channel_axis % ndim)
    out: dict[str, Any] = {
        "scale": np.asarray(layer.scale, dtype=float)[keep],
        "translate": np.asarray(layer.translate, dtype=float)[keep],
    }
    affine = getattr(layer, "affine", None)
    if affine is not None:
        idx = keep + [ndim]
        out["affine"] = np.asarray(affine.affine_matrix, dtype=float)[np.ix_(idx, idx)]
    for key in ("units", "axis_labels"):
        values = getattr(layer, key, None)
        if values is not None and len(values) == ndim:
            out[key] = tuple(values[i] for i in keep)
    return out


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


def is_own_unedited(layer: Any, source: str, role: str = "labels") -> bool:
    """True when ``layer`` is this plugin's ``role`` output for ``source`` and nobody changed it since."""
    meta = getattr(layer, "metadata", {}).get(OWNER_KEY)
    if not isinstance(meta, dict) or meta.get("source") != source or meta.get("role", "labels") != role:
        return False
    return meta.get("checksum") == checksum(_layer_data(layer))


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
