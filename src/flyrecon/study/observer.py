"""Progress events of a study run: the CLI draws them, tests may record them."""

from __future__ import annotations

from flyrecon.records import JobRecord
from flyrecon.study.plan import Job


class StudyObserver:
    """Receives progress events; every method does nothing unless overridden."""

    def job_started(self, job: Job, index: int, total: int) -> None:
        """A job begins (index counts from 1)."""

    def epoch(self, done: int, total: int, loss: float) -> None:
        """An epoch of the running job ended (the latest job's, when several run at once)."""

    def job_progress(self, job: Job, done: int, total: int, loss: float) -> None:
        """An epoch of `job` ended; by default, `epoch`."""
        self.epoch(done, total, loss)

    def job_finished(self, job: Job, record: JobRecord) -> None:
        """A job ended (ran, failed, was resumed or skipped)."""
