"""Segment many files: a progress generator over files, in this process or on Dask.

``batch_iter`` yields a :class:`BatchEvent` when a file ends (and, in this process, while a
file is segmented) and returns a :class:`BatchSummary`. A file whose label image exists (the
label image is written last and atomically, see :mod:`seglab.outputs`) is *finished* and is
skipped, so a re-run of an interrupted batch does only the rest. A label image that seglab did
not write (no seglab Software tag: the user's own ``<stem>_labels.tif``) is neither: its image
fails with that reason and the file is left as it is, with ``overwrite`` too. A file that fails is a
``failed`` outcome with its error; the other files go on. Closing the generator cancels: no
further file starts, running Dask tasks stop at their next progress step, and a local cluster
started for the batch is closed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seglab.batch.one_file import segment_one_iter
from seglab.batch.outcome import FileOutcome
from seglab.errors import SeglabError
from seglab.files import SegmentOptions
from seglab.outputs import output_kinds, resolve_outputs

from seglab.batch.options import DEFAULT_PROCESSES  # noqa: F401 (re-exported)

#: how often the Dask loop looks for ended files, and how often it yields a "wait" event meanwhile
#: (the consumer can only close a generator at a yield: this bounds the cancel delay)
POLL_SECONDS = 0.05
HEARTBEAT_SECONDS = 0.25


@dataclass(frozen=True)
class BatchSettings:
    """Where a batch runs. ``workers=0``: in this process; ``scheduler``: an existing cluster."""

    workers: int = 1
    scheduler: str | None = None
    processes: bool = DEFAULT_PROCESSES
    overwrite: bool = False  # redo finished files too

    def in_process(self, n_files: int) -> bool:
        """Run in this process: no workers asked for, or a single file on a local cluster (a
        cluster's start costs more than one file gains from it; docs/benchmarks.md)."""
        return self.scheduler is None and (self.workers == 0 or n_files <= 1)


@dataclass(frozen=True)
class BatchEvent:
    """Progress of a batch: ``stage`` "start" (workers ready), "segment" (a file in this process
    is ``within`` done), "wait" (Dask: no file ended lately) or "file" (``outcome`` ended);
    ``done`` of ``total`` files ended."""

    stage: str
    done: int
    total: int
    outcome: FileOutcome | None = None
    within: float = 0.0
    where: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, (self.done + self.within) / self.total) if self.total else 1.0


@dataclass
class BatchSummary:
    """Every file's outcome, in the order given, and where the batch ran."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    where: str = ""
    seconds: float = 0.0

    def with_status(self, status: str) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def failed(self) -> list[FileOutcome]:
        return self.with_status("failed")

    @property
    def ok(self) -> bool:
        """Every file was segmented now or earlier."""
        return all(o.ok for o in self.outcomes)


@dataclass(frozen=True)
class Job:
    path: Path
    outdir: Path


def is_output_name(name: str, suffixes: Iterable[str] | None = None) -> bool:
    """Whether a file name is one of seglab's outputs (or a temporary file of one)."""
    if name.startswith("."):
        return True
    suffixes = [k.suffix for k in output_kinds().values()] if suffixes is None else suffixes
    return any(name.lower().endswith(s.lower()) for s in suffixes)


def batch_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files of ``inputs`` (files, or folders' images): in folders, seglab's own outputs
    (``*_labels.tif``, ... when they are written next to the images) and hidden files are left out."""
    from seglab.io import list_images

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = [q for q in list_images([p]) if not is_output_name(q.name)]
            if not found:
                raise SeglabError(f"folder {p} holds no images to segment (only seglab outputs)")
            out.extend(found)
        else:
            out.extend(list_images([p]))
    return out


def plan_batch(paths: Sequence[Path], outdir: Path | None, outputs: Sequence[str], overwrite: bool = False,
               out_of_core: bool | None = None, series: str | tuple[int, ...] = "all",
               ) -> tuple[list[Job], list[FileOutcome]]:
    """The files to segment and the finished ones to skip. ``outdir`` None: next to each image;
    ``out_of_core`` and ``series`` as :class:`~seglab.files.SegmentOptions` (where large inputs'
    labels go; which images of a multi-image TIFF are written apart)."""
    from seglab.files import labels_targets, output_stems, planned_series
    from seglab.outputs import written_by_seglab

    kinds = resolve_outputs(outputs)
    jobs = [Job(Path(p), Path(outdir) if outdir is not None else Path(p).parent) for p in paths]
    chosen = {job.path: planned_series(job.path, series) for job in jobs}  # each file's header read once
    seen: dict[tuple[Path, str], Path] = {}
    for job in jobs:
        for stem in output_stems(job.path, chosen[job.path]):
            key = (job.outdir.resolve(), stem)
            if key in seen and seen[key] != job.path:
                raise SeglabError(f"several inputs share the name {key[1]!r}; their outputs would collide")
            seen[key] = job.path
    if overwrite:
        return jobs, []
    todo, skipped = [], []
    for job in jobs:
        images = chosen[job.path]
        labels = labels_targets(job.path, job.outdir, kinds, out_of_core, images)
        # the label image is written last: not finished; one seglab did not write (the user's own
        # labels of that name) is no sign of a finished run either: the run reports it, untouched
        if not all(p.exists() and written_by_seglab(p) for p in labels):
            todo.append(job)
            continue
        parts = tuple(zip(images, labels)) if images != [None] else ()  # a multi-image file: each one's labels
        skipped.append(FileOutcome(job.path, "skipped", outputs={"labels": labels[0]}, images=parts))
    return todo, skipped


def batch_iter(model: Any, paths: Sequence[str | Path], outdir: str | Path | None, outputs: Sequence[str],
               options: SegmentOptions = SegmentOptions(), settings: BatchSettings = BatchSettings(),
               model_ref: str | None = None) -> Generator[BatchEvent, None, BatchSummary]:
    """Segment ``paths`` with ``model`` into ``outdir`` (None: next to each image).

    ``model`` is used in this process; workers load ``model_ref`` once each (a name or folder,
    see :func:`seglab.batch.cluster.model_reference`; default: the model's name). ``outputs`` are output kind
    names (labels always). Finished files are skipped unless ``settings.overwrite``.
    """
    t0 = time.perf_counter()
    paths = [Path(p) for p in paths]
    resolve_outputs(outputs, model)  # a model that cannot give an output is refused before any work
    todo, skipped = plan_batch(paths, None if outdir is None else Path(outdir), outputs, settings.overwrite,
                               options.out_of_core, options.series)
    outcomes: dict[Path, FileOutcome] = {o.path: o for o in skipped}
    total = len(paths)
    if settings.in_process(len(todo)):
        where = "this process"
        runner = _in_process(model, todo, outputs, options, len(skipped), total)
    else:
        where = ""
        runner = _on_dask(model, model_ref, todo, outputs, options, settings, len(skipped), total)
    try:
        for event in runner:
            where = event.where or where
            if event.outcome is not None:
                outcomes[event.outcome.path] = event.outcome
            yield event
    finally:
        runner.close()
    return BatchSummary([outcomes[p] for p in paths if p in outcomes], where, time.perf_counter() - t0)


def _in_process(model: Any, jobs: list[Job], outputs: Sequence[str], options: SegmentOptions, done: int,
                total: int) -> Generator[BatchEvent, None, None]:
    yield BatchEvent("start", done, total, where="this process")
    for job in jobs:
        gen = segment_one_iter(model, job.path, job.outdir, outputs, options)
        try:
            while True:
                try:
                    ev = next(gen)
                except StopIteration as stop:
                    outcome = stop.value
                    break
                yield BatchEvent("segment", done, total, within=min(max(float(ev.fraction), 0.0), 0.999))
        finally:
            gen.close()
        done += 1
        yield BatchEvent("file", done, total, outcome)


def _on_dask(model: Any, model_ref: str | None, jobs: list[Job], outputs: Sequence[str], options: SegmentOptions,
             settings: BatchSettings, done: int, total: int) -> Generator[BatchEvent, None, None]:
    from distributed import Event, as_completed

    from seglab.batch.cluster import connect, model_reference
    from seglab.batch.worker import PLUGIN_NAME, ModelCache, segment_on_worker

    ref = model_ref or model_reference(model.config.name)
    with connect(settings.workers, settings.scheduler, settings.processes) as conn:
        client = conn.client
        client.register_plugin(ModelCache(conn.torch_threads), name=PLUGIN_NAME)
        yield BatchEvent("start", done, total, where=conn.where)
        batch = uuid.uuid4().hex[:12]
        cancel = Event(f"seglab-cancel-{batch}", client=client)
        futures = {client.submit(segment_on_worker, ref, str(j.path), str(j.outdir), list(outputs), options,
                                 cancel.name, key=f"seglab-{batch}-{i}", pure=False): j for i, j in enumerate(jobs)}
        finished = False
        try:
            pending = as_completed(futures, loop=client.loop)
            last = time.monotonic()
            while not pending.is_empty():
                if not pending.has_ready():  # a heartbeat now and then: the consumer may close (cancel) us
                    time.sleep(POLL_SECONDS)
                    if time.monotonic() - last >= HEARTBEAT_SECONDS:
                        last = time.monotonic()
                        yield BatchEvent("wait", done, total)
                    continue
                for fut in pending.next_batch(block=False):
                    done += 1
                    last = time.monotonic()
                    yield BatchEvent("file", done, total, _task_outcome(fut, futures[fut].path))
            finished = True
        finally:
            if not finished:  # cancelled: running tasks stop at their next step, pending ones never start
                try:
                    cancel.set()
                    client.cancel([f for f in futures if not f.done()])
                except Exception:  # noqa: BLE001 - the cluster is going away anyway
                    pass


def _task_outcome(fut: Any, path: Path) -> FileOutcome:
    """A finished task's outcome; a task that raised (e.g. its worker died) is a failed file."""
    from seglab.batch.one_file import error_text

    if fut.status == "finished":
        return fut.result()
    exc = fut.exception() if fut.status == "error" else None
    return FileOutcome(path, "failed", error=error_text(exc) if exc is not None else f"task {fut.status}")
