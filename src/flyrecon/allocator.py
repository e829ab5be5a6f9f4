"""Keep freed memory in the process: torch's CPU tensors otherwise page-fault in every time.

glibc's malloc hands each block above its mmap threshold (128 KiB at first, raised on the fly
up to 32 MiB as such blocks are freed) to its own fresh mapping and unmaps it when freed, and
returns the heap's free top to the system once it exceeds the trim threshold. An epoch of
pty-chi allocates and frees thousands of temporaries of 0.1-4 MiB (a batch of 64 complex
64x64 patches is 2 MiB), so their pages are mapped, zeroed and unmapped over and over: a fifth
to a third of an epoch's wall time on a 2-core virtual machine (docs/performance.md). With the
mmap threshold at its ceiling and a high trim threshold the freed blocks are reused instead.
This is what PyTorch's CPU tuning guide gets by preloading jemalloc or tcmalloc, without
asking the user to. The cost: the process keeps up to `TRIM_THRESHOLD_BYTES` of freed memory
that it would otherwise give back between allocations; its peak does not grow.

Only glibc (Linux) has `mallopt`; elsewhere, where it refuses, and where the environment
already tunes glibc's malloc (`MALLOC_*_` variables or `glibc.malloc.*` in `GLIBC_TUNABLES`:
the user's choice wins), nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""`mallopt` parameters (glibc's malloc.h)."""
MMAP_THRESHOLD_BYTES = 32 * 2**20
"""Blocks below this come from the heap: glibc's ceiling for the threshold on 64-bit."""
TRIM_THRESHOLD_BYTES = 2**30
"""Free memory the heap may keep at its top before it is given back."""

USER_SETTINGS = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
    "MALLOC_ARENA_MAX",
)
"""Environment variables by which a user tunes glibc's malloc themselves."""

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process; whether they are set (False off glibc)."""
    global _applied
    if _applied is None:
        _applied = _set_thresholds()
    return _applied


def user_tunes_malloc(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment sets glibc malloc's own tunables."""
    return any(name in environ for name in USER_SETTINGS) or "glibc.malloc." in environ.get(
        "GLIBC_TUNABLES", ""
    )


def _set_thresholds() -> bool:
    if not sys.platform.startswith("linux") or user_tunes_malloc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter is linked to
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
