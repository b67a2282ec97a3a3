"""Device choice (CUDA, then Apple MPS, then CPU, or what the user names) and the
out-of-memory fallback (smaller batches, smaller tiles, then the CPU)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator
from typing import Any

import torch

from seglab.errors import SeglabError, SeglabWarning

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a usable torch device; a clear error when the named one is missing."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SeglabError("device 'cuda' was asked for, but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SeglabError("device 'mps' was asked for, but Apple MPS is not available")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise SeglabError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def device_name(device: str | torch.device | None = "auto") -> str:
    """The device a run used, as a record says it: ``cpu``, or e.g. ``cuda (NVIDIA H200)``."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return dev.type


#: smallest tile the out-of-memory fallback tries before leaving the GPU
MIN_OOM_TILE = 256


def out_of_memory_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the accelerator ran out of memory."""
    return tuple({getattr(torch, "OutOfMemoryError", RuntimeError), torch.cuda.OutOfMemoryError})


def retry_on_oom(
    make_run: Callable[..., Generator[Any, None, Any]], model: Any, run: dict[str, Any]
) -> Generator[Any, None, Any]:
    """Run ``make_run(**run)`` (a progress generator); on out-of-memory run it again with
    half the batch, then half the tile size (down to :data:`MIN_OOM_TILE`), then on the CPU.

    ``run`` holds ``batch_size``, ``tile_size`` and ``device``; it is updated in place, so the
    caller's later planes start from what fitted. Each step is announced with a
    :class:`~seglab.errors.SeglabWarning`. Out of memory on the CPU is a :class:`SeglabError`.
    """
    while True:
        try:
            return (yield from make_run(**run))
        except out_of_memory_errors():
            pass  # leave the except block first, so the failed attempt's tensors can be freed
        device = torch.device(run["device"])
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if int(run["batch_size"]) > 1:
            run["batch_size"] = max(1, int(run["batch_size"]) // 2)
            notice = f"batch size {run['batch_size']}"
        elif int(run["tile_size"]) > MIN_OOM_TILE:
            run["tile_size"] = max(MIN_OOM_TILE, int(run["tile_size"]) // 2)
            notice = f"tiles of {run['tile_size']} px"
        elif device.type != "cpu":
            run["device"] = torch.device("cpu")
            model.network.to("cpu")
            model.network.to(memory_format=torch.channels_last)
            warnings.warn(f"{device.type} ran out of memory even with batch size 1 and tiles of {run['tile_size']} "
                          "px; continuing on the CPU (slower)", SeglabWarning, stacklevel=2)
            continue
        else:
            raise SeglabError("out of memory even with batch size 1 and tiles of "
                              f"{run['tile_size']} px; close other programs or use a smaller image") from None
        warnings.warn(f"{device.type} ran out of memory; trying again with {notice}", SeglabWarning, stacklevel=2)
