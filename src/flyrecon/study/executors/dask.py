"""Run study jobs on Dask distributed: a LocalCluster of this machine, or a running scheduler.

Each job runs the study's job function (`run_job`: resume, reconstruct, record) on a worker;
only its record (return code, timings, metrics) comes back, and the client alone writes the
manifest (the runner does, after every finished job). A job whose worker dies (killed, out of
memory, crashed) becomes a `failed` record and the other jobs go on; a rerun redoes it. Ctrl-C
cancels the jobs not finished and records them `interrupted`.

Dask is an optional extra (`pip install 'flyrecon[dask]'`); it is imported only here.
"""

from __future__ import annotations

import logging
import os
import queue
import uuid
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

from flyrecon.errors import EXIT_USAGE, FlyreconError, one_line
from flyrecon.options import Device, StudyOptions
from flyrecon.records import JobRecord
from flyrecon.study.executors.base import Outcomes, available_cores
from flyrecon.study.jobs import JobFunction, failed_record, interrupted_record
from flyrecon.study.observer import StudyObserver
from flyrecon.study.plan import Job

INSTALL_HINT = "--executor dask needs the dask extra: pip install 'flyrecon[dask]'"
WAIT_FOR_WORKERS_S = 120.0
"""How long to wait for a first worker when the scheduler has none."""
PROBE_NAME = ".flyrecon-dask-probe"

DASK_CONFIG: dict[str, Any] = {
    # A job whose worker dies is failed at once (the study goes on; a rerun redoes it),
    # never retried on worker after worker.
    "distributed.scheduler.allowed-failures": 0,
    # Hand a single-threaded worker one job at a time: a dying worker takes only its own job.
    "distributed.scheduler.worker-saturation": 1.0,
    # Results are small dicts: nothing to spill; never pause a worker because torch holds
    # memory (a paused worker would stall the study); kill it at 95 % of its limit instead,
    # which fails the job it ran.
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.pause": False,
    "distributed.worker.memory.terminate": 0.95,
}


class DaskSetupError(FlyreconError):
    """Dask cannot run the study: the extra is missing, the scheduler is unreachable, or the
    workers cannot see the study's folders. Exit code 2."""

    exit_code = EXIT_USAGE


def require_dask() -> None:
    """Raise `DaskSetupError` with the install hint when dask[distributed] is missing."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise DaskSetupError(INSTALL_HINT) from None


# --- worker side ------------------------------------------------------------------------


def check_visible(roots: list[str], artifact_root: str, token: str) -> list[str]:
    """On a worker: the problems with the study's folders as this worker sees them.

    The input roots must be folders; the artifact root must hold the probe file the client
    wrote (so it is the same filesystem, not a same-named local folder) and be writable.
    """
    problems = [f"{root}: not found" for root in roots if not Path(root).is_dir()]
    artifact = Path(artifact_root)
    try:
        seen = (artifact / PROBE_NAME).read_text()
    except OSError as exc:
        return [*problems, f"{artifact}: not visible ({exc.strerror or exc})"]
    if seen != token:
        problems.append(f"{artifact}: a different folder than the client's (not shared)")
    probe = artifact / f"{PROBE_NAME}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        probe.write_text(token)
        probe.unlink()
    except OSError as exc:
        problems.append(f"{artifact}: not writable ({exc.strerror or exc})")
    return problems


def _worker_facts() -> dict[str, Any]:
    return {"cores": available_cores(), "pid": os.getpid()}


def run_job_on_worker(
    job: Job,
    options: StudyOptions,
    job_fn: JobFunction,
    threads_by_host: dict[str, int],
    default_threads: int,
    topic: str,
    token: str,
) -> JobRecord:
    """On a worker: announce the start, set torch threads, run the job, return its record.

    When the settings leave threads unset, torch gets this worker thread's share of the
    host's cores. It is set on the worker rather than written into the settings, so the job's
    fingerprint (and so resume) is the same as with the local executor.
    """
    from distributed import get_worker

    worker = get_worker()
    host = worker.address.rsplit(":", 1)[0]
    with suppress(Exception):  # the start event is a courtesy for the progress bar
        worker.log_event(topic, {"job": job.key, "token": token})
    threads = options.settings.threads
    if threads is None:
        import torch

        threads = threads_by_host.get(host, default_threads)
        torch.set_num_threads(threads)
    record = job_fn(job, options)
    return record.model_copy(update={"worker": worker.address, "torch_threads": threads})


# --- client side ------------------------------------------------------------------------


def _connect(options: StudyOptions, stack: ExitStack):
    """A Client on a new LocalCluster (`workers`) or on the given scheduler."""
    import dask
    from distributed import Client, LocalCluster

    if options.workers is not None and options.scheduler_address:
        raise DaskSetupError("give --workers or --scheduler-address, not both")
    address = options.scheduler_address or (
        None if options.workers is not None else dask.config.get("scheduler-address", None)
    )
    if address:
        try:
            client = Client(address, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise DaskSetupError(
                f"cannot reach the Dask scheduler at {address}: {one_line(exc)}"
            ) from None
        stack.callback(client.close)
        _warn_if_retried(client, address)
        return client
    n = options.workers or available_cores()
    gpu = {"GPU": 1} if options.settings.device == Device.CUDA else None
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        memory_limit="auto",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
        resources=gpu,
    )
    stack.callback(cluster.close)
    client = Client(cluster, set_as_default=False)
    stack.callback(client.close)
    return client


def _warn_if_retried(client, address: str) -> None:
    try:
        allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    except Exception:
        return
    if allowed:
        warnings.warn(
            f"the scheduler at {address} retries a job whose worker died {allowed} time(s); "
            "start it with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0 to fail such a "
            "job at once",
            stacklevel=3,
        )


def _check_cluster(client, options: StudyOptions) -> dict[str, Any]:
    """Wait for a worker, check every worker sees the study's folders, and find each worker
    thread's share of its host's cores. Returns what the job wrapper needs."""
    if not client.scheduler_info(n_workers=-1)["workers"]:
        try:
            client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
        except TimeoutError:
            raise DaskSetupError(
                f"no Dask worker joined the scheduler in {WAIT_FOR_WORKERS_S:.0f} s; "
                "start workers first (see docs/cluster.md)"
            ) from None
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if options.settings.device == Device.CUDA and not any(
        w.get("resources", {}).get("GPU", 0) >= 1 for w in workers.values()
    ):
        raise DaskSetupError(
            "--device cuda: no Dask worker offers the resource GPU=1 "
            "(start workers with --resources GPU=1)"
        )
    artifact = Path(options.artifact_root)
    token = uuid.uuid4().hex
    probe = artifact / PROBE_NAME
    probe.write_text(token)
    try:
        roots = [str(options.phase_c_root), str(options.phase_d_root)]
        seen = client.run(check_visible, roots, str(artifact), token)
    finally:
        probe.unlink(missing_ok=True)
    for address, problems in sorted(seen.items()):
        if problems:
            raise DaskSetupError(
                f"Dask worker {address} cannot use the study's folders: {problems[0]} "
                "(the artifact and input roots must be on a filesystem shared with the workers)"
            )
    facts = client.run(_worker_facts)
    threads_on_host: dict[str, int] = {}
    cores_on_host: dict[str, int] = {}
    for address, info in workers.items():
        host = address.rsplit(":", 1)[0]
        threads_on_host[host] = threads_on_host.get(host, 0) + int(info.get("nthreads", 1))
        cores = facts.get(address, {}).get("cores", 1)
        cores_on_host[host] = max(cores_on_host.get(host, 1), cores)
    threads_by_host = {
        host: max(1, cores_on_host[host] // max(1, n)) for host, n in threads_on_host.items()
    }
    return {
        "threads_by_host": threads_by_host,
        "default_threads": min(threads_by_host.values(), default=1),
    }


def _failure_record(job: Job, future) -> JobRecord:
    from distributed.scheduler import KilledWorker

    if future.status == "cancelled":
        return failed_record(job, "the Dask job was cancelled")
    try:
        exc = future.exception(timeout=10)
    except Exception as lost:  # the result was lost with its worker before it came back
        exc = lost
    if exc is None:
        return failed_record(job, "the job's result was lost on the cluster")
    if isinstance(exc, KilledWorker):
        worker = getattr(exc.last_worker, "address", "?")
        reason = (
            f"worker {worker} died while running the job (killed, out of memory or crashed; "
            "KilledWorker); see the worker's log"
        )
    else:
        reason = f"job failed on the Dask cluster ({one_line(exc)})"
    return failed_record(job, reason)


def execute_dask(
    jobs: list[Job], options: StudyOptions, job_fn: JobFunction, observer: StudyObserver
) -> Outcomes:
    """Run the jobs on Dask; yield (job, record) as each ends (see `study.executors`)."""
    require_dask()
    import dask

    with ExitStack() as stack:
        stack.enter_context(dask.config.set(DASK_CONFIG))
        client = _connect(options, stack)
        context = _check_cluster(client, options)
        yield from _submit_and_collect(client, jobs, options, observer, job_fn, context)


def _submit_and_collect(
    client,
    jobs: list[Job],
    options: StudyOptions,
    observer: StudyObserver,
    job_fn: JobFunction,
    context: dict[str, Any],
) -> Iterator[tuple[Job, JobRecord]]:
    run_id = uuid.uuid4().hex[:8]
    topic = f"flyrecon-{run_id}"
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    by_key = {job.key: job for job in jobs}
    with suppress(Exception):  # progress only
        client.subscribe_topic(topic, lambda event: events.put(("start", event[1])))
    resources = {"GPU": 1} if options.settings.device == Device.CUDA else None
    futures = {}
    pending: dict[str, Job] = {}
    started: set[str] = set()
    try:
        for job in jobs:
            future = client.submit(
                run_job_on_worker,
                job,
                options,
                job_fn,
                context["threads_by_host"],
                context["default_threads"],
                topic,
                run_id,
                key=f"flyrecon-{job.key}-{run_id}",
                pure=False,
                retries=0,
                resources=resources,
            )
            futures[job.key] = future
            pending[job.key] = job
            future.add_done_callback(lambda f, key=job.key: events.put(("done", key)))
        while pending:
            try:
                kind, item = events.get(timeout=0.5)
            except queue.Empty:
                continue
            if kind == "start":
                key = item.get("job") if isinstance(item, dict) else None
                if key in pending and key not in started and item.get("token") == run_id:
                    started.add(key)
                    observer.job_started(by_key[key], len(started), len(jobs))
                continue
            if item not in pending:
                continue
            job = pending.pop(item)
            future = futures.pop(item)
            if future.status == "finished":
                try:
                    record = future.result()
                except Exception:  # lost between finishing and fetching its result
                    record = _failure_record(job, future)
            else:
                record = _failure_record(job, future)
            future.release()
            yield job, record
    except KeyboardInterrupt:
        client.cancel(list(futures.values()), force=True)
        for key in list(pending):
            yield pending.pop(key), interrupted_record(by_key[key])
    finally:
        if futures:
            with suppress(Exception):
                client.cancel(list(futures.values()), force=True)
        with suppress(Exception):
            client.unsubscribe_topic(topic)


__all__ = ["DaskSetupError", "execute_dask", "require_dask", "run_job_on_worker"]
