"""`flyrecon study-run`: matrix, filters, missing inputs, failures, resume, locking.

The study tests run the real runner, manifest and job function (hashing, resume stamps) with
the reconstruction itself stood in for (`helpers.ScriptedJobs`, `helpers.quick_reconstruct`);
one test at the end runs the real pty-chi.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flyrecon import layout
from flyrecon.cli import app
from flyrecon.options import ReconSettings, StudyOptions
from flyrecon.study import plan_study
from flyrecon.study.runner import study_lock
from helpers import manifest, use_scripted_jobs, write_study_tree

runner = CliRunner()


_stub = use_scripted_jobs


def _study(root: Path, *args: str) -> list[str]:
    return [
        "study-run",
        "--phase-c-root",
        str(root / "phase_c"),
        "--phase-d-root",
        str(root / "phase_d"),
        "--artifact-root",
        str(root / "out"),
        "--num-epochs",
        "2",
        *args,
    ]


def _manifest(root: Path) -> dict:
    return manifest(root / "out")


def test_matrix_and_filters(study_tree: tuple[Path, Path], tmp_path: Path) -> None:
    phase_c, phase_d = study_tree
    options = StudyOptions(phase_c_root=phase_c, phase_d_root=phase_d, artifact_root=tmp_path)
    plan = plan_study(options)
    assert len(plan.all_jobs) == 18 and len(plan.selected) == 18
    assert plan.doses_found == (1000, 10000, 100000)
    narrowed = plan_study(
        options.model_copy(update={"doses": (1000,), "views": ("dense",), "splits": ("train",)})
    )
    assert len(narrowed.selected) == 1 and narrowed.filtered_out == 17
    (job,) = narrowed.selected
    assert job.input_npz == phase_d / "dose_1000" / "dense" / "dense_train.npz"
    assert job.output_dir == tmp_path / "dose_1000" / "dense" / "train"
    baseline = plan_study(options.model_copy(update={"views": ("baseline",)}))
    assert {j.input_npz.name for j in baseline.selected} == {
        "patched_train.npz",
        "patched_test.npz",
    }


def test_filtered_run_records_counts(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _stub(monkeypatch)
    result = runner.invoke(
        app, _study(tree, "--dose", "1000", "--view", "dense", "--split", "train")
    )
    assert result.exit_code == 0, result.output
    assert ran == ["dose_1000/dense/train"]
    m = _manifest(tree)
    assert (m["total_jobs"], m["filtered_jobs"], m["filtered_out"]) == (18, 1, 17)
    for key in (
        "timestamp",
        "phase_c_root",
        "phase_d_root",
        "artifact_root",
        "filters",
        "missing_jobs",
        "jobs",
        "execution_results",
    ):
        assert key in m
    (rec,) = m["execution_results"]
    assert rec["returncode"] == 0 and Path(rec["log_path"]).is_file()
    job = m["jobs"][0]
    assert (job["algorithm"], job["num_epochs"]) == (ReconSettings().algorithm, 2)
    skips = json.loads((tree / "out" / layout.SKIP_JSON).read_text())
    assert skips["skipped_count"] == 0 and skips["missing_phase_d_count"] == 0


def test_failures_are_recorded_and_the_study_goes_on(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _stub(monkeypatch, fail_keys=("dose_1000/dense/test",))
    result = runner.invoke(app, _study(tree, "--dose", "1000"))
    assert result.exit_code == 1
    assert "dose_1000/dense/test" in result.stderr
    assert len(ran) == 6
    codes = {r["key"]: r["returncode"] for r in _manifest(tree)["execution_results"]}
    assert codes.pop("dose_1000/dense/test") == 1
    assert set(codes.values()) == {0} and len(codes) == 5
    failed = next(r for r in _manifest(tree)["execution_results"] if r["returncode"])
    assert "boom" in failed["reason"]


def test_missing_phase_d_is_an_error_naming_the_file(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _stub(monkeypatch)
    (tree / "phase_d" / "dose_1000" / "sparse" / "sparse_test.npz").unlink()
    result = runner.invoke(app, _study(tree, "--dose", "1000"))
    assert result.exit_code == 2
    assert "sparse_test.npz" in result.stderr and not ran


def test_allow_missing_phase_d_records_skips(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _stub(monkeypatch)
    (tree / "phase_d" / "dose_1000" / "sparse" / "sparse_test.npz").unlink()
    result = runner.invoke(app, _study(tree, "--dose", "1000", "--allow-missing-phase-d"))
    assert result.exit_code == 0, result.output
    assert len(ran) == 5
    skips = json.loads((tree / "out" / layout.SKIP_JSON).read_text())
    assert skips["skipped_count"] == 1 and skips["missing_phase_d_count"] == 1
    assert skips["skipped_jobs"][0]["view"] == "sparse"
    assert "sparse_test.npz" in skips["skipped_jobs"][0]["reason"]


def test_every_job_skipped_is_not_success(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stub(monkeypatch)
    shutil.rmtree(tree / "phase_d" / "dose_1000")
    result = runner.invoke(
        app, _study(tree, "--dose", "1000", "--view", "dense", "--allow-missing-phase-d")
    )
    assert result.exit_code == 2 and "no job ran" in result.stderr


def test_missing_phase_c_is_an_error_even_when_phase_d_may_be_missing(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stub(monkeypatch)
    (tree / "phase_c" / "dose_1000" / "patched_train.npz").unlink()
    result = runner.invoke(app, _study(tree, "--dose", "1000", "--allow-missing-phase-d"))
    assert result.exit_code == 2 and "patched_train.npz" in result.stderr


def test_filters_selecting_nothing_exit_2(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _stub(monkeypatch)
    result = runner.invoke(app, _study(tree, "--dose", "5"))
    assert result.exit_code == 2 and "select none" in result.stderr and not ran


def test_resume_skips_current_jobs_and_reruns_deleted_ones(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _stub(monkeypatch)
    args = _study(tree, "--dose", "10000")
    assert runner.invoke(app, args).exit_code == 0
    assert len(ran) == 6
    ran.clear()
    assert runner.invoke(app, args).exit_code == 0
    assert ran == []
    records = _manifest(tree)["execution_results"]
    assert {(r["status"], r["reused"]) for r in records} == {("succeeded", True)}
    (tree / "out" / "dose_10000" / "sparse" / "train" / "result.json").unlink()
    assert runner.invoke(app, args).exit_code == 0
    assert ran == ["dose_10000/sparse/train"]
    ran.clear()
    assert runner.invoke(app, [*args, "--num-epochs", "3"]).exit_code == 0  # settings changed
    assert len(ran) == 6
    ran.clear()
    assert runner.invoke(app, [*args, "--num-epochs", "3", "--force"]).exit_code == 0
    assert len(ran) == 6


def test_changed_input_is_rerun(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _stub(monkeypatch)
    args = _study(tree, "--dose", "1000", "--view", "baseline")
    assert runner.invoke(app, args).exit_code == 0
    ran.clear()
    src = tree / "phase_c" / "dose_10000" / "patched_test.npz"
    shutil.copy(src, tree / "phase_c" / "dose_1000" / "patched_test.npz")
    assert runner.invoke(app, args).exit_code == 0
    assert ran == ["dose_1000/baseline/test"]


def test_ctrl_c_records_interrupted_and_exits_130(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _stub(monkeypatch, interrupt_key="dose_1000/dense/train")
    result = runner.invoke(app, _study(tree, "--dose", "1000"))
    assert result.exit_code == 130
    m = _manifest(tree)
    assert m["state"] == "interrupted"
    assert m["execution_results"][-1]["status"] == "interrupted"
    assert ran[-1] == "dose_1000/dense/train" and len(ran) == 3


def test_second_study_on_the_same_root_is_refused(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _stub(monkeypatch)
    with study_lock(tree / "out"):
        result = runner.invoke(app, _study(tree, "--dose", "1000"))
    assert result.exit_code == 1 and "another flyrecon study-run" in result.stderr
    assert not ran


def test_study_root_shortcut(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _stub(monkeypatch)
    result = runner.invoke(
        app,
        [
            "study-run",
            "--study-root",
            str(tree),
            "--dose",
            "1000",
            "--view",
            "sparse",
            "--num-epochs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(ran) == 2
    assert (tree / "reconstructions" / layout.MANIFEST_JSON).is_file()


def test_missing_roots_are_a_usage_error() -> None:
    result = runner.invoke(app, ["study-run", "--phase-c-root", "x"])
    assert result.exit_code == 2 and "--phase-d-root" in result.stderr


def test_dry_run_lists_jobs_without_importing_torch(
    study_tree: tuple[Path, Path], tmp_path: Path
) -> None:
    phase_c, phase_d = study_tree
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from flyrecon.cli import app\n"
        f"r = CliRunner().invoke(app, ['study-run', '--phase-c-root', {str(phase_c)!r},"
        f" '--phase-d-root', {str(phase_d)!r}, '--artifact-root', {str(tmp_path)!r},"
        " '--dry-run', '--dose', '1000'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert '6 of 18 jobs' in r.stderr, r.stderr\n"
        "print(sorted(m for m in ('torch', 'ptychi') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert not (tmp_path / layout.MANIFEST_JSON).exists()


def test_dry_run_marks_an_input_that_cannot_be_read(tree: Path, tmp_path: Path) -> None:
    """Only the zip directory is looked at: a truncated file and one missing a key are marked,
    the others are not, and nothing runs."""
    broken = sorted(tree.rglob("*.npz"))[:2]
    broken[0].write_bytes(broken[0].read_bytes()[:500])
    with zipfile.ZipFile(broken[1], "w") as archive:
        archive.writestr("diffraction.npy", b"")
    result = runner.invoke(
        app,
        [
            "study-run",
            "--phase-c-root",
            str(tree / "phase_c"),
            "--phase-d-root",
            str(tree / "phase_d"),
            "--artifact-root",
            str(tmp_path / "art"),
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("unusable input:")]
    assert sorted(lines) == sorted(
        [
            f"unusable input: {broken[0]}: is a damaged zip archive (truncated: its directory "
            "is missing)",
            f"unusable input: {broken[1]}: objectGuess: missing required key",
        ]
    )


def test_real_study_on_a_small_tree(tmp_path: Path) -> None:
    """The real pty-chi through study-run: outputs, logs and metrics for each job."""
    root = tmp_path / "real"
    write_study_tree(root, doses=(100000,))
    result = runner.invoke(
        app,
        [
            "study-run",
            "--study-root",
            str(root),
            "--view",
            "baseline",
            "--view",
            "dense",
            "--split",
            "train",
            "--num-epochs",
            "15",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    m = manifest(root / "reconstructions")
    assert [r["returncode"] for r in m["execution_results"]] == [0, 0]
    for rec in m["execution_results"]:
        out = Path(rec["output_dir"])
        assert (out / "ptychi_reconstruction.npz").is_file() and (
            out / "reconstruction.png"
        ).is_file()
        assert "epoch 15/15" in Path(rec["log_path"]).read_text()
        assert rec["metrics"]["complex_relative_error"] < 0.2


def test_a_job_whose_folder_is_blocked_is_invalid_and_the_study_goes_on(tmp_path: Path) -> None:
    from flyrecon.study.plan import Job
    from helpers import quick_job

    options = StudyOptions(
        phase_c_root=tmp_path, phase_d_root=tmp_path, artifact_root=tmp_path / "out"
    )
    data = tmp_path / "in.npz"
    data.write_bytes(b"input bytes")
    blocked = tmp_path / "out" / "train"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the job's folder should be")
    record = quick_job(Job(1000, "baseline", "train", data, blocked), options)
    assert record.returncode == 2 and record.status == "invalid"
    assert "job.json" in record.reason
    fine = quick_job(Job(1000, "baseline", "test", data, tmp_path / "out" / "test"), options)
    assert fine.returncode == 0


def test_resume_reruns_a_job_when_the_geometry_given_for_it_changes(tmp_path: Path) -> None:
    from flyrecon.options import PhysicalGeometry
    from flyrecon.study.plan import Job
    from helpers import quick_job

    data = tmp_path / "in.npz"
    data.write_bytes(b"input bytes")
    job = Job(1000, "baseline", "train", data, tmp_path / "out" / "train")
    base = {"phase_c_root": tmp_path, "phase_d_root": tmp_path, "artifact_root": tmp_path}
    first = quick_job(job, StudyOptions(**base))
    assert first.returncode == 0 and not first.reused
    assert quick_job(job, StudyOptions(**base)).reused
    other = StudyOptions(**base, geometry=PhysicalGeometry(photon_energy_ev=5000))
    again = quick_job(job, other)
    assert again.returncode == 0 and not again.reused
    assert quick_job(job, other).reused


@pytest.mark.parametrize(
    "damage",
    ["truncated result npz", "product removed", "figure removed", "other input's result"],
)
def test_resume_reruns_a_job_whose_outputs_are_not_its_own_or_not_whole(
    tree: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    ran = _stub(monkeypatch)
    args = _study(tree, "--dose", "1000", "--view", "baseline", "--split", "train")
    assert runner.invoke(app, args).exit_code == 0
    job = tree / "out" / "dose_1000" / "baseline" / "train"
    if damage == "truncated result npz":
        npz = job / layout.RESULT_NPZ
        npz.write_bytes(npz.read_bytes()[:100])
    elif damage == "other input's result":  # `reconstruct` run by hand into the job folder
        result = json.loads((job / layout.RESULT_JSON).read_text())
        result["input_npz"] = str(tree / "phase_d" / "dose_1000" / "sparse" / "sparse_test.npz")
        (job / layout.RESULT_JSON).write_text(json.dumps(result))
    else:
        (job / (layout.PRODUCT_H5 if "product" in damage else layout.FIGURE_PNG)).unlink()
    ran.clear()
    assert runner.invoke(app, args).exit_code == 0
    assert ran == ["dose_1000/baseline/train"]


def test_a_job_folder_the_user_linked_elsewhere_is_used(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _stub(monkeypatch)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    job = tree / "out" / "dose_1000" / "baseline" / "train"
    job.parent.mkdir(parents=True)
    job.symlink_to(scratch, target_is_directory=True)  # e.g. a link onto /scratch
    args = _study(tree, "--dose", "1000", "--view", "baseline", "--split", "train")
    assert runner.invoke(app, args).exit_code == 0
    assert ran == ["dose_1000/baseline/train"] and (scratch / layout.RESULT_JSON).is_file()


def test_resume_reuses_jobs_when_the_roots_are_written_otherwise(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _stub(monkeypatch)
    monkeypatch.chdir(tree)
    relative = [
        "study-run",
        "--phase-c-root",
        "phase_c",
        "--phase-d-root",
        "phase_d",
        "--artifact-root",
        "out",
        "--num-epochs",
        "2",
        "--dose",
        "1000",
    ]
    assert runner.invoke(app, relative).exit_code == 0 and len(ran) == 6
    ran.clear()
    assert runner.invoke(app, _study(tree, "--dose", "1000")).exit_code == 0  # absolute now
    assert ran == []
