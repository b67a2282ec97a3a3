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
    augment: bool = False  # test-time augmentation: maps averaged over 8 orientations (seglab.inference.dihedral)
    link_z: bool = False  # link objects across Z planes by overlap (seglab.linking)
    link_min_iou: float = 0.3
    #: large inputs (zarr stores; TIFFs when True, or when None and over the size limit) are
    #: segmented out of core in blocks of ``block_size`` pixels (seglab.inference.lazy)
    out_of_core: bool | None = None
    block_size: int = 4096
    #: the images of a TIFF that holds several (the positions of a multi-position OME-TIFF):
    #: "all" (each into its own outputs, ``<stem>_s<k>_...``), "first" (the first, named as
    #: the file), or series indices (see :func:`parse_series`)
    series: str | tuple[int, ...] = "all"


@dataclass(frozen=True)
class FileResult:
    """What one file gave: its outputs, its object count and the size it was segmented at."""

    path: Path
    outputs: dict[str, Path]
    n_objects: int
    size: str  # e.g. "diameter 18.2 px estimated, rescaled x0.88"
    result: Any = None  # the SegmentationResult, when kept
    #: for a file of several images segmented apart: each one's (series index, result)
    parts: tuple[tuple[int, FileResult], ...] = ()


def parse_series(text: str | Sequence[int] | None) -> str | tuple[int, ...]:
    """``--series``: "all", "first", or series indices as "0,2,5" (or a sequence of ints)."""
    if text is None:
        return "all"
    if not isinstance(text, str):
        values = tuple(int(k) for k in text)
    elif text.strip().lower() in ("all", "first"):
        return text.strip().lower()
    else:
        try:
            values = tuple(int(k) for k in text.replace(" ", "").split(",") if k != "")
        except ValueError:
            values = ()
        if not values:
            raise SeglabError(f"--series takes 'all', 'first' or series numbers such as 0,2,5; got {text!r}")
    if any(k < 0 for k in values) or len(set(values)) != len(values):
        raise SeglabError(f"series numbers must be distinct and >= 0; got {','.join(map(str, values))}")
    return values


def series_to_read(path: str | Path, choice: str | tuple[int, ...] = "all") -> list[int | None]:
    """Which images of ``path`` to segment, each written apart: ``[None]`` for a file of one image
    or for "first" (read as the file, as before), else the series indices (``<stem>_s<k>`` outputs).
    A clear :class:`SeglabError` for indices the file does not hold."""
    from seglab.io.images import image_series

    if choice == "first":
        return [None]
    found = image_series(path)
    if choice == "all":
        return [None] if len(found) == 1 else list(found)
    missing = [k for k in choice if k not in found]
    if missing:
        raise SeglabError(f"{Path(path).name} holds {len(found)} image(s) (series {', '.join(map(str, found))}); "
                          f"no series {', '.join(map(str, missing))}")
    return [None] if len(found) == 1 else list(choice)


#: the stage of the event an in-memory image yields just before its outputs are written (its last)
WRITE_STAGE = "write"


class _PartEvent:
    """A progress event of one image among ``n`` of a file: its fraction counts as a share."""

    def __init__(self, event: Any, index: int, n: int) -> None:
        self._event, self._index, self._n = event, index, n

    @property
    def fraction(self) -> float:
        return (self._index + float(self._event.fraction)) / self._n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._event, name)


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


def planned_series(path: str | Path, series: str | tuple[int, ...] = "all") -> list[int | None]:
    """:func:`series_to_read` for planning a run: a file whose images cannot be listed (corrupt,
    missing series) counts as one image; its error comes when it is segmented."""
    try:
        return series_to_read(path, series)
    except SeglabError:
        return [None]


def output_stems(path: str | Path, chosen: Sequence[int | None]) -> list[str]:
    """The names the outputs of ``path`` are written under, one per image of ``chosen``
    (:func:`planned_series`)."""
    from seglab.io.images import image_stem, series_stem

    return [series_stem(image_stem(path), k) for k in chosen]


def all_output_targets(path: Path, outdir: Path, kinds: Sequence[OutputKind], out_of_core: bool | None,
                       chosen: Sequence[int | None]) -> list[dict[str, Path]]:
    """Every output file of each image of ``chosen`` (:func:`planned_series`), by kind name."""
    from seglab.inference.lazy_files import output_targets

    return [output_targets(path, outdir, kinds, out_of_core, k) for k in chosen]


def labels_targets(path: Path, outdir: Path, kinds: Sequence[OutputKind], out_of_core: bool | None,
                   chosen: Sequence[int | None]) -> list[Path]:
    """The label image (or store) of each image of ``chosen`` (:func:`planned_series`)."""
    labels = [k for k in kinds if k.name in ("labels", "ome-zarr")]
    return [t["labels"] for t in all_output_targets(path, outdir, labels, out_of_core, chosen)]


def is_finished(path: Path, outdir: Path, kinds: Sequence[OutputKind], out_of_core: bool | None = None,
                series: str | tuple[int, ...] = "all") -> bool:
    """Whether ``path`` was done by an earlier run: the label image (written last) of each of its
    images exists (for large inputs, its labels store under its final name)."""
    chosen = planned_series(path, series)
    return all(t.exists() for t in labels_targets(path, outdir, kinds, out_of_core, chosen))


def segment_file_iter(model: Any, path: str | Path, outdir: str | Path, kinds: Sequence[OutputKind],
                      options: SegmentOptions = SegmentOptions(), keep_result: bool = False,
                      ) -> Generator[Any, None, FileResult]:
    """Read ``path``, segment it with ``model`` (progress events), write ``kinds`` into ``outdir``.
    A TIFF of several images (``options.series``) gives each its own outputs and the result's ``parts``."""
    path = Path(path)
    chosen = series_to_read(path, options.series)
    if chosen == [None]:
        return (yield from _segment_image_iter(model, path, outdir, kinds, options, keep_result, None))
    parts = []
    for i, k in enumerate(chosen):
        gen = _segment_image_iter(model, path, outdir, kinds, options, keep_result, k)
        try:
            while True:
                try:
                    ev = next(gen)
                except StopIteration as stop:
                    parts.append((k, stop.value))
                    break
                yield _PartEvent(ev, i, len(chosen))
        finally:
            gen.close()
    first = parts[0][1]
    size = "; ".join(f"s{k}: {p.n_objects} objects, {p.size}" for k, p in parts)
    return FileResult(path, first.outputs, sum(p.n_objects for _, p in parts), f"{len(parts)} images: {size}",
                      None, tuple(parts))


def _segment_image_iter(model: Any, path: Path, outdir: str | Path, kinds: Sequence[OutputKind],
                        options: SegmentOptions, keep_result: bool, series: int | None,
                        ) -> Generator[Any, None, FileResult]:
    """One image of ``path`` (``series`` None: the file's first, named as the file)."""
    from seglab.inference.engine import ProgressEvent, segment_iter
    from seglab.inference.lazy import is_lazy
    from seglab.io.images import image_series, image_stem, pixel_size_um, read_image_data, series_stem
    from seglab.outputs import check_outputs_for

    read = image_series(path)[0] if options.series == "first" else series  # chosen: no warning about the others
    data = read_image_data(path, lazy=options.out_of_core, series=read)
    run = input_axes(data, path.name, options.axes, options.channel_axis)
    check_outputs_for(kinds, run["axes"], path.name)
    if is_lazy(data.array):  # too large to load whole: block by block into a zarr store
        from seglab.inference.lazy_files import segment_large_file_iter

        if options.link_z:
            raise SeglabError(f"{path.name}: linking objects across Z (--link-z) is not available for images "
                              "segmented out of core; link the planes of a smaller stack, or leave it off")

        return (yield from segment_large_file_iter(model, path, outdir, kinds, options, data, run, series))
    if run["rgb"] and options.channels is None and model.config.input_channels == 1:
        _rgb_input_hint(model, data.array, run)
    result = yield from segment_iter(
        model, data.array, channels=options.channels, tile_size=options.tile_size,
        batch_size=options.batch_size, device=options.device, amp=options.amp,
        thresholds=options.thresholds, diameter=options.diameter, pixel_size=pixel_size_um(data.pixel_size, data.unit),
        denoise=options.denoise, augment=options.augment, **run)
    if options.link_z:
        from seglab.linking import link_stack

        result = link_stack(result, run["axes"], options.link_min_iou, path.name)
    ctx = OutputContext(data=data, axes=run["axes"], stem=series_stem(image_stem(path), series), model=model)
    yield ProgressEvent(WRITE_STAGE, 1, 1)  # a consumer that stops here leaves no outputs of this image
    written = write_outputs(result, ctx, Path(outdir), kinds)
    return FileResult(path, written, result.n_objects, describe_size(result), result if keep_result else None)
