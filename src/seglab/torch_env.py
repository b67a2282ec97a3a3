"""Torch settings shared by inference and training (mixed precision, the Triton guard)."""

from __future__ import annotations

import contextlib

import torch

from seglab.triton_guard import guard_triton

__all__ = ["autocast", "guard_triton"]


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision for ``device``: bfloat16 on CPU and on CUDA that has it, else float16."""
    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, dtype=torch.bfloat16)
