"""The exceptions flyrecon raises, each carrying its process exit code."""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
"""128 + SIGTERM: stopped by a batch scheduler's time limit or cancel, or by `kill`."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. The `flyrecon` command raises it from its signal handler so that
    every Ctrl-C path (interrupted records, the manifest, partial files discarded) runs for
    it too; the command then exits with `EXIT_TERMINATED`."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: raise `Terminated`, and ignore any later SIGTERM so that the
    cleanup the first one started can finish."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


class FlyreconError(Exception):
    """Base class: a failure with a one-line message and an exit code."""

    exit_code = EXIT_FAILED


class InputError(FlyreconError):
    """Invalid input or arguments: exit code 2.

    The message names the file, the key (when there is one) and the problem.
    """

    exit_code = EXIT_USAGE

    def __init__(self, path: Path | str | None, problem: str, key: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.key = key
        self.problem = problem
        parts = [str(p) for p in (path, key) if p is not None]
        super().__init__(": ".join([*parts, problem]))


class ReconstructionError(FlyreconError):
    """The reconstruction itself failed (pty-chi raised, the loss became NaN, ...): exit 1."""

    exit_code = EXIT_FAILED


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` of an exception on one line (whitespace collapsed), at most `limit`."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:limit]
