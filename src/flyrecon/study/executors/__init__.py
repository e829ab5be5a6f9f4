"""Where study jobs run, behind one interface.

An executor is called with the jobs to run, the study options, the job function (`run_job`,
or a stand-in in tests) and an observer; it yields `(job, record)` as each job ends, and after
Ctrl-C an `interrupted` record for every job it did not finish, then stops. Every executor
runs the same public job function; the runner alone writes the manifest.

- `local`: one job after the other in this process (`--jobs 1`).
- `processes`: up to `--jobs N` at once, each in its own worker process on this machine.
- `dask`: on a Dask cluster (`pip install 'flyrecon[dask]'`).
"""

from __future__ import annotations

from flyrecon.options import Executor as ExecutorKind
from flyrecon.options import StudyOptions
from flyrecon.study.executors.base import Executor, Outcomes

__all__ = ["Executor", "Outcomes", "executor_for"]


def executor_for(options: StudyOptions) -> Executor:
    """The executor `options.executor` names (Dask is imported only when asked for)."""
    if options.executor == ExecutorKind.DASK:
        from flyrecon.study.executors.dask import execute_dask

        return execute_dask
    if options.jobs > 1:
        from flyrecon.study.executors.processes import execute_processes

        return execute_processes
    from flyrecon.study.executors.local import execute_local

    return execute_local
