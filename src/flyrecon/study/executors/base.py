"""The executor interface: what every executor is called with and what it yields."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol

from flyrecon.options import StudyOptions
from flyrecon.records import JobRecord
from flyrecon.study.jobs import JobFunction
from flyrecon.study.observer import StudyObserver
from flyrecon.study.plan import Job

Outcomes = Iterator[tuple[Job, JobRecord]]
"""(job, record) as each job ends; after Ctrl-C an `interrupted` record for each job not
finished, then the end."""


class Executor(Protocol):
    def __call__(
        self,
        jobs: list[Job],
        options: StudyOptions,
        job_fn: JobFunction,
        observer: StudyObserver,
    ) -> Outcomes: ...


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask: cgroups and SLURM cpusets count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
