"""`flyrecon study-run`: the dose x view x split matrix, every job in this process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flyrecon.cli import _params as p
from flyrecon.cli._errors import err_console, fail, handled
from flyrecon.cli._tables import STOP_LEGEND, compact_table, epochs_cell, short_stop
from flyrecon.errors import EXIT_USAGE, InputError
from flyrecon.layout import StudyRoot
from flyrecon.options import Executor, Split, StudyOptions, View
from flyrecon.records import JobStatus

if TYPE_CHECKING:
    from flyrecon.records import JobRecord

D = p.DEFAULTS
STUDY = "Study"

_STATUS_STYLE = {
    "succeeded": "green",
    "resumed": "cyan",
    "skipped": "yellow",
    "failed": "red",
    "invalid": "red",
    "interrupted": "magenta",
}


def study_run_command(
    phase_c_root: Annotated[
        Path | None,
        typer.Option(
            "--phase-c-root",
            metavar="DIR",
            help="Phase C: the baseline view (every scan position), as "
            "DIR/dose_<int>/patched_<split>.npz.",
            show_default=False,
            rich_help_panel=STUDY,
            parser=p.path_option,
        ),
    ] = None,
    phase_d_root: Annotated[
        Path | None,
        typer.Option(
            "--phase-d-root",
            metavar="DIR",
            help="Phase D: the dense and sparse overlap views, as "
            "DIR/dose_<int>/<view>/<view>_<split>.npz.",
            show_default=False,
            rich_help_panel=STUDY,
            parser=p.path_option,
        ),
    ] = None,
    artifact_root: Annotated[
        Path | None,
        typer.Option(
            "--artifact-root",
            metavar="DIR",
            help="Where the results, the manifest and the report go.",
            show_default=False,
            rich_help_panel=STUDY,
            parser=p.path_option,
        ),
    ] = None,
    study_root: Annotated[
        Path | None,
        typer.Option(
            "--study-root",
            metavar="DIR",
            help="A prep-synthetic output: phase C and D roots DIR/phase_c and DIR/phase_d, "
            "artifact root DIR/reconstructions (unless given).",
            show_default=False,
            rich_help_panel=STUDY,
            parser=p.path_option,
        ),
    ] = None,
    dose: Annotated[
        list[int] | None,
        typer.Option(
            "--dose",
            metavar="PHOTONS",
            parser=p.parse_dose,
            help="Keep this dose, 1000 or 1e3 alike (repeatable) [default: every dose found].",
            show_default=False,
            rich_help_panel=STUDY,
        ),
    ] = None,
    view: Annotated[
        list[View] | None,
        typer.Option(
            "--view",
            metavar=p.choices(View),
            help="Keep this view (repeatable) [default: all three].",
            case_sensitive=False,
            show_default=False,
            rich_help_panel=STUDY,
        ),
    ] = None,
    split: Annotated[
        list[Split] | None,
        typer.Option(
            "--split",
            metavar=p.choices(Split),
            help="Keep this split (repeatable) [default: both].",
            case_sensitive=False,
            show_default=False,
            rich_help_panel=STUDY,
        ),
    ] = None,
    allow_missing_phase_d: Annotated[
        bool,
        typer.Option(
            "--allow-missing-phase-d",
            help="Record a missing phase D input as a skip instead of failing.",
            rich_help_panel=STUDY,
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="List the jobs and exit (imports no torch).",
            rich_help_panel=STUDY,
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Rerun jobs whose outputs are already current.",
            rich_help_panel=STUDY,
        ),
    ] = False,
    executor: Annotated[
        Executor,
        typer.Option(
            "--executor",
            metavar=p.choices(Executor),
            help="Where jobs run: local (this machine) or dask (a Dask cluster; needs pip "
            "install 'flyrecon[dask]').",
            case_sensitive=False,
            rich_help_panel=STUDY,
        ),
    ] = Executor.LOCAL,
    scheduler_address: Annotated[
        str | None,
        typer.Option(
            "--scheduler-address",
            metavar="URL",
            help="With --executor dask: join this scheduler's cluster (tcp://host:port).",
            show_default=False,
            rich_help_panel=STUDY,
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            min=1,
            metavar="N",
            help="Run up to N jobs at once on this machine, each in its own worker process "
            "(on the CPU each gets cores/N torch threads unless --threads; with --device cuda "
            "they share the GPU). 1 runs them in this process.",
            rich_help_panel=STUDY,
        ),
    ] = 1,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            metavar="N",
            help="With --executor dask: start a local cluster of N single-threaded worker "
            "processes [default: one per core].",
            show_default=False,
            rich_help_panel=STUDY,
        ),
    ] = None,
    algorithm: p.AlgorithmOpt = D.algorithm,
    num_epochs: p.EpochsOpt = None,
    max_epochs: p.MaxEpochsOpt = D.max_epochs,
    n_images: p.NImagesOpt = D.n_images,
    batch_size: p.BatchOpt = D.batch_size,
    device: p.DeviceOpt = D.device,
    seed: p.SeedOpt = 0,
    object_init: p.ObjectInitOpt = D.object_init,
    probe_init: p.ProbeInitOpt = D.probe_init,
    noise_model: p.NoiseOpt = D.noise_model,
    threads: p.ThreadsOpt = D.threads,
    energy_ev: p.EnergyOpt = None,
    distance_m: p.DistanceOpt = None,
    pixel_size_m: p.PixelSizeOpt = None,
) -> None:
    """Run the study's reconstructions: every dose x view x split job.

    Each job equals one `flyrecon reconstruct` with the same settings, run in this process
    (or in --jobs worker processes, or on Dask). Writes reconstruction_manifest.json and
    skip_summary.json at the artifact root after every job, and the study summary and
    figures at the end; a rerun reuses jobs whose outputs are current. Exit code 0 when every
    selected job succeeded, 1 when any failed, 2 for usage or input errors, 130 when
    interrupted (Ctrl-C), 143 when terminated (SIGTERM, handled as Ctrl-C).
    """
    with handled():
        if study_root is not None:
            if not study_root.is_dir():
                raise InputError(
                    study_root, "study root not found (a prep-synthetic output folder)"
                )
            study = StudyRoot(study_root)
            phase_c_root = phase_c_root or study.phase_c
            phase_d_root = phase_d_root or study.phase_d
            artifact_root = artifact_root or study.reconstructions
        missing = [
            name
            for name, value in (
                ("--phase-c-root", phase_c_root),
                ("--phase-d-root", phase_d_root),
                ("--artifact-root", artifact_root),
            )
            if value is None
        ]
        if missing:
            raise fail(f"missing option {missing[0]} (or give --study-root)", EXIT_USAGE)
        if executor != Executor.DASK and (workers is not None or scheduler_address):
            flag = "--workers" if workers is not None else "--scheduler-address"
            raise fail(f"{flag} needs --executor dask", EXIT_USAGE)
        if workers is not None and scheduler_address:
            raise fail("give --workers or --scheduler-address, not both", EXIT_USAGE)
        if executor == Executor.DASK and not dry_run:
            from flyrecon.study.executors.dask import require_dask

            require_dask()  # DaskSetupError: one line, exit 2
        options = StudyOptions(
            phase_c_root=phase_c_root,
            phase_d_root=phase_d_root,
            artifact_root=artifact_root,
            doses=tuple(dose or ()),
            views=tuple(view or ()),
            splits=tuple(split or ()),
            allow_missing_phase_d=allow_missing_phase_d,
            force=force,
            executor=executor,
            jobs=jobs,
            scheduler_address=scheduler_address,
            workers=workers,
            settings=p.settings_from(locals()),
            geometry=p.geometry_from(energy_ev, distance_m, pixel_size_m),
        )
    if dry_run:
        _dry_run(options)
        return
    from flyrecon.study.runner import run_study

    with handled(), _progress() as observer:
        result = run_study(options, observer=observer)
    err_console.print(_summary_table(result.records))
    _print_notes(result.records)
    err_console.print(f"manifest: {result.manifest_path}")
    for path in result.report_paths:
        err_console.print(f"report: {path}")
    if result.exit_code:
        raise fail(result.message, result.exit_code)
    err_console.print(f"[green]done[/] {result.message}")


def _dry_run(options: StudyOptions) -> None:
    """The jobs a real run would run, after the same checks (and the same messages), each
    input's zip directory looked at (a damaged file is marked; no array is read)."""
    from flyrecon.data import npz_problem
    from flyrecon.study.runner import validate_study

    with handled():
        plan, skips = validate_study(options)
    skipped = {job.key: reason for job, reason in skips}
    table = Table(
        title=f"{len(plan.selected)} of {len(plan.all_jobs)} jobs selected "
        f"({plan.filtered_out} filtered out, {len(skipped)} to skip)"
    )
    for col in ("dose", "view", "split", "input", "output"):
        table.add_column(col)
    unusable: list[str] = []
    for job in plan.selected:
        note = " [yellow](missing: skipped)[/]" if job.key in skipped else ""
        problem = None if note else npz_problem(job.input_npz)
        if problem:
            note = " [red](unusable)[/]"
            unusable.append(f"{job.input_npz}: {problem}")
        table.add_row(
            str(job.dose),
            str(job.view),
            str(job.split),
            f"{job.input_npz}{note}",
            str(job.output_dir),
        )
    err_console.print(table)
    for line in unusable:  # a real run records these jobs invalid
        err_console.print(f"[red]unusable input:[/] {escape(line)}", soft_wrap=True)


def _summary_table(records: list[JobRecord]) -> Table:
    """One row per job, narrow enough for 80 columns; reasons for failures follow it."""
    columns = ("dose", "view", "split", "status", "rc", "ep", "stop", "wall s", "SSIM", "error")
    table = compact_table("study-run", columns)
    for r in records:
        m = r.metrics or {}
        style = _STATUS_STYLE.get(r.status, "")
        ssim = m.get("phase_ssim")
        err = m.get("complex_relative_error")
        table.add_row(
            str(r.dose),
            str(r.view),
            str(r.split),
            f"[{style}]{r.status}[/]" + ("*" if r.reused else ""),
            str(r.returncode),
            epochs_cell(r.epochs_run, r.coarse_epochs),
            short_stop(r.stop_kind),
            f"{r.wall_time_s or 0:.1f}",
            "" if ssim is None else f"{ssim:.3f}",
            "" if err is None else f"{err:.3f}",
        )
    return table


def _print_notes(records: list[JobRecord]) -> None:
    """The table's legend, then one line for each job that did not succeed."""
    if any(r.reused for r in records):
        err_console.print("* reused from an earlier run (its own record shown)")
    if any(r.stop_kind for r in records):
        for line in STOP_LEGEND:
            err_console.print(line)
    for r in records:
        if r.status not in (JobStatus.SUCCEEDED, JobStatus.RESUMED):
            err_console.print(f"{r.key}: {r.status}: {r.reason}", markup=False)


def _progress():
    """Rich bars on a terminal; plain lines (starts, heartbeats, ends) in a log."""
    if err_console.is_terminal:
        return _StudyProgress()
    from flyrecon.cli._progress import LogLines

    return LogLines(err_console)


class _StudyProgress:
    """Rich bars: all jobs, and the epochs of each running job."""

    def __enter__(self):
        from flyrecon.cli._progress import make_progress
        from flyrecon.study.observer import StudyObserver

        progress = self.progress = make_progress()
        overall = progress.add_task("jobs", total=None)
        running: dict[str, object] = {}

        class Observer(StudyObserver):
            def job_started(self, job, index, total):
                progress.update(
                    overall, total=total, description=f"jobs ({len(running) + 1} running)"
                )
                running[job.key] = progress.add_task(f"{job.key}", total=None)

            def job_progress(self, job, done, total, loss):
                task = running.get(job.key)
                if task is not None:
                    progress.update(
                        task,
                        total=total,
                        completed=done,
                        description=f"{job.key} (loss {loss:.4g})",
                    )

            def job_finished(self, job, record):
                task = running.pop(job.key, None)
                if task is not None:
                    progress.remove_task(task)
                progress.update(overall, description=f"jobs ({len(running)} running)")
                progress.advance(overall)
                reason = "" if record.returncode == 0 else f" {record.reason}"
                err_console.print(
                    f"{job.key}: {record.status} (rc {record.returncode}){reason}",
                    markup=False,
                )

        progress.start()
        return Observer()

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
