"""The study report: a summary table (CSV and Markdown) and the study figures.

Written by `study-run` at the end of a study, and again by `flyrecon report` from an existing
artifact root without reconstructing anything. Everything is written inside the artifact root;
job folders are derived from the artifact root and each record's dose, view and split, never
from paths stored in a manifest.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flyrecon import layout
from flyrecon.atomic import write_text
from flyrecon.options import View
from flyrecon.records import JobRecord

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
OWN_METHOD = "flyrecon"
COLUMNS = (
    "method",
    "dose",
    "view",
    "split",
    "status",
    "reused",
    "returncode",
    "epochs",
    "half_resolution_epochs",
    "stop",
    "wall_time_s",
    *METRIC_COLUMNS,
)


@dataclass
class Report:
    """What a report wrote."""

    rows: list[dict[str, Any]]
    paths: list[Path] = field(default_factory=list)


def latest_records(records: Sequence[JobRecord]) -> list[JobRecord]:
    """The last record of each job, sorted by dose, view and split."""
    latest = {(r.dose, r.view, r.split): r for r in records}
    views = list(View)
    return [latest[k] for k in sorted(latest, key=lambda k: (k[0], views.index(k[1]), k[2]))]


def summary_rows(records: Sequence[JobRecord]) -> list[dict[str, Any]]:
    """One row per job (its last record): the summary's columns."""
    rows = []
    for rec in latest_records(records):
        metrics = rec.metrics or {}
        rows.append(
            {
                "method": OWN_METHOD,
                "dose": rec.dose,
                "view": str(rec.view),
                "split": str(rec.split),
                "status": str(rec.status),
                "reused": "yes" if rec.reused else "",
                "returncode": rec.returncode,
                "epochs": rec.epochs_run,
                "half_resolution_epochs": rec.coarse_epochs or None,
                "stop": rec.stop_kind,
                "wall_time_s": rec.wall_time_s,
                **{k: metrics.get(k) for k in METRIC_COLUMNS},
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


MS_SSIM_NOTE = (
    "phase_ms_ssim is blank where the scored region is too small for two scales of the "
    "11 x 11 SSIM window (sparse views); each job's metrics.json says so (phase_ms_ssim_note)."
)
STOP_NOTE = (
    "stop: noise floor (the fit fell below the data's Poisson noise), converged (the object "
    "stopped drifting; the last iterates averaged), max epochs (the safety net), fixed epochs "
    "(--num-epochs)."
)


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["# Study summary", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |" for row in rows]
    lines += ["", STOP_NOTE]
    if any(row["phase_ms_ssim"] is None and row["phase_ssim"] is not None for row in rows):
        lines.append(MS_SSIM_NOTE)
    reused = sum(1 for row in rows if row["reused"])
    if reused:
        lines.append(f"{reused} job(s) reused from an earlier run (their own record shown).")
    return "\n".join(lines) + "\n"


def phase_image(npz_path: Path) -> np.ndarray | None:
    """The phase of a job's reconstruction on its canvas ("object_aligned" if present, else
    "object"; amplitude-weighted mean phase removed), or None when there is none."""
    from flyrecon.data import open_npz, read_array
    from flyrecon.errors import FlyreconError

    if not npz_path.is_file():
        return None
    try:
        with open_npz(npz_path) as npz:
            key = "object_aligned" if "object_aligned" in npz.files else "object"
            obj = np.asarray(read_array(npz, npz_path, key), dtype=np.complex128)
    except (FlyreconError, KeyError, TypeError):
        return None
    offset = np.sum(np.abs(obj) * obj)
    return np.angle(obj * np.conj(offset)) if offset != 0 else np.angle(obj)


def framed_phases(npz_path: Path, input_npz: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(reconstruction phase, true phase) in objectGuess's frame, NaN outside the region the
    job illuminated; (None, None) when either file cannot be read."""
    from flyrecon.data import load_dataset, open_npz, read_array
    from flyrecon.errors import FlyreconError
    from flyrecon.geometry import canvas_for
    from flyrecon.scoring import truth_region

    phase = phase_image(npz_path)
    if phase is None:
        return None, None
    try:
        dataset = load_dataset(input_npz)
        with open_npz(npz_path) as npz:
            origin = tuple(int(v) for v in read_array(npz, npz_path, "canvas_origin_px"))
    except (KeyError, TypeError, ValueError, FlyreconError):
        return None, None
    canvas = canvas_for(dataset.ycoords, dataset.xcoords, dataset.pattern_size)
    if canvas.shape != phase.shape or canvas.origin_px != origin:
        return None, None
    truth, mask = truth_region(dataset, canvas)
    rows, cols, obj_rows, obj_cols = canvas.crop_of(dataset.object_guess.shape)
    recon = np.full(dataset.object_guess.shape, np.nan)
    true = np.full(dataset.object_guess.shape, np.nan)
    shown = mask[rows, cols]
    recon[obj_rows, obj_cols] = np.where(shown, phase[rows, cols], np.nan)
    true[obj_rows, obj_cols] = np.where(shown, np.angle(truth[rows, cols]), np.nan)
    return recon, true


def method_rows(
    name: str, root: Path, records: Sequence[JobRecord]
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Another method's reconstructions of the study's jobs (`root/dose_<int>/<view>/<split>/`),
    scored against each job's input like flyrecon's own: (summary rows, figure summaries).
    A job the method has no (usable) reconstruction for gets a row saying why."""
    from flyrecon.data import load_dataset
    from flyrecon.errors import FlyreconError
    from flyrecon.evaluation import evaluate_reconstruction, load_reconstruction
    from flyrecon.figures import JobSummary

    rows, jobs = [], []
    for rec in latest_records(records):
        folder = layout.output_dir(root, rec.dose, rec.view, rec.split)
        status, metrics, image = "succeeded", None, None
        try:
            result = evaluate_reconstruction(
                load_dataset(rec.input_npz), load_reconstruction(folder)
            )
            metrics = result.metrics
            image = np.angle(result.scored.evaluation.aligned)
        except FlyreconError as exc:
            status = f"not scored: {exc}"
        rows.append(
            {
                "method": name,
                "dose": rec.dose,
                "view": str(rec.view),
                "split": str(rec.split),
                "status": status,
                "reused": "",
                "returncode": None,
                "epochs": None,
                "half_resolution_epochs": None,
                "stop": None,
                "wall_time_s": None,
                **{k: (metrics or {}).get(k) for k in METRIC_COLUMNS},
            }
        )
        jobs.append(
            JobSummary(float(rec.dose), str(rec.view), str(rec.split), status, metrics, image, name)
        )
    return rows, jobs


def write_report(
    artifact_root: Path,
    records: Sequence[JobRecord],
    methods: dict[str, Path] | None = None,
) -> Report:
    """Write the summary (CSV, Markdown) and the study figures into `artifact_root`; with
    `methods` (name -> root of another method's reconstructions), their rows and curves too."""
    from flyrecon.figures import JobSummary, study_figures

    rows = summary_rows(records)
    jobs = []
    for rec in latest_records(records):
        folder = layout.output_dir(artifact_root, rec.dose, rec.view, rec.split)
        phase, truth = framed_phases(folder / layout.RESULT_NPZ, Path(rec.input_npz))
        jobs.append(
            JobSummary(
                dose=float(rec.dose),
                view=str(rec.view),
                split=str(rec.split),
                status=str(rec.status),
                metrics=rec.metrics,
                phase_image=phase,
                truth_phase=truth,
            )
        )
    for name, root in (methods or {}).items():
        more_rows, more_jobs = method_rows(name, root, records)
        rows += more_rows
        jobs += more_jobs
    report = Report(rows=rows)
    report.paths.append(write_text(artifact_root / layout.SUMMARY_CSV, to_csv(rows)))
    report.paths.append(write_text(artifact_root / layout.SUMMARY_MD, to_markdown(rows)))
    if jobs:
        report.paths += study_figures(artifact_root, jobs)
    return report


def load_records(artifact_root: Path) -> list[JobRecord]:
    """The execution records of the manifest at `artifact_root` (InputError if unusable)."""
    from flyrecon.study.manifest import load_manifest

    return load_manifest(artifact_root).execution_results
