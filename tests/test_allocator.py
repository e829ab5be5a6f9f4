"""flyrecon's malloc thresholds: set once in the reconstruct path, not over a user's own."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from flyrecon import allocator

GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None

# In a fresh process: apply (or not), then ask glibc whether an 8 MiB block still gets a
# mapping of its own (mallinfo2's hblks) instead of coming from the heap.
PROBE = textwrap.dedent(
    """
    import ctypes
    from flyrecon.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = (ctypes.c_void_p,)
    libc.mallinfo2.restype = MallInfo2
    applied = keep_freed_memory()
    mapped = libc.mallinfo2().hblks
    block = libc.malloc(8 * 2**20)
    print(applied, libc.mallinfo2().hblks > mapped)
    libc.free(block)
    """
)


def _run_probe(extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**env, **extra}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _has_mallinfo2() -> bool:
    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018 (glibc >= 2.33)
    except AttributeError:
        return False
    return True


needs_glibc = pytest.mark.skipif(
    not (GLIBC and _has_mallinfo2()), reason="glibc >= 2.33 (mallopt, mallinfo2) only"
)


@needs_glibc
def test_large_temporaries_come_from_the_heap_once_applied() -> None:
    assert _run_probe({}) == "True False"


@needs_glibc
@pytest.mark.parametrize(
    "extra",
    [
        {"GLIBC_TUNABLES": "glibc.malloc.perturb=0"},
        {"MALLOC_ARENA_MAX": "2"},
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
    ],
)
def test_a_users_own_malloc_settings_are_left_alone(extra: dict[str, str]) -> None:
    assert _run_probe(extra) == "False True"  # glibc's own dynamic threshold maps 8 MiB


def test_what_counts_as_the_users_own_malloc_settings() -> None:
    assert not allocator.user_tunes_malloc({})
    assert not allocator.user_tunes_malloc({"GLIBC_TUNABLES": "glibc.rtld.nns=4"})
    assert allocator.user_tunes_malloc({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"})
    assert allocator.user_tunes_malloc({"MALLOC_MMAP_THRESHOLD_": "65536"})


def test_the_thresholds_are_set_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator, "_set_thresholds", lambda: calls.append(1) or False)
    assert allocator.keep_freed_memory() is False
    assert allocator.keep_freed_memory() is False
    assert calls == [1]


def test_they_are_set_where_pty_chi_is_loaded_not_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("ptychi")
    from flyrecon import engine

    calls: list[int] = []
    monkeypatch.setattr(engine, "keep_freed_memory", lambda: calls.append(1) or True)
    engine.import_ptychi()
    assert calls == [1]
    # the CLI's start-up imports neither the allocator's effect nor pty-chi
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import flyrecon.cli, flyrecon.allocator as a, sys; "
            "print(a._applied, 'ptychi' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert out.stdout.split() == ["None", "False"], out.stderr
