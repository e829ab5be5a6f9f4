"""Rich progress bars on stderr, shared by the commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from flyrecon.cli._errors import err_console

StepCallback = Callable[[str, int, int], None]
"""Called as (description, steps done, steps total)."""


def make_progress() -> Progress:
    """A transient progress display: description, bar, done/total, elapsed time."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


@contextmanager
def step_bar(description: str) -> Iterator[StepCallback]:
    """One bar; yields the callback that moves it. Off a terminal there is no bar (rich would
    leave an empty line where it stood, ahead of any error)."""
    if not err_console.is_terminal:
        yield lambda text, done, total: None
        return
    progress = make_progress()
    task = progress.add_task(description, total=None)

    def on_step(text: str, done: int, total: int) -> None:
        progress.update(task, completed=done, total=total, description=text)

    with progress:
        yield on_step


HEARTBEAT_S = 10.0
"""At most this long between two progress lines of a running job when not on a terminal."""


class LogLines:
    """Progress for a log (CI, a batch job, `tee`): a line when each job starts, a heartbeat
    (epoch, loss, elapsed) at most every HEARTBEAT_S seconds per job, a line when it ends.
    A context manager yielding a `StudyObserver`."""

    def __init__(self, console) -> None:
        self.console = console

    def __enter__(self):
        import time

        from flyrecon.study.observer import StudyObserver

        console = self.console
        started: dict[str, float] = {}
        said: dict[str, float] = {}

        def line(text: str) -> None:
            console.print(f"{time.strftime('%H:%M:%S')} {text}", markup=False, highlight=False)

        class Observer(StudyObserver):
            def job_started(self, job, index, total):
                started[job.key] = said[job.key] = time.monotonic()
                line(f"job {index}/{total} {job.key}: started")

            def job_progress(self, job, done, total, loss):
                now = time.monotonic()
                if now - said.get(job.key, 0.0) >= HEARTBEAT_S or done == total:
                    said[job.key] = now
                    elapsed = now - started.get(job.key, now)
                    line(f"  {job.key}: epoch {done}/{total}, loss {loss:.4g}, {elapsed:.0f} s")

            def job_finished(self, job, record):
                reason = "" if record.returncode == 0 else f": {record.reason}"
                reused = " (reused)" if record.reused else ""
                line(f"{job.key}: {record.status}{reused} (rc {record.returncode}){reason}")

        return Observer()

    def __exit__(self, *exc: object) -> None:
        return None


@contextmanager
def epoch_progress() -> Iterator[Callable[[int, int, float], None]]:
    """The epochs of one reconstruction: a bar on a terminal, heartbeat lines in a log."""
    if err_console.is_terminal:
        with step_bar("epochs") as step:
            yield lambda done, total, loss: step(f"epochs (loss {loss:.4g})", done, total)
        return
    import time

    start = time.monotonic()
    said = [start]

    def on_epoch(done: int, total: int, loss: float) -> None:
        now = time.monotonic()
        if now - said[0] >= HEARTBEAT_S:
            said[0] = now
            err_console.print(
                f"{time.strftime('%H:%M:%S')} epoch {done}/{total}, loss {loss:.4g}, "
                f"{now - start:.0f} s",
                markup=False,
                highlight=False,
            )

    yield on_epoch
