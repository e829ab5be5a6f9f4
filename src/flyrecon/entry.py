"""The `flyrecon` console command and `python -m flyrecon`.

Third-party pydantic plugins (e.g. an installed logfire SDK) are loaded by pydantic when the
first model class is built, here flyrecon's option models, and slow the command's start
(`flyrecon --help`: 0.45-0.56 s with logfire 5's plugin, 0.20-0.23 s without) while they
observe nothing a user asked for. The command turns them off unless the user chose otherwise
(`PYDANTIC_DISABLE_PLUGINS` set). Importing flyrecon as a library leaves the host's
environment alone.
"""

from __future__ import annotations

import os


def main() -> None:
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from flyrecon.cli import main as run

    run()
