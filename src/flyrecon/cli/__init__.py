"""The flyrecon command-line app: one Typer app, one thin module per command."""

from __future__ import annotations

from typing import Annotated

import typer

from flyrecon import __version__
from flyrecon.cli._errors import State
from flyrecon.cli.evaluate import evaluate_command
from flyrecon.cli.export import export_command
from flyrecon.cli.prep_synthetic import prep_synthetic_command
from flyrecon.cli.reconstruct import reconstruct_command
from flyrecon.cli.report import report_command
from flyrecon.cli.study_run import study_run_command

app = typer.Typer(
    name="flyrecon",
    help="Ptychography dose/overlap studies on pty-chi: simulate, reconstruct, run the study.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flyrecon {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    State.debug = debug


app.command("reconstruct")(reconstruct_command)
app.command("prep-synthetic")(prep_synthetic_command)
app.command("study-run")(study_run_command)
app.command("report")(report_command)
app.command("evaluate")(evaluate_command)
app.command("export")(export_command)


def main() -> None:
    """Console-script entry point."""
    app()
