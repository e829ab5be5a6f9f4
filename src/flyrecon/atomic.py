"""Atomic writes: every output goes to a temporary name in its folder, then is renamed."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file is removed if the block raises, so a file at ``path`` is always complete.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_with(path: Path, writer: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` atomically with ``writer(file_object)``, synced before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writer(fh)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    """Write text atomically (UTF-8)."""
    return write_with(path, lambda fh: fh.write(text.encode("utf-8")))


def write_json(path: Path, payload: Any) -> Path:
    """Write JSON atomically, indented, with a trailing newline."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def unwritable_dir_reason(path: Path) -> str | None:
    """Why `path` cannot be (created and) written as an output folder, or None when it can.

    Checked without creating anything, so a dry run can say it too: an existing path must be
    a writable folder; a missing one needs its nearest existing ancestor to be one.
    """
    if path.exists():
        if not path.is_dir():
            return "exists and is not a directory"
        target = path
    else:
        target = next((p for p in path.absolute().parents if p.exists()), None)
        if target is None or not target.is_dir():
            return f"cannot be created: {target} is not a directory"
    if not os.access(target, os.W_OK | os.X_OK):
        if target == path:
            return "is not writable"
        return f"cannot be created: {target} is not writable"
    return None


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` itself (no lock file is left in it); a second
    writer is refused at once with `InputError` (exit code 2). Where the file system cannot
    lock a directory (some network file systems emulate flock with byte-range locks, which a
    read-only directory handle cannot take), the block runs unlocked: the lock guards against
    a mistake, it must never stop a run."""
    from flyrecon.errors import InputError

    try:
        import fcntl
    except ImportError:  # no flock here (Windows)
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                folder,
                "another flyrecon run is writing into this folder; wait for it to finish or "
                "choose another output directory",
            ) from None
        except OSError:  # EBADF, ENOLCK, EOPNOTSUPP: no directory locks here
            pass
        yield
    finally:
        os.close(fd)
