"""Run a study: every selected job through the same `reconstruct` function, in this process.

The manifest and skip summary are rewritten atomically after every job, so they are valid
JSON at every instant; a job's failure is recorded and the study goes on; a rerun skips jobs
whose outputs are complete and whose input and settings are unchanged.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flyrecon import __version__
from flyrecon.atomic import write_json
from flyrecon.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    FlyreconError,
    InputError,
)
from flyrecon.options import ReconstructOptions, StudyOptions, View
from flyrecon.reconstruct import RESULT_JSON, RESULT_NPZ, ReconstructResult, reconstruct
from flyrecon.study import Job, StudyPlan, plan_study

MANIFEST_JSON = "reconstruction_manifest.json"
SKIP_JSON = "skip_summary.json"
JOB_JSON = "job.json"
LOCK_NAME = ".flyrecon-study.lock"

ReconstructFn = Callable[..., ReconstructResult]


class StudyObserver:
    """Receives progress events; the CLI draws them, tests may record them."""

    def job_started(self, job: Job, index: int, total: int) -> None:
        """A job begins (index counts from 1)."""

    def epoch(self, done: int, total: int, loss: float) -> None:
        """An epoch of the running job ended."""

    def job_finished(self, job: Job, record: dict[str, Any]) -> None:
        """A job ended (ran, failed, was resumed or skipped)."""


@dataclass
class StudyResult:
    """What a study run did."""

    exit_code: int
    message: str
    plan: StudyPlan
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    manifest_path: Path | None = None
    report_paths: list[Path] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r["status"] == status)


class StudyLockError(FlyreconError):
    """Another study-run holds the artifact root."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def job_fingerprint(input_sha256: str, options: ReconstructOptions) -> str:
    """A hash of what decides a job's result: input bytes, settings and flyrecon's version."""
    payload = json.dumps(
        {
            "input_sha256": input_sha256,
            "settings": options.settings.model_dump(mode="json"),
            "flyrecon_version": __version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _is_current(job: Job, fingerprint: str) -> bool:
    """Whether the job's outputs are complete and were made from this input and settings."""
    try:
        result = json.loads((job.output_dir / RESULT_JSON).read_text())
        stamp = json.loads((job.output_dir / JOB_JSON).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(result, dict)
        and isinstance(stamp, dict)
        and result.get("status") == "succeeded"
        and stamp.get("fingerprint") == fingerprint
        and (job.output_dir / RESULT_NPZ).is_file()
    )


@contextmanager
def study_lock(artifact_root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the artifact root; refuse at once if another run holds it."""
    artifact_root.mkdir(parents=True, exist_ok=True)
    path = artifact_root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise StudyLockError(
                f"{artifact_root}: another flyrecon study-run (pid {holder}) is using this "
                "artifact root; wait for it to finish or choose another --artifact-root"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _job_entry(job: Job, options: StudyOptions) -> dict[str, Any]:
    return {
        "dose": job.dose,
        "view": str(job.view),
        "split": str(job.split),
        "input_npz": str(job.input_npz),
        "output_dir": str(job.output_dir),
        "algorithm": str(options.settings.algorithm),
        "num_epochs": options.settings.num_epochs,
    }


class _Manifest:
    """The manifest and skip summary, rewritten atomically on every change."""

    def __init__(self, options: StudyOptions, plan: StudyPlan) -> None:
        self.options = options
        self.plan = plan
        self.records: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.started = _now()

    def write(self, state: str) -> Path:
        root = self.options.artifact_root
        o = self.options
        manifest = {
            "timestamp": _now(),
            "started": self.started,
            "state": state,
            "flyrecon_version": __version__,
            "phase_c_root": str(o.phase_c_root),
            "phase_d_root": str(o.phase_d_root),
            "artifact_root": str(root),
            "filters": {
                "dose": list(o.doses),
                "view": [str(v) for v in o.views],
                "split": [str(s) for s in o.splits],
            },
            "settings": o.settings.model_dump(mode="json"),
            "doses_found": list(self.plan.doses_found),
            "total_jobs": len(self.plan.all_jobs),
            "filtered_jobs": len(self.plan.selected),
            "filtered_out": self.plan.filtered_out,
            "missing_jobs": len(self.skipped),
            "jobs": [_job_entry(job, o) for job in self.plan.selected],
            "execution_results": self.records,
        }
        skips = {
            "timestamp": _now(),
            "skipped_count": len(self.skipped),
            "skipped_jobs": self.skipped,
            "missing_phase_d_count": sum(1 for s in self.skipped if s.get("phase") == "D"),
        }
        write_json(root / SKIP_JSON, skips)
        return write_json(root / MANIFEST_JSON, manifest)


def check_inputs(plan: StudyPlan, allow_missing_phase_d: bool) -> list[tuple[Job, str]]:
    """Missing inputs: an `InputError` naming the first file, or skips when phase D may be
    missing. Returns (job, reason) for each job to skip."""
    skips: list[tuple[Job, str]] = []
    for job in plan.selected:
        if job.input_npz.is_file():
            continue
        if job.view != View.BASELINE and allow_missing_phase_d:
            skips.append((job, f"missing phase D input {job.input_npz}"))
            continue
        hint = "" if job.view == View.BASELINE else " (or pass --allow-missing-phase-d)"
        raise InputError(job.input_npz, f"input of job {job.key} not found{hint}")
    return skips


def _record(job: Job, status: str, returncode: int, reason: str, **extra: Any) -> dict[str, Any]:
    return {
        "dose": job.dose,
        "view": str(job.view),
        "split": str(job.split),
        "key": job.key,
        "input_npz": str(job.input_npz),
        "output_dir": str(job.output_dir),
        "status": status,
        "returncode": returncode,
        "reason": reason,
        **extra,
    }


def _run_job(
    job: Job,
    options: StudyOptions,
    observer: StudyObserver,
    reconstruct_fn: ReconstructFn,
) -> dict[str, Any]:
    """Run or resume one job and return its manifest record (never raises but for Ctrl-C)."""
    job_options = ReconstructOptions(
        input_npz=job.input_npz, output_dir=job.output_dir, settings=options.settings
    )
    try:
        input_sha = file_sha256(job.input_npz)
    except OSError as exc:
        return _record(job, "failed", EXIT_USAGE, f"{job.input_npz}: {exc.strerror}")
    fingerprint = job_fingerprint(input_sha, job_options)
    if not options.force and _is_current(job, fingerprint):
        previous = json.loads((job.output_dir / RESULT_JSON).read_text())
        return _record(
            job,
            "resumed",
            EXIT_OK,
            "outputs complete and current; not rerun",
            log_path=previous.get("log_path"),
            wall_time_s=0.0,
            input_metadata=previous.get("input_metadata", {}),
            metrics=previous.get("metrics"),
            fingerprint=fingerprint,
            input_sha256=input_sha,
        )
    (job.output_dir / JOB_JSON).unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        result = reconstruct_fn(job_options, on_epoch=observer.epoch)
    except Exception as exc:  # reconstruct never raises; a stub or a bug might
        return _record(
            job,
            "failed",
            EXIT_FAILED,
            f"unexpected error: {type(exc).__name__}: {exc}",
            wall_time_s=time.perf_counter() - start,
            fingerprint=fingerprint,
        )
    if result.ok:
        write_json(
            job.output_dir / JOB_JSON,
            {"fingerprint": fingerprint, "input_sha256": input_sha, "key": job.key},
        )
    return _record(
        job,
        result.status,
        result.returncode,
        result.message,
        log_path=result.log_path,
        wall_time_s=result.wall_time_s,
        n_patterns=result.n_patterns,
        device=result.device,
        epochs_run=result.epochs_run,
        final_loss=result.final_loss,
        input_metadata=result.input_metadata,
        metrics=result.metrics,
        fingerprint=fingerprint,
        input_sha256=input_sha,
    )


Outcomes = Iterator[tuple[Job, dict[str, Any]]]
"""An executor yields (job, manifest record) as jobs end; after Ctrl-C it yields a record
with status `interrupted` for each job it did not finish, then stops."""
Executor = Callable[[list[Job], StudyOptions, StudyObserver, ReconstructFn], Outcomes]


def execute_local(
    jobs: list[Job], options: StudyOptions, observer: StudyObserver, reconstruct_fn: ReconstructFn
) -> Outcomes:
    """Run the jobs one after another in this process."""
    for index, job in enumerate(jobs, start=1):
        observer.job_started(job, index, len(jobs))
        try:
            record = _run_job(job, options, observer, reconstruct_fn)
        except KeyboardInterrupt:
            yield job, _interrupted(job)
            return
        yield job, record
        gc.collect()


def _interrupted(job: Job) -> dict[str, Any]:
    return _record(job, "interrupted", EXIT_INTERRUPTED, "interrupted by the user")


def _executor(options: StudyOptions) -> Executor:
    if options.executor == "dask":
        from flyrecon.dask_executor import execute_dask

        return execute_dask
    return execute_local


def run_study(
    options: StudyOptions,
    *,
    observer: StudyObserver | None = None,
    reconstruct_fn: ReconstructFn | None = None,
) -> StudyResult:
    """Run the selected jobs (in this process, or on Dask); return the exit code and records.

    Raises `InputError` (exit 2) when the filters select nothing or an input is missing (unless
    `allow_missing_phase_d` covers it), and `StudyLockError` when another run holds the root.
    """
    observer = observer or StudyObserver()
    reconstruct_fn = reconstruct_fn or reconstruct
    plan = plan_study(options)
    if not plan.selected:
        raise InputError(
            options.phase_c_root,
            f"the filters select none of the {len(plan.all_jobs)} jobs "
            f"(doses found: {list(plan.doses_found) or 'none'})",
        )
    skips = check_inputs(plan, options.allow_missing_phase_d)
    skipped_keys = {job.key for job, _ in skips}
    with study_lock(options.artifact_root):
        manifest = _Manifest(options, plan)
        manifest.skipped = [
            {
                "dose": j.dose,
                "view": str(j.view),
                "split": str(j.split),
                "phase": j.phase,
                "reason": reason,
            }
            for j, reason in skips
        ]
        manifest.records = [_record(j, "skipped", EXIT_OK, r) for j, r in skips]
        path = manifest.write("running")
        to_run = [job for job in plan.selected if job.key not in skipped_keys]
        interrupted = False
        try:
            for job, record in _executor(options)(to_run, options, observer, reconstruct_fn):
                interrupted |= record["status"] == "interrupted"
                manifest.records.append(record)
                manifest.write("interrupted" if interrupted else "running")
                observer.job_finished(job, record)
        except BaseException:
            manifest.write("aborted")  # e.g. the cluster could not be set up: say so on disk
            raise
        result = StudyResult(
            exit_code=EXIT_OK,
            message="",
            plan=plan,
            records=manifest.records,
            skipped=manifest.skipped,
            manifest_path=path,
        )
        result.exit_code, result.message = _verdict(result, interrupted, len(to_run))
        result.report_paths = _write_report(options.artifact_root, manifest.records)
        manifest.write("interrupted" if interrupted else "finished")
    return result


def _write_report(artifact_root: Path, records: list[dict[str, Any]]) -> list[Path]:
    """The study summary and figures; a failure here never fails the study's jobs."""
    from flyrecon.report import write_report

    try:
        return write_report(artifact_root, records).paths
    except Exception as exc:  # a figure must not turn finished work into a crash
        import logging

        logging.getLogger("flyrecon").warning("study report not written: %s", exc)
        return []


def _verdict(result: StudyResult, interrupted: bool, runnable: int) -> tuple[int, str]:
    failed = [r for r in result.records if r["status"] in ("failed", "invalid")]
    done = result.count("succeeded") + result.count("resumed")
    if interrupted:
        return EXIT_INTERRUPTED, f"interrupted after {done} finished job(s)"
    if runnable == 0:
        return EXIT_USAGE, (
            f"no job ran: all {len(result.records)} selected job(s) were skipped "
            "(missing phase D inputs)"
        )
    if failed:
        keys = ", ".join(r["key"] for r in failed)
        return EXIT_FAILED, f"{len(failed)} of {runnable} job(s) failed: {keys}"
    return EXIT_OK, f"{done} job(s) succeeded ({result.count('resumed')} already current)"
