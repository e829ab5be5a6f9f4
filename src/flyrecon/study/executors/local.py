"""Run study jobs one after the other in this process."""

from __future__ import annotations

import gc

from flyrecon.options import StudyOptions
from flyrecon.study.executors.base import Outcomes
from flyrecon.study.jobs import JobFunction, interrupted_record
from flyrecon.study.observer import StudyObserver
from flyrecon.study.plan import Job


def execute_local(
    jobs: list[Job], options: StudyOptions, job_fn: JobFunction, observer: StudyObserver
) -> Outcomes:
    """Run the jobs in order; Ctrl-C records the running job interrupted and stops."""
    for index, job in enumerate(jobs, start=1):
        observer.job_started(job, index, len(jobs))

        def on_epoch(done: int, total: int, loss: float, job: Job = job) -> None:
            observer.job_progress(job, done, total, loss)

        try:
            record = job_fn(job, options, on_epoch)
        except KeyboardInterrupt:
            yield job, interrupted_record(job)
            return
        yield job, record
        gc.collect()
