"""What ``seglab segment`` (and batches) write for one segmented image: a registry of outputs.

Each output kind has a file suffix, an optional check that the model can give it, and a
writer. The label image is always written, and written **last**: an existing
``<stem>_labels.tif`` therefore marks an image as finished (batches resume by it), while an
interrupted image leaves at most side files, which the re-run replaces. Every writer is atomic.

New outputs (measurements, GeoJSON, ...) register here with :func:`register_output`, so the
CLI, batches and the napari *Batch* widget offer them alike.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seglab.errors import SeglabError

LABELS = "labels"


@dataclass(frozen=True)
class OutputContext:
    """What a writer may use besides the result: the input image and how it was read."""

    data: Any  # seglab.io.ImageData
    axes: str  # the axes the image was segmented with (see seglab.axes)
    stem: str
    model: Any  # the SegmentationModel
    shared: dict = field(default_factory=dict, compare=False)  # computed once for several writers



@dataclass(frozen=True)
class OutputKind:
    """One output file per image: ``<stem><suffix>``."""

    name: str
    suffix: str
    write: Callable[[Path, Any, OutputContext], None]
    help: str = ""
    check: Callable[[Any], None] | None = None  # raises SeglabError when the model cannot give it
    #: raises SeglabError when an image of these axes (letters, e.g. "TZYX") cannot give it: checked
    #: before segmenting, so that no run is spent and no other output written for nothing
    check_axes: Callable[[str, str], None] | None = None


_OUTPUTS: dict[str, OutputKind] = {}


def register_output(kind: OutputKind) -> OutputKind:
    """Add an output kind (a name used twice replaces the earlier one)."""
    _OUTPUTS[kind.name] = kind
    return kind


def output_kinds() -> dict[str, OutputKind]:
    """All registered output kinds by name (labels first)."""
    return dict(_OUTPUTS)


def resolve_outputs(names: Iterable[str], model: Any | None = None) -> list[OutputKind]:
    """The kinds for ``names`` (labels added, order kept, labels last); checked against ``model``."""
    wanted = [n for n in dict.fromkeys(names) if n != LABELS] + [LABELS]
    unknown = [n for n in wanted if n not in _OUTPUTS]
    if unknown:
        raise SeglabError(f"unknown output {unknown[0]!r}; choose from {', '.join(_OUTPUTS)}")
    kinds = [_OUTPUTS[n] for n in wanted]
    if model is not None:
        for k in kinds:
            if k.check is not None:
                k.check(model)
    return kinds


def check_outputs_for(kinds: Iterable[OutputKind], axes: str, name: str) -> None:
    """Refuse, before segmenting image ``name`` of ``axes``, an output it cannot give."""
    for k in kinds:
        if k.check_axes is not None:
            k.check_axes(axes, name)


def output_paths(stem: str, outdir: Path, kinds: Iterable[OutputKind]) -> dict[str, Path]:
    """Where each kind is written for an image named ``stem``."""
    return {k.name: Path(outdir) / f"{stem}{k.suffix}" for k in kinds}


def write_outputs(result: Any, ctx: OutputContext, outdir: Path, kinds: Iterable[OutputKind]) -> dict[str, Path]:
    """Write every kind for one result; the labels last (the 'finished' mark)."""
    kinds = sorted(kinds, key=lambda k: k.name == LABELS)
    paths = output_paths(ctx.stem, outdir, kinds)
    for k in kinds:
        k.write(paths[k.name], result, ctx)
    return paths


# --- the built-in outputs -------------------------------------------------------------------

def labels_calibration(data: Any, axes: str, ndim: int) -> tuple[list[float] | None, str | None]:
    """Pixel size per labels axis (None when the input has none; Z spacing and T frame interval
    None where the input has none, or where the labels' axes are not ImageJ's) and the labels'
    ImageJ axes (None: not in ImageJ's order)."""
    from seglab.io.labels import imagej_axes

    stack = [a for a in axes if a not in "YXCS"]
    label_axes = "".join(stack) + "YX"
    ij_axes = imagej_axes(label_axes) if len(label_axes) == ndim else None
    if data.pixel_size is None:
        return None, ij_axes
    per_axis = {"Z": data.z_spacing, "T": data.frame_interval} if ij_axes else {}
    scale = [per_axis.get(a) for a in label_axes[:-2]] + list(data.pixel_size)
    return (scale if len(scale) == ndim else None), ij_axes


#: the start of the TIFF Software tag of the label images seglab segments (``seglab <version>``):
#: how batches tell their own finished label images from a user's file of the same name
LABELS_SOFTWARE = "seglab"


def labels_software() -> str:
    from seglab import __version__

    return f"{LABELS_SOFTWARE} {__version__}"


def written_by_seglab(path: str | Path) -> bool:
    """Whether the label image at ``path`` is one seglab segmented (a TIFF with seglab's Software
    tag, :func:`labels_software`). A TIFF without it (the user's own labels, or one a program
    saved under that name) or that cannot be read is not; a folder (a large input's zarr labels
    store, which carries no such mark) counts as seglab's."""
    path = Path(path)
    if path.is_dir():
        return True
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            software = tif.pages[0].software if len(tif.pages) else ""
    except Exception:  # noqa: BLE001 - not a TIFF seglab could have written
        return False
    return isinstance(software, str) and software.split(" ", 1)[0] == LABELS_SOFTWARE


def _write_labels(path: Path, result: Any, ctx: OutputContext) -> None:
    from seglab.io import write_labels

    scale, label_axes = labels_calibration(ctx.data, ctx.axes, result.labels.ndim)
    write_labels(path, result.labels, scale=scale, unit=ctx.data.unit if scale else None, axes=label_axes,
                 software=labels_software(), time_unit=ctx.data.time_unit)


def _write_objects(path: Path, result: Any, ctx: OutputContext) -> None:
    from seglab.io import write_table_csv

    write_table_csv(path, result.table)


def _needs_outlines(model: Any) -> None:
    if model.shape_type is None:
        raise SeglabError(f"model {model.config.name!r} ({model.family}) gives no outlines, so --rois cannot be used")


def _write_rois(path: Path, result: Any, ctx: OutputContext) -> None:
    from seglab.io.rois import write_roi_zip
    from seglab.outlines import collect_outlines

    outlines = collect_outlines(result)
    if outlines is None or len(outlines) == 0:
        print(f"seglab: no objects, so no {path.name}", file=sys.stderr)
        return
    _one_stack_axis("".join(a for a in ctx.axes if a not in "YXCS") + "YX", ctx.stem)
    positions = outlines.plane.tolist() if result.labels.ndim == 3 else None
    write_roi_zip(path, [d[:, -2:] for d in outlines.data], outlines.label.tolist(), positions)


def _one_stack_axis(axes: str, name: str) -> None:
    stack = [a for a in axes if a not in "YXCS"]
    if len(stack) > 1:
        raise SeglabError(f"{name} has stack axes {''.join(stack)}: ROI sets hold 2D outlines or outlines on the "
                          "slices of one stack axis; drop --rois (or segment one stack axis per file)")


BOX_COLUMNS = {"label": "label", "score": "score", "class": "class", "y0": "bbox_y0", "x0": "bbox_x0",
               "y1": "bbox_y1", "x1": "bbox_x1"}


def boxes_table(table: dict) -> dict:
    """The box columns of an object table, renamed for ``<stem>_boxes.csv``."""
    missing = [c for c in BOX_COLUMNS.values() if c not in table]
    if missing:
        raise SeglabError(f"the result has no box column(s) {', '.join(missing)}")
    out = {name: table[col] for name, col in BOX_COLUMNS.items()}
    if "plane" in table:
        out["plane"] = table["plane"]
    return out


def _needs_boxes(model: Any) -> None:
    if not model.has_boxes:
        raise SeglabError(f"model {model.config.name!r} ({model.family}) does not detect boxes; drop --boxes")


def _write_boxes(path: Path, result: Any, ctx: OutputContext) -> None:
    from seglab.io import write_table_csv

    write_table_csv(path, boxes_table(result.table))


def _write_geojson(path: Path, result: Any, ctx: OutputContext) -> None:
    from seglab.io.geojson import segmentation_features, write_geojson

    from seglab.measure_files import shared_measurements

    stack_axes = "".join(a for a in ctx.axes if a not in "YXCS")
    table = shared_measurements(result, ctx)
    write_geojson(path, segmentation_features(result, stack_axes=stack_axes, table=table))


register_output(OutputKind(LABELS, "_labels.tif", _write_labels, "label image (TIFF, ImageJ-compatible)"))
register_output(OutputKind("objects", "_objects.csv", _write_objects, "object table (label, area, centroid, ...)"))
register_output(OutputKind("rois", "_rois.zip", _write_rois, "ImageJ ROI set for Fiji's ROI Manager", _needs_outlines,
                           _one_stack_axis))
register_output(OutputKind("boxes", "_boxes.csv", _write_boxes,
                           "boxes (label, score, class, y0, x0, y1, x1; plane for stacks)", _needs_boxes))


def _write_measurements(path: Path, result: Any, ctx: OutputContext) -> None:
    from seglab.measure_files import write_measurements

    write_measurements(path, result, ctx)


register_output(OutputKind("measurements", "_measurements.csv", _write_measurements,
                           "measurements per object: shape, intensity per channel, physical sizes (CSV)"))
register_output(OutputKind("geojson", "_objects.geojson", _write_geojson,
                           "objects as GeoJSON polygons with their measurements, for QuPath (File > Import objects)"))
def _write_ome_zarr(path: Path, result: Any, ctx: OutputContext) -> None:
    from seglab.inference.lazy_files import labels_geometry
    from seglab.io.zarr_io import LabelsGeometry, write_ome_zarr_labels

    geometry = labels_geometry(ctx.data, ctx.axes)
    if len(geometry.axes) != result.labels.ndim:
        geometry = LabelsGeometry("TZYX"[-result.labels.ndim:], ctx.data.pixel_size, ctx.data.unit)
    write_ome_zarr_labels(path, result.labels, geometry)


register_output(OutputKind("ome-zarr", "_labels.ome.zarr", _write_ome_zarr,
                           "labels as OME-Zarr (multiscale pyramid, with the pixel size)"))
