"""How the process's memory allocator treats a run's large buffers (Linux with glibc only).

A network's activations on a 2048x2048 tile are tens to hundreds of megabytes each, allocated and
freed layer after layer. glibc serves every allocation above its mmap threshold (128 KiB, rising to
at most 32 MiB as it adapts) with fresh pages from the kernel and returns them on free, so each
layer's output is faulted in page by page again, run after run: on a 2048x2048 mosaic of nuclei
(docs/benchmarks.md, "The allocator keeps freed memory", session 30) that was about a third of
``stardist-nuclei``'s time. :func:`keep_freed_memory` (called once per process when
:mod:`seglab.torch_env`, which inference and training share, is imported) has buffers up to
:data:`HEAP_UP_TO` come from the heap, where freed ones are reused, keeps up to :data:`KEEP_FREE`
of freed memory for the next run, and keeps every thread on the main heap (threads' own heaps
cannot hold buffers of more than 64 MiB). The price is memory: the process keeps about its peak
(e.g. ~1.7 GB instead of ~0.8 GB after a 2048x2048 run), which :func:`release_memory` hands
back. ``SEGLAB_KEEP_MEMORY=0`` in the environment leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys

__all__ = ["ENV", "HEAP_UP_TO", "KEEP_FREE", "keep_freed_memory", "release_memory"]

#: set to 0 (or off, no, false) to leave the allocator alone
ENV = "SEGLAB_KEEP_MEMORY"
#: allocations up to this size come from the heap (reused when freed), larger ones are mapped afresh
HEAP_UP_TO = 1 << 30
#: freed memory at the top of the heap kept for the next allocations, up to this much
KEEP_FREE = 1 << 30

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def _wanted() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "no", "false")


@functools.cache
def keep_freed_memory() -> bool:
    """Have large buffers reuse freed memory (see the module's description), once per process;
    whether the allocator was set (False: not glibc, or ``SEGLAB_KEEP_MEMORY=0``)."""
    libc = _glibc()
    if libc is None or not _wanted():
        return False
    done = [libc.mallopt(_M_MMAP_THRESHOLD, HEAP_UP_TO), libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREE),
            libc.mallopt(_M_ARENA_MAX, 1)]
    return all(v == 1 for v in done)


def release_memory() -> bool:
    """Hand the heap's free memory back to the system (e.g. after the last run of a session);
    whether any was (False also where the allocator is not glibc's)."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))
