"""Reliability and security: unwritable outputs, crafted files, kills, Ctrl-C, determinism."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from corrupt.cases import PWNED, _pickled
from flyrecon.cli import app
from flyrecon.data import save_dataset
from flyrecon.layout import MANIFEST_JSON
from flyrecon.options import ReconSettings, ReconstructOptions
from flyrecon.reconstruct import reconstruct
from helpers import simulated_dataset, use_scripted_jobs, write_study_tree

runner = CliRunner()


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_output_dir_that_cannot_be_created(tiny_npz: Path) -> None:
    result = runner.invoke(
        app,
        ["reconstruct", "--input-npz", str(tiny_npz), "--output-dir", "/sys/flyrecon-cannot-exist"],
    )
    assert result.exit_code == 2
    assert "flyrecon-cannot-exist" in result.stderr and "Traceback" not in result.output


def test_output_dir_below_a_file(tiny_npz: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = runner.invoke(
        app,
        [
            "reconstruct",
            "--input-npz",
            str(tiny_npz),
            "--output-dir",
            str(tmp_path / "file" / "out"),
        ],
    )
    assert result.exit_code == 2 and "output directory" in result.stderr


def test_pickled_study_input_fails_its_job_and_runs_nothing(tmp_path: Path) -> None:
    root = tmp_path / "study"
    write_study_tree(root, doses=(1000,))
    bad = _pickled("diffraction")(tmp_path)
    shutil.copy(bad, root / "phase_c" / "dose_1000" / "patched_train.npz")
    result = runner.invoke(
        app,
        [
            "study-run",
            "--study-root",
            str(root),
            "--view",
            "baseline",
            "--split",
            "train",
            "--num-epochs",
            "1",
        ],
    )
    assert result.exit_code == 1
    (rec,) = json.loads((root / "reconstructions" / MANIFEST_JSON).read_text())["execution_results"]
    assert rec["returncode"] == 2 and "pickled" in rec["reason"]
    assert not PWNED.exists()


def test_crafted_metadata_and_manifest_cannot_redirect_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_scripted_jobs(monkeypatch)
    root = tmp_path / "study"
    write_study_tree(root, doses=(1000,))
    evil = {
        "output_dir": str(tmp_path / "evil"),
        "artifact_root": "../../evil",
        "log_path": str(tmp_path / "evil.log"),
        "view": "../../../evil",
        "dose": "../x",
    }
    data = simulated_dataset(object_px=64, step_px=8, seed=1)
    save_dataset(
        root / "phase_c" / "dose_1000" / "patched_train.npz",
        type(data)(**{**data.__dict__, "metadata": evil}),
    )
    out = root / "out"
    job_dir = out / "dose_1000" / "baseline" / "train"
    job_dir.mkdir(parents=True)
    (out / MANIFEST_JSON).write_text(
        json.dumps({"jobs": [{"output_dir": str(tmp_path / "evil")}], "execution_results": evil})
    )
    (job_dir / "result.json").write_text(json.dumps({**evil, "status": "succeeded"}))
    (job_dir / "job.json").write_text(json.dumps({"fingerprint": "forged"}))
    before = _files(tmp_path)
    result = runner.invoke(
        app,
        [
            "study-run",
            "--phase-c-root",
            str(root / "phase_c"),
            "--phase-d-root",
            str(root / "phase_d"),
            "--artifact-root",
            str(out),
            "--dose",
            "1000",
            "--num-epochs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    new = _files(tmp_path) - before
    assert new and all(out in p.parents for p in new), sorted(new)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "evil.log").exists()
    manifest = json.loads((out / MANIFEST_JSON).read_text())
    assert all(r["status"] == "succeeded" for r in manifest["execution_results"])


def test_seeded_single_thread_runs_are_bitwise_identical(tiny_npz: Path, tmp_path: Path) -> None:
    settings = ReconSettings(num_epochs=3, n_images=60, device="cpu", seed=3, threads=1)
    objects = []
    for name in ("a", "b"):
        result = reconstruct(
            ReconstructOptions(input_npz=tiny_npz, output_dir=tmp_path / name, settings=settings)
        )
        assert result.ok, result.message
        with np.load(tmp_path / name / "ptychi_reconstruction.npz") as npz:
            objects.append((npz["object"].copy(), npz["probe"].copy()))
    assert np.array_equal(objects[0][0], objects[1][0])
    assert np.array_equal(objects[0][1], objects[1][1])


# ---- interruption: real processes, real pty-chi ------------------------------------------


def _study_cmd(root: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flyrecon",
        "study-run",
        "--study-root",
        str(root),
        "--artifact-root",
        str(out),
        "--view",
        "baseline",
        "--view",
        "dense",
        "--split",
        "train",
        "--num-epochs",
        "200",  # long enough that a signal always lands inside the second job
        "--threads",
        "1",
        "--seed",
        "0",
        "--device",
        "cpu",
    ]


def _wait_for_second_job(out: Path, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Block until the first job is recorded and the second job has started its epochs."""
    second = out / "dose_100000" / "dense" / "train"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "study-run ended before it could be interrupted"
        try:
            done = json.loads((out / MANIFEST_JSON).read_text())["execution_results"]
        except (OSError, ValueError):
            done = []
        logs = list(second.glob(".reconstruct.log.*.tmp")) if second.is_dir() else []
        if len(done) == 1 and logs and "epoch 2/" in logs[0].read_text():
            return
        time.sleep(0.05)
    raise AssertionError("the second job never started")


@pytest.fixture(scope="module")
def kill_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kill")
    write_study_tree(root, doses=(100000,))
    return root


@pytest.mark.slow
def test_sigkill_mid_job_then_rerun_equals_an_uninterrupted_run(kill_tree: Path) -> None:
    killed_out, clean_out = kill_tree / "killed", kill_tree / "clean"
    proc = subprocess.Popen(
        _study_cmd(kill_tree, killed_out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_for_second_job(killed_out, proc)
    second = runner.invoke(app, _study_cmd(kill_tree, killed_out)[3:])  # same root, in-process
    assert second.exit_code == 1 and "another flyrecon study-run" in second.stderr
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = json.loads((killed_out / MANIFEST_JSON).read_text())  # valid JSON
    assert [r["key"] for r in manifest["execution_results"]] == ["dose_100000/baseline/train"]
    second = killed_out / "dose_100000" / "dense" / "train"
    assert not (second / "result.json").exists()
    first_npz = killed_out / "dose_100000" / "baseline" / "train" / "ptychi_reconstruction.npz"
    first_mtime = first_npz.stat().st_mtime_ns

    rerun = subprocess.run(_study_cmd(kill_tree, killed_out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    statuses = {
        r["key"]: (r["status"], r["reused"])
        for r in json.loads((killed_out / MANIFEST_JSON).read_text())["execution_results"]
    }
    assert statuses == {
        "dose_100000/baseline/train": ("succeeded", True),
        "dose_100000/dense/train": ("succeeded", False),
    }
    assert first_npz.stat().st_mtime_ns == first_mtime
    assert not [p for p in killed_out.rglob(".*.tmp")]

    clean = subprocess.run(_study_cmd(kill_tree, clean_out), capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    for job in ("baseline/train", "dense/train"):
        with (
            np.load(killed_out / "dose_100000" / job / "ptychi_reconstruction.npz") as a,
            np.load(clean_out / "dose_100000" / job / "ptychi_reconstruction.npz") as b,
        ):
            assert np.array_equal(a["object"], b["object"]), job
            assert np.array_equal(a["probe"], b["probe"]), job


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_stops_the_study_cleanly(kill_tree: Path, sig: int, code: int) -> None:
    """Ctrl-C, or SIGTERM (a scheduler's time limit, `kill`): the running job is recorded
    `interrupted`, the manifest says so, no partial file is left, exit 130 or 143."""
    out = kill_tree / sig.name
    proc = subprocess.Popen(
        _study_cmd(kill_tree, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _wait_for_second_job(out, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    manifest = json.loads((out / MANIFEST_JSON).read_text())
    assert manifest["state"] == "interrupted"
    last = manifest["execution_results"][-1]
    assert (last["key"], last["status"], last["returncode"]) == (
        "dose_100000/dense/train",
        "interrupted",
        130,
    )
    assert not (out / "dose_100000" / "dense" / "train" / "result.json").exists()
    assert not [p for p in out.rglob(".*.tmp")]
    assert os.path.exists(out / "skip_summary.json")


@pytest.mark.slow
def test_sigterm_to_every_process_stops_parallel_jobs_cleanly(kill_tree: Path) -> None:
    """A batch scheduler signals every process of the job (workers too): each running job
    is recorded `interrupted`, not failed, and the workers leave no partial file."""
    out = kill_tree / "group"
    proc = subprocess.Popen(
        [*_study_cmd(kill_tree, out), "--jobs", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    jobs = [out / "dose_100000" / view / "train" for view in ("baseline", "dense")]
    deadline = time.monotonic() + 120
    while not all(
        any("epoch 2/" in log.read_text() for log in job.glob(".reconstruct.log.*.tmp"))
        for job in jobs
        if job.is_dir()
    ) or not all(job.is_dir() for job in jobs):
        assert proc.poll() is None and time.monotonic() < deadline, "the jobs never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    manifest = json.loads((out / MANIFEST_JSON).read_text())
    assert manifest["state"] == "interrupted"
    assert {(r["status"], r["returncode"]) for r in manifest["execution_results"]} == {
        ("interrupted", 130)
    }
    assert len(manifest["execution_results"]) == 2
    assert not [p for p in out.rglob(".*.tmp")]


def test_a_second_writer_into_one_folder_is_refused(tiny_npz: Path, tmp_path: Path) -> None:
    from flyrecon.atomic import folder_lock
    from helpers import FakeEngine

    out = tmp_path / "job"
    options = ReconstructOptions(input_npz=tiny_npz, output_dir=out)
    assert reconstruct(options, engine=FakeEngine()).ok
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with folder_lock(out):  # another process's run, as flock sees it (one lock per open file)
        second = reconstruct(options, engine=FakeEngine())
    assert second.returncode == 2 and "another flyrecon run is writing" in second.message
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no lock file left
    assert reconstruct(options, engine=FakeEngine()).ok  # released


def test_a_file_system_without_directory_locks_still_runs(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    from helpers import FakeEngine

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")  # an NFS client, read-only handle

    monkeypatch.setattr(fcntl, "flock", no_locks)
    options = ReconstructOptions(input_npz=tiny_npz, output_dir=tmp_path / "job")
    assert reconstruct(options, engine=FakeEngine()).ok


@pytest.mark.slow
def test_sigterm_stops_reconstruct_without_a_partial_result(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "flyrecon", "reconstruct", "--input-npz", str(tiny_npz)]
    cmd += ["--output-dir", str(out), "--num-epochs", "5000", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any("epoch 2/" in log.read_text() for log in out.glob(".reconstruct.log.*.tmp")):
        assert proc.poll() is None and time.monotonic() < deadline, "reconstruct never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert not list(out.iterdir())
