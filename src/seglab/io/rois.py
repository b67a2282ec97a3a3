"""Object outlines as an ImageJ/Fiji ROI set (.zip), for Fiji's ROI Manager."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seglab.errors import SeglabError
from seglab.io.atomic import atomic_file


def write_roi_zip(
    path: str | os.PathLike,
    outlines: Sequence[np.ndarray],
    labels: Sequence[int],
    positions: Sequence[int] | None = None,
) -> Path:
    """Write polygons (``(k, 2)`` vertices as ``(y, x)`` pixels) as an ImageJ ROI set.

    Each ROI is named after its object id (``'0042'``) so it matches the label image;
    ``positions`` gives the 0-based stack slice of each ROI (stored 1-based, as ImageJ counts). Written
    atomically; at least one outline is required (ImageJ cannot open an empty set).
    """
    from roifile import ImagejRoi, roiwrite

    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise SeglabError(f"an ImageJ ROI set must be a .zip file, got {path.name}")
    if len(outlines) == 0:
        raise SeglabError(f"no objects, so no ROIs to write to {path.name}")
    if len(labels) != len(outlines) or (positions is not None and len(positions) != len(outlines)):
        raise SeglabError("outlines, labels and positions differ in length")
    width = max(4, len(str(int(max(labels)))))
    rois = []
    for i, (pts, lab) in enumerate(zip(outlines, labels)):
        pts = np.asarray(pts, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
            raise SeglabError(f"outline of object {lab} is not a polygon of (y, x) vertices")
        pos = int(positions[i]) if positions is not None else None
        # ImageJ wants (x, y); pixel centres sit at +0.5 in ImageJ's coordinates
        rois.append(ImagejRoi.frompoints(pts[:, ::-1] + 0.5, name=f"{int(lab):0{width}d}", position=pos))
    with atomic_file(path, suffix=".zip") as tmp:
        tmp.unlink()  # roifile appends to an existing zip; start from nothing
        roiwrite(tmp, rois)
    return path
