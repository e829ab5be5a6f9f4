"""One study job: resume it or reconstruct it, and return its manifest record.

`run_job` is the one job function every executor runs (in this process, in worker processes,
on Dask workers); it never raises for a failed job. A job is *current*, and is not rerun, when
its folder holds a succeeded result.json and a job.json stamped with the same fingerprint: the
hash of its input's bytes, the reconstruction settings and flyrecon's version.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from flyrecon import __version__, layout
from flyrecon.engine import EngineFn, EpochCallback
from flyrecon.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, FlyreconError, one_line
from flyrecon.hashing import file_sha256
from flyrecon.options import PhysicalGeometry, ReconSettings, ReconstructOptions, StudyOptions
from flyrecon.records import JobRecord, JobResult, JobStamp, JobStatus, read_record, write_record
from flyrecon.study.plan import Job

ReconstructFn = Callable[..., JobResult]
"""`reconstruct(options, *, on_epoch=None, engine=None) -> JobResult`."""


class JobFunction(Protocol):
    """What an executor runs for each job (`run_job`, or a stand-in in tests)."""

    def __call__(
        self, job: Job, options: StudyOptions, on_epoch: EpochCallback | None = None
    ) -> JobRecord: ...


def job_fingerprint(
    input_sha256: str, settings: ReconSettings, geometry: PhysicalGeometry | None = None
) -> str:
    """A hash of what decides a job's result: input bytes, settings, the physical geometry
    given for inputs that record none (it goes into the product) and flyrecon's version."""
    record: dict[str, Any] = {
        "input_sha256": input_sha256,
        "settings": settings.model_dump(mode="json"),
        "flyrecon_version": __version__,
    }
    if geometry is not None:
        record["geometry"] = geometry.model_dump(mode="json")
    payload = json.dumps(record, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _current_result(job: Job, fingerprint: str) -> JobResult | None:
    """The job's stored result when its outputs are complete and made by `fingerprint`."""
    try:
        result = read_record(job.output_dir / layout.RESULT_JSON, JobResult)
        stamp = read_record(job.output_dir / layout.JOB_JSON, JobStamp)
    except FlyreconError:
        return None
    if (
        result.status == JobStatus.SUCCEEDED
        and stamp.fingerprint == fingerprint
        and Path(result.input_npz).name == job.input_npz.name  # the root may be written otherwise
        and _outputs_complete(job.output_dir, scored=result.metrics is not None)
    ):
        return result
    return None


def _outputs_complete(folder: Path, *, scored: bool) -> bool:
    """Whether a succeeded job's files are all there (metrics only when it was scored) and
    its result NPZ is a whole archive (a truncated one has no central directory)."""
    names = [layout.RESULT_NPZ, layout.PRODUCT_H5, layout.FIGURE_PNG]
    if scored:
        names.append(layout.METRICS_JSON)
    if not all((folder / name).is_file() for name in names):
        return False
    return zipfile.is_zipfile(folder / layout.RESULT_NPZ)


def job_record(
    job: Job, status: JobStatus, returncode: int, reason: str, **fields: Any
) -> JobRecord:
    """The manifest record of `job`."""
    return JobRecord(
        dose=job.dose,
        view=job.view,
        split=job.split,
        key=job.key,
        input_npz=str(job.input_npz),
        output_dir=str(job.output_dir),
        status=status,
        returncode=returncode,
        reason=reason,
        **fields,
    )


def interrupted_record(job: Job) -> JobRecord:
    reason = "interrupted before it finished"
    return job_record(job, JobStatus.INTERRUPTED, EXIT_INTERRUPTED, reason)


def failed_record(job: Job, reason: str, **fields: Any) -> JobRecord:
    return job_record(job, JobStatus.FAILED, EXIT_FAILED, reason, **fields)


def run_job(
    job: Job,
    options: StudyOptions,
    on_epoch: EpochCallback | None = None,
    *,
    engine: EngineFn | None = None,
    reconstruct_fn: ReconstructFn | None = None,
) -> JobRecord:
    """Resume or run one job and return its record (never raises, but for Ctrl-C).

    `engine` replaces `engine.run_engine`, `reconstruct_fn` replaces `reconstruct` (tests run
    the job with stand-ins, e.g. `functools.partial(run_job, engine=fake)`).
    """
    if reconstruct_fn is None:
        from flyrecon.reconstruct import reconstruct as reconstruct_fn

    job_options = ReconstructOptions(
        input_npz=job.input_npz,
        output_dir=job.output_dir,
        settings=options.settings,
        geometry=options.geometry,
    )
    try:
        input_sha = file_sha256(job.input_npz)
    except OSError as exc:
        return job_record(
            job, JobStatus.FAILED, EXIT_USAGE, f"{job.input_npz}: {exc.strerror or exc}"
        )
    fingerprint = job_fingerprint(input_sha, options.settings, options.geometry)
    if not options.force:
        previous = _current_result(job, fingerprint)
        if previous is not None:
            return _record_from_result(
                job, previous, reused=True, fingerprint=fingerprint, input_sha256=input_sha
            )
    stamp_path = job.output_dir / layout.JOB_JSON
    try:
        stamp_path.unlink(missing_ok=True)
    except OSError as exc:  # e.g. the job's folder is a file, or job.json a folder
        where = exc.filename or stamp_path
        return job_record(job, JobStatus.INVALID, EXIT_USAGE, f"{where}: {exc.strerror or exc}")
    start = time.perf_counter()
    try:
        result = reconstruct_fn(job_options, on_epoch=on_epoch, engine=engine)
    except Exception as exc:  # reconstruct never raises; a bug might
        return failed_record(
            job,
            f"unexpected error: {one_line(exc)}",
            wall_time_s=time.perf_counter() - start,
            fingerprint=fingerprint,
        )
    if result.ok:
        try:
            write_record(
                stamp_path,
                JobStamp(fingerprint=fingerprint, input_sha256=input_sha, key=job.key),
            )
        except OSError as exc:  # the result stands; only a later resume will redo it
            result.message += f" (not stamped for resume: {stamp_path}: {exc.strerror or exc})"
    return _record_from_result(job, result, fingerprint=fingerprint, input_sha256=input_sha)


def _record_from_result(job: Job, result: JobResult, **fields: Any) -> JobRecord:
    """The record of `job` from its result (result.json), with `fields` added."""
    return job_record(
        job,
        result.status,
        result.returncode,
        result.message,
        wall_time_s=result.wall_time_s,
        **_result_fields(result),
        **fields,
    )


def _result_fields(result: JobResult) -> dict[str, Any]:
    """What a job's record takes from its result."""
    return {
        "log_path": result.log_path,
        "n_patterns": result.n_patterns,
        "device": result.device,
        "epochs_run": result.epochs_run,
        "coarse_epochs": result.coarse_epochs,
        "stop_kind": result.stop_kind,
        "stop_reason": result.stop_reason,
        "final_loss": result.final_loss,
        "input_metadata": result.input_metadata,
        "metrics": result.metrics,
    }
