"""The flyrecon command-line app: one Typer app, one thin module per command."""

from __future__ import annotations

import gc
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
    help="Ptychography dose/overlap studies on pty-chi: simulate the data, reconstruct, run "
    "the study, compare methods. DATA-001 is the study's NPZ layout (docs/data-contract.md); "
    "phase C holds the baseline view of each dose, phase D its dense and sparse overlap views.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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


EXAMPLES = {
    "reconstruct": [
        "flyrecon reconstruct --input-npz data.npz --output-dir out",
        "flyrecon reconstruct --input-npz data.npz --algorithm LSQML --num-epochs 100",
    ],
    "prep-synthetic": [
        "flyrecon prep-synthetic --output-root demo",
        "flyrecon prep-synthetic --output-root ci --fixture",
    ],
    "study-run": [
        "flyrecon study-run --study-root demo",
        "flyrecon study-run --study-root demo --dose 1e3 --view dense --jobs 2",
    ],
    "report": [
        "flyrecon report --artifact-root demo/reconstructions",
        "flyrecon report --artifact-root demo/reconstructions --method net=net_out",
    ],
    "evaluate": [
        "flyrecon evaluate --truth truth.npz --recon net.npz --key object",
    ],
    "export": ["flyrecon export --artifact-root demo/reconstructions"],
}


def _epilog(name: str) -> str:
    lines = "\n".join(f"  {example}" for example in EXAMPLES[name])
    return f"\b\nExamples:\n{lines}"


for _name, _command, _short in (
    ("reconstruct", reconstruct_command, "Reconstruct one DATA-001 NPZ with pty-chi."),
    ("prep-synthetic", prep_synthetic_command, "Simulate the study's datasets."),
    ("study-run", study_run_command, "Run the dose x view x split study."),
    ("report", report_command, "Rebuild a study's summary and figures."),
    ("evaluate", evaluate_command, "Score any reconstruction against a truth."),
    ("export", export_command, "Write ptychodus products for a study."),
):
    app.command(_name, epilog=_epilog(_name), short_help=_short)(_command)


def main() -> None:
    """Console-script entry point.

    Once the command is done (its files are closed and renamed), the objects alive are frozen
    out of the garbage collector: the interpreter's final collections would otherwise walk
    every object torch, pty-chi and their imports left behind, about 1.3 s of every
    reconstruct process here (measured with benchmarks/bench_overhead.py).
    """
    try:
        app()
    finally:
        gc.freeze()
