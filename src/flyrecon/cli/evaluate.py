"""`flyrecon evaluate`: score any reconstruction against a DATA-001 truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flyrecon.cli import _params as p
from flyrecon.cli._errors import err_console, handled


def evaluate_command(
    truth: Annotated[
        Path,
        typer.Option(
            "--truth",
            metavar="NPZ",
            help="DATA-001 NPZ holding the true object (objectGuess) and the scan.",
            show_default=False,
            parser=p.path_option,
        ),
    ],
    recon: Annotated[
        Path,
        typer.Option(
            "--recon",
            metavar="PATH",
            help="The reconstruction: a flyrecon result folder or NPZ, a ptychodus product "
            "(.h5), or an NPZ with the object under --key.",
            show_default=False,
            parser=p.path_option,
        ),
    ],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="KEY",
            help="NPZ key of the object [default: object, objectGuess, obj or reconstruction].",
            show_default=False,
        ),
    ] = None,
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output-dir",
            metavar="DIR",
            help="Where metrics.json and the figure go.",
            parser=p.path_option,
        ),
    ] = Path("flyrecon_evaluation"),
) -> None:
    """Score a reconstruction with the study's metrics (registered, global phase and phase
    ramp removed) and write metrics.json and reconstruction.png.

    The reconstruction's frame may differ in size and offset from the truth: a flyrecon
    result or product is placed by its recorded origin, anything else by cross-correlation.

    Example: flyrecon evaluate --truth demo/phase_c/dose_1000/patched_test.npz
    --recon net_output.npz --key object
    """
    from flyrecon.evaluation import evaluate_files, write_evaluation
    from flyrecon.metrics import summary_line

    with handled():
        result = evaluate_files(truth, recon, key)
        write_evaluation(output_dir, result, f"{recon.name} against {truth.name}")
    err_console.print(
        f"{recon}: {summary_line(result.metrics)} (placed by {result.placement})", markup=False
    )
    err_console.print(f"results in {output_dir}")
