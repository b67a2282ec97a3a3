"""Segment many files: in this process or on ``dask.distributed`` (a local cluster or an existing one).

:func:`~seglab.batch.core.batch_iter` is a progress generator over files (one
:class:`~seglab.batch.core.BatchEvent` per file ended; closing it cancels the files not yet
done) returning a :class:`~seglab.batch.core.BatchSummary`. The CLI (``seglab segment
--workers N`` / ``--scheduler ADDR``, :mod:`seglab.batch.command`) and the napari *Batch*
widget drive it. Modules: ``core`` (planning, the generator), ``one_file`` (one file, failures
as outcomes), ``worker`` (the Dask task and the workers' model cache), ``cluster`` (local
cluster or scheduler), ``options`` (CLI flags, imported by ``seglab --help``: nothing heavy).
Names are imported lazily so that ``seglab --help`` stays light.
"""

from __future__ import annotations

from typing import Any

_NAMES = {"BatchEvent": "core", "BatchSettings": "core", "BatchSummary": "core", "batch_iter": "core",
          "batch_inputs": "core", "plan_batch": "core", "FileOutcome": "outcome", "model_reference": "cluster"}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        import importlib

        return getattr(importlib.import_module(f"seglab.batch.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'seglab.batch' has no attribute {name!r}")
