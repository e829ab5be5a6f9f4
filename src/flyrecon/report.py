"""The study report: a summary table (CSV and Markdown) and the study figures.

Written by `study-run` at the end of a study, and again by `flyrecon report` from an existing
artifact root without reconstructing anything. Everything is written inside the artifact root;
job folders are derived from the artifact root and each record's dose, view and split, never
from paths stored in a manifest.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flyrecon.atomic import write_text
from flyrecon.errors import InputError
from flyrecon.options import Split, View
from flyrecon.runner import MANIFEST_JSON
from flyrecon.study import output_dir

SUMMARY_CSV = "study_summary.csv"
SUMMARY_MD = "study_summary.md"
METRIC_COLUMNS = (
    "phase_ssim",
    "phase_ms_ssim",
    "amplitude_ssim",
    "phase_psnr_db",
    "phase_mae_rad",
    "complex_relative_error",
    "frc_resolution_0p5_px",
    "frc_resolution_halfbit_px",
)
COLUMNS = (
    "dose",
    "view",
    "split",
    "status",
    "returncode",
    "epochs",
    "wall_time_s",
    *METRIC_COLUMNS,
)


@dataclass
class Report:
    """What a report wrote."""

    rows: list[dict[str, Any]]
    paths: list[Path] = field(default_factory=list)


def _job_result(artifact_root: Path, dose: int, view: str, split: str) -> dict[str, Any]:
    path = output_dir(artifact_root, dose, View(view), Split(split)) / "result.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def summary_rows(artifact_root: Path, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job (the last record of each), sorted by dose, view and split."""
    latest: dict[tuple[int, str, str], dict[str, Any]] = {}
    for rec in records:
        try:
            key = (int(rec["dose"]), View(rec["view"]).value, Split(rec["split"]).value)
        except (KeyError, TypeError, ValueError):
            continue
        latest[key] = rec
    rows = []
    view_order = [v.value for v in View]
    for (dose, view, split), rec in sorted(
        latest.items(), key=lambda kv: (kv[0][0], view_order.index(kv[0][1]), kv[0][2])
    ):
        stored = _job_result(artifact_root, dose, view, split)
        metrics = rec.get("metrics") or stored.get("metrics") or {}
        rows.append(
            {
                "dose": dose,
                "view": view,
                "split": split,
                "status": rec.get("status", ""),
                "returncode": rec.get("returncode"),
                "epochs": rec.get("epochs_run") or stored.get("epochs_run"),
                "wall_time_s": rec.get("wall_time_s"),
                **{k: metrics.get(k) for k in METRIC_COLUMNS},
                "output_dir": str(output_dir(artifact_root, dose, View(view), Split(split))),
                "metrics": metrics or None,
            }
        )
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    return buffer.getvalue()


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["# Study summary", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(artifact_root: Path, records: Sequence[dict[str, Any]]) -> Report:
    """Write the summary (CSV, Markdown) and the study figures into `artifact_root`."""
    from flyrecon.figures import study_figures

    rows = summary_rows(artifact_root, records)
    report = Report(rows=rows)
    report.paths.append(write_text(artifact_root / SUMMARY_CSV, to_csv(rows)))
    report.paths.append(write_text(artifact_root / SUMMARY_MD, to_markdown(rows)))
    if rows:
        report.paths += study_figures(artifact_root, rows)
    return report


def load_records(artifact_root: Path) -> list[dict[str, Any]]:
    """The execution records of the manifest at `artifact_root` (InputError if unreadable)."""
    path = artifact_root / MANIFEST_JSON
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "no study manifest here (run flyrecon study-run first)") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read the manifest ({exc})") from None
    records = manifest.get("execution_results") if isinstance(manifest, dict) else None
    if not isinstance(records, list):
        raise InputError(path, "expected a list", "execution_results")
    return [r for r in records if isinstance(r, dict)]
