"""The `flyrecon` console command and `python -m flyrecon`.

Third-party pydantic plugins (e.g. an installed logfire SDK) are loaded by pydantic when the
first model class is built, here flyrecon's option models, and slow the command's start
(`flyrecon --help`: 0.45-0.56 s with logfire 5's plugin, 0.20-0.23 s without) while they
observe nothing a user asked for. The command turns them off unless the user chose otherwise
(`PYDANTIC_DISABLE_PLUGINS` set). Importing flyrecon as a library leaves the host's
environment alone.

SIGTERM (a batch scheduler's time limit or cancel, `kill`, a container stopping) stops the
command as Ctrl-C does: the jobs not finished are recorded `interrupted`, the manifest is
written, partial files are discarded, and the exit code is 143. Python's default would end
the process at once, with the manifest still saying "running". A library caller's signal
handling is left alone, as is a SIGTERM its parent chose to ignore.
"""

from __future__ import annotations

import os
import signal
from typing import Any

_terminated = False
"""Whether SIGTERM arrived (the command's exit code is then 143, not 130)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    """Stop as Ctrl-C would (`errors.raise_terminated`), and remember why."""
    from flyrecon.errors import raise_terminated

    global _terminated
    _terminated = True
    raise_terminated(signum, frame)


def main() -> None:
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    from flyrecon.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated

    try:
        from flyrecon.cli import main as run

        run()
    except Terminated:  # outside any command (while importing, or after it was done)
        raise SystemExit(EXIT_TERMINATED) from None
    except SystemExit as exc:
        if _terminated and exc.code == EXIT_INTERRUPTED:
            raise SystemExit(EXIT_TERMINATED) from None
        raise
