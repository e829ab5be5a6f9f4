"""Run study jobs in parallel on this machine: N worker processes, one job each at a time.

`study-run --jobs N`. Workers are started with `spawn` (a clean interpreter: no forked torch
or CUDA state) and stay up for the whole study, so each pays its imports once. On the CPU each
worker gets `cores // N` torch threads unless `--threads` says otherwise (set in the worker,
not in the settings, so a job's fingerprint, and so resume, is the same as with `--jobs 1`);
with `--device cuda` or `auto` the workers share the GPU, or on a machine with several take
them in turn (worker k uses GPU k mod their number; `CUDA_VISIBLE_DEVICES` chooses which).

A worker that dies (killed, out of memory, crashed) fails only the job it held, with the
reason; a new worker takes its place and the study goes on. Ctrl-C stops the workers and
records every unfinished job `interrupted`. SIGTERM to a worker (this process stopping it, or
a batch scheduler signalling every process of the job) ends its job as Ctrl-C would, partial
files discarded, and the worker quietly. Only this process writes the manifest.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from flyrecon.errors import one_line, raise_terminated
from flyrecon.options import Device, StudyOptions
from flyrecon.study.executors.base import Outcomes, available_cores
from flyrecon.study.jobs import JobFunction, failed_record, interrupted_record
from flyrecon.study.observer import StudyObserver
from flyrecon.study.plan import Job

POLL_S = 0.2
"""How often the parent looks for dead workers while waiting for messages."""
STOP_GRACE_S = 5.0
"""How long stopped workers get to exit before they are killed."""


def threads_per_job(options: StudyOptions, jobs: int) -> int | None:
    """torch threads of each worker: `--threads`, else this machine's cores split between the
    jobs on the CPU, else (CUDA) torch's default."""
    if options.settings.threads is not None:
        return options.settings.threads
    if options.settings.device == Device.CUDA:
        return None
    return max(1, available_cores() // max(1, jobs))


def use_gpu_of_slot(slot: int) -> None:
    """Make GPU `slot` mod their number this process's CUDA device, where torch sees several.
    A GPU that cannot be used is left to the run to report (`engine.usable_device`)."""
    import torch

    try:
        count = torch.cuda.device_count()
        if count > 1:
            torch.cuda.set_device(slot % count)
    except Exception:  # the run reports an unusable GPU
        return


def _worker(
    worker_id: int,
    slot: int,
    tasks: Any,
    results: Any,
    job_fn: JobFunction,
    options: StudyOptions,
    threads: int | None,
) -> None:
    """A worker process: run the jobs it is given, report epochs and records, until told to
    stop (None). Ctrl-C is the parent's to handle; SIGTERM ends the worker (see the module).
    `slot`: the worker's place in the pool (a replacement takes its predecessor's), which
    chooses its GPU."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, raise_terminated)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if options.settings.device != Device.CPU:
        use_gpu_of_slot(slot)
    try:
        while (job := tasks.get()) is not None:

            def on_epoch(done: int, total: int, loss: float, job: Job = job) -> None:
                results.put(("epoch", worker_id, job.key, (done, total, loss)))

            try:
                record = job_fn(job, options, on_epoch)
                record = record.model_copy(
                    update={"worker": f"process {os.getpid()}", "torch_threads": threads}
                )
            except Exception as exc:  # the job function never raises; a stand-in might
                record = failed_record(job, f"job failed in its worker process ({one_line(exc)})")
            results.put(("done", worker_id, job.key, record))
    except KeyboardInterrupt:  # SIGTERM: the job's partial files are gone; the parent records it
        return


@dataclass
class _Worker:
    process: Any
    tasks: Any
    slot: int
    job: Job | None = None
    started: float = field(default_factory=time.monotonic)


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"its worker process was killed by {name} (out of memory, or killed)"
    return f"its worker process died (exit code {exitcode})"


def execute_processes(
    jobs: list[Job], options: StudyOptions, job_fn: JobFunction, observer: StudyObserver
) -> Outcomes:
    """Run the jobs on `options.jobs` worker processes; yield (job, record) as each ends."""
    n = max(1, min(options.jobs, len(jobs)))
    context = mp.get_context("spawn")
    results = context.Queue()
    threads = threads_per_job(options, n)
    pending = list(jobs)
    by_key = {job.key: job for job in jobs}
    workers: dict[int, _Worker] = {}
    next_id = 0
    started = 0

    def spawn(slot: int) -> int:
        nonlocal next_id
        worker_id, next_id = next_id, next_id + 1
        tasks = context.Queue()
        process = context.Process(
            target=_worker,
            args=(worker_id, slot, tasks, results, job_fn, options, threads),
            name=f"flyrecon-job-{worker_id}",
            daemon=True,
        )
        process.start()
        workers[worker_id] = _Worker(process, tasks, slot)
        return worker_id

    def assign(worker_id: int) -> None:
        nonlocal started
        if not pending:
            return
        job = pending.pop(0)
        worker = workers[worker_id]
        worker.job, worker.started = job, time.monotonic()
        worker.tasks.put(job)
        started += 1
        observer.job_started(job, started, len(jobs))

    try:
        for slot in range(n):
            assign(spawn(slot))
        while any(w.job is not None for w in workers.values()):
            try:
                kind, worker_id, key, payload = results.get(timeout=POLL_S)
            except queue.Empty:
                for worker_id, worker in list(workers.items()):
                    if worker.job is not None and not worker.process.is_alive():
                        job, worker.job = worker.job, None
                        worker.process.join()
                        reason = _death_reason(worker.process.exitcode)
                        del workers[worker_id]
                        yield job, failed_record(job, f"{reason}; the other jobs went on")
                        if pending:
                            assign(spawn(worker.slot))
                continue
            worker = workers.get(worker_id)
            if worker is None or worker.job is None or worker.job.key != key:
                continue  # a message from a worker already written off
            if kind == "epoch":
                observer.job_progress(worker.job, *payload)
                continue
            worker.job = None
            yield by_key[key], payload
            assign(worker_id)
    except KeyboardInterrupt:
        unfinished = [w.job for w in workers.values() if w.job is not None] + pending
        _stop(workers, force=True)
        for job in unfinished:
            yield job, interrupted_record(job)
        return
    finally:
        _stop(workers, force=False)
        results.close()


def _stop(workers: dict[int, _Worker], *, force: bool) -> None:
    """Tell the workers to stop (or terminate them), and wait for them to go."""
    for worker in workers.values():
        if not worker.process.is_alive():
            continue
        if force:
            worker.process.terminate()
        else:
            try:
                worker.tasks.put(None)
            except (OSError, ValueError):
                worker.process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers.values():
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
    workers.clear()
