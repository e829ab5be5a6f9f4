"""`flyrecon report`: rebuild a study's summary and figures from its artifact root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flyrecon.cli import _params as p
from flyrecon.cli._errors import err_console, handled
from flyrecon.cli._tables import STOP_LEGEND, compact_table, epochs_cell, short_stop


def _method(value: str) -> tuple[str, Path]:
    name, sep, root = value.partition("=")
    if not sep or not name.strip() or not root.strip():
        raise typer.BadParameter(f"expected NAME=ROOT, got {value!r}")
    return name.strip(), Path(root.strip())


def report_command(
    artifact_root: Annotated[
        Path,
        typer.Option(
            "--artifact-root",
            metavar="DIR",
            help="A study-run artifact root.",
            show_default=False,
            parser=p.path_option,
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
    from flyrecon.report import MS_SSIM_NOTE

    for table in summary_tables(report.rows):
        err_console.print(table)
    for line in STOP_LEGEND:
        err_console.print(line)
    if any(r["phase_ms_ssim"] is None and r["phase_ssim"] is not None for r in report.rows):
        err_console.print(MS_SSIM_NOTE, markup=False)
    for r in report.rows:
        if ":" in str(r["status"]):
            where = f"{r['method']} dose_{r['dose']}/{r['view']}/{r['split']}"
            err_console.print(f"{where}: {r['status']}", markup=False)
    for path in report.paths:
        err_console.print(f"wrote {path}")


_COLUMNS = (
    ("dose", "dose", "{}"),
    ("view", "view", "{}"),
    ("split", "split", "{}"),
    ("status", "status", "{}"),
    ("ep", "epochs", "{}"),
    ("stop", "stop", "{}"),
    ("wall s", "wall_time_s", "{:.1f}"),
    ("SSIM", "phase_ssim", "{:.3f}"),
    ("amp", "amplitude_ssim", "{:.3f}"),
    ("error", "complex_relative_error", "{:.3f}"),
    ("FRC px", "frc_resolution_0p5_px", "{:.1f}"),
)
"""Console columns (title, summary key, format); study_summary.csv/.md hold every key."""


def summary_tables(rows: list[dict[str, Any]]) -> list[Table]:
    """The study summary as one 80-column table per method (phase and amplitude SSIM,
    complex error, FRC 0.5 resolution)."""
    tables = []
    for name in dict.fromkeys(row["method"] for row in rows):
        table = compact_table(f"study summary: {name}", tuple(c[0] for c in _COLUMNS))
        for row in (r for r in rows if r["method"] == name):
            cells = []
            for _, key, fmt in _COLUMNS:
                value = row.get(key)
                if key == "stop":
                    value = short_stop(value) or None
                elif key == "status":
                    value = str(value).split(":")[0]  # the reason follows the tables
                elif key == "epochs":
                    value = epochs_cell(value, row.get("half_resolution_epochs")) or None
                cells.append("" if value is None else fmt.format(value))
            table.add_row(*cells)
        tables.append(table)
    return tables
