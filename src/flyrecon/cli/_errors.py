"""One place that turns errors into one-line messages and exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from flyrecon.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    FlyreconError,
    Terminated,
    one_line,
)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class State:
    """Root-level flags shared by every command."""

    debug: bool = False


def fail(message: str, code: int, tb: str | None = None) -> typer.Exit:
    """Print `message` as one line on stderr (and `tb` with --debug); return the Exit to raise."""
    if State.debug and tb:
        err_console.print(tb, markup=False)
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code=code)


def _validation_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"invalid option {where}: {message}" if where else f"invalid options: {message}"


@contextmanager
def handled() -> Iterator[None]:
    """Map flyrecon's exceptions to one-line errors and exit codes (tracebacks with --debug)."""
    import traceback

    try:
        yield
    except FlyreconError as exc:
        raise fail(str(exc), exc.exit_code, traceback.format_exc()) from None
    except ValidationError as exc:
        raise fail(_validation_line(exc), EXIT_USAGE, traceback.format_exc()) from None
    except Terminated:
        raise fail("terminated (SIGTERM)", EXIT_TERMINATED) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise fail(f"{where}{exc.strerror or exc}", EXIT_FAILED, traceback.format_exc()) from None
    except (typer.Exit, typer.Abort, TyperException):
        raise  # exits and usage errors the command raised on purpose
    except Exception as exc:  # a case no check foresaw: still one line, the rest with --debug
        raise fail(
            f"unexpected {one_line(exc)} (--debug shows where)",
            EXIT_FAILED,
            traceback.format_exc(),
        ) from None
