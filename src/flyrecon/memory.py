"""How much memory this process may use, and refusing what would not fit in it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from flyrecon.errors import InputError

CGROUP_MEMORY_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2: a container's or a batch job's limit
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def usable_memory_bytes() -> int | None:
    """The memory this process may use: the smallest of the machine's physical memory, its
    cgroup's limit (a container, a Slurm job) and its address-space limit; None where none
    is known."""
    limits: list[int] = []
    with contextlib.suppress(AttributeError, ValueError, OSError):
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for path in CGROUP_MEMORY_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or a huge number: no limit
            limits.append(int(text))
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, ValueError, OSError):
        pass
    return min(limits) if limits else None


def check_memory(
    nbytes: float, path: Path | str | None, what: str, key: str | None = None, advice: str = ""
) -> None:
    """Refuse (`InputError`) what would need more bytes than this machine's memory."""
    memory = usable_memory_bytes()
    if memory is not None and nbytes > memory:
        raise InputError(
            path,
            f"{what} needs {nbytes / 1e9:.1f} GB, more than this machine's memory "
            f"({memory / 1e9:.1f} GB){advice}",
            key,
        )
