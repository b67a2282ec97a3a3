"""Segment one image file into output files: read, segment, write (the unit of every batch).

``seglab segment``, folder batches (local or on Dask) and the napari *Batch* widget all call
:func:`segment_file_iter`, a progress generator whose return value is a :class:`FileResult`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seglab.errors import SeglabError
from seglab.outputs import OutputContext, OutputKind, write_outputs


@dataclass(frozen=True)
class SegmentOptions:
    """How to read and segment each file (the CLI's ``segment`` options)."""

    channels: Sequence[int] | None = None
    axes: str | None = None  # overrides what the file declares
    channel_axis: int | None = None
    tile_size: int = 1024
    batch_size: int = 4
    device: str = "auto"
    amp: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)
    diameter: float | str | None = "auto"
    denoise: str | bool = "auto"  # smooth noisy (low-light) planes first (seglab.inference.denoise)
    link_z: bool = False  # link objects across Z planes by overlap (seglab.linking)
    link_min_iou: float = 0.3
    #: large inputs (zarr stores; TIFFs when True, or when None and over the size limit) are
    #: segmented out of core in blocks of ``block_size`` pixels (seglab.inference.lazy)
    out_of_core: bool | None = None
    block_size: int = 4096


@dataclass(frozen=True)
class FileResult:
    """What one file gave: its outputs, its object count and the size it was segmented at."""

    path: Path
    outputs: dict[str, Path]
    n_objects: int
    size: str  # e.g. "diameter 18.2 px estimated, rescaled x0.88"
    result: Any = None  # the SegmentationResult, when kept


def input_axes(data: Any, name: str, axes: str | None = None, channel_axis: int | None = None) -> dict:
    """How ``segment_iter`` should read an input's axes: ``axes``, else ``channel_axis``, else
    what the file declares; axes that could be channels or planes are an error, not a guess."""
    from seglab.axes import check_declared, parse_axes

    shape = data.array.shape
    if axes:
        parsed = parse_axes(axes, len(shape))
        return {"axes": parsed, "rgb": "S" in parsed and shape[parsed.index("S")] in (3, 4)}
    declared = data.axes
    if channel_axis is not None:
        ca = channel_axis
        if not -len(shape) <= ca < len(shape):
            raise SeglabError(f"channel axis {ca} does not exist for an image of shape {shape}")
        ca %= len(shape)
        rest = "".join("Z" if i != ca and a in "CS" else a for i, a in enumerate(declared))  # one channel axis
        declared = rest[:ca] + ("S" if data.rgb and declared[ca] == "S" else "C") + rest[ca + 1:]
    check_declared(declared, shape, name)
    return {"axes": declared, "rgb": data.rgb and "S" in declared}


def describe_size(result: Any) -> str:
    """How a result was rescaled (and smoothed, for low light), in words (for a per-file line)."""
    from seglab.inference.denoise import describe_planes

    if result.diameter is None:
        text = "diameter unknown, not rescaled"
    else:
        text = f"diameter {result.diameter:.1f} px"
        if result.pixel_size is not None:
            text += f" from the pixel size ({result.pixel_size:.3g} µm)"
        text += f", rescaled x{result.scale_factor:.3g}" if result.scale_factor != 1.0 else ", not rescaled"
    smoothing = describe_planes(getattr(result, "smoothing", []))
    return f"{text}; {smoothing}" if smoothing else text


def _rgb_input_hint(model: Any, array: Any, run: dict) -> None:
    """Warn (once per message) when a grey model gets stained tissue and an RGB model is installed,
    or a fluorescence composite it mixes into grey."""
    import warnings

    from seglab.axes import arrange
    from seglab.errors import SeglabWarning
    from seglab.inference.appearance import grey_model_note
    from seglab.models.registry import ModelRegistry

    image, _, _ = arrange(array, axes=run["axes"], rgb=True)
    note = grey_model_note(model.config, image[tuple(n // 2 for n in image.shape[:-3])],
                           lambda: ModelRegistry().names_reading(3))
    if note:
        warnings.warn(note, SeglabWarning, stacklevel=2)


def is_finished(path: Path, outdir: Path, kinds: Sequence[OutputKind], out_of_core: bool | None = None) -> bool:
    """Whether ``path`` was done by an earlier run: its label image (written last) exists
    (for large inputs, its labels store under its final name)."""
    from seglab.inference.lazy_files import output_targets

    labels = [k for k in kinds if k.name in ("labels", "ome-zarr")]
    return output_targets(path, outdir, labels, out_of_core)["labels"].exists()


def segment_file_iter(model: Any, path: str | Path, outdir: str | Path, kinds: Sequence[OutputKind],
                      options: SegmentOptions = SegmentOptions(), keep_result: bool = False,
                      ) -> Generator[Any, None, FileResult]:
    """Read ``path``, segment it with ``model`` (progress events), write ``kinds`` into ``outdir``."""
    from seglab.inference.engine import segment_iter
    from seglab.inference.lazy import is_lazy
    from seglab.io.images import image_stem, pixel_size_um, read_image_data

    path = Path(path)
    data = read_image_data(path, lazy=options.out_of_core)
    run = input_axes(data, path.name, options.axes, options.channel_axis)
    if is_lazy(data.array):  # too large to load whole: block by block into a zarr store
        from seglab.inference.lazy_files import segment_large_file_iter

        if options.link_z:
            raise SeglabError(f"{path.name}: linking objects across Z (--link-z) is not available for images "
                              "segmented out of core; link the planes of a smaller stack, or leave it off")

        return (yield from segment_large_file_iter(model, path, outdir, kinds, options, data, run))
    if run["rgb"] and options.channels is None and model.config.input_channels == 1:
        _rgb_input_hint(model, data.array, run)
    result = yield from segment_iter(
        model, data.array, channels=options.channels, tile_size=options.tile_size,
        batch_size=options.batch_size, device=options.device, amp=options.amp,
        thresholds=options.thresholds, diameter=options.diameter, pixel_size=pixel_size_um(data.pixel_size, data.unit),
        denoise=options.denoise, **run)
    if options.link_z:
        from seglab.linking import link_stack

        result = link_stack(result, run["axes"], options.link_min_iou, path.name)
    ctx = OutputContext(data=data, axes=run["axes"], stem=image_stem(path), model=model)
    written = write_outputs(result, ctx, Path(outdir), kinds)
    return FileResult(path, written, result.n_objects, describe_size(result), result if keep_result else None)
