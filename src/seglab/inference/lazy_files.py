"""One large input file (a zarr/OME-Zarr store, or a TIFF over the size limit) segmented out of core.

:func:`seglab.files.segment_file_iter` hands such inputs here. The labels go to
``<stem>_labels.zarr`` (a uint32 zarr array), or ``<stem>_labels.ome.zarr`` (OME-Zarr labels
with a pyramid and the input's pixel size) when the input is OME-Zarr or the ``ome-zarr`` output
is asked for; the object table (``objects``) is written before the labels store is renamed to
its final name, which marks the input finished.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from seglab.errors import SeglabError
from seglab.outputs import LABELS, OutputContext, OutputKind, output_paths

#: outputs an out-of-core run can give besides its labels store
LAZY_SIDE_OUTPUTS = ("objects",)
OME_ZARR = "ome-zarr"
PLAIN_SUFFIX = "_labels.zarr"
OME_SUFFIX = "_labels.ome.zarr"


def lazy_labels_path(path: str | Path, outdir: str | Path, kinds: Sequence[OutputKind] = (),
                     series: int | None = None) -> Path:
    """Where the labels store of a large input (of image ``series`` of it, when it holds several) goes."""
    from seglab.io.images import image_stem, series_stem
    from seglab.io.zarr_io import is_ome_zarr, is_zarr_path

    ome = any(k.name == OME_ZARR for k in kinds) or (is_zarr_path(path) and is_ome_zarr(path))
    return Path(outdir) / f"{series_stem(image_stem(path), series)}{OME_SUFFIX if ome else PLAIN_SUFFIX}"


def output_targets(path: str | Path, outdir: str | Path, kinds: Sequence[OutputKind],
                   out_of_core: bool | None = None, series: int | None = None) -> dict[str, Path]:
    """Every output file of ``path`` (of its image ``series``, when it holds several and they are
    written apart: ``<stem>_s<series>_...``) by kind name (the labels store for large inputs)."""
    from seglab.io.images import image_stem, is_large_input, series_stem

    stem = series_stem(image_stem(path), series)
    if not is_large_input(path, out_of_core):
        return output_paths(stem, Path(outdir), kinds)
    side = [k for k in kinds if k.name in LAZY_SIDE_OUTPUTS]
    out = output_paths(stem, Path(outdir), side)
    out[LABELS] = lazy_labels_path(path, outdir, kinds, series)
    return out


def check_lazy_kinds(kinds: Sequence[OutputKind], name: str) -> None:
    """A clear error for outputs an out-of-core run cannot give."""
    bad = [k.name for k in kinds if k.name not in (LABELS, OME_ZARR) + LAZY_SIDE_OUTPUTS]
    if bad:
        raise SeglabError(f"{name} is segmented out of core (too large to load whole), which gives labels and "
                          f"the object table only; drop the output(s) {', '.join(bad)}")


def labels_geometry(data: Any, axes: str) -> Any:
    """The OME-Zarr geometry of the labels of an input read as ``axes``: its stack axes and Y, X,
    with its pixel size, unit, Z spacing and frame interval."""
    from seglab.io.zarr_io import LabelsGeometry

    label_axes = "".join(a if a in "TZYX" else "Z" for a in axes if a not in "CS")
    if len(set(label_axes)) != len(label_axes):  # OME axes must be distinct: undeclared stacks become t, z
        stack = label_axes[:-2]
        label_axes = ("TZ"[-len(stack):] if len(stack) <= 2 else "Q" * len(stack)) + "YX"
    return LabelsGeometry(label_axes, data.pixel_size, data.unit, data.z_spacing,
                          getattr(data, "frame_interval", None), getattr(data, "time_unit", None))


def segment_large_file_iter(model: Any, path: str | Path, outdir: str | Path, kinds: Sequence[OutputKind],
                            options: Any, data: Any, run: dict, series: int | None = None,
                            ) -> Generator[Any, None, Any]:
    """Segment an input already opened lazily (``data``, axes ``run``; image ``series`` of a file
    of several, written apart) into ``outdir``."""
    from seglab.files import FileResult, describe_size
    from seglab.inference.lazy import segment_lazy_iter
    from seglab.io.images import pixel_size_um

    path = Path(path)
    check_lazy_kinds(kinds, path.name)
    targets = output_targets(path, outdir, kinds, True, series)
    label_path = targets[LABELS]
    ome = labels_geometry(data, run["axes"]) if label_path.name.endswith(OME_SUFFIX) else None
    side = [k for k in kinds if k.name in LAZY_SIDE_OUTPUTS]
    ctx = OutputContext(data=data, axes=run["axes"], stem=label_path.name[: -len(OME_SUFFIX if ome else PLAIN_SUFFIX)],
                        model=model)

    def before_finish(result: Any) -> None:  # side files first: the labels store marks the file done
        for k in side:
            k.write(targets[k.name], result, ctx)

    result = yield from segment_lazy_iter(
        model, data.array, label_path, axes=run["axes"], rgb=run.get("rgb"), channels=options.channels, ome=ome,
        block_size=getattr(options, "block_size", 4096), tile_size=options.tile_size,
        batch_size=options.batch_size, device=options.device, amp=options.amp, thresholds=options.thresholds,
        diameter=options.diameter, pixel_size=pixel_size_um(data.pixel_size, data.unit),
        denoise=getattr(options, "denoise", "auto"), augment=getattr(options, "augment", False),
        before_finish=before_finish)
    return FileResult(path, targets, result.n_objects, describe_size(result), None)
