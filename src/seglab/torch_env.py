"""Torch settings shared by inference and training (mixed precision, the Triton guard)."""

from __future__ import annotations

import contextlib

import torch

from seglab.triton_guard import guard_triton

__all__ = ["autocast", "autocast_dtype", "cuda_bf16", "guard_triton"]


def cuda_bf16(device: torch.device) -> bool:
    """Whether the CUDA ``device`` itself computes in bfloat16 natively (Ampere and later).

    ``torch.cuda.is_bf16_supported()`` asks about the *current* device and, by default,
    counts bfloat16 emulated on older GPUs (much slower than float16); so ask about the
    chosen device, without emulation.
    """
    if device.type != "cuda":
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    with torch.cuda.device(index):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CPU and on CUDA devices that have it natively, else float16."""
    if device.type == "cuda" and not cuda_bf16(device):
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision for ``device`` (dtype from :func:`autocast_dtype`); nothing on other devices."""
    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=autocast_dtype(device))
