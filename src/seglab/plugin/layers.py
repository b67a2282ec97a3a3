"""Conversions between napari layers and core arrays, and ownership of the plugin's output layers."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

OWNER_KEY = "seglab"


def image_array(layer: Any) -> np.ndarray:
    """The full-resolution data of an Image layer as an array (dask stays lazy until used)."""
    data = layer.data
    if getattr(layer, "multiscale", False):
        data = data[0]
    return data


def channel_axis_of(layer: Any, data_ndim: int, user_axis: int | None) -> int | None:
    """RGB layers keep colour on the last axis; otherwise what the user chose (None = no channels)."""
    if getattr(layer, "rgb", False):
        return data_ndim - 1
    return user_axis


def checksum(data: np.ndarray) -> int:
    """A cheap fingerprint of label data, to notice edits made by the user."""
    arr = np.ascontiguousarray(data)
    return zlib.crc32(arr.view(np.uint8).ravel()) if arr.size else 0


def is_own_unedited(layer: Any, source: str) -> bool:
    """True when ``layer`` is this plugin's output for ``source`` and nobody changed it since."""
    meta = getattr(layer, "metadata", {}).get(OWNER_KEY)
    if not isinstance(meta, dict) or meta.get("source") != source:
        return False
    return meta.get("checksum") == checksum(np.asarray(layer.data))


def output_metadata(source: str, model: str, thresholds: dict[str, float], labels: np.ndarray) -> dict:
    return {OWNER_KEY: {"source": source, "model": model, "thresholds": dict(thresholds), "checksum": checksum(labels)}}


def table_to_features(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Object table as napari Labels features (the ``index`` column holds the label id)."""
    feats = {"index": np.asarray(table["label"])}
    feats.update({k: np.asarray(v) for k, v in table.items() if k != "label"})
    return feats
