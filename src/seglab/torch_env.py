"""Torch settings shared by inference and training (mixed precision, the Triton guard)."""

from __future__ import annotations

import contextlib
import functools
import os

import torch

from seglab.memory import keep_freed_memory
from seglab.triton_guard import guard_triton

__all__ = ["autocast", "autocast_dtype", "cpu_bf16", "cuda_bf16", "guard_triton"]

keep_freed_memory()  # large buffers reuse freed memory (seglab.memory), before any run or worker thread

#: oneDNN ISA limits (``ONEDNN_MAX_CPU_ISA``) under which bfloat16 still runs natively
_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX",
              "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL", "DEFAULT")


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


@functools.cache
def cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX).

    Elsewhere (e.g. AVX2-only Intel and AMD CPUs) bfloat16 is emulated: a stack of 3x3
    convolutions trained about 10x *slower* under bfloat16 autocast than in float32, so
    there mixed precision stays off. A ``ONEDNN_MAX_CPU_ISA`` below AVX512_CORE_BF16 counts
    as no support too.
    """
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if limit and limit not in _BF16_ISAS:
        return False
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CPUs and CUDA devices that have it natively, else float16 on CUDA
    (float32 on CPU, where :func:`autocast` is then off)."""
    if device.type == "cuda" and not cuda_bf16(device):
        return torch.float16
    if device.type == "cpu" and not cpu_bf16():
        return torch.float32
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision for ``device`` (dtype from :func:`autocast_dtype`); nothing on other
    devices, nor on CPUs without native bfloat16."""
    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    dtype = autocast_dtype(device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
