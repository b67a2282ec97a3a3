"""The Segment widget's outlines (Shapes) layers: one per labels result, kept in step with it.

Every run gets a run id, stored in the metadata of its labels layer and of its outlines layer.
Outlines *belong* to a labels layer while that layer still holds their run. After a run, the
plugin's outlines of the same image that belong to no labels layer any more are:

- reused in place for the new outlines (``layer.data = ...``: no remove/add, no GC freeze),
- removed when the new run has no outlines (e.g. a U-Net after a StarDist run),
- renamed, never changed, when the user has edited them (their name says they are outdated).
"""

from __future__ import annotations

import uuid
from typing import Any

from seglab.outlines import Outlines
from seglab.plugin.layers import OWNER_KEY, is_own_unedited, output_metadata

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


def _is_outlines_of(layer: Any, source: str) -> bool:
    meta = getattr(layer, "metadata", {}).get(OWNER_KEY)
    return (layer.__class__.__name__ == "Shapes" and isinstance(meta, dict)
            and meta.get("role") == "outlines" and meta.get("source") == source)


def orphaned_outlines(viewer: Any, source: str) -> list[Any]:
    """The plugin's outlines layers of ``source`` whose run no labels layer holds any more."""
    live_runs = {run_of(lyr) for lyr in viewer.layers if lyr.__class__.__name__ == "Labels"}
    live_runs.discard(None)
    return [lyr for lyr in viewer.layers if _is_outlines_of(lyr, source) and run_of(lyr) not in live_runs]


def _mark_outdated(layer: Any) -> None:
    if not layer.name.endswith(STALE_SUFFIX):
        layer.name = layer.name + STALE_SUFFIX
    meta = layer.metadata.get(OWNER_KEY)
    if isinstance(meta, dict):
        meta["outdated"] = True


def update_outlines(viewer: Any, outlines: Outlines | None, source: str, model_name: str,
                    thresholds: dict[str, float], labels_layer: Any, ndim: int) -> Any:
    """Bring the outlines of ``source`` in step with ``labels_layer`` (just written by a run).

    ``outlines`` None: the run has none (or the user did not ask): stale own outlines go.
    Returns the outlines layer of this run, or None.
    """
    run = run_of(labels_layer)
    reusable = None
    for old in orphaned_outlines(viewer, source):
        if not is_own_unedited(old, source, "outlines"):
            _mark_outdated(old)  # the user's edits: kept, but clearly not these labels' outlines
        elif outlines is not None and reusable is None and old.ndim == ndim:
            reusable = old
        else:
            viewer.layers.remove(old)
    if outlines is None:
        return None
    types = [outlines.shape_type] * len(outlines.data)  # a list: napari slices a plain string
    if reusable is not None:
        layer = reusable
        layer.data = (list(outlines.data), types)
        layer.features = outlines.features
        layer.scale, layer.translate = labels_layer.scale, labels_layer.translate
    else:
        from napari.layers import Shapes

        layer = Shapes(
            list(outlines.data), ndim=ndim, shape_type=types,
            features=outlines.features, name=f"{source} [seglab outlines]",
            edge_color="yellow", face_color="transparent", edge_width=1,
            scale=labels_layer.scale, translate=labels_layer.translate,
        )
        viewer.add_layer(layer)
    layer.metadata.update(output_metadata(source, model_name, thresholds, list(layer.data), "outlines"))
    tag_run(layer, run)
    return layer
