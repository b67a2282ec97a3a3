"""Measurements of image files: ``seglab segment --measure`` and ``seglab measure``.

Both write ``<stem>_measurements.csv`` (columns: :mod:`seglab.measure`) with intensities of
the image file as read (every channel, not normalised) and physical sizes from its pixel
size and unit (none when the file declares no pixel size or no known unit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seglab.errors import SeglabError
from seglab.measure import measure



def image_for_labels(data: Any, axes: str, labels_shape: tuple[int, ...]) -> np.ndarray:
    """The pixels of ``data`` (an :class:`~seglab.io.ImageData` read with ``axes``) in the labels'
    order: stack axes, Y, X, then channels; a SeglabError when they do not match ``labels_shape``."""
    from seglab.axes import arrange

    image, channel_axis, _ = arrange(np.asarray(data.array), axes=axes)
    spatial = image.shape if channel_axis is None else image.shape[:-1]
    if tuple(spatial) != tuple(labels_shape):
        shape = f"{tuple(spatial)}" + (f" (without its channel axis, of axes {axes})" if channel_axis is not None else "")
        raise SeglabError(f"image {shape} and labels {tuple(labels_shape)} differ in shape")
    return image if channel_axis is not None else image[..., None]


def calibration(data: Any) -> dict[str, Any]:
    """``pixel_size`` and ``unit`` keyword arguments of :func:`measure` from a file's metadata."""
    if data.pixel_size is None or data.unit is None:
        return {}
    return {"pixel_size": tuple(data.pixel_size), "unit": data.unit}


def measure_data(labels: np.ndarray, data: Any, axes: str, table: dict | None = None) -> dict[str, np.ndarray]:
    """Measure ``labels`` against the image file ``data`` read with ``axes``."""
    image = image_for_labels(data, axes, labels.shape)
    return measure(labels, image, **calibration(data), table=table)


def shared_measurements(result: Any, ctx: Any) -> dict[str, np.ndarray]:
    """The measurements of a result, computed once per image for every output that needs them
    (the CSV, GeoJSON properties): kept in ``ctx.shared`` (see :class:`seglab.outputs.OutputContext`)."""
    if "measurements" not in ctx.shared:
        ctx.shared["measurements"] = measure_data(result.labels, ctx.data, ctx.axes, result.table)
    return ctx.shared["measurements"]


def write_measurements(path: Path, result: Any, ctx: Any) -> None:
    """The ``measurements`` output of ``seglab segment`` (see :mod:`seglab.outputs`)."""
    from seglab.io import write_table_csv

    write_table_csv(path, shared_measurements(result, ctx))


def measure_pair(image_path: Path, labels_path: Path, axes: str | None = None) -> dict[str, np.ndarray]:
    """Read one image and its labels and measure them."""
    from seglab.files import input_axes
    from seglab.io import read_image_data, read_labels

    data = read_image_data(image_path)
    run = input_axes(data, image_path.name, axes)
    labels = read_labels(labels_path)
    return measure_data(labels, data, run["axes"])
