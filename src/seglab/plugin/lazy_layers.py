"""Lazy image layers (dask, zarr) through the out-of-core engine, with a Labels layer that fills live.

The worker writes the labels into a zarr store in a temporary folder
(:func:`seglab.inference.lazy.segment_lazy_iter`); its first event carries the store's array,
which the widget shows at once as a Labels layer and refreshes after every block. When the run
ends the layer takes the finished store's array (its ``.partial`` name is gone by then); a
cancelled run removes the store and the layer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

#: the metadata role of lazy outputs: never updated in place nor fingerprinted (that would read
#: the whole store), so each run gives a new layer
LAZY_ROLE = "lazy-labels"


def lazy_axes(ndim: int, channel_axis: int | None) -> str:
    """Axes letters for a layer's data: stack axes, Y, X, with ``C`` at the channel axis."""
    spatial = ndim - (0 if channel_axis is None else 1)
    letters = list("Q" * (spatial - 2) + "YX")
    if channel_axis is not None:
        letters.insert(channel_axis % ndim, "C")
    return "".join(letters)


def segment_lazily_iter(model: Any, data: Any, kwargs: dict, folder: str | Path | None = None):
    """Segment a lazy layer's data out of core into ``<folder>/labels.zarr`` (a new temporary
    folder by default); events as :func:`seglab.inference.lazy.segment_lazy_iter`."""
    from seglab.inference.lazy import segment_lazy_iter

    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="seglab-labels-"))
    axes = lazy_axes(data.ndim, kwargs.get("channel_axis"))
    rgb = bool(kwargs.get("rgb")) and "C" in axes
    if rgb:
        axes = axes.replace("C", "S")
    return (yield from segment_lazy_iter(
        model, data, folder / "labels.zarr", axes=axes, rgb=rgb or None, channels=kwargs.get("channels"),
        tile_size=kwargs.get("tile_size", 1024), batch_size=kwargs.get("batch_size", 4),
        device=kwargs.get("device", "auto"), amp=kwargs.get("amp", True), thresholds=kwargs.get("thresholds"),
        diameter=kwargs.get("diameter", "auto")))
