"""Keep torch usable in a process that already renders with software OpenGL (no torch import here).

Mesa's llvmpipe (software OpenGL, e.g. napari under Xvfb) and Triton each load their own
LLVM; importing Triton after llvmpipe is loaded crashes the process (seen with napari 0.9,
torch 2.14.1, Triton 3.8). Torch imports Triton lazily (``torch._dynamo``, pulled in by
``torchvision.ops`` and by the first optimizer), although seglab never compiles kernels. So
when LLVM is already mapped into the process and Triton is not yet imported, mark Triton
unavailable; torch then skips it. Called before every import that can reach Triton.
"""

from __future__ import annotations

import sys


def _llvm_loaded() -> bool:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return any("libLLVM" in line for line in f)
    except OSError:
        return False


def guard_triton() -> bool:
    """Block the Triton import if it would clash with a loaded LLVM; True if it did."""
    if "triton" in sys.modules or not sys.platform.startswith("linux"):
        return False
    if _llvm_loaded():
        sys.modules["triton"] = None  # type: ignore[assignment]
        return True
    return False


