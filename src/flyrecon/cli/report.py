"""`flyrecon report`: rebuild a study's summary and figures from its artifact root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flyrecon.cli._errors import err_console, handled


def report_command(
    artifact_root: Annotated[
        Path, typer.Option("--artifact-root", help="A study-run artifact root.", show_default=False)
    ],
) -> None:
    """Write study_summary.csv, study_summary.md and the study figures again, from the
    manifest and the jobs' outputs; reconstructs nothing."""
    from flyrecon.report import load_records, write_report

    with handled():
        report = write_report(artifact_root, load_records(artifact_root))
    err_console.print(summary_table(report.rows))
    for path in report.paths:
        err_console.print(f"wrote {path}")


def summary_table(rows: list[dict[str, Any]]) -> Table:
    """The study summary as a rich table."""
    table = Table(title="study summary")
    columns = [
        ("dose", "dose"),
        ("view", "view"),
        ("split", "split"),
        ("status", "status"),
        ("rc", "returncode"),
        ("epochs", "epochs"),
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
