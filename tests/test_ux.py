"""What a researcher sees: resumes that keep the record, progress in logs, help that reads well
at 80 columns, errors that name what is missing, figures that say what they show."""

from __future__ import annotations

import csv
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import flyrecon.cli._progress as progress
import flyrecon.study.runner as study_runner
from flyrecon import layout
from flyrecon.cli import app
from flyrecon.options import ReconSettings
from flyrecon.reconstruct import job_label
from flyrecon.records import JobStatus
from helpers import ScriptedJobs, manifest, use_scripted_jobs

runner = CliRunner()
COMMANDS = ("reconstruct", "prep-synthetic", "study-run", "report", "evaluate", "export")


# --------------------------------------------------------------------------- resume


def test_a_rerun_keeps_each_jobs_own_record(tree: Path, monkeypatch) -> None:
    use_scripted_jobs(monkeypatch, report=True)
    args = ["study-run", "--study-root", str(tree), "--dose", "1000", "--num-epochs", "2"]
    assert runner.invoke(app, args).exit_code == 0
    first = {r["key"]: r for r in manifest(tree / "reconstructions")["execution_results"]}
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "6 reused from an earlier run" in again.stderr
    m = manifest(tree / "reconstructions")
    assert m["reused_jobs"] == 6
    for rec in m["execution_results"]:
        assert rec["status"] == "succeeded" and rec["reused"] is True
        original = first[rec["key"]]
        for key in ("wall_time_s", "epochs_run", "stop_kind", "metrics", "returncode"):
            assert rec[key] == original[key], key
    rows = list(csv.DictReader((tree / "reconstructions" / layout.SUMMARY_CSV).open()))
    assert {r["reused"] for r in rows} == {"yes"}
    assert all(float(r["wall_time_s"]) > 0 for r in rows)
    assert (
        "reused from an earlier run" in (tree / "reconstructions" / layout.SUMMARY_MD).read_text()
    )


# ------------------------------------------------------------------------- progress


def test_without_a_terminal_each_job_starts_and_beats(tree: Path, monkeypatch) -> None:
    class Beating(ScriptedJobs):
        def __call__(self, job, options, on_epoch=None):
            for epoch in range(1, 4):
                on_epoch(epoch, 3, 1.0 / epoch)
            return super().__call__(job, options, on_epoch)

    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.0)
    monkeypatch.setattr(
        study_runner, "run_study", partial(study_runner.run_study, job_fn=Beating(), report=False)
    )
    args = ["study-run", "--study-root", str(tree), "--dose", "1000", "--view", "sparse"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    starts = [
        line for line in lines if re.search(r"job [12]/2 dose_1000/sparse/\w+: started", line)
    ]
    beats = [line for line in lines if re.search(r"dose_1000/sparse/\w+: epoch \d/3, loss", line)]
    assert len(starts) == 2 and len(beats) == 6
    assert re.match(r"\d\d:\d\d:\d\d ", starts[0])


# ----------------------------------------------------------------------------- help


def _option_blocks(text: str) -> dict[str, str]:
    """--flag -> its help text (click's layout: the flag at two spaces, then wrapped help)."""
    blocks: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"  (--[a-z0-9-]+)", line)
        if match:
            current = match.group(1)
            blocks[current] = line
        elif current and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return {k: " ".join(v.split()) for k, v in blocks.items()}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_reads_well_at_80_columns(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0
    text = result.output
    assert all(len(line) <= 80 for line in text.splitlines()), text
    for cut in ("…", "<bool>", "<str>", "<path>", "<list[", "int range>", "float range>"):
        assert cut not in text, (cut, text)
    assert "Examples:" in text and f"flyrecon {command}" in text.split("Examples:")[1]


@pytest.mark.parametrize("command", ["reconstruct", "study-run"])
def test_help_defaults_come_from_the_settings_model(command: str) -> None:
    text = runner.invoke(app, [command, "--help"], terminal_width=80).output
    blocks = _option_blocks(text)
    defaults = ReconSettings()
    for name in ReconSettings.model_fields:
        flag = "--" + name.replace("_", "-")
        if name == "num_epochs":
            flag = "--num-epochs"
        assert flag in blocks, flag
        value = getattr(defaults, name)
        if value is None:
            assert "[default:" in blocks[flag], (flag, blocks[flag])  # says what None means
        else:
            assert f"[default: {value}" in blocks[flag], (flag, blocks[flag])
    assert "[aLSQML|LSQML|DM|ePIE|rPIE|Adam]" in blocks["--algorithm"]
    assert "--allow-missing-phase-d" in text or command == "reconstruct"


def test_the_top_level_help_explains_the_jargon() -> None:
    text = runner.invoke(app, ["--help"], terminal_width=80).output
    assert "DATA-001 is the study's NPZ layout" in text and "phase C holds" in text
    commands = text.split("Commands:")[1]
    assert "..." not in commands  # every command's one-line summary whole


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("dry", [[], ["--dry-run"]])
def test_a_missing_study_root_is_named(tmp_path: Path, dry: list[str]) -> None:
    missing = tmp_path / "nosuchdir"
    result = runner.invoke(app, ["study-run", "--study-root", str(missing), *dry])
    assert result.exit_code == 2
    assert f"{missing}: study root not found" in result.stderr
    assert not missing.exists()


@pytest.mark.parametrize("dry", [[], ["--dry-run"]])
def test_missing_input_roots_and_empty_filters_give_the_same_messages(
    tree: Path, tmp_path: Path, dry: list[str]
) -> None:
    base = ["study-run", "--artifact-root", str(tmp_path / "out"), *dry]
    roots = ["--phase-c-root", str(tmp_path / "no_c"), "--phase-d-root", str(tree / "phase_d")]
    result = runner.invoke(app, [*base, *roots])
    assert result.exit_code == 2 and "no_c: phase C root not found" in result.stderr
    roots = ["--phase-c-root", str(tree / "phase_c"), "--phase-d-root", str(tmp_path / "no_d")]
    result = runner.invoke(app, [*base, *roots])
    assert result.exit_code == 2 and "no_d: phase D root not found" in result.stderr
    result = runner.invoke(app, ["study-run", "--study-root", str(tree), "--dose", "999", *dry])
    assert result.exit_code == 2
    assert "select none of the 18 jobs (doses found: [1000, 10000, 100000])" in result.stderr
    assert not (tmp_path / "out").exists()


def test_doses_accept_1e3_and_1000_alike(tree: Path) -> None:
    listing = {}
    for dose in ("1e3", "1000", "1.0e3"):
        result = runner.invoke(
            app, ["study-run", "--study-root", str(tree), "--dose", dose, "--dry-run"]
        )
        assert result.exit_code == 0, result.output
        listing[dose] = result.stderr
    assert (
        listing["1e3"] == listing["1000"] == listing["1.0e3"] and "6 of 18 jobs" in listing["1e3"]
    )
    bad = runner.invoke(app, ["study-run", "--study-root", str(tree), "--dose", "1.5"])
    assert bad.exit_code == 2 and "whole number" in bad.output


def test_nothing_is_created_for_an_input_that_does_not_exist(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["reconstruct", "--input-npz", str(tmp_path / "nope.npz"), "--output-dir", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "nope.npz: not found" in result.stderr
    assert not out.exists()


def test_report_and_export_name_a_missing_artifact_root(tmp_path: Path) -> None:
    for command in ("report", "export"):
        result = runner.invoke(app, [command, "--artifact-root", str(tmp_path / "none")])
        assert result.exit_code == 2 and "no study manifest here" in result.stderr


# --------------------------------------------------------------------- tables, figures


def test_job_titles_say_dose_view_and_split() -> None:
    meta = {"dose": 1000, "view": "dense", "split": "train"}
    assert job_label(meta, Path("x.npz")) == "dose 1,000 photons, dense view, train split"
    assert job_label({}, Path("data/x.npz")) == "x.npz"


def test_summary_has_a_stop_column_and_explains_blank_ms_ssim(tree: Path, monkeypatch) -> None:
    use_scripted_jobs(monkeypatch, report=True)
    result = runner.invoke(
        app, ["study-run", "--study-root", str(tree), "--dose", "1000", "--num-epochs", "2"]
    )
    assert result.exit_code == 0, result.output
    assert re.search(r" stop .*\n.*\n.* fixed ", result.stderr), result.stderr
    table = [line for line in result.stderr.splitlines() if " fixed " in line or " stop " in line]
    assert table and all(len(line) <= 80 for line in table)
    rows = list(csv.DictReader((tree / "reconstructions" / layout.SUMMARY_CSV).open()))
    assert {r["stop"] for r in rows} == {"fixed epochs"}
    md = (tree / "reconstructions" / layout.SUMMARY_MD).read_text()
    assert "phase_ms_ssim is blank where" in md  # quick jobs record no MS-SSIM


def test_the_summary_table_shows_its_widest_values_whole_at_80_columns() -> None:
    """rich cuts cells with an ellipsis to fit; the widest values must fit uncut."""
    from rich.console import Console

    from flyrecon.cli.study_run import _summary_table
    from flyrecon.options import Split, View
    from flyrecon.study.jobs import job_record
    from flyrecon.study.plan import Job

    job = Job(100000, View.BASELINE, Split.TRAIN, Path("x.npz"), Path("out"))
    widest = job_record(
        job,
        JobStatus.INTERRUPTED,
        130,
        "",
        wall_time_s=1234.5,
        epochs_run=300,
        coarse_epochs=40,
        stop_kind="noise floor",
        metrics={"phase_ssim": 0.123, "complex_relative_error": 0.0456},
        reused=True,
    )
    console = Console(width=80, record=True, force_terminal=False)
    console.print(_summary_table([widest]))
    text = console.export_text()
    assert "…" not in text, text
    for value in ("100000", "baseline", "interrupted*", "130", "40+300", "1234.5", "0.123"):
        assert value in text, (value, text)


def test_the_report_table_shows_its_widest_values_whole_at_80_columns() -> None:
    from rich.console import Console

    from flyrecon.cli.report import summary_tables

    row = {
        "method": "flyrecon",
        "dose": 100000,
        "view": "baseline",
        "split": "train",
        "status": "interrupted",
        "epochs": 300,
        "stop": "noise floor",
        "wall_time_s": 1234.5,
        "phase_ssim": 0.1234,
        "amplitude_ssim": 0.9876,
        "complex_relative_error": 0.0456,
        "frc_resolution_0p5_px": 12.34,
    }
    other = {**row, "method": "pinn", "status": "not scored: " + "x" * 200, "stop": None}
    console = Console(width=80, record=True, force_terminal=False)
    tables = summary_tables([row, other])
    assert [t.title for t in tables] == ["study summary: flyrecon", "study summary: pinn"]
    for table in tables:
        console.print(table)
    text = console.export_text()
    assert "…" not in text, text
    for value in ("100000", "interrupted", "not scored", "floor", "1234.5", "0.123", "12.3"):
        assert value in text, (value, text)


@pytest.mark.slow
def test_the_phase_grid_shows_truth_and_views_on_the_scanned_region(tmp_path: Path) -> None:
    """A real small study: each job's phase lands in objectGuess's frame, blank outside what
    the job illuminated, with the truth beside it."""
    from flyrecon.report import framed_phases

    root = tmp_path / "prep"
    prep = ["prep-synthetic", "--output-root", str(root), "--object-px", "192", "--dose", "1e5"]
    assert runner.invoke(app, prep).exit_code == 0
    args = [
        "study-run",
        "--study-root",
        str(root),
        "--split",
        "test",
        "--num-epochs",
        "3",
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = root / "reconstructions"
    records = manifest(out)["execution_results"]
    for rec in records:
        folder = layout.output_dir(out, rec["dose"], rec["view"], rec["split"])
        phase, truth = framed_phases(folder / layout.RESULT_NPZ, Path(rec["input_npz"]))
        assert phase.shape == truth.shape == (192, 192)
        assert np.array_equal(np.isnan(phase), np.isnan(truth))
        shown = np.isfinite(phase)
        assert 0 < shown.mean() < 0.6  # the test half's scanned region only
        assert np.flatnonzero(shown.any(axis=1)).min() >= 96  # the bottom half
    assert (out / "phase_grid_test.png").read_bytes()[:4] == b"\x89PNG"
    assert all(r["status"] == JobStatus.SUCCEEDED for r in records)
