"""Shared test helpers: simulated data with known truth, and stand-ins for the seams.

The seams are parameters, not patches: `reconstruct(..., engine=)`, `run_job(...,
engine=, reconstruct_fn=)`, `run_study(..., job_fn=)`. Stand-ins here are module-level
functions or picklable classes, so worker processes (spawn, Dask) can run them too.
"""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path

import numpy as np

from flyrecon import layout, simulate
from flyrecon.data import PtychoDataset, save_dataset
from flyrecon.engine import EngineInput, EngineResult
from flyrecon.errors import EXIT_OK
from flyrecon.options import ReconSettings, StudyOptions
from flyrecon.records import JobRecord, JobResult, JobStatus, write_record
from flyrecon.study.jobs import job_record, run_job
from flyrecon.study.plan import Job

STUDY_DOSES = (1000, 10000, 100000)


def simulated_dataset(
    *,
    object_px: int = 96,
    probe_px: int = 32,
    step_px: float = 4.0,
    dose: float = 1e5,
    seed: int = 7,
    noise: bool = True,
) -> PtychoDataset:
    """A small far-field ptychography dataset whose truth is known."""
    rng = np.random.default_rng(seed)
    obj = simulate.procedural_object((object_px, object_px), rng)
    probe = simulate.focused_probe(
        probe_px, pupil_radius_px=probe_px / 8, defocus_rad=4.0, edge_taper_px=probe_px / 16
    )
    half = probe_px // 2
    y, x = simulate.raster_scan(
        (half, object_px - half), (half, object_px - half), step_px, 1.0, rng
    )
    expected = simulate.far_field_intensity(obj, probe, y, x)
    scale = simulate.dose_scale(expected, dose)
    if noise:
        amplitude = simulate.poisson_amplitude(expected, scale, rng)
    else:
        amplitude = np.sqrt(expected * scale).astype(np.float32)
    return PtychoDataset(
        diffraction=amplitude,
        object_guess=obj,
        probe_guess=probe,
        xcoords=x,
        ycoords=y,
        y_patches=simulate.object_patches(obj, y, x, probe_px).astype(np.complex64),
        metadata={"dose": dose, "intensity_scale": scale, "seed": seed},
    )


def write_study_tree(
    root: Path, doses: tuple[int, ...] = STUDY_DOSES, skip: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """Phase C and D trees of tiny valid datasets for every dose, view and split.

    `skip` lists relative paths (e.g. "dose_1000/sparse/sparse_test.npz") left out of phase D.
    """
    study = layout.StudyRoot(root)
    for dose in doses:
        for split_index, split in enumerate(("train", "test")):
            data = simulated_dataset(object_px=64, step_px=8, dose=dose, seed=dose + split_index)
            for view in ("baseline", "dense", "sparse"):
                path = study.input_path(dose, view, split)
                if view != "baseline" and path.relative_to(study.phase_d).as_posix() in skip:
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                save_dataset(path, data)
    return study.phase_c, study.phase_d


# --- engines --------------------------------------------------------------------------------


class FakeEngine:
    """Records what the engine was given; returns the initial guesses as the result."""

    def __init__(self, fail_with: Exception | None = None, losses: list[float] | None = None):
        self.calls: list[tuple[EngineInput, ReconSettings]] = []
        self.fail_with = fail_with
        self.losses = losses

    def __call__(self, inp: EngineInput, settings: ReconSettings, *, on_epoch=None):
        self.calls.append((inp, settings))
        if self.fail_with is not None:
            raise self.fail_with
        epochs = settings.num_epochs or min(settings.max_epochs, 5)
        losses = self.losses or [1.0 / (k + 1) for k in range(epochs)]
        for k, loss in enumerate(losses, start=1):
            if on_epoch:
                on_epoch(k, len(losses), loss)
        return EngineResult(
            object=inp.object_init,
            probe=inp.probe_init,
            positions_px=inp.positions_px,
            loss_history=losses,
            options={"stub": True},
            device="cpu",
            epochs_run=len(losses),
        )


# --- jobs -----------------------------------------------------------------------------------


def quick_reconstruct(options, *, on_epoch=None, engine=None) -> JobResult:
    """A stand-in for `reconstruct` that writes a complete-looking result at once (no data
    loading, metrics or figures): what resume needs to see, in milliseconds."""
    out = options.output_dir
    out.mkdir(parents=True, exist_ok=True)
    for name in layout.JOB_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    np.savez(out / layout.RESULT_NPZ, object=np.ones((2, 2), np.complex64))
    for name in (layout.PRODUCT_H5, layout.FIGURE_PNG, layout.METRICS_JSON):
        (out / name).write_bytes(b"stand-in")
    (out / options.log_name).write_text("quick\n")
    result = JobResult(
        returncode=EXIT_OK,
        status=JobStatus.SUCCEEDED,
        message="quick",
        input_npz=str(options.input_npz),
        output_dir=str(out),
        epochs_run=options.settings.num_epochs or 1,
        stop_kind="fixed epochs",
        log_path=str(out / options.log_name),
        metrics={"phase_ssim": 0.5, "complex_relative_error": 0.1},
        wall_time_s=0.01,
        options=options.settings.model_dump(mode="json"),
    )
    write_record(out / layout.RESULT_JSON, result)
    return result


quick_job = partial(run_job, reconstruct_fn=quick_reconstruct)
"""The real job function (hashing, resume, stamps) around `quick_reconstruct`."""


class ScriptedJobs:
    """The real job function (hashing, resume) around a scripted reconstruction: it records
    the key of each job it reconstructs, fails `fail_keys` (return code 1) and raises
    KeyboardInterrupt at `interrupt_key`; any other job gets `quick_reconstruct`."""

    def __init__(self, fail_keys: tuple[str, ...] = (), interrupt_key: str | None = None):
        self.fail_keys = fail_keys
        self.interrupt_key = interrupt_key
        self.ran: list[str] = []

    def __call__(self, job: Job, options: StudyOptions, on_epoch=None) -> JobRecord:
        return run_job(job, options, on_epoch, reconstruct_fn=partial(self._reconstruct, job))

    def _reconstruct(self, job: Job, options, *, on_epoch=None, engine=None) -> JobResult:
        self.ran.append(job.key)
        if job.key == self.interrupt_key:
            raise KeyboardInterrupt
        if job.key in self.fail_keys:
            return JobResult(
                returncode=1,
                status=JobStatus.FAILED,
                message=f"boom in {job.key}",
                input_npz=str(options.input_npz),
                output_dir=str(options.output_dir),
            )
        return quick_reconstruct(options, on_epoch=on_epoch, engine=engine)


def use_scripted_jobs(
    monkeypatch,
    fail_keys: tuple[str, ...] = (),
    interrupt_key: str | None = None,
    report: bool = False,
) -> list[str]:
    """Make the study-run command's `run_study` run `ScriptedJobs` (and write the report's
    figures only with `report`); returns the keys of the jobs reconstructed, as they run."""
    import flyrecon.study.runner as study_runner

    jobs = ScriptedJobs(fail_keys, interrupt_key)
    stubbed = partial(study_runner.run_study, job_fn=jobs, report=report)
    monkeypatch.setattr(study_runner, "run_study", stubbed)
    return jobs.ran


def crash_on_dense_train(job: Job, options: StudyOptions, on_epoch=None) -> JobRecord:
    """Kill the worker process running the dense/train job; run the others quickly."""
    if job.key.endswith("/dense/train"):
        os._exit(1)
    return quick_job(job, options, on_epoch)


def sleep_job(job: Job, options: StudyOptions, on_epoch=None) -> JobRecord:
    """Stand in for a long job: sleep, and never produce a result the test should see."""
    time.sleep(8)
    return job_record(job, JobStatus.FAILED, 1, "should have been cancelled")


def manifest(artifact_root: Path) -> dict:
    """The manifest as plain JSON (what a user's script would read)."""
    return json.loads((artifact_root / layout.MANIFEST_JSON).read_text())
