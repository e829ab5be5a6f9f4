"""Run a study: every selected job through the same job function, on the chosen executor.

The manifest and skip summary are rewritten atomically after every job, so they are valid
JSON at every instant; a job's failure is recorded and the study goes on; a rerun skips jobs
whose outputs are complete and whose input and settings are unchanged. Only one study-run may
use an artifact root at a time (a lock file).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from flyrecon import layout
from flyrecon.atomic import unwritable_dir_reason
from flyrecon.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    FlyreconError,
    InputError,
)
from flyrecon.options import StudyOptions, View
from flyrecon.records import JobRecord, JobStatus, SkippedJob, StudyState
from flyrecon.study.executors import executor_for
from flyrecon.study.jobs import JobFunction, job_record, run_job
from flyrecon.study.manifest import ManifestWriter
from flyrecon.study.observer import StudyObserver
from flyrecon.study.plan import Job, StudyPlan, plan_study

FAILED_STATUSES = (JobStatus.FAILED, JobStatus.INVALID)


@dataclass
class StudyResult:
    """What a study run did."""

    exit_code: int
    message: str
    plan: StudyPlan
    records: list[JobRecord] = field(default_factory=list)
    skipped: list[SkippedJob] = field(default_factory=list)
    manifest_path: Path | None = None
    report_paths: list[Path] = field(default_factory=list)

    def count(self, status: JobStatus) -> int:
        return sum(1 for r in self.records if r.status == status)


class StudyLockError(FlyreconError):
    """Another study-run holds the artifact root."""


@contextmanager
def study_lock(artifact_root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the artifact root; refuse at once if another run holds it."""
    artifact_root.mkdir(parents=True, exist_ok=True)
    path = artifact_root / layout.LOCK_NAME
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


def validate_study(options: StudyOptions) -> tuple[StudyPlan, list[tuple[Job, str]]]:
    """The plan and the jobs to skip, or `InputError` (one line): a missing input root, filters
    that select nothing, a missing input (unless `allow_missing_phase_d` covers it). A real
    run and `--dry-run` give the same messages."""
    views = set(options.views or View)
    needs_d = bool(views - {View.BASELINE})
    if not options.phase_c_root.is_dir() and View.BASELINE in views:
        raise InputError(options.phase_c_root, "phase C root not found")
    if needs_d and not options.phase_d_root.is_dir() and not options.allow_missing_phase_d:
        raise InputError(
            options.phase_d_root, "phase D root not found (or pass --allow-missing-phase-d)"
        )
    problem = unwritable_dir_reason(options.artifact_root)
    if problem:
        raise InputError(options.artifact_root, f"artifact root {problem}")
    plan = plan_study(options)
    if not plan.selected:
        raise InputError(
            options.phase_c_root,
            f"the filters select none of the {len(plan.all_jobs)} jobs "
            f"(doses found: {list(plan.doses_found) or 'none'})",
        )
    return plan, check_inputs(plan, options.allow_missing_phase_d)


def run_study(
    options: StudyOptions,
    *,
    observer: StudyObserver | None = None,
    job_fn: JobFunction = run_job,
    report: bool = True,
) -> StudyResult:
    """Run the selected jobs on the chosen executor; return the exit code and records.

    `job_fn` runs one job (`run_job`; tests pass a stand-in); `report` writes the study
    summary and figures at the end (`flyrecon.report`). Raises `InputError` (exit 2)
    when the filters select nothing or an input is missing (unless `allow_missing_phase_d`
    covers it), and `StudyLockError` when another run holds the artifact root.
    """
    observer = observer or StudyObserver()
    plan, skips = validate_study(options)
    skipped_keys = {job.key for job, _ in skips}
    executor = executor_for(options)
    with study_lock(options.artifact_root):
        manifest = ManifestWriter(options, plan)
        manifest.skipped = [
            SkippedJob(dose=j.dose, view=j.view, split=j.split, phase=j.phase, reason=reason)
            for j, reason in skips
        ]
        manifest.records = [job_record(j, JobStatus.SKIPPED, EXIT_OK, r) for j, r in skips]
        path = manifest.write(StudyState.RUNNING)
        to_run = [job for job in plan.selected if job.key not in skipped_keys]
        interrupted = False
        try:
            for job, record in executor(to_run, options, job_fn, observer):
                interrupted |= record.status == JobStatus.INTERRUPTED
                manifest.records.append(record)
                manifest.write(StudyState.INTERRUPTED if interrupted else StudyState.RUNNING)
                observer.job_finished(job, record)
        except BaseException:
            manifest.write(StudyState.ABORTED)  # e.g. the cluster could not be set up
            raise
        result = StudyResult(
            exit_code=EXIT_OK,
            message="",
            plan=plan,
            records=manifest.records,
            skipped=manifest.skipped,
            manifest_path=path,
        )
        result.exit_code, result.message = verdict(result, interrupted, len(to_run))
        if report:
            result.report_paths = _write_report(options.artifact_root, manifest.records)
        manifest.write(StudyState.INTERRUPTED if interrupted else StudyState.FINISHED)
    return result


def _write_report(artifact_root: Path, records: list[JobRecord]) -> list[Path]:
    """The study summary and figures; a failure here never fails the study's jobs."""
    from flyrecon.report import write_report

    try:
        return write_report(artifact_root, records).paths
    except Exception as exc:  # a figure must not turn finished work into a crash
        import logging

        logging.getLogger("flyrecon").warning("study report not written: %s", exc)
        return []


def verdict(result: StudyResult, interrupted: bool, runnable: int) -> tuple[int, str]:
    """The study's exit code and one-line message."""
    failed = [r for r in result.records if r.status in FAILED_STATUSES]
    done = result.count(JobStatus.SUCCEEDED) + result.count(JobStatus.RESUMED)
    reused = sum(1 for r in result.records if r.reused)
    if interrupted:
        return EXIT_INTERRUPTED, f"interrupted after {done} finished job(s)"
    if runnable == 0:
        return EXIT_USAGE, (
            f"no job ran: all {len(result.records)} selected job(s) were skipped "
            "(missing phase D inputs)"
        )
    if failed:
        keys = ", ".join(r.key for r in failed)
        return EXIT_FAILED, f"{len(failed)} of {runnable} job(s) failed: {keys}"
    return EXIT_OK, f"{done} job(s) succeeded ({reused} reused from an earlier run)"
