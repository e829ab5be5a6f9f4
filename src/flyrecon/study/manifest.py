"""The manifest and skip summary of a study run, rewritten atomically after every change."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from flyrecon import __version__, layout
from flyrecon.options import StudyOptions
from flyrecon.records import (
    Filters,
    JobEntry,
    JobRecord,
    Manifest,
    SkippedJob,
    SkipSummary,
    StudyState,
    read_record,
    write_record,
)
from flyrecon.study.plan import Job, StudyPlan


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def job_entry(job: Job, options: StudyOptions) -> JobEntry:
    return JobEntry(
        dose=job.dose,
        view=job.view,
        split=job.split,
        input_npz=str(job.input_npz),
        output_dir=str(job.output_dir),
        algorithm=str(options.settings.algorithm),
        num_epochs=options.settings.num_epochs,
    )


class ManifestWriter:
    """Holds the study's records and writes the manifest and skip summary on every change."""

    def __init__(self, options: StudyOptions, plan: StudyPlan) -> None:
        self.options = options
        self.plan = plan
        self.records: list[JobRecord] = []
        self.skipped: list[SkippedJob] = []
        self.started = now()

    @property
    def path(self) -> Path:
        return self.options.artifact_root / layout.MANIFEST_JSON

    def write(self, state: StudyState) -> Path:
        o = self.options
        root = o.artifact_root
        write_record(
            root / layout.SKIP_JSON,
            SkipSummary(
                timestamp=now(),
                skipped_count=len(self.skipped),
                skipped_jobs=self.skipped,
                missing_phase_d_count=sum(1 for s in self.skipped if s.phase == "D"),
            ),
        )
        return write_record(
            self.path,
            Manifest(
                timestamp=now(),
                started=self.started,
                state=state,
                flyrecon_version=__version__,
                phase_c_root=str(o.phase_c_root),
                phase_d_root=str(o.phase_d_root),
                artifact_root=str(root),
                filters=Filters(dose=list(o.doses), view=list(o.views), split=list(o.splits)),
                settings=o.settings.model_dump(mode="json"),
                doses_found=list(self.plan.doses_found),
                total_jobs=len(self.plan.all_jobs),
                filtered_jobs=len(self.plan.selected),
                filtered_out=self.plan.filtered_out,
                missing_jobs=len(self.skipped),
                reused_jobs=sum(1 for r in self.records if r.reused),
                jobs=[job_entry(job, o) for job in self.plan.selected],
                execution_results=self.records,
            ),
        )


def load_manifest(artifact_root: Path) -> Manifest:
    """The manifest at `artifact_root` (`InputError`, one line, when missing or unusable)."""
    path = artifact_root / layout.MANIFEST_JSON
    if not path.exists():
        from flyrecon.errors import InputError

        raise InputError(path, "no study manifest here (run flyrecon study-run first)")
    return read_record(path, Manifest)
