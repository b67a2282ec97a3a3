"""Lazy image layers (dask, zarr) through the out-of-core engine, with a Labels layer that fills live.

The worker writes the labels into a zarr store in a temporary folder
(:func:`seglab.inference.lazy.segment_lazy_iter`); its first event carries the store's array,
which the widget shows at once as a Labels layer and refreshes after every block. When the run
ends the layer takes the finished store's array (its ``.partial`` name is gone by then); a
cancelled or failed run removes the store, its folder and the layer. The temporary folder lives
as long as its layer: it is removed when the layer is removed from the viewer, and at exit
(:func:`remove_with_layer`); saving the layer (File > Save Selected Layers) keeps the labels.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

#: prefix of the temporary folders that hold lazy runs' labels
TEMP_PREFIX = "seglab-labels-"

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


def _lazy_axes_rgb(data: Any, kwargs: dict) -> tuple[str, bool]:
    """The out-of-core engine's axes letters and RGB flag for a layer's data and the widget's arguments."""
    axes = lazy_axes(data.ndim, kwargs.get("channel_axis"))
    rgb = bool(kwargs.get("rgb")) and "C" in axes
    return (axes.replace("C", "S") if rgb else axes), rgb


def estimate_lazily_iter(model: Any, data: Any, kwargs: dict):
    """The *Estimate* button on a lazy layer: ``diameter="auto"``'s estimate as the out-of-core run
    makes it (:func:`seglab.inference.lazy.estimate_lazy_iter`: its sampled planes, read in bands),
    never loading the layer whole."""
    from seglab.inference.lazy import estimate_lazy_iter

    axes, rgb = _lazy_axes_rgb(data, kwargs)
    return (yield from estimate_lazy_iter(
        model, data, axes=axes, rgb=rgb or None, channels=kwargs.get("channels"),
        tile_size=kwargs.get("tile_size", 1024), batch_size=kwargs.get("batch_size", 4),
        device=kwargs.get("device", "auto"), amp=kwargs.get("amp", True), thresholds=kwargs.get("thresholds"),
        pixel_size=kwargs.get("pixel_size"), denoise=kwargs.get("denoise", "auto")))


def segment_lazily_iter(model: Any, data: Any, kwargs: dict, folder: str | Path | None = None):
    """Segment a lazy layer's data out of core into ``<folder>/labels.zarr`` (a new temporary
    folder by default); events as :func:`seglab.inference.lazy.segment_lazy_iter`."""
    from seglab.inference.lazy import segment_lazy_iter

    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX)) if folder is None else Path(folder)
    axes, rgb = _lazy_axes_rgb(data, kwargs)
    try:
        return (yield from segment_lazy_iter(
            model, data, folder / "labels.zarr", axes=axes, rgb=rgb or None, channels=kwargs.get("channels"),
            tile_size=kwargs.get("tile_size", 1024), batch_size=kwargs.get("batch_size", 4),
            device=kwargs.get("device", "auto"), amp=kwargs.get("amp", True), thresholds=kwargs.get("thresholds"),
            diameter=kwargs.get("diameter", "auto"), pixel_size=kwargs.get("pixel_size"),
            denoise=kwargs.get("denoise", "auto"), augment=bool(kwargs.get("augment", False))))
    except BaseException:  # cancelled (the generator closed) or failed: nothing left on disk
        if own:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def temporary_folder(store: str | Path) -> Path | None:
    """The temporary folder a lazy run made for ``store`` (None for a store the user chose)."""
    folder = Path(store).parent
    if folder.name.startswith(TEMP_PREFIX) and folder.parent == Path(tempfile.gettempdir()):
        return folder
    return None


def remove_with_layer(layer: Any, store: str | Path) -> weakref.finalize | None:
    """Remove ``store``'s temporary folder when ``layer`` is garbage-collected or Python exits
    (calling the returned finalizer removes it at once, e.g. when the layer leaves the viewer);
    None for a store outside a temporary folder, which is never removed."""
    folder = temporary_folder(store)
    if folder is None:
        return None
    return weakref.finalize(layer, shutil.rmtree, str(folder), True)
