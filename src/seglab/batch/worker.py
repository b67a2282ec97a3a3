"""The Dask side of a batch: the worker's model cache (a worker plugin) and the task for one file.

A task gets the model's *reference* (a built-in's name or a model folder's path, see
:func:`seglab.batch.cluster.model_reference`), never the model object: each worker loads a
model once, into its :class:`ModelCache`, and keeps it for every later file of that model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from seglab.batch.one_file import error_text, run_file
from seglab.batch.outcome import FileOutcome
from seglab.files import SegmentOptions

#: the name the model cache is registered under on every worker
PLUGIN_NAME = "seglab-models"
#: how often a running task asks the scheduler whether the batch was cancelled
CANCEL_POLL_SECONDS = 0.5


class ModelCache(WorkerPlugin):
    """Worker plugin: the models this worker has loaded (by reference), and its torch threads.

    Registered by :func:`seglab.batch.core.batch_iter` under :data:`PLUGIN_NAME`; each worker
    gets its own copy, so a model is loaded once per worker, not once per file.
    """

    name = PLUGIN_NAME

    def __init__(self, torch_threads: int | None = None) -> None:
        self.torch_threads = torch_threads
        self.models: dict[str, Any] = {}
        self.loads = 0  # how many times a model was read from disk (tests check it)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"torch_threads": self.torch_threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["torch_threads"])

    def setup(self, worker: Any = None) -> None:
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)

    def teardown(self, worker: Any = None) -> None:
        self.models.clear()

    def model(self, reference: str) -> Any:
        """The model for ``reference``, loaded on first use."""
        with self._lock:
            if reference not in self.models:
                from seglab.models.registry import get_model

                self.models[reference] = get_model(reference)
                self.loads += 1
            return self.models[reference]


def _cancel_poller(event_name: str | None) -> Callable[..., bool] | None:
    """A cheap ``should_stop`` for a task: asks the batch's Dask Event at most every
    :data:`CANCEL_POLL_SECONDS`, and whenever called with ``now=True`` (before a file's outputs are written)."""
    if event_name is None:
        return None
    from distributed import Event

    event = Event(event_name)
    last = [0.0, False]

    def should_stop(now: bool = False) -> bool:
        t = time.monotonic()
        if not last[1] and (now or t - last[0] >= CANCEL_POLL_SECONDS):
            last[0] = t
            try:
                last[1] = bool(event.is_set())
            except Exception:  # noqa: BLE001 - scheduler gone: the batch is over anyway
                last[1] = True
        return bool(last[1])

    return should_stop


def segment_on_worker(reference: str, path: str, outdir: str, outputs: Sequence[str], options: SegmentOptions,
                      cancel_event: str | None = None) -> FileOutcome:
    """The Dask task: one file with this worker's cached model."""
    from distributed import get_worker

    worker = get_worker()
    cache = worker.plugins.get(PLUGIN_NAME)
    if cache is None:  # e.g. a worker that joined while the plugin was being registered
        cache = ModelCache()
        worker.plugins[PLUGIN_NAME] = cache
    should_stop = _cancel_poller(cancel_event)
    if should_stop is not None and should_stop():
        return FileOutcome(Path(path), "cancelled")
    try:
        model = cache.model(reference)
    except Exception as e:  # noqa: BLE001 - reported as this file's failure
        return FileOutcome(Path(path), "failed", error=f"cannot load model {reference!r} on worker: {error_text(e)}")
    return run_file(model, Path(path), Path(outdir), outputs, options, should_stop)
