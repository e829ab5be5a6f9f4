"""The study report: summary files and figures, from study-run and from `flyrecon report`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flyrecon.cli import app
from flyrecon.layout import SUMMARY_CSV, SUMMARY_MD
from helpers import use_scripted_jobs

runner = CliRunner()


@pytest.fixture(scope="module")
def _finished(study_tree: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One stubbed 18-job study with a failed job, shared by the tests below."""
    root = tmp_path_factory.mktemp("report") / "study"
    shutil.copytree(study_tree[0], root / "phase_c")
    shutil.copytree(study_tree[1], root / "phase_d")
    with pytest.MonkeyPatch.context() as mp:
        use_scripted_jobs(mp, fail_keys=("dose_1000/sparse/test",), report=True)
        result = runner.invoke(app, ["study-run", "--study-root", str(root), "--num-epochs", "1"])
    assert result.exit_code == 1
    return root / "reconstructions"


@pytest.fixture
def finished_study(_finished: Path, tmp_path: Path) -> Path:
    """A private copy of the finished study's artifact root."""
    return Path(shutil.copytree(_finished, tmp_path / "reconstructions"))


def test_study_run_writes_summary_and_figures(finished_study: Path) -> None:
    rows = list(csv.DictReader((finished_study / SUMMARY_CSV).open()))
    assert len(rows) == 18
    assert [(r["dose"], r["view"], r["split"]) for r in rows[:3]] == [
        ("1000", "baseline", "test"),
        ("1000", "baseline", "train"),
        ("1000", "dense", "test"),
    ]
    failed = [r for r in rows if r["status"] == "failed"]
    assert [(r["dose"], r["view"], r["split"], r["returncode"]) for r in failed] == [
        ("1000", "sparse", "test", "1")
    ]
    ok = [r for r in rows if r["status"] == "succeeded"]
    assert all(float(r["phase_ssim"]) <= 1 and r["complex_relative_error"] for r in ok)
    assert all(r["epochs"] == "1" for r in ok)
    md = (finished_study / SUMMARY_MD).read_text()
    assert md.count("\n| flyrecon | ") == 18
    for png in ("metrics_vs_dose.png", "phase_grid_train.png", "phase_grid_test.png"):
        assert (finished_study / png).read_bytes()[:4] == b"\x89PNG", png


def test_report_command_rebuilds_without_reconstructing(
    finished_study: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flyrecon.reconstruct

    def forbidden(*args, **kwargs):
        raise AssertionError("report must not reconstruct")

    monkeypatch.setattr(flyrecon.reconstruct, "reconstruct", forbidden)
    before = (finished_study / SUMMARY_CSV).read_text()
    for name in (SUMMARY_CSV, SUMMARY_MD, "metrics_vs_dose.png"):
        (finished_study / name).unlink()
    result = runner.invoke(app, ["report", "--artifact-root", str(finished_study)])
    assert result.exit_code == 0, result.output
    assert (finished_study / SUMMARY_CSV).read_text() == before
    assert (finished_study / "metrics_vs_dose.png").is_file()
    assert "study summary" in result.stderr


def test_report_without_manifest_is_an_input_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "--artifact-root", str(tmp_path)])
    assert result.exit_code == 2 and "reconstruction_manifest.json" in result.stderr


def test_report_ignores_paths_in_a_crafted_manifest(finished_study: Path, tmp_path: Path) -> None:
    path = finished_study / "reconstruction_manifest.json"
    manifest = json.loads(path.read_text())
    for rec in manifest["execution_results"]:
        rec["output_dir"] = str(tmp_path / "elsewhere")
    path.write_text(json.dumps(manifest))
    result = runner.invoke(app, ["report", "--artifact-root", str(finished_study)])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "elsewhere").exists()
    rows = list(csv.DictReader((finished_study / SUMMARY_CSV).open()))
    assert len(rows) == 18
    # a record that is not a job (a path where the dose belongs) fails the whole read, in
    # one line naming the file and the key
    manifest["execution_results"].append({"dose": "../../x", "view": "evil", "split": "x"})
    path.write_text(json.dumps(manifest))
    result = runner.invoke(app, ["report", "--artifact-root", str(finished_study)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{path}: execution_results.18.dose" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_summary_counts_half_resolution_epochs_apart() -> None:
    from flyrecon.options import Split, View
    from flyrecon.records import JobRecord, JobStatus
    from flyrecon.report import summary_rows
    from flyrecon.study.jobs import job_record
    from flyrecon.study.plan import Job

    def record(view: str, coarse: int | None) -> JobRecord:
        job = Job(1000, View(view), Split.TRAIN, Path("x.npz"), Path("out"))
        return job_record(job, JobStatus.SUCCEEDED, 0, "", epochs_run=6, coarse_epochs=coarse)

    rows = summary_rows([record("dense", 0), record("sparse", 4)])
    assert [(r["epochs"], r["half_resolution_epochs"]) for r in rows] == [(6, None), (6, 4)]
