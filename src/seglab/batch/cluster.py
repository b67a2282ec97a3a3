"""Where a batch runs: a local Dask cluster started for it, or an existing cluster's scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seglab.errors import SeglabError

#: seconds to wait for an existing scheduler before giving up
CONNECT_TIMEOUT = 20


def model_reference(name_or_path: str | os.PathLike) -> str:
    """What workers load a model by: a built-in's name (each installation has its own copy),
    else the absolute path of the model folder (the workers of a cluster need that same path)."""
    from seglab.models.registry import ModelRegistry

    registry = ModelRegistry()
    folder = registry.resolve(name_or_path)
    for info in registry.list():
        if info.path == folder and info.source == "builtin":
            return info.name
    return str(Path(folder).resolve())


def available_cpus() -> int:
    """CPUs this process may run on (its affinity, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def torch_threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """Torch threads for each of ``workers`` local workers so that together they use the CPUs once."""
    return max(1, (cpus or available_cpus()) // max(1, workers))


@dataclass(frozen=True)
class Connection:
    """A client and what it is connected to (for messages)."""

    client: Any  # distributed.Client
    where: str  # e.g. "local cluster: 2 worker processes, 1 torch thread each"
    torch_threads: int | None  # set on every worker (None: left as the workers have it)


@contextlib.contextmanager
def connect(workers: int, scheduler: str | None, processes: bool) -> Iterator[Connection]:
    """A client of ``scheduler``, or of a local cluster of ``workers`` workers (one task each;
    processes or threads) started here and closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise SeglabError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        except ValueError as e:
            raise SeglabError(f"not a Dask scheduler address: {scheduler!r} ({e})") from None
        try:
            n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
            yield Connection(client, f"Dask scheduler {scheduler} ({n} worker(s) now)", None)
        finally:
            client.close()
        return
    if workers < 1:
        raise SeglabError(f"a local cluster needs at least one worker, got {workers}")
    threads = torch_threads_per_worker(workers)
    import torch

    before = torch.get_num_threads()  # thread workers set this process's torch threads: put them back after
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                           dashboard_address=None, silence_logs=logging.ERROR)
    try:
        client = Client(cluster, set_as_default=False)
        try:
            kind = "process" if processes else "thread"
            yield Connection(client, f"local Dask cluster: {workers} worker {kind}{'es' if processes else 's'}, "
                                     f"{threads} torch thread(s) each", threads)
        finally:
            client.close()
    finally:
        cluster.close()
        torch.set_num_threads(before)
