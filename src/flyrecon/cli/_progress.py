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
    """One bar; yields the callback that moves it."""
    progress = make_progress()
    task = progress.add_task(description, total=None)

    def on_step(text: str, done: int, total: int) -> None:
        progress.update(task, completed=done, total=total, description=text)

    with progress:
        yield on_step
