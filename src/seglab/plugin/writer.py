"""napari writer: a Labels layer as a compressed uint16/uint32 TIFF with its pixel size."""

from __future__ import annotations

from typing import Any

import numpy as np

from seglab.errors import SeglabError
from seglab.io.labels import write_labels as _write


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer; returns the written path (napari shows errors as notifications)."""
    try:
        scale = meta.get("scale")
        arr = np.asarray(data[0] if meta.get("multiscale") else data)
        out = _write(path, arr, scale=list(scale) if scale is not None else None)
    except SeglabError as e:
        raise ValueError(str(e)) from None
    return [str(out)]
