"""`study-run --executor dask`: the same jobs on a Dask LocalCluster as in this process."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flyrecon.cli import app
from flyrecon.layout import MANIFEST_JSON
from helpers import write_study_tree

pytest.importorskip("distributed")

runner = CliRunner()


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dose: baseline and dense, train split (read-only: copy it)."""
    root = tmp_path_factory.mktemp("dask_tree")
    write_study_tree(root, doses=(100000,))
    return root


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster (single-threaded worker processes) shared by the slow tests,
    set up like the one `--workers` starts; its workers stay warm between studies."""
    import dask
    from distributed import LocalCluster

    from flyrecon.study.executors.dask import DASK_CONFIG

    with (
        dask.config.set(DASK_CONFIG),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as local,
    ):
        yield local


def _copy(tree: Path, dest: Path) -> Path:
    shutil.copytree(tree / "phase_c", dest / "phase_c")
    shutil.copytree(tree / "phase_d", dest / "phase_d")
    return dest


def _args(root: Path, *extra: str) -> list[str]:
    return [
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
        "4",
        "--threads",
        "1",
        "--seed",
        "0",
        "--device",
        "cpu",
        *extra,
    ]


def _results(root: Path) -> dict[str, dict]:
    m = json.loads((root / "reconstructions" / MANIFEST_JSON).read_text())
    return {r["key"]: r for r in m["execution_results"]}


@pytest.mark.slow
def test_local_cluster_manifest_equals_local_executor(
    small_tree: Path, tmp_path: Path, cluster
) -> None:
    local = _copy(small_tree, tmp_path / "local")
    dask = _copy(small_tree, tmp_path / "dask")
    r_local = runner.invoke(app, _args(local))
    assert r_local.exit_code == 0, r_local.output
    address = cluster.scheduler_address
    r_dask = runner.invoke(app, _args(dask, "--executor", "dask", "--scheduler-address", address))
    assert r_dask.exit_code == 0, r_dask.output
    a, b = _results(local), _results(dask)
    assert sorted(a) == sorted(b) == ["dose_100000/baseline/train", "dose_100000/dense/train"]
    for key in a:
        assert (a[key]["status"], a[key]["returncode"]) == (b[key]["status"], b[key]["returncode"])
        assert a[key]["status"] == "succeeded"
        assert a[key]["fingerprint"] == b[key]["fingerprint"]
        assert b[key]["worker"].startswith("tcp://") and b[key]["torch_threads"] == 1
        assert a[key]["final_loss"] == pytest.approx(b[key]["final_loss"], rel=1e-5)
        ma, mb = a[key]["metrics"], b[key]["metrics"]
        assert ma.keys() == mb.keys()
        for name, value in ma.items():
            if isinstance(value, float):
                assert value == pytest.approx(mb[name], rel=1e-5, abs=1e-7), name
    # `--workers 2` starts (and closes) its own LocalCluster; same fingerprints: all reused
    again = runner.invoke(app, _args(dask, "--executor", "dask", "--workers", "2"))
    assert again.exit_code == 0, again.output
    assert {(r["status"], r["reused"]) for r in _results(dask).values()} == {("succeeded", True)}
    assert all(r["worker"].startswith("tcp://127.0.0.1:") for r in _results(dask).values())


@pytest.mark.slow
def test_a_job_that_kills_its_worker_fails_alone_and_reruns(
    small_tree: Path, tmp_path: Path, cluster
) -> None:
    import cloudpickle

    import helpers
    from flyrecon.options import Executor, ReconSettings, StudyOptions, View
    from flyrecon.study.runner import run_study

    cloudpickle.register_pickle_by_value(helpers)
    root = _copy(small_tree, tmp_path / "crash")
    options = StudyOptions(
        phase_c_root=root / "phase_c",
        phase_d_root=root / "phase_d",
        artifact_root=root / "reconstructions",
        views=(View.BASELINE, View.DENSE, View.SPARSE),
        splits=("train",),
        executor=Executor.DASK,
        scheduler_address=cluster.scheduler_address,
        settings=ReconSettings(num_epochs=2, threads=1, device="cpu"),
    )
    try:
        result = run_study(options, job_fn=helpers.crash_on_dense_train)
    finally:
        cloudpickle.unregister_pickle_by_value(helpers)
    assert result.exit_code == 1
    records = _results(root)
    crashed = records.pop("dose_100000/dense/train")
    assert crashed["status"] == "failed" and crashed["returncode"] == 1
    assert "died while running the job" in crashed["reason"]
    assert {r["status"] for r in records.values()} == {"succeeded"} and len(records) == 2
    rerun = run_study(options)
    assert rerun.exit_code == 0, rerun.message
    statuses = {k: (r["status"], r["reused"]) for k, r in _results(root).items()}
    assert statuses == {
        "dose_100000/baseline/train": ("succeeded", True),
        "dose_100000/dense/train": ("succeeded", False),
        "dose_100000/sparse/train": ("succeeded", True),
    }


def test_missing_dask_extra_is_a_clear_usage_error(
    small_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "distributed", None)
    root = _copy(small_tree, tmp_path / "nodask")
    result = runner.invoke(app, _args(root, "--executor", "dask", "--workers", "2"))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "flyrecon[dask]" in lines[0], result.stderr
    assert not (root / "reconstructions").exists()


def test_missing_dask_extra_through_the_api(
    small_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flyrecon.options import Executor, StudyOptions
    from flyrecon.study.executors.dask import DaskSetupError
    from flyrecon.study.runner import run_study

    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "distributed", None)
    root = _copy(small_tree, tmp_path / "nodask_api")
    options = StudyOptions(
        phase_c_root=root / "phase_c",
        phase_d_root=root / "phase_d",
        artifact_root=root / "out",
        executor=Executor.DASK,
        workers=1,
    )
    with pytest.raises(DaskSetupError, match=r"flyrecon\[dask\]") as info:
        run_study(options)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--workers", "2"), "--workers needs --executor dask"),
        (("--scheduler-address", "tcp://x:1"), "--scheduler-address needs --executor dask"),
        (
            ("--executor", "dask", "--workers", "2", "--scheduler-address", "tcp://x:1"),
            "not both",
        ),
        (("--executor", "dask", "--workers", "0"), "--workers"),
        (("--executor", "spark"), "--executor"),
    ],
)
def test_cli_usage_errors_exit_2(
    small_tree: Path, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    result = runner.invoke(app, _args(tmp_path, *extra))
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "reconstructions").exists()


def test_workers_must_see_the_artifact_root(tmp_path: Path) -> None:
    from flyrecon.study.executors.dask import PROBE_NAME, check_visible

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / PROBE_NAME).write_text("token")
    assert check_visible([str(tmp_path)], str(shared), "token") == []
    other = check_visible([str(tmp_path / "nope")], str(shared), "other-token")
    assert any("nope: not found" in p for p in other)
    assert any("not shared" in p for p in other)
    missing = check_visible([], str(tmp_path / "local-only"), "token")
    assert len(missing) == 1 and "not visible" in missing[0]


def test_unreachable_scheduler_is_a_clear_error(small_tree: Path, tmp_path: Path) -> None:
    import dask

    root = _copy(small_tree, tmp_path / "unreachable")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = runner.invoke(
            app, _args(root, "--executor", "dask", "--scheduler-address", "tcp://127.0.0.1:9")
        )
    assert result.exit_code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr


@pytest.mark.slow
def test_ctrl_c_cancels_pending_jobs_and_records_them(
    small_tree: Path, tmp_path: Path, cluster
) -> None:
    import os
    import signal
    import threading

    import cloudpickle

    import helpers
    from flyrecon.options import Executor, ReconSettings, StudyOptions, View
    from flyrecon.study.observer import StudyObserver
    from flyrecon.study.runner import run_study

    class Started(StudyObserver):
        def __init__(self) -> None:
            self.keys: list[str] = []

        def job_started(self, job, index, total):
            self.keys.append(job.key)
            assert (index, total) == (len(self.keys), 3)
            if index == 2:  # both workers busy, one job queued: press Ctrl-C
                threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    root = _copy(small_tree, tmp_path / "ctrl_c")
    options = StudyOptions(
        phase_c_root=root / "phase_c",
        phase_d_root=root / "phase_d",
        artifact_root=root / "reconstructions",
        views=(View.BASELINE, View.DENSE, View.SPARSE),
        splits=("train",),
        executor=Executor.DASK,
        scheduler_address=cluster.scheduler_address,
        settings=ReconSettings(num_epochs=2, threads=1, device="cpu"),
    )
    observer = Started()
    cloudpickle.register_pickle_by_value(helpers)
    try:
        result = run_study(options, observer=observer, job_fn=helpers.sleep_job)
    finally:
        cloudpickle.unregister_pickle_by_value(helpers)
    assert result.exit_code == 130
    assert len(observer.keys) == 2
    m = json.loads((root / "reconstructions" / MANIFEST_JSON).read_text())
    assert m["state"] == "interrupted"
    assert sorted(r["key"] for r in m["execution_results"]) == [
        "dose_100000/baseline/train",
        "dose_100000/dense/train",
        "dose_100000/sparse/train",
    ]
    assert {r["status"] for r in m["execution_results"]} == {"interrupted"}


def test_cuda_jobs_need_a_worker_offering_a_gpu(small_tree: Path, tmp_path: Path, cluster) -> None:
    root = _copy(small_tree, tmp_path / "gpu")
    address = cluster.scheduler_address
    # the last --device wins over the `--device cpu` of _args
    args = _args(root, "--executor", "dask", "--scheduler-address", address, "--device", "cuda")
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "no Dask worker offers the resource GPU=1" in result.stderr
