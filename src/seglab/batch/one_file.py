"""One file of a batch: segment it and write its outputs, a failure becoming its outcome.

Runs in this process (``--workers 0``, one file, the napari widget's in-process mode) or inside a
Dask task (:mod:`seglab.batch.worker`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seglab.batch.outcome import FileOutcome
from seglab.errors import SeglabError
from seglab.files import WRITE_STAGE, SegmentOptions, segment_file_iter
from seglab.outputs import resolve_outputs


class Cancelled(Exception):
    """A task noticed that its batch was cancelled."""


def mean_area(table: dict) -> float | None:
    """Mean object area in pixels (None without objects or without an area column)."""
    area = table.get("area") if table else None
    if area is None or len(area) == 0:
        return None
    return float(np.mean(np.asarray(area, dtype=float)))


def error_text(exc: BaseException) -> str:
    """One line for a failed file: the message of a SeglabError, else the exception's type too."""
    if isinstance(exc, SeglabError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def foreign_labels(path: Path, outdir: Path, kinds: Sequence[Any], options: SegmentOptions) -> list[Path]:
    """The label images of ``path`` that exist but were not written by seglab (the user's own
    ``<stem>_labels.tif``, say): never counted as finished, never replaced."""
    from seglab.files import labels_targets, planned_series
    from seglab.outputs import written_by_seglab

    chosen = planned_series(path, options.series)
    return [p for p in labels_targets(Path(path), Path(outdir), kinds, options.out_of_core, chosen)
            if p.exists() and not written_by_seglab(p)]


def foreign_labels_error(found: Sequence[Path]) -> str:
    """The outcome's error for :func:`foreign_labels`."""
    names = ", ".join(p.name for p in found)
    return (f"{names} {'exists' if len(found) == 1 else 'exist'} and {'was' if len(found) == 1 else 'were'} not "
            "written by seglab; left as is (move or rename it to segment this image)")


def segment_one_iter(model: Any, path: Path, outdir: Path, outputs: Sequence[str],
                     options: SegmentOptions) -> Generator[Any, None, FileOutcome]:
    """Segment one file (its progress events) into a :class:`FileOutcome`; a failure becomes a
    ``failed`` outcome with its error instead of an exception (closing the generator still stops).
    A file whose label image exists but is not seglab's (:func:`foreign_labels`) is not segmented:
    it fails with that reason and nothing of it is written (redoing finished images included)."""
    t0 = time.perf_counter()
    try:
        kinds = resolve_outputs(outputs, model)
        if found := foreign_labels(Path(path), Path(outdir), kinds, options):
            return FileOutcome(Path(path), "failed", error=foreign_labels_error(found),
                               seconds=time.perf_counter() - t0)
        done = yield from segment_file_iter(model, path, outdir, kinds, options, keep_result=True)
    except (Exception, Cancelled) as e:  # noqa: BLE001 - any failure is this file's, reported at the end
        if isinstance(e, Cancelled):
            return FileOutcome(Path(path), "cancelled", seconds=time.perf_counter() - t0)
        return FileOutcome(Path(path), "failed", error=error_text(e), seconds=time.perf_counter() - t0)
    tables = [p.result.table for p in ([p for _, p in done.parts] or [done]) if p.result is not None]
    areas = [np.asarray(t["area"], dtype=float) for t in tables if t and t.get("area") is not None]
    area = mean_area({"area": np.concatenate(areas)}) if areas else None  # over the objects of all its images
    return FileOutcome(Path(path), "done", outputs=dict(done.outputs), n_objects=done.n_objects,
                       mean_area=area, size=done.size, seconds=time.perf_counter() - t0,
                       images=tuple((k, p.outputs["labels"]) for k, p in done.parts))


def run_file(model: Any, path: Path, outdir: Path, outputs: Sequence[str], options: SegmentOptions,
             should_stop: Callable[..., bool] | None = None) -> FileOutcome:
    """:func:`segment_one_iter` to its end, asking ``should_stop`` at each progress event; right
    before an image's outputs are written it is asked with ``now=True`` (a poller that asks a
    scheduler only now and then asks it then), so a cancelled file writes nothing."""
    gen = segment_one_iter(model, path, outdir, outputs, options)
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                return stop.value
            if should_stop is not None and should_stop(now=getattr(ev, "stage", None) == WRITE_STAGE):
                try:
                    gen.throw(Cancelled())
                except StopIteration as stop:
                    return stop.value
    finally:
        gen.close()


