"""One reconstruction, end to end: validate, run the engine, write results.

`reconstruct` never raises for a failed job: it returns a `JobResult` carrying the return
code (0 success, 1 the reconstruction failed, 2 invalid input or output location). Every
output is written to a temporary name and renamed; result.json is written last.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flyrecon import __version__, layout
from flyrecon.atomic import atomic_path, folder_lock, write_json, write_with
from flyrecon.data import PtychoDataset, load_dataset, npz_problem
from flyrecon.engine import EngineFn, EngineInput, EngineResult, EpochCallback, resolve_device
from flyrecon.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, FlyreconError, InputError, one_line
from flyrecon.geometry import Canvas, canvas_for
from flyrecon.inputs import engine_input
from flyrecon.memory import check_memory
from flyrecon.options import Device, ObjectInit, ReconstructOptions
from flyrecon.product import ProductData, build_product, recorded_geometry, write_product
from flyrecon.records import JobResult, JobStatus, write_record
from flyrecon.scoring import MIN_SCORED_PIXELS, Scored, score


def _make_output_dir(output_dir: Path) -> None:
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


def _check_output_names(output_dir: Path, log_name: str) -> None:
    """Refuse a folder where an output's name is taken by a folder (or another non-file): the
    run would fail at its end, its other outputs written and no result.json."""
    for name in (*layout.JOB_OUTPUTS, layout.JOB_JSON, log_name):
        path = output_dir / name
        if path.exists() and not path.is_file():
            raise InputError(path, "is in the way of an output of this job (not a file)")


def _clear_outputs(output_dir: Path, log_name: str) -> None:
    """Remove what an earlier run left: its results, a study's stamp, temporary files."""
    for name in layout.JOB_OUTPUTS:  # result.json first: a stale result must never look current
        (output_dir / name).unlink(missing_ok=True)
    # a study's stamp says what made the outputs; this run replaces them (study-run stamps anew)
    (output_dir / layout.JOB_JSON).unlink(missing_ok=True)
    for name in (*layout.JOB_OUTPUTS, log_name):  # leftovers of a killed run
        for stale in output_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def _invalid(
    result: JobResult, message: str, start: float, returncode: int = EXIT_USAGE
) -> JobResult:
    """`result` as a job that cannot run as asked (nothing of it was written)."""
    result.returncode, result.status, result.message = returncode, JobStatus.INVALID, message
    result.wall_time_s = time.perf_counter() - start
    return result


def _device_problem(device: Device) -> str | None:
    """Why the requested device cannot run here (`--device cuda` without one), or None."""
    if device != Device.CUDA:
        return None
    try:
        resolve_device(device)
    except FlyreconError as exc:
        return str(exc)
    return None


def _is_an_output(input_npz: Path, output_dir: Path, log_name: str) -> bool:
    """Whether `input_npz` is one of the files a job in `output_dir` replaces."""
    names = (*layout.JOB_OUTPUTS, layout.JOB_JSON, log_name)
    try:
        return any(
            input_npz.samefile(output_dir / name) for name in names if (output_dir / name).exists()
        )
    except OSError:
        return False


def _make_logger(log_file: Path) -> tuple[logging.Logger, logging.Handler]:
    logger = logging.getLogger(f"flyrecon.run.{id(log_file)}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(log_file, encoding="utf-8", errors="backslashreplace")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger, handler


def job_label(metadata: dict, input_npz: Path) -> str:
    """What a job is, for titles: dose, view and split from the input's metadata (as
    prep-synthetic writes them), else the file's name."""
    parts = []
    dose = metadata.get("dose") if isinstance(metadata, dict) else None
    if isinstance(dose, int | float):
        parts.append(f"dose {dose:,.0f} photons")
    for key in ("view", "split"):
        value = metadata.get(key) if isinstance(metadata, dict) else None
        if isinstance(value, str) and value:
            parts.append(f"{printable(value)} {key}")
    return ", ".join(parts) or printable(input_npz.name)


RECORDED_METADATA_BYTES = 64 * 1024
"""The most of an input's metadata (as JSON) copied into result.json and every manifest record
(the manifest is rewritten after each job)."""


def recorded_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """`metadata` as the records keep it: whole when small, else its entries in order while
    they fit in `RECORDED_METADATA_BYTES`, and a note naming the ones left in the input."""
    if len(json.dumps(metadata)) <= RECORDED_METADATA_BYTES:
        return metadata
    kept: dict[str, Any] = {}
    left: list[str] = []
    budget = RECORDED_METADATA_BYTES
    for key, value in metadata.items():
        size = len(json.dumps({key: value}))
        if size <= budget:
            kept[key] = value
            budget -= size
        else:
            left.append(key)
    names = ", ".join(left[:10]) + (f" and {len(left) - 10} more" if len(left) > 10 else "")
    kept["flyrecon_note"] = f"too large to copy here, see the input file: {names}"
    return kept


def printable(text: str) -> str:
    """`text` with control characters (a NUL, a carriage return from a file's metadata or
    name) shown as "?": titles and logs stay one clean line."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _epochs_label(engine: EngineResult) -> str:
    """ "40 epochs", or "12 + 40 epochs (half resolution first)"."""
    if engine.coarse_epochs:
        return f"{engine.coarse_epochs} + {engine.epochs_run} epochs (half resolution first)"
    return f"{engine.epochs_run} epochs"


def _product(
    dataset: PtychoDataset, engine: EngineResult, canvas: Canvas, options: ReconstructOptions
) -> ProductData:
    return build_product(
        dataset,
        obj=engine.object,
        probe=engine.probe,
        origin_px=canvas.origin_px,
        losses=engine.loss_history,
        description=(
            f"flyrecon {__version__}: {options.settings.algorithm}, {_epochs_label(engine)} "
            f"({engine.stop_kind}) of {options.input_npz.name}"
        ),
        name=f"flyrecon {options.input_npz.stem}",
        given=options.geometry,
    )


def _write_outputs(
    out: Path,
    dataset: PtychoDataset,
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
        "coarse_epochs": np.array(engine.coarse_epochs, dtype=np.int64),
        "ptychi_options_json": np.array(json.dumps(engine.options, sort_keys=True)),
        "flyrecon_settings_json": np.array(settings.model_dump_json()),
    }
    if scored is not None:
        arrays["object_aligned"] = scored.evaluation.aligned.astype(np.complex64)
    write_with(out / layout.RESULT_NPZ, lambda fh: np.savez(fh, **arrays))
    write_product(out / layout.PRODUCT_H5, _product(dataset, engine, canvas, options))
    title = (
        f"{job_label(dataset.metadata, options.input_npz)}: {settings.algorithm}, "
        f"{_epochs_label(engine)} ({engine.stop_kind})\n{printable(str(options.input_npz))}"
    )
    marks = StopMarks(
        engine.trace.arrays(), str(engine.stop_kind), engine.epochs_run, engine.averaged_epochs
    )
    if scored is None:
        reconstruction_figure(
            out / layout.FIGURE_PNG, engine.object, engine.probe, engine.loss_history, title, marks
        )
    else:  # the truth is known: one figure with truth, reconstruction, probe, loss and FRC
        job_figure(
            out / layout.FIGURE_PNG,
            scored.evaluation.aligned,
            scored.truth,
            scored.mask,
            engine.probe,
            engine.loss_history,
            scored.metrics.get("frc"),
            title,
            marks,
        )
        write_json(out / layout.METRICS_JSON, scored.metrics)


def reconstruct(
    options: ReconstructOptions,
    *,
    on_epoch: EpochCallback | None = None,
    engine: EngineFn | None = None,
) -> JobResult:
    """Reconstruct `options.input_npz` into `options.output_dir`; never raises for a failed job.

    `engine` replaces `engine.run_engine` (tests pass a stand-in). KeyboardInterrupt is not
    caught: the caller decides how to record an interrupted run.
    """
    start = time.perf_counter()
    out = options.output_dir
    settings = options.settings
    result = JobResult(
        returncode=EXIT_FAILED,
        status=JobStatus.FAILED,
        input_npz=str(options.input_npz),
        output_dir=str(out),
        options=settings.model_dump(mode="json"),
    )
    problem = npz_problem(options.input_npz)  # its zip directory: no array is read
    if problem:  # nothing is started (the engine's imports) for a file that cannot be one
        return _invalid(result, f"{options.input_npz}: {problem}", start)
    device_problem = _device_problem(settings.device)
    if device_problem:  # before the folder is touched: a wrong node must not wipe results
        return _invalid(result, device_problem, start)
    if _is_an_output(options.input_npz, out, options.log_name):
        message = (
            f"{options.input_npz}: the input is a file this job writes in {out}; choose "
            "another output directory"
        )
        return _invalid(result, message, start)
    warm_up = None
    if engine is None:
        from flyrecon.engine import run_engine as engine
        from flyrecon.engine import warm_up as warm_engine

        warm_up = threading.Thread(
            target=warm_engine, args=(settings.device,), name="flyrecon-warm-up", daemon=True
        )
        warm_up.start()  # imports and CUDA start overlap with loading the data
    try:
        return _reconstruct_into(options, result, start, on_epoch, engine, warm_up)
    finally:
        if warm_up is not None:  # a process must not end while the thread imports torch
            warm_up.join()


def _reconstruct_into(
    options: ReconstructOptions,
    result: JobResult,
    start: float,
    on_epoch: EpochCallback | None,
    engine: EngineFn,
    warm_up: threading.Thread | None,
) -> JobResult:
    """`reconstruct` once the request is known to be runnable here: the input is read and
    checked before the output folder is touched (a bad input must not wipe results)."""
    out = options.output_dir
    try:
        prepared = _prepare(options)
    except FlyreconError as exc:
        return _invalid(result, str(exc), start, exc.exit_code)
    except Exception as exc:  # a bug: the job fails (not invalid), never raises
        result.returncode, result.status = EXIT_FAILED, JobStatus.FAILED
        result.message = f"unexpected error: {one_line(exc)}"
        result.wall_time_s = time.perf_counter() - start
        return result
    with ExitStack() as held:  # the folder's lock, held until result.json is written
        log_stack = ExitStack()
        try:
            _make_output_dir(out)
            _check_output_names(out, options.log_name)
            held.enter_context(folder_lock(out))  # one run writes into a folder at a time
            _clear_outputs(out, options.log_name)
            log_tmp = log_stack.enter_context(atomic_path(out / options.log_name))
        except FlyreconError as exc:
            return _invalid(result, str(exc), start, exc.exit_code)
        except OSError as exc:
            message = f"{out}: cannot write in the output directory ({exc.strerror})"
            return _invalid(result, message, start)
        with log_stack:  # renames the log into place when the run ends
            _run_logged(options, prepared, result, log_tmp, on_epoch, engine, warm_up)
        result.log_path = str(out / options.log_name)
        result.wall_time_s = time.perf_counter() - start
        if result.status != JobStatus.INVALID and out.is_dir():
            try:
                write_record(out / layout.RESULT_JSON, result)
            except OSError as exc:
                result.returncode, result.status = EXIT_FAILED, JobStatus.FAILED
                result.message = f"{out / layout.RESULT_JSON}: cannot write ({exc.strerror})"
            except Exception as exc:  # e.g. text JSON cannot hold: the job fails, never raises
                result.returncode, result.status = EXIT_FAILED, JobStatus.FAILED
                result.message = f"{out / layout.RESULT_JSON}: cannot write ({one_line(exc)})"
    return result


RUN_BYTES_PER_CANVAS_PX = 200
"""Host memory a run holds per pixel of its canvas: pty-chi's object and its update buffers,
flyrecon's iterate window, drift and momentum (a fixed-epoch run on an 8000 x 8000 canvas
peaked at 115 bytes per pixel)."""
RUN_BYTES_FIXED = 1e9
"""What a run holds besides (Python, torch, pty-chi)."""


@dataclass(frozen=True)
class _Prepared:
    """The input, read, checked and converted for the engine."""

    dataset: PtychoDataset
    inp: EngineInput
    canvas: Canvas


def _prepare(options: ReconstructOptions) -> _Prepared:
    """Read and check the input, refuse a scan whose canvas this machine cannot hold, and
    convert it for the engine; raises `InputError`."""
    dataset = load_dataset(options.input_npz, options.settings.n_images)
    rows, cols = canvas_for(dataset.ycoords, dataset.xcoords, dataset.pattern_size).shape
    check_memory(
        RUN_BYTES_FIXED + RUN_BYTES_PER_CANVAS_PX * rows * cols + 3 * dataset.diffraction.nbytes,
        options.input_npz,
        f"reconstructing the scan's {rows} x {cols} px canvas",
        "xcoords, ycoords",
    )
    inp, canvas = engine_input(dataset, options.settings)
    return _Prepared(dataset, inp, canvas)


def _run_logged(
    options: ReconstructOptions,
    prepared: _Prepared,
    result: JobResult,
    log_file: Path,
    on_epoch: EpochCallback | None,
    engine: EngineFn,
    warm_up: threading.Thread | None,
) -> None:
    """`_run` with its log in `log_file`; every failure is recorded in `result`, not raised."""
    logger, handler = _make_logger(log_file)
    try:
        _run(options, prepared, result, logger, on_epoch, engine, warm_up)
    except FlyreconError as exc:
        result.returncode, result.message = exc.exit_code, str(exc)
        result.status = JobStatus.INVALID if exc.exit_code == EXIT_USAGE else JobStatus.FAILED
        result.traceback = traceback.format_exc()
    except OSError as exc:
        result.returncode, result.status = EXIT_FAILED, JobStatus.FAILED
        where = exc.filename or options.output_dir
        result.message = f"{where}: cannot write ({exc.strerror or exc})"
        result.traceback = traceback.format_exc()
    except Exception as exc:  # unexpected: the job fails, the process goes on
        result.returncode, result.status = EXIT_FAILED, JobStatus.FAILED
        result.message = f"unexpected error: {one_line(exc)}"
        result.traceback = traceback.format_exc()
        logger.error("%s", result.traceback)
    finally:
        logger.info("%s (return code %d): %s", result.status, result.returncode, result.message)
        handler.close()
        logger.removeHandler(handler)


def _import_reporting() -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot
    import scipy.ndimage  # noqa: F401

    # the functions, not the packages: scikit-image loads submodules on first attribute access
    from skimage.metrics import structural_similarity  # noqa: F401
    from skimage.registration import phase_cross_correlation  # noqa: F401


def _prefetch_imports() -> threading.Thread:
    """Import the scoring and plotting modules in the background while the engine runs (torch
    releases the GIL), so they cost no wall time after the reconstruction."""
    thread = threading.Thread(target=_import_reporting, name="flyrecon-prefetch", daemon=True)
    thread.start()
    return thread


def _run(
    options: ReconstructOptions,
    prepared: _Prepared,
    result: JobResult,
    logger: logging.Logger,
    on_epoch: EpochCallback | None,
    engine_fn: EngineFn,
    warm_up: threading.Thread | None,
) -> None:
    """The body of `reconstruct`: fills `result`; raises FlyreconError subclasses on failure."""
    settings = options.settings
    dataset, inp, canvas = prepared.dataset, prepared.inp, prepared.canvas
    logger.info(
        "flyrecon %s: reconstruct %s -> %s", __version__, options.input_npz, options.output_dir
    )
    logger.info("settings: %s", settings.model_dump_json())
    result.n_patterns = dataset.n_patterns
    result.input_metadata = recorded_metadata(dataset.metadata)
    result.doubts = list(dataset.doubts)
    _, geometry_problem = recorded_geometry(dataset.metadata)
    if geometry_problem:
        used = "the command line's" if options.geometry is not None else "flyrecon's default"
        result.doubts.append(
            f"{options.input_npz}: metadata: {geometry_problem}; the ptychodus product uses "
            f"{used} geometry instead"
        )
    for doubt in result.doubts:
        logger.warning("%s", doubt)
    logger.info(
        "loaded %d of %d patterns of %dx%d; object %s",
        dataset.n_patterns,
        dataset.total_patterns,
        dataset.pattern_size,
        dataset.pattern_size,
        dataset.object_guess.shape,
    )
    logger.info("canvas %s at objectGuess origin %s", canvas.shape, canvas.origin_px)
    prefetch: list[threading.Thread] = []

    def log_epoch(epoch: int, total: int, loss: float) -> None:
        logger.info("epoch %d/%d loss %.6g", epoch, total, loss)
        if not prefetch:  # pty-chi is imported now: the GIL is free while torch computes
            prefetch.append(_prefetch_imports())
        if on_epoch is not None:
            on_epoch(epoch, total, loss)

    if warm_up is not None:
        warm_up.join()
    engine = engine_fn(inp, settings, on_epoch=log_epoch)
    for thread in prefetch:
        thread.join()
    result.device = engine.device
    result.epochs_run = engine.epochs_run
    result.coarse_epochs = engine.coarse_epochs
    result.stop_kind = str(engine.stop_kind)
    result.stop_reason = engine.stop_reason
    logger.info("stopped after %s: %s", _epochs_label(engine), engine.stop_reason)
    result.final_loss = engine.loss_history[-1] if engine.loss_history else None
    scored = None
    if settings.object_init == ObjectInit.ONES:
        scored = score(dataset, canvas, engine.object)
        if scored is None:
            logger.info(
                "no metrics: objectGuess covers fewer than %d pixels of the scan or is "
                "constant on them (a placeholder, not a truth)",
                MIN_SCORED_PIXELS,
            )
    else:
        logger.info("no metrics: the object started from objectGuess, so it is not a blind test")
    result.metrics = scored.metrics if scored is not None else None
    _write_outputs(options.output_dir, dataset, engine, canvas, options, scored)
    result.returncode, result.status = EXIT_OK, JobStatus.SUCCEEDED
    first = engine.loss_history[0]
    last = engine.loss_history[-1]
    summary = f"{_epochs_label(engine)} on {engine.device}, loss {first:.4g} -> {last:.4g}"
    if result.metrics:
        from flyrecon.metrics import summary_line

        summary += f"; {summary_line(result.metrics)}"
        logger.info("metrics: %s", summary_line(result.metrics))
    result.message = summary
