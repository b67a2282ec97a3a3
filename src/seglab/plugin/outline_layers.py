"""The Segment widget's outlines (Shapes) layers: one per labels result, kept in step with it.

Every run gets a run id, stored in the metadata of its labels layer and of its outlines layer.
Outlines *belong* to a labels layer while that layer still holds their run. After a run, the
outlines this widget made for the same image layer (known by identity, see
:class:`~seglab.plugin.layers.OwnedLayers`) that belong to no labels layer any more are:

- reused in place for the new outlines (``layer.data = ...``: no remove/add, no GC freeze),
- removed when the new run has no outlines (e.g. a U-Net after a StarDist run),
- renamed, never changed, when the user has edited them (their name says they are outdated).
"""

from __future__ import annotations

import uuid
from typing import Any

from seglab.outlines import Outlines
from seglab.plugin.layers import (
    OWNER_KEY,
    OwnedLayers,
    apply_geometry,
    is_unedited,
    output_metadata,
    spatial_geometry,
)

#: added to the name of an edited outlines layer whose labels were re-segmented
STALE_SUFFIX = " (outdated: labels re-segmented)"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def tag_run(layer: Any, run: str) -> None:
    """Record in ``layer``'s seglab metadata which run made its content."""
    meta = layer.metadata.get(OWNER_KEY)
    if isinstance(meta, dict):
        meta["run"] = run


def run_of(layer: Any) -> str | None:
    meta = getattr(layer, "metadata", {}).get(OWNER_KEY)
    return meta.get("run") if isinstance(meta, dict) else None


def orphaned_outlines(viewer: Any, source: Any, owned: OwnedLayers) -> list[Any]:
    """The outlines layers ``owned`` holds for the image layer ``source`` whose run no labels layer
    holds any more."""
    live_runs = {run_of(lyr) for lyr in viewer.layers if lyr.__class__.__name__ == "Labels"}
    live_runs.discard(None)
    return [lyr for lyr in owned.layers(viewer, source, "outlines")
            if lyr.__class__.__name__ == "Shapes" and run_of(lyr) not in live_runs]


def _mark_outdated(layer: Any) -> None:
    if not layer.name.endswith(STALE_SUFFIX):
        layer.name = layer.name + STALE_SUFFIX
    meta = layer.metadata.get(OWNER_KEY)
    if isinstance(meta, dict):
        meta["outdated"] = True


def update_outlines(viewer: Any, outlines: Outlines | None, source: Any, model_name: str,
                    thresholds: dict[str, float], labels_layer: Any, ndim: int, owned: OwnedLayers) -> Any:
    """Bring the outlines of the image layer ``source`` in step with ``labels_layer`` (just written
    by a run), in ``labels_layer``'s place in the world (all of its transform).

    Only outlines layers that ``owned`` holds for ``source`` (made by this widget for this very
    image layer, still under the name it gave them) are reused, removed or marked outdated; any
    other Shapes layer (the user's, a renamed or duplicated one) is left as it is.
    ``outlines`` None: the run has none (or the user did not ask): stale own outlines go.
    Returns the outlines layer of this run, or None.
    """
    run = run_of(labels_layer)
    reusable = None
    for old in orphaned_outlines(viewer, source, owned):
        if not is_unedited(old, "outlines"):
            _mark_outdated(old)  # the user's edits: kept, but clearly not these labels' outlines
            owned.forget(old)  # (renamed: the user's from now on)
        elif outlines is not None and reusable is None and old.ndim == ndim:
            reusable = old
        else:
            viewer.layers.remove(old)
    if outlines is None:
        return None
    types = [outlines.shape_type] * len(outlines.data)  # a list: napari slices a plain string
    geometry = spatial_geometry(labels_layer)
    if reusable is not None:
        layer = reusable
        layer.data = (list(outlines.data), types)
        layer.features = outlines.features
        apply_geometry(layer, geometry)
    else:
        from napari.layers import Shapes

        layer = Shapes(
            list(outlines.data), ndim=ndim, shape_type=types,
            features=outlines.features, name=f"{source.name} [seglab outlines]",
            edge_color="yellow", face_color="transparent", edge_width=1, **geometry,
        )
        viewer.add_layer(layer)
        owned.add(layer, source, "outlines")  # under the name napari gave it (" [1]" when taken)
    layer.metadata.update(output_metadata(source.name, model_name, thresholds, list(layer.data), "outlines"))
    tag_run(layer, run)
    return layer
