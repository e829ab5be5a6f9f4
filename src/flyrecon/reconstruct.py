"""One reconstruction, end to end: validate, run pty-chi, write results. Never raises for a
failed job: `reconstruct` returns a `ReconstructResult` carrying the return code.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flyrecon import __version__
from flyrecon.atomic import atomic_path, write_json, write_with
from flyrecon.data import PtychoDataset, load_dataset
from flyrecon.engine import EngineInput, EngineResult, EpochCallback
from flyrecon.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    FlyreconError,
    InputError,
)
from flyrecon.geometry import Canvas, canvas_for, object_on_canvas
from flyrecon.options import ObjectInit, ProbeInit, ReconstructOptions

RESULT_NPZ = "ptychi_reconstruction.npz"
FIGURE_PNG = "reconstruction.png"
RESULT_JSON = "result.json"
METRICS_JSON = "metrics.json"
OUTPUT_NAMES = (RESULT_JSON, RESULT_NPZ, FIGURE_PNG, METRICS_JSON)
"""Files a run writes; result.json is written last and marks a finished run."""


@dataclass
class ReconstructResult:
    """The outcome of one reconstruction."""

    returncode: int
    status: str
    """`succeeded`, `failed` (runtime, code 1) or `invalid` (input or usage, code 2)."""
    message: str
    """One line: a summary on success, the reason on failure."""
    input_npz: str
    output_dir: str
    wall_time_s: float = 0.0
    n_patterns: int | None = None
    device: str | None = None
    epochs_run: int = 0
    stop_kind: str | None = None
    """`noise floor`, `converged`, `max epochs` or `fixed epochs` (convergence.StopKind)."""
    stop_reason: str | None = None
    final_loss: float | None = None
    metrics: dict[str, Any] | None = None
    log_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    input_metadata: dict[str, Any] = field(default_factory=dict)
    flyrecon_version: str = __version__
    traceback: str | None = None
    """Full traceback of an unexpected failure (shown by `--debug`)."""

    @property
    def ok(self) -> bool:
        return self.returncode == EXIT_OK

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("traceback")
        return out


def initial_probe(dataset: PtychoDataset, policy: ProbeInit) -> np.ndarray:
    """The starting probe for `policy` (see `ProbeInit`)."""
    if policy == ProbeInit.GUESS:
        return dataset.probe_guess.copy()
    size = dataset.pattern_size
    mean_counts = float(np.mean(np.sum(dataset.diffraction.astype(np.float64) ** 2, axis=(1, 2))))
    if policy == ProbeInit.DATA:
        mean_amplitude = np.mean(dataset.diffraction, axis=0)
        probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(mean_amplitude)))
    else:
        probe = dataset.probe_guess.astype(np.complex128)
    power = size**2 * np.sum(np.abs(probe) ** 2)
    return (probe * np.sqrt(mean_counts / power)).astype(np.complex64)


def engine_input(dataset: PtychoDataset, options: ReconstructOptions) -> tuple[EngineInput, Canvas]:
    """Convert a DATA-001 dataset into pty-chi's conventions on a canvas covering the scan."""
    settings = options.settings
    canvas = canvas_for(dataset.ycoords, dataset.xcoords, dataset.pattern_size)
    if settings.object_init == ObjectInit.GUESS:
        obj = object_on_canvas(dataset.object_guess, canvas)
    else:
        obj = np.ones(canvas.shape, dtype=np.complex64)
    intensities = np.square(dataset.diffraction, dtype=np.float32)
    return (
        EngineInput(
            intensities=intensities,
            positions_px=canvas.positions_px(dataset.ycoords, dataset.xcoords),
            object_init=obj,
            probe_init=initial_probe(dataset, settings.probe_init),
        ),
        canvas,
    )


def _prepare_output_dir(output_dir: Path, log_name: str) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(output_dir, "output path exists and is not a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            output_dir, f"cannot create the output directory ({exc.strerror})"
        ) from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise InputError(output_dir, "output directory is not writable")
    for name in OUTPUT_NAMES:  # result.json first: a stale result must never look current
        (output_dir / name).unlink(missing_ok=True)
    for name in (*OUTPUT_NAMES, log_name):  # leftovers of a killed run
        for stale in output_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def _make_logger(log_file: Path) -> tuple[logging.Logger, logging.Handler]:
    logger = logging.getLogger(f"flyrecon.run.{id(log_file)}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger, handler


def _write_outputs(
    out: Path,
    engine: EngineResult,
    canvas: Canvas,
    options: ReconstructOptions,
    scored: Scored | None,
) -> None:
    from flyrecon.figures import StopMarks, job_figure, reconstruction_figure

    settings = options.settings
    arrays = {
        "object": engine.object,
        "probe": engine.probe,
        "positions_px": engine.positions_px,
        "loss_history": np.asarray(engine.loss_history, dtype=np.float64),
        **engine.trace.arrays(),
        "canvas_origin_px": np.asarray(canvas.origin_px, dtype=np.int64),
        "algorithm": np.array(str(settings.algorithm)),
        "num_epochs": np.array(engine.epochs_run, dtype=np.int64),
        "stop_kind": np.array(str(engine.stop_kind)),
        "stop_reason": np.array(engine.stop_reason),
        "averaged_epochs": np.array(engine.averaged_epochs, dtype=np.int64),
        "ptychi_options_json": np.array(json.dumps(engine.options, sort_keys=True)),
        "flyrecon_settings_json": np.array(settings.model_dump_json()),
    }
    if scored is not None:
        arrays["object_aligned"] = scored.evaluation.aligned.astype(np.complex64)
    write_with(out / RESULT_NPZ, lambda fh: np.savez(fh, **arrays))
    title = (
        f"{options.input_npz.name}: {settings.algorithm}, {engine.epochs_run} epochs "
        f"({engine.stop_kind})"
    )
    marks = StopMarks(
        engine.trace.arrays(), str(engine.stop_kind), engine.epochs_run, engine.averaged_epochs
    )
    if scored is None:
        reconstruction_figure(
            out / FIGURE_PNG, engine.object, engine.probe, engine.loss_history, title, marks
        )
    else:  # the truth is known: one figure with truth, reconstruction, probe, loss and FRC
        metrics = scored.evaluation.metrics
        job_figure(
            out / FIGURE_PNG,
            scored.evaluation.aligned,
            scored.truth,
            scored.mask,
            engine.probe,
            engine.loss_history,
            metrics.get("frc"),
            title,
            marks,
        )
        write_json(out / METRICS_JSON, metrics)


@dataclass
class Scored:
    """The truth on the canvas, the scored region and the evaluation against it."""

    truth: np.ndarray
    mask: np.ndarray
    evaluation: Any


def _score(dataset: PtychoDataset, canvas: Canvas, engine: EngineResult) -> Scored | None:
    """Metrics against objectGuess on the illuminated region (the truth for synthetic data)."""
    from flyrecon.metrics import evaluate, illuminated_mask

    truth = object_on_canvas(dataset.object_guess, canvas, fill=0)
    mask = illuminated_mask(
        canvas.shape,
        dataset.ycoords - canvas.origin_px[0],
        dataset.xcoords - canvas.origin_px[1],
        dataset.probe_guess,
    )
    cr, cc, _, _ = canvas.crop_of(dataset.object_guess.shape)
    inside = np.zeros(canvas.shape, dtype=bool)
    inside[cr, cc] = True
    mask &= inside
    if mask.sum() < 16:
        return None
    return Scored(truth=truth, mask=mask, evaluation=evaluate(engine.object, truth, mask))


def reconstruct(
    options: ReconstructOptions, *, on_epoch: EpochCallback | None = None
) -> ReconstructResult:
    """Reconstruct `options.input_npz` into `options.output_dir`; never raises for a failed job.

    Return codes: 0 success, 1 the reconstruction failed, 2 invalid input or output location.
    KeyboardInterrupt is not caught: the caller decides how to record an interrupted run.
    """
    start = time.perf_counter()
    out = options.output_dir
    settings = options.settings
    result = ReconstructResult(
        returncode=EXIT_FAILED,
        status="failed",
        message="",
        input_npz=str(options.input_npz),
        output_dir=str(out),
        options=json.loads(settings.model_dump_json()),
    )
    log_stack = ExitStack()
    try:
        _prepare_output_dir(out, options.log_name)
        log_tmp = log_stack.enter_context(atomic_path(out / options.log_name))
    except FlyreconError as exc:
        result.returncode, result.status, result.message = exc.exit_code, "invalid", str(exc)
        result.wall_time_s = time.perf_counter() - start
        return result
    except OSError as exc:
        result.returncode, result.status = EXIT_USAGE, "invalid"
        result.message = f"{out}: cannot write in the output directory ({exc.strerror})"
        result.wall_time_s = time.perf_counter() - start
        return result
    with log_stack:  # renames the log into place when the run ends
        logger, handler = _make_logger(log_tmp)
        try:
            _run(options, result, logger, on_epoch)
        except FlyreconError as exc:
            result.returncode, result.message = exc.exit_code, str(exc)
            result.status = "invalid" if exc.exit_code == EXIT_USAGE else "failed"
            result.traceback = traceback.format_exc()
        except OSError as exc:
            result.returncode, result.status = EXIT_FAILED, "failed"
            where = exc.filename or out
            result.message = f"{where}: cannot write ({exc.strerror or exc})"
            result.traceback = traceback.format_exc()
        except Exception as exc:  # unexpected: the job fails, the process goes on
            result.returncode, result.status = EXIT_FAILED, "failed"
            result.message = f"unexpected error: {type(exc).__name__}: {exc}"
            result.traceback = traceback.format_exc()
            logger.error("%s", result.traceback)
        finally:
            logger.info("%s (return code %d): %s", result.status, result.returncode, result.message)
            handler.close()
            logger.removeHandler(handler)
    result.log_path = str(out / options.log_name)
    result.wall_time_s = time.perf_counter() - start
    if result.status != "invalid" and out.is_dir():
        try:
            write_json(out / RESULT_JSON, result.to_json())
        except OSError as exc:
            result.returncode, result.status = EXIT_FAILED, "failed"
            result.message = f"{out / RESULT_JSON}: cannot write ({exc.strerror})"
    return result


def _import_reporting() -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot
    import scipy.ndimage  # noqa: F401
    import skimage.metrics
    import skimage.registration  # noqa: F401


def _prefetch_imports() -> threading.Thread:
    """Import the scoring and plotting modules in the background while pty-chi runs (torch
    releases the GIL), so they cost no wall time after the reconstruction."""
    thread = threading.Thread(target=_import_reporting, name="flyrecon-prefetch", daemon=True)
    thread.start()
    return thread


def _run(
    options: ReconstructOptions,
    result: ReconstructResult,
    logger: logging.Logger,
    on_epoch: EpochCallback | None,
) -> None:
    """The body of `reconstruct`: fills `result`; raises FlyreconError subclasses on failure."""
    from flyrecon.engine import run_engine

    settings = options.settings
    logger.info(
        "flyrecon %s: reconstruct %s -> %s", __version__, options.input_npz, options.output_dir
    )
    logger.info("settings: %s", settings.model_dump_json())
    dataset = load_dataset(options.input_npz, settings.n_images)
    result.n_patterns = dataset.n_patterns
    result.input_metadata = dataset.metadata
    logger.info(
        "loaded %d of %d patterns of %dx%d; object %s",
        dataset.n_patterns,
        dataset.total_patterns,
        dataset.pattern_size,
        dataset.pattern_size,
        dataset.object_guess.shape,
    )
    inp, canvas = engine_input(dataset, options)
    logger.info("canvas %s at objectGuess origin %s", canvas.shape, canvas.origin_px)
    prefetch: list[threading.Thread] = []

    def log_epoch(epoch: int, total: int, loss: float) -> None:
        logger.info("epoch %d/%d loss %.6g", epoch, total, loss)
        if not prefetch:  # pty-chi is imported now: the GIL is free while torch computes
            prefetch.append(_prefetch_imports())
        if on_epoch is not None:
            on_epoch(epoch, total, loss)

    engine = run_engine(inp, settings, on_epoch=log_epoch)
    for thread in prefetch:
        thread.join()
    result.device = engine.device
    result.epochs_run = engine.epochs_run
    result.stop_kind = str(engine.stop_kind)
    result.stop_reason = engine.stop_reason
    logger.info("stopped after %d epochs: %s", engine.epochs_run, engine.stop_reason)
    result.final_loss = engine.loss_history[-1] if engine.loss_history else None
    scored = None
    if settings.object_init == ObjectInit.ONES:
        scored = _score(dataset, canvas, engine)
    else:
        logger.info("no metrics: the object started from objectGuess, so it is not a blind test")
    metrics = scored.evaluation.metrics if scored is not None else None
    result.metrics = metrics
    _write_outputs(options.output_dir, engine, canvas, options, scored)
    result.returncode, result.status = EXIT_OK, "succeeded"
    first = engine.loss_history[0]
    last = engine.loss_history[-1]
    summary = f"{engine.epochs_run} epochs on {engine.device}, loss {first:.4g} -> {last:.4g}"
    if metrics:
        from flyrecon.metrics import summary_line

        summary += f"; {summary_line(metrics)}"
        logger.info("metrics: %s", summary_line(metrics))
    result.message = summary
