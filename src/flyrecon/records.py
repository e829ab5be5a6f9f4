"""The study's records on disk, as typed models: one definition each, validated on read.

- `JobResult`: a job's `result.json` (what `reconstruct` returns and writes).
- `JobRecord`: one entry of the manifest's `execution_results`.
- `Manifest`: `reconstruction_manifest.json`; `SkipSummary`: `skip_summary.json`.
- `JobStamp`: `job.json`, what made a job's outputs (resume compares it).

Every file is written from its model (`write_record`) and read through it (`read_record`), so
a renamed key fails loudly instead of blanking output. Reading ignores keys a model does not
know and fills keys it lacks with their defaults, so manifests written by flyrecon 0.1 still
load. The JSON schemas are generated into docs/schemas/ (`python -m flyrecon.records`).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flyrecon import __version__
from flyrecon.atomic import write_text
from flyrecon.errors import EXIT_OK, InputError
from flyrecon.options import Split, View


class JobStatus(StrEnum):
    """How a job ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The reconstruction failed (return code 1)."""
    INVALID = "invalid"
    """Its input or output location was unusable (return code 2)."""
    SKIPPED = "skipped"
    """Not run: its phase D input is missing and --allow-missing-phase-d was given."""
    INTERRUPTED = "interrupted"
    """Ctrl-C arrived before it finished (return code 130)."""
    RESUMED = "resumed"
    """Written by flyrecon 0.1 for a job it did not rerun; today such a job keeps its own
    status and is marked `reused`."""


class StudyState(StrEnum):
    """Where a study run stands, as its manifest says."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    ABORTED = "aborted"
    """It stopped on an error of its own (e.g. the cluster could not be set up)."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)


class JobResult(_Record):
    """One reconstruction's outcome: `reconstruct`'s return value and its result.json."""

    returncode: int
    status: JobStatus
    message: str = ""
    """One line: a summary on success, the reason on failure."""
    input_npz: str
    output_dir: str
    wall_time_s: float = 0.0
    n_patterns: int | None = None
    device: str | None = None
    epochs_run: int = 0
    coarse_epochs: int = 0
    """Epochs at half resolution before `epochs_run` (scans with little overlap; 0: none)."""
    stop_kind: str | None = None
    """`noise floor`, `converged`, `max epochs` or `fixed epochs` (convergence.StopKind)."""
    stop_reason: str | None = None
    final_loss: float | None = None
    metrics: dict[str, Any] | None = None
    log_path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    """The reconstruction settings (`ReconSettings`) as JSON."""
    input_metadata: dict[str, Any] = Field(default_factory=dict)
    doubts: list[str] = Field(default_factory=list)
    """What looked like a unit or layout slip in the input (`data.doubts_about`)."""
    flyrecon_version: str = __version__
    traceback: str | None = Field(default=None, exclude=True)
    """The traceback of an unexpected failure (shown by --debug; never written)."""

    @property
    def ok(self) -> bool:
        return self.returncode == EXIT_OK


class JobRecord(_Record):
    """One job in the manifest's `execution_results`."""

    dose: int
    view: View
    split: Split
    key: str
    """`dose_<int>/<view>/<split>`."""
    input_npz: str
    output_dir: str
    status: JobStatus
    returncode: int
    reason: str
    log_path: str | None = None
    wall_time_s: float | None = None
    n_patterns: int | None = None
    device: str | None = None
    epochs_run: int | None = None
    coarse_epochs: int | None = None
    """Epochs at half resolution before `epochs_run` (scans with little overlap)."""
    stop_kind: str | None = None
    stop_reason: str | None = None
    final_loss: float | None = None
    input_metadata: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    fingerprint: str | None = None
    """Hash of the input bytes, the settings and flyrecon's version (resume compares it)."""
    reused: bool = False
    """Not rerun: its outputs were complete and made from the same input and settings; the
    record (status, wall time, epochs, metrics) is the one of the run that made them."""
    input_sha256: str | None = None
    worker: str | None = None
    """Where the job ran when not in this process (a Dask worker's or a process's address)."""
    torch_threads: int | None = None


class JobEntry(_Record):
    """One selected job in the manifest's `jobs`."""

    dose: int
    view: View
    split: Split
    input_npz: str
    output_dir: str
    algorithm: str
    num_epochs: int | None


class Filters(_Record):
    dose: list[int] = Field(default_factory=list)
    view: list[View] = Field(default_factory=list)
    split: list[Split] = Field(default_factory=list)


class Manifest(_Record):
    """reconstruction_manifest.json: the plan, the filters and every job's record."""

    timestamp: str
    started: str | None = None
    state: StudyState = StudyState.FINISHED
    flyrecon_version: str | None = None
    phase_c_root: str
    phase_d_root: str
    artifact_root: str
    filters: Filters = Field(default_factory=Filters)
    settings: dict[str, Any] = Field(default_factory=dict)
    doses_found: list[int] = Field(default_factory=list)
    total_jobs: int
    filtered_jobs: int
    filtered_out: int = 0
    missing_jobs: int = 0
    reused_jobs: int = 0
    """Jobs whose outputs were reused from an earlier run (not rerun)."""
    jobs: list[JobEntry] = Field(default_factory=list)
    execution_results: list[JobRecord] = Field(default_factory=list)


class SkippedJob(_Record):
    dose: int
    view: View
    split: Split
    phase: str
    """`C` (baseline) or `D` (dense, sparse)."""
    reason: str


class SkipSummary(_Record):
    """skip_summary.json: the jobs not run for a missing phase D input."""

    timestamp: str
    skipped_count: int
    skipped_jobs: list[SkippedJob] = Field(default_factory=list)
    missing_phase_d_count: int = 0


class JobStamp(_Record):
    """job.json: what made a job's outputs."""

    fingerprint: str
    input_sha256: str
    key: str


RecordT = TypeVar("RecordT", bound=BaseModel)

SCHEMAS: dict[str, type[BaseModel]] = {
    "result": JobResult,
    "manifest": Manifest,
    "skip_summary": SkipSummary,
    "job_stamp": JobStamp,
}
"""Record files and their models (docs/schemas/<name>.schema.json)."""


def write_record(path: Path, record: BaseModel) -> Path:
    """Write `record` as indented JSON, atomically."""
    return write_text(path, record.model_dump_json(indent=2) + "\n")


def read_record(path: Path, model: type[RecordT]) -> RecordT:
    """Read and validate a record file; `InputError` (one line) when it is unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or None
        raise InputError(path, f"not a valid {model.__name__}: {first['msg']}", where) from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema of every record file."""
    return {name: model.model_json_schema() for name, model in SCHEMAS.items()}


def write_schemas(folder: Path) -> list[Path]:
    """Write docs/schemas/<name>.schema.json for every record file."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_text(folder / f"{name}.schema.json", json.dumps(schema, indent=2) + "\n")
        for name, schema in json_schemas().items()
    ]


if __name__ == "__main__":  # python -m flyrecon.records [FOLDER]
    import sys

    for written in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")):
        print(written)
