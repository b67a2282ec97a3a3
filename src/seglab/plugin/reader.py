"""napari reader for label images (``*_labels``/``*_masks`` files) as Labels layers.

Plain images are left to napari's own reader: claiming every TIFF made napari ask the user
to choose a reader for each one (and ``viewer.open`` raise ``MultipleReaderError``). The
patterns this reader claims are in ``napari.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seglab.errors import SeglabError
from seglab.io.images import IMAGE_SUFFIXES, ImageData, read_image_data

LABEL_SUFFIXES = ("_labels", "_masks", "_label", "_mask")

# seglab's length units as napari (pint) spells them
NAPARI_UNITS = {"µm": "micrometer", "nm": "nanometer", "mm": "millimeter", "cm": "centimeter", "m": "meter",
                "inch": "inch"}


def is_label_file(path: str) -> bool:
    """A label image by its name: ``<stem>_labels.tif`` and the like."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_SUFFIXES and p.stem.lower().endswith(LABEL_SUFFIXES)


def get_reader(path: str | list[str]):
    """Return a reader function for label files, else None."""
    paths = path if isinstance(path, list) else [path]
    if paths and all(isinstance(p, str) and is_label_file(p) for p in paths):
        return read_files
    return None


def layer_geometry(data: ImageData, spatial_axes: str) -> dict[str, Any]:
    """``scale``, ``units`` and ``axis_labels`` of a layer holding ``spatial_axes`` of ``data``."""
    kwargs: dict[str, Any] = {"axis_labels": tuple(spatial_axes.lower())}
    if data.pixel_size is not None:
        z = data.z_spacing or 1.0
        kwargs["scale"] = [z if a == "Z" else 1.0 for a in spatial_axes[:-2]] + list(data.pixel_size)
        unit = NAPARI_UNITS.get(data.unit or "")
        if unit is not None:
            kwargs["units"] = tuple(unit if a in "ZYX" else "pixel" for a in spatial_axes)
    return kwargs


def read_one(path: str) -> tuple[Any, dict, str]:
    """One layer tuple (data, kwargs, type) for a file: integer label images as Labels, others as Image."""
    p = Path(path)
    data = read_image_data(p)
    arr = data.array
    kwargs: dict = {"name": p.stem}
    if data.channel_axis is None and arr.dtype.kind in "iu":
        kwargs.update(layer_geometry(data, data.axes))
        return arr, kwargs, "labels"
    spatial = data.axes
    if data.channel_axis is not None:
        if data.rgb and data.channel_axis == arr.ndim - 1:
            kwargs["rgb"] = True
        else:
            kwargs["channel_axis"] = data.channel_axis
        spatial = data.axes.replace(data.axes[data.channel_axis], "")
    kwargs.update(layer_geometry(data, spatial))
    return arr, kwargs, "image"


def read_files(path: str | list[str]) -> list[tuple[Any, dict, str]]:
    paths = path if isinstance(path, list) else [path]
    try:
        return [read_one(p) for p in paths]
    except SeglabError as e:
        # napari shows reader errors as a notification; keep the message to one clear line
        raise ValueError(str(e)) from None
