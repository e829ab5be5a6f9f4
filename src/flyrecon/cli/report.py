"""`flyrecon report`: rebuild a study's summary and figures from its artifact root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flyrecon.cli._errors import err_console, handled


def _method(value: str) -> tuple[str, Path]:
    name, sep, root = value.partition("=")
    if not sep or not name.strip() or not root.strip():
        raise typer.BadParameter(f"expected NAME=ROOT, got {value!r}")
    return name.strip(), Path(root.strip())


def report_command(
    artifact_root: Annotated[
        Path,
        typer.Option(
            "--artifact-root", metavar="DIR", help="A study-run artifact root.", show_default=False
        ),
    ],
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="Another method's reconstructions to score beside flyrecon's: NAME=ROOT, ROOT "
            "holding dose_<int>/<view>/<split>/ folders with one reconstruction each (a "
            "flyrecon result, a ptychodus product or an NPZ with an object). Repeatable.",
            metavar="NAME=ROOT",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write study_summary.csv, study_summary.md and the study figures again, from the
    manifest and the jobs' outputs, with other methods' rows and curves; reconstructs nothing.

    Example: flyrecon report --artifact-root demo/reconstructions --method pinn=pinn_out
    """
    from flyrecon.report import load_records, write_report

    with handled():
        methods = dict(_method(m) for m in method or [])
        missing = [f"{name}={root}" for name, root in methods.items() if not root.is_dir()]
        if missing:
            from flyrecon.errors import InputError

            raise InputError(missing[0].split("=", 1)[1], "--method root not found")
        report = write_report(artifact_root, load_records(artifact_root), methods)
    from flyrecon.report import MS_SSIM_NOTE, STOP_NOTE

    err_console.print(summary_table(report.rows))
    err_console.print(STOP_NOTE, markup=False)
    if any(r["phase_ms_ssim"] is None and r["phase_ssim"] is not None for r in report.rows):
        err_console.print(MS_SSIM_NOTE, markup=False)
    for path in report.paths:
        err_console.print(f"wrote {path}")


def summary_table(rows: list[dict[str, Any]]) -> Table:
    """The study summary as a rich table."""
    table = Table(title="study summary")
    columns = [
        ("method", "method"),
        ("dose", "dose"),
        ("view", "view"),
        ("split", "split"),
        ("status", "status"),
        ("rc", "returncode"),
        ("epochs", "epochs"),
        ("stop", "stop"),
        ("wall s", "wall_time_s"),
        ("phase SSIM", "phase_ssim"),
        ("amp SSIM", "amplitude_ssim"),
        ("error", "complex_relative_error"),
        ("FRC 0.5 px", "frc_resolution_0p5_px"),
    ]
    for title, _ in columns:
        table.add_column(title, justify="right")
    for row in rows:
        cells = []
        for _, key in columns:
            value = row.get(key)
            cells.append(
                "" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)
            )
        table.add_row(*cells)
    return table
