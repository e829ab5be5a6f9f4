"""The dose x view x split study: its plan, its jobs, its records and where jobs run.

- `plan`: the job matrix and filters (pure).
- `jobs`: `run_job`, the one job function (resume or reconstruct, and the record).
- `manifest`: the manifest and skip summary, rewritten after every job.
- `runner`: `run_study` (lock, executor, verdict, report).
- `executors`: local (this process) and dask, behind one interface.
"""

from flyrecon.study.plan import Job, StudyPlan, discover_doses, plan_study

__all__ = ["Job", "StudyPlan", "discover_doses", "plan_study"]
