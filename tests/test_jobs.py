"""`study-run --jobs N`: jobs in worker processes on this machine, and CUDA where there is one."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flyrecon import layout
from flyrecon.cli import app
from flyrecon.options import Executor, ReconSettings, StudyOptions, View
from flyrecon.records import JobStatus
from flyrecon.study.executors import executor_for
from flyrecon.study.executors.processes import execute_processes, threads_per_job
from flyrecon.study.observer import StudyObserver
from flyrecon.study.runner import run_study
from helpers import crash_on_dense_train, manifest, quick_job, sleep_job, write_study_tree

runner = CliRunner()


def _options(root: Path, jobs: int, **settings) -> StudyOptions:
    return StudyOptions(
        phase_c_root=root / "phase_c",
        phase_d_root=root / "phase_d",
        artifact_root=root / "out",
        doses=(1000,),
        jobs=jobs,
        settings=ReconSettings(num_epochs=2, device="cpu", **settings),
    )


def _records(result) -> dict[str, tuple[str, int]]:
    return {r.key: (str(r.status), r.returncode) for r in result.records}


def test_jobs_pick_the_executor_and_split_the_cores(tree: Path) -> None:
    assert executor_for(_options(tree, 1)).__name__ == "execute_local"
    assert executor_for(_options(tree, 3)) is execute_processes
    assert threads_per_job(_options(tree, 2, threads=3), 2) == 3
    assert threads_per_job(_options(tree, 2), 2) >= 1
    assert (
        threads_per_job(
            _options(tree, 2).model_copy(update={"settings": ReconSettings(device="cuda")}), 2
        )
        is None
    )
    with pytest.raises(ValueError, match="--jobs"):
        StudyOptions(**{**_options(tree, 2).model_dump(), "executor": Executor.DASK})


def test_two_processes_run_the_same_jobs_as_one(tree: Path, tmp_path: Path) -> None:
    serial = run_study(_options(tree, 1), job_fn=quick_job, report=False)
    other = tmp_path / "again"
    shutil.copytree(tree / "phase_c", other / "phase_c")
    shutil.copytree(tree / "phase_d", other / "phase_d")
    parallel = run_study(_options(other, 2), job_fn=quick_job, report=False)
    assert serial.exit_code == parallel.exit_code == 0
    assert _records(serial) == _records(parallel) and len(parallel.records) == 6
    assert all(r.worker.startswith("process ") for r in parallel.records)
    assert len({r.worker for r in parallel.records}) == 2
    # the same fingerprints: a rerun with --jobs 1 finds every job current
    again = run_study(_options(other, 1), job_fn=quick_job, report=False)
    assert {(r.status, r.reused) for r in again.records} == {(JobStatus.SUCCEEDED, True)}


def test_a_job_that_kills_its_process_fails_alone_and_reruns(tree: Path) -> None:
    options = _options(tree, 2)
    result = run_study(options, job_fn=crash_on_dense_train, report=False)
    assert result.exit_code == 1
    records = {r.key: r for r in result.records}
    crashed = [r for k, r in records.items() if k.endswith("/dense/train")]
    assert len(crashed) == 1 and crashed[0].status == JobStatus.FAILED
    assert "worker process died (exit code 1)" in crashed[0].reason
    others = [r for k, r in records.items() if not k.endswith("/dense/train")]
    assert len(others) == 5 and {r.status for r in others} == {JobStatus.SUCCEEDED}
    rerun = run_study(options, job_fn=quick_job, report=False)
    ran = {r.key for r in rerun.records if not r.reused}
    assert ran == {crashed[0].key}
    assert manifest(tree / "out")["state"] == "finished"


def test_ctrl_c_stops_the_workers_and_records_every_unfinished_job(tree: Path) -> None:
    class PressCtrlC(StudyObserver):
        def job_started(self, job, index, total):
            if index == 2:  # both workers busy, four jobs queued
                threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()

    result = run_study(_options(tree, 2), observer=PressCtrlC(), job_fn=sleep_job, report=False)
    assert result.exit_code == 130
    assert len(result.records) == 6
    assert {r.status for r in result.records} == {JobStatus.INTERRUPTED}
    assert manifest(tree / "out")["state"] == "interrupted"


def test_cli_jobs_flag(tree: Path) -> None:
    args = ["study-run", "--study-root", str(tree), "--dose", "1000", "--view", "sparse"]
    bad = runner.invoke(app, [*args, "--jobs", "0"])
    assert bad.exit_code == 2
    both = runner.invoke(app, [*args, "--jobs", "2", "--executor", "dask"])
    assert both.exit_code == 2 and "--jobs" in both.stderr


@pytest.mark.slow
def test_seeded_single_thread_results_equal_jobs_1(tmp_path: Path) -> None:
    """The real pty-chi: two jobs in two processes give the same bits as in this process."""
    results = {}
    for jobs in (1, 2):
        root = tmp_path / f"jobs{jobs}"
        write_study_tree(root, doses=(100000,))
        options = StudyOptions(
            phase_c_root=root / "phase_c",
            phase_d_root=root / "phase_d",
            artifact_root=root / "out",
            views=(View.BASELINE, View.DENSE),
            splits=("train",),
            jobs=jobs,
            settings=ReconSettings(num_epochs=3, threads=1, seed=0, device="cpu"),
        )
        study = run_study(options, report=False)
        assert study.exit_code == 0, study.message
        results[jobs] = {
            r.key: np.load(Path(r.output_dir) / layout.RESULT_NPZ)["object"] for r in study.records
        }
    assert results[1].keys() == results[2].keys()
    for key, obj in results[1].items():
        np.testing.assert_array_equal(obj, results[2][key], err_msg=key)


cuda = pytest.mark.skipif(
    not __import__("flyrecon.engine", fromlist=["cuda_available"]).cuda_available(),
    reason="torch sees no CUDA device",
)


@cuda
@pytest.mark.slow
def test_cuda_reconstruction_matches_the_cpu(tiny_npz: Path, tmp_path: Path) -> None:
    import json

    for device in ("cpu", "cuda"):
        args = ["reconstruct", "--input-npz", str(tiny_npz), "--output-dir", str(tmp_path / device)]
        result = runner.invoke(app, [*args, "--device", device, "--num-epochs", "10"])
        assert result.exit_code == 0, result.output
    cpu, gpu = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("cpu", "cuda"))
    assert gpu["device"] == "cuda"
    assert abs(cpu["metrics"]["phase_ssim"] - gpu["metrics"]["phase_ssim"]) < 0.02


@cuda
@pytest.mark.slow
def test_cuda_jobs_share_the_gpu(tmp_path: Path) -> None:
    root = tmp_path / "gpu"
    write_study_tree(root, doses=(100000,))
    options = StudyOptions(
        phase_c_root=root / "phase_c",
        phase_d_root=root / "phase_d",
        artifact_root=root / "out",
        splits=("train",),
        jobs=2,
        settings=ReconSettings(num_epochs=5, device="cuda"),
    )
    study = run_study(options, report=False)
    assert study.exit_code == 0 and {r.device for r in study.records} == {"cuda"}
