"""Every pty-chi call in flyrecon lives here; torch and pty-chi are imported only inside.

`run_engine` takes arrays already in pty-chi's conventions (intensities, positions relative to
the canvas centre) and returns numpy results. It runs epoch by epoch so it can report progress,
stop at the first non-finite loss (raising `ReconstructionError` with a one-line reason), and
stop automatically once the model fits the data down to their Poisson noise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from flyrecon import coarse
from flyrecon.allocator import keep_freed_memory
from flyrecon.convergence import WINDOW_EPOCHS, ConvergenceTrace, StopKind
from flyrecon.deferred import eager_dynamo, stand_ins
from flyrecon.errors import InputError, ReconstructionError, one_line
from flyrecon.options import Algorithm, Device, NoiseModel, ObjectInit, ReconSettings

EpochCallback = Callable[[int, int, float], None]
"""Called after each epoch with (epochs done, epochs planned, loss)."""
ObjectCallback = Callable[[int, Callable[[], np.ndarray]], None]
"""Called after each epoch with (epochs done, a function returning a copy of the object)."""
EngineFn = Callable[..., "EngineResult"]
"""What runs a reconstruction: `run_engine(inp, settings, *, on_epoch=None)`; tests pass a
stand-in to `reconstruct` instead of patching this module."""

FIT_SAMPLE_PATTERNS = 64
"""The automatic stop compares fit and noise floor on this many (seeded) patterns: the ratio's
spread over random samples of 64 is about 1 % (2 % for 32)."""


@dataclass(frozen=True)
class EngineInput:
    """What pty-chi needs, in its conventions."""

    intensities: np.ndarray
    """(n, N, N) float32 measured intensity, DC at the centre."""
    positions_px: np.ndarray
    """(n, 2) [y, x] probe centres relative to the object-buffer centre."""
    object_init: np.ndarray
    """(H, W) complex64 initial object."""
    probe_init: np.ndarray
    """(N, N) complex64 initial probe."""


@dataclass
class EngineResult:
    """What came out of pty-chi."""

    object: np.ndarray
    probe: np.ndarray
    positions_px: np.ndarray
    loss_history: list[float]
    options: dict[str, Any]
    device: str
    epochs_run: int
    trace: ConvergenceTrace = field(default_factory=ConvergenceTrace)
    """What the automatic stop watched, per epoch (see `convergence.ConvergenceTrace`)."""
    stop_kind: StopKind = StopKind.FIXED
    stop_reason: str = "fixed epochs"
    """One line: why the run ended."""
    averaged_epochs: int = 0
    """How many final iterates were averaged into `object` (0: the last iterate)."""
    coarse_epochs: int = 0
    """Epochs of the half-resolution start (`flyrecon.coarse`) before `epochs_run`; 0: none."""
    travelled: float = 0.0
    """The path the object's smooth part travelled (`convergence.DriftMonitor`), with the
    half-resolution start's; 0 without the automatic stop."""


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch)."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: Device) -> str:
    """`cpu` or `cuda` for the requested device; asking for CUDA without one is an input
    error (exit 2): the job as asked cannot run on this machine."""
    if device == Device.CPU:
        return "cpu"
    has_cuda = cuda_available()
    if device == Device.CUDA and not has_cuda:
        raise InputError(
            None,
            "torch sees no CUDA device on this machine (use --device auto or cpu)",
            key="--device cuda",
        )
    return "cuda" if has_cuda else "cpu"


def usable_device(device: Device) -> tuple[str, str]:
    """`resolve_device`, with the GPU started (its context created): ("cuda" or "cpu", a note).

    torch counts a GPU that cannot run anything (held by another process in exclusive mode,
    no memory left for a context, an error state) as available. With `--device auto` the run
    then goes to the CPU and the note says why; with `--device cuda` it fails with a one-line
    `ReconstructionError`. The note is empty when nothing was changed."""
    name = resolve_device(device)
    if name != "cuda":
        return name, ""
    import torch

    try:
        torch.cuda.mem_get_info()  # the first call that needs a CUDA context
    except Exception as exc:  # torch raises several kinds for one cause
        if device == Device.CUDA:
            raise ReconstructionError(f"the GPU cannot be used: {one_line(exc)}") from exc
        return "cpu", f"the GPU cannot be used ({one_line(exc)}), so on the CPU"
    return name, ""


ADAM_OBJECT_STEP = 2e-2
"""Adam step size of the object (pty-chi autodiff `step_size`); see docs/performance.md."""
ADAM_PROBE_STEP = 1e-3
"""Adam step size of the probe."""
ADAM_MIN_UPDATES = 8
"""Default Adam batches hold at most 1/8 of the patterns: >= 8 updates per epoch."""


def balanced_batch_size(n_patterns: int, most: int) -> int:
    """The batch size that splits `n_patterns` into as many batches as batches of `most` would
    need, all of about the same size.

    pty-chi cuts a random order of the patterns into batches of exactly `batch_size` and a
    remainder, fixed for the whole run, and LSQML takes a full step for every batch: 65
    patterns in batches of 64 give one pattern a step of its own every epoch, fitted to it
    alone (a 65-pattern scan then drifted for 240 epochs at 1e5; docs/performance.md). In
    batches of at most 64 they become 33 + 32.
    """
    n_batches = -(-n_patterns // most)
    return -(-n_patterns // n_batches)


PROBE_HOLD_EPOCHS = 2
"""aLSQML keeps the probe at its initial guess for this many epochs (pty-chi's
`optimization_plan.start`) and refines it from then on. With probe updates from the first
epoch, the first steps away from the flat object start are partly absorbed into the probe,
and undoing that takes a slow object-probe drift (docs/performance.md). Plain LSQML
(`--algorithm LSQML`) keeps pty-chi's schedule."""


PTYCHI_DEFERRED = {
    "torchvision.transforms": ("GaussianBlur",),
    "sklearn.cluster": (),
    "scipy.spatial": (),
}
"""What pty-chi imports when it loads but a reconstruction seldom calls (see `import_ptychi`)."""


def import_ptychi() -> None:
    """Import pty-chi without torchvision, scikit-learn and scipy.spatial (1.7 s of a run).

    pty-chi imports torchvision for one name, `transforms.GaussianBlur` (it smooths random
    test images), and `sklearn.cluster` and `scipy.spatial` for k-means batches. While pty-chi
    loads, placeholders (`flyrecon.deferred`) stand in for them; what pty-chi keeps of them
    imports the real module when first used. Any later import of them in this process gets
    the real modules. scipy's own package (13 ms) is imported first, so that only
    `scipy.spatial` is a placeholder. While pty-chi loads, another thread must not import
    these modules, nor parts of scipy that import scipy.spatial (signal, stats, interpolate):
    `reconstruct` only loads the data with numpy meanwhile. Once pty-chi is loaded this
    returns at once (it is called before every use). It first sets the process's malloc
    thresholds (`flyrecon.allocator`), before torch allocates anything.
    """
    import sys

    keep_freed_memory()
    if "ptychi.api.task" in sys.modules:
        return
    import scipy  # noqa: F401  (the real package: only scipy.spatial is deferred)

    with stand_ins(PTYCHI_DEFERRED):
        import ptychi.api.task  # noqa: F401


def warm_up(device: Device) -> None:
    """Import pty-chi and, unless the CPU is asked for, start CUDA: what the first epoch would
    otherwise wait for. `reconstruct` runs this in a thread while it loads the data."""
    import_ptychi()
    if device != Device.CPU:
        import torch

        try:
            if torch.cuda.is_available():
                torch.cuda.init()
        except Exception:  # the run reports an unusable GPU (`usable_device`)
            return


def build_options(settings: ReconSettings, device: str, n_patterns: int) -> Any:
    """The pty-chi options object for `settings` (blind positions: not refined)."""
    import_ptychi()
    import ptychi.api as api

    algorithm = settings.algorithm
    if algorithm in (Algorithm.LSQML, Algorithm.ALSQML):
        options = api.LSQMLOptions()
        options.reconstructor_options.noise_model = (
            api.NoiseModels.POISSON
            if settings.noise_model == NoiseModel.POISSON
            else api.NoiseModels.GAUSSIAN
        )
    elif algorithm == Algorithm.DM:
        options = api.DMOptions()
    elif algorithm == Algorithm.EPIE:
        options = api.EPIEOptions()
    elif algorithm == Algorithm.RPIE:
        options = api.RPIEOptions()
        options.object_options.alpha = 0.3
        options.probe_options.alpha = 0.3
    elif algorithm == Algorithm.ADAM:
        options = api.AutodiffPtychographyOptions()
        options.reconstructor_options.loss_function = (
            api.LossFunctions.POISSON
            if settings.noise_model == NoiseModel.POISSON
            else api.LossFunctions.MSE_SQRT
        )
        options.object_options.optimizer = api.Optimizers.ADAM
        options.object_options.step_size = ADAM_OBJECT_STEP
        options.probe_options.optimizer = api.Optimizers.ADAM
        options.probe_options.step_size = ADAM_PROBE_STEP
    else:  # pragma: no cover - the enum is exhaustive
        raise ReconstructionError(f"unknown algorithm {algorithm}")

    rec = options.reconstructor_options
    rec.num_epochs = settings.num_epochs or settings.max_epochs
    rec.batch_size = min(settings.effective_batch_size, n_patterns)
    if algorithm == Algorithm.ALSQML:
        rec.batch_size = balanced_batch_size(n_patterns, rec.batch_size)
    if algorithm == Algorithm.ADAM and settings.batch_size is None:
        rec.batch_size = max(1, min(rec.batch_size, max(8, n_patterns // ADAM_MIN_UPDATES)))
    rec.default_device = api.Devices.GPU if device == "cuda" else api.Devices.CPU
    rec.random_seed = settings.seed
    rec.allow_nondeterministic_algorithms = settings.seed is None
    options.object_options.optimizable = True
    options.probe_options.optimizable = True
    if algorithm == Algorithm.ALSQML:
        options.probe_options.optimization_plan.start = PROBE_HOLD_EPOCHS
    options.probe_position_options.optimizable = False
    options.data_options.fft_shift = True
    return options


@contextmanager
def _torch_state(threads: int | None):
    """Set torch's thread count for the run; restore the global state pty-chi changes."""
    import torch

    old_threads = torch.get_num_threads()
    old_device = torch.get_default_device()
    old_dtype = torch.get_default_dtype()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        # torch reports "cpu" when no default was set; setting "cpu" would leave a device
        # mode (a cost on every call) where there was none
        torch.set_default_device(None if old_device.type == "cpu" else old_device)
        torch.set_default_dtype(old_dtype)


@contextmanager
def _memory_errors():
    """A device (or host) out of memory in the run becomes a one-line `ReconstructionError`;
    pty-chi's own calls are converted where they are made."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError as exc:
        raise ReconstructionError(f"out of memory: {one_line(exc)}") from exc
    except RuntimeError as exc:
        if "can't allocate memory" not in str(exc):
            raise
        raise ReconstructionError(f"out of memory: {one_line(exc)}") from exc


DEVICE_DATA_SHARE = 0.25
"""Keep the measured patterns on the GPU when they take at most this share of its free memory."""


def data_fits_on_device(device: str, nbytes: int) -> bool:
    """Whether the patterns should live on the GPU (saves a host-to-device copy per batch)."""
    if device != "cuda":
        return False
    import torch

    free, _ = torch.cuda.mem_get_info()
    return nbytes <= DEVICE_DATA_SHARE * free


def _last_loss(task: Any) -> float:
    table = task.reconstructor.loss_tracker.table
    if len(table) == 0:
        return math.nan
    return float(table["loss"].iloc[-1])


def counts_like(intensities: np.ndarray) -> bool:
    """Whether the intensities look like photon counts (whole numbers), so that the Poisson
    noise floor applies; scaled or background-subtracted data do not."""
    sample = intensities[: FIT_SAMPLE_PATTERNS * 4].astype(np.float64)
    return bool(np.all(np.abs(sample - np.round(sample)) <= 1e-3 + 1e-5 * sample))


class _FitVsNoise:
    """The model's amplitude error on a fixed sample of training patterns, and the error that
    Poisson noise alone would leave on them given the model's predicted intensities.

    The prediction uses pty-chi's own patch extraction and every probe mode.
    """

    def __init__(
        self, task: Any, intensities: np.ndarray, positions_px: np.ndarray, seed: int | None
    ) -> None:
        import torch

        n = intensities.shape[0]
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(n, size=min(n, FIT_SAMPLE_PATTERNS), replace=False))
        self.task = task
        device = task.object.data.device
        self.positions = torch.as_tensor(positions_px[pick], dtype=torch.float32, device=device)
        self.amplitudes = torch.as_tensor(np.sqrt(intensities[pick]), device=device)

    def __call__(self) -> tuple[float, float]:
        import torch

        from flyrecon.noise_floor import amplitude_noise_floor

        with torch.no_grad():
            probe = self.task.probe.data[0]  # (modes, N, N), first OPR mode
            patches = self.task.object.extract_patches(self.positions, probe.shape[-2:])[:, 0]
            far = torch.fft.fft2(patches[:, None] * probe[None])
            predicted = torch.fft.fftshift((far.abs() ** 2).sum(1), dim=(-2, -1))
            error = float(((predicted.sqrt() - self.amplitudes) ** 2).mean())
            floor = amplitude_noise_floor(predicted).mean(dtype=torch.float64)
        return error, float(floor)


def new_task(options: Any, inp: EngineInput) -> Any:
    """A pty-chi task for `inp` with `options` (from `build_options`); line scans included.

    Patterns kept on the GPU (`save_data_on_device`) that do not fit there after all (other
    jobs share the GPU) are kept on the host instead. The batch order follows the seed."""
    import torch
    from ptychi.api.task import PtychographyTask

    def task_for(options: Any) -> Any:
        return PtychographyTask(
            options,
            diffraction_data=inp.intensities,
            object_data=inp.object_init[None],
            probe_data=inp.probe_init[None, None],
            probe_position_x_px=inp.positions_px[:, 1],
            probe_position_y_px=inp.positions_px[:, 0],
        )

    try:
        task = task_for(options)
    except torch.OutOfMemoryError:
        if not options.data_options.save_data_on_device:
            raise
        options.data_options.save_data_on_device = False
        torch.cuda.empty_cache()
        task = task_for(options)
    _seed_batches(task, options.reconstructor_options.random_seed)
    _widen_flat_roi(task)
    return task


def _seed_batches(task: Any, seed: int | None) -> None:
    """Make the batch order follow `seed` (None: a fresh random order).

    pty-chi shuffles the patterns with a `torch.Generator` of its own, created with torch's
    fixed default seed: whatever `random_seed` says, every run drew the same batches."""
    generator = getattr(getattr(task.reconstructor, "dataloader", None), "generator", None)
    if generator is None:
        return
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)


def _widen_flat_roi(task: Any) -> None:
    """Give pty-chi's region of interest at least one pixel in each direction.

    pty-chi bounds the ROI by the extreme probe centres (end exclusive) and normalises the
    object over it; when every centre shares one row or one column (a line scan) the ROI is
    empty and the first epoch turns the object into NaN. One pixel is enough to fix that;
    a two-dimensional scan is left as it is.
    """
    obj = task.reconstructor.parameter_group.object
    bounds = obj.roi_bbox.tensor  # sy, ey, sx, ex
    if bounds[1] - bounds[0] < 1:
        bounds[1] = bounds[0] + 1
    if bounds[3] - bounds[2] < 1:
        bounds[3] = bounds[2] + 1


def _snapshot(task: Any) -> tuple[np.ndarray, np.ndarray]:
    obj = task.get_data_to_cpu("object", as_numpy=True)[0]
    probe = task.get_data_to_cpu("probe", as_numpy=True)[0, 0]
    return obj.copy(), probe.copy()


def run_engine(
    inp: EngineInput,
    settings: ReconSettings,
    *,
    on_epoch: EpochCallback | None = None,
    inspect: ObjectCallback | None = None,
    coarse_start: bool = True,
) -> EngineResult:
    """Run pty-chi and return the result.

    With `settings.num_epochs` set, exactly that many epochs (the last iterate is returned).
    With None, the automatic stop (`convergence.StopRule`) ends the run at the first epoch
    whose fit reaches the data's Poisson noise floor, or once the object has stopped drifting
    (then the average of the last `WINDOW_EPOCHS` iterates is returned), or at `max_epochs`.
    The default algorithm (aLSQML) extrapolates the object between LSQML epochs
    (`convergence.ObjectMomentum`). `inspect` sees the object after every epoch
    (benchmarks score it). With the automatic stop and a flat start, aLSQML on a scan with
    little overlap first runs at half resolution and starts from that object
    (`flyrecon.coarse`: at most `coarse.MAX_EPOCHS` and `max_epochs` epochs there; if that
    stage fails the run starts flat; `coarse_start=False` skips it; when the noise floor
    ends the full-resolution run, its last iterates are averaged, as after more than
    `WINDOW_EPOCHS` epochs in any run but the half-resolution stage; that stage's path counts
    as travelled in the refinement's settled-movement stop). A GPU that `--device auto` finds
    unusable sends the run to the CPU (`usable_device`; the stop reason says so). Raises
    `ReconstructionError` when pty-chi raises, the loss stops being finite or the device runs
    out of memory.
    """
    _, note = usable_device(settings.device)
    if note:
        settings = settings.model_copy(update={"device": Device.CPU})
    result = _run_on(inp, settings, on_epoch, inspect, coarse_start=coarse_start)
    if note:
        result.stop_reason = f"{note}: {result.stop_reason}"
    return result


def _run_on(
    inp: EngineInput,
    settings: ReconSettings,
    on_epoch: EpochCallback | None,
    inspect: ObjectCallback | None,
    *,
    coarse_start: bool,
) -> EngineResult:
    """`run_engine` on a device known to work."""
    if (
        coarse_start
        and settings.num_epochs is None
        and settings.algorithm == Algorithm.ALSQML
        and settings.object_init == ObjectInit.ONES
        and coarse.wants_coarse_start(inp.positions_px, inp.probe_init)
    ):
        try:
            started, first = _coarse_start(inp, settings, on_epoch)
        except ReconstructionError as exc:  # the start is an aid: without it the run goes on
            result = _run(inp, settings, on_epoch=on_epoch, inspect=inspect)
            result.stop_reason = (
                f"the half-resolution start failed ({exc}), so from a flat start: "
                f"{result.stop_reason}"
            )
            return result
        result = _run(
            started,
            settings,
            on_epoch=on_epoch,
            inspect=inspect,
            average_at_floor_after=0,
            travelled_before=first.travelled,
        )
        result.coarse_epochs = first.epochs_run
        why = (
            f"its cap of {first.epochs_run}" if first.stop_kind == StopKind.CAP else first.stop_kind
        )
        result.stop_reason = (
            f"after {first.epochs_run} epoch{'s' * (first.epochs_run != 1)} at half "
            f"resolution (little overlap; {why}), {result.stop_reason}"
        )
        return result
    return _run(inp, settings, on_epoch=on_epoch, inspect=inspect)


def _coarse_start(
    inp: EngineInput, settings: ReconSettings, on_epoch: EpochCallback | None
) -> tuple[EngineInput, EngineResult]:
    """`inp` started from the same scan reconstructed at half resolution (at most
    `coarse.MAX_EPOCHS` epochs, and at most `max_epochs`), and that run."""
    intensities, positions, probe, shape = coarse.coarse_data(
        inp.intensities, inp.positions_px, inp.probe_init, inp.object_init.shape
    )
    small = EngineInput(
        intensities=intensities,
        positions_px=positions,
        object_init=np.ones(shape, dtype=np.complex64),
        probe_init=probe,
    )
    capped = settings.model_copy(update={"max_epochs": min(settings.max_epochs, coarse.MAX_EPOCHS)})
    first = _run(small, capped, on_epoch=on_epoch, average_at_floor_after=None)
    start = coarse.fine_start(first.object, inp.object_init.shape, inp.probe_init)
    return replace(inp, object_init=start), first


def _run(
    inp: EngineInput,
    settings: ReconSettings,
    *,
    on_epoch: EpochCallback | None = None,
    inspect: ObjectCallback | None = None,
    average_at_floor_after: int | None = WINDOW_EPOCHS,
    travelled_before: float = 0.0,
) -> EngineResult:
    """`run_engine` without the coarse start. A noise-floor stop after more than
    `average_at_floor_after` epochs returns the average of the last iterates, an earlier one
    the crossing (`StopRule.average_at_floor_after`). `travelled_before`: the path of the
    stage this run continues (`DriftMonitor`), counted in the settled-movement stop."""
    import logging
    import warnings

    from flyrecon.convergence import (
        FIRST_COUNTED_EPOCH,
        WINDOW_EPOCHS,
        ConvergenceTrace,
        DriftMonitor,
        IterateWindow,
        ObjectMomentum,
        StopDecision,
        StopKind,
        StopRule,
    )

    import_ptychi()
    device = resolve_device(settings.device)
    auto = settings.num_epochs is None
    planned = settings.max_epochs if auto else settings.num_epochs
    counts = counts_like(inp.intensities)
    rule = (
        StopRule(
            max_epochs=planned,
            use_noise_floor=counts,
            average_at_floor_after=average_at_floor_after,
        )
        if auto
        else None
    )
    with (
        _torch_state(settings.threads),
        warnings.catch_warnings(),
        _faster_kernels(),
        eager_dynamo(),
        _memory_errors(),
    ):
        warnings.filterwarnings("ignore", category=UserWarning)
        logging.getLogger("ptychi").setLevel(logging.WARNING)
        options = build_options(settings, device, inp.intensities.shape[0])
        options.reconstructor_options.num_epochs = planned
        try:
            options.data_options.save_data_on_device = data_fits_on_device(
                device, inp.intensities.nbytes
            )
            task = new_task(options, inp)
            check = (
                _FitVsNoise(task, inp.intensities, inp.positions_px, settings.seed)
                if auto and counts
                else None
            )
            drift = (
                DriftMonitor(_smooth_change(task, inp), travelled=travelled_before)
                if auto
                else None
            )
        except Exception as exc:
            raise ReconstructionError(
                f"pty-chi could not set up the task: {one_line(exc)}"
            ) from exc
        if device == "cpu":
            import torch

            torch.set_default_device(None)  # pty-chi's device mode only adds per-call overhead

        accelerated = settings.algorithm == Algorithm.ALSQML
        momentum = ObjectMomentum() if accelerated else None
        window = IterateWindow() if auto else None
        trace = ConvergenceTrace()
        losses: list[float] = []
        decision: StopDecision | None = None
        previous = None
        for epoch in range(1, planned + 1):
            try:
                task.run(n_epochs=1)
            except Exception as exc:
                raise ReconstructionError(
                    f"pty-chi failed at epoch {epoch}: {one_line(exc)}"
                ) from exc
            loss = _last_loss(task)
            losses.append(loss)
            if not math.isfinite(loss):
                raise ReconstructionError(f"loss became {loss} at epoch {epoch}")
            if on_epoch is not None:
                on_epoch(epoch, planned, loss)
            if inspect is not None:
                inspect(epoch, lambda task=task: _snapshot(task)[0])
            iterate = _object_tensor(task)
            fit = floor = straightness = size = movement = None
            if check is not None:
                fit, floor = check()
                if not math.isfinite(fit):
                    raise ReconstructionError(
                        f"the model's prediction became {fit} at epoch {epoch}"
                    )
            if drift is not None and previous is not None and epoch >= FIRST_COUNTED_EPOCH:
                reading = drift.update(drift.smooth(previous, iterate))
                size, straightness, movement = reading.size, reading.straightness, reading.movement
            if window is not None:
                window.push(iterate)
            beta = 0.0
            if momentum is not None and epoch >= 2:
                point, beta = momentum.step(iterate, straightness)
                if beta > 0:
                    _set_object(task, point)
            previous = iterate
            trace.append(
                fit=fit,
                noise_floor=floor,
                straightness=straightness,
                drift=size,
                momentum=beta,
                movement=movement,
            )
            if rule is not None:
                if momentum is not None and momentum.since_restart < WINDOW_EPOCHS:
                    straightness = None  # a restart in the window: its path is not a drift
                decision = rule.decide(epoch, fit, floor, straightness, movement)
                if decision is not None:
                    break

        averaged = 0
        if decision is not None and decision.average and window is not None:
            _set_object(task, window.average())
            averaged = len(window.items)
        elif decision is not None and decision.crossing is not None and window is not None:
            before, after = window.items[-2], window.items[-1]
            _set_object(task, before + decision.crossing * (after - before))
        elif momentum is not None and previous is not None:
            _set_object(task, previous)  # the iterate, not the extrapolated point
        if decision is None:
            decision = StopDecision(StopKind.FIXED, len(losses), f"fixed {len(losses)} epochs")
        obj, probe = _snapshot(task)
        positions = task.get_data_to_cpu("probe_positions", as_numpy=True)
        if not (np.isfinite(obj).all() and np.isfinite(probe).all()):
            raise ReconstructionError("the reconstructed object or probe holds NaN or Inf")
        try:
            options_dict = json.loads(json.dumps(options.get_dict(), default=str))
        except Exception:  # pragma: no cover - recording options must never fail a job
            options_dict = {"unavailable": True}
        travelled = drift.travelled if drift is not None else 0.0
        del task, check, drift, window, momentum, previous
    if auto and not counts and decision.kind == StopKind.CAP:
        decision = StopDecision(
            decision.kind,
            decision.epoch,
            decision.reason + " (the data are not whole photon counts: no noise floor)",
        )
    return EngineResult(
        object=obj.astype(np.complex64),
        probe=probe.astype(np.complex64),
        positions_px=np.array(positions, dtype=np.float64),
        loss_history=losses,
        options=options_dict,
        device=device,
        epochs_run=len(losses),
        trace=trace,
        stop_kind=decision.kind,
        stop_reason=decision.reason,
        averaged_epochs=averaged,
        travelled=travelled,
    )


def _object_tensor(task: Any) -> Any:
    """A copy of the current object (first slice), complex, on the task's device."""
    return task.reconstructor.parameter_group.object.data.detach()[0].clone()


def _set_object(task: Any, obj: Any) -> None:
    """Replace the task's object (first slice) by `obj`."""
    import torch

    with torch.no_grad():
        task.reconstructor.parameter_group.object.set_data(obj[None])


def _smooth_change(task: Any, inp: EngineInput) -> Any:
    """The smooth-change measure on the illuminated region of this scan's canvas."""
    import torch

    from flyrecon.convergence import LOWPASS_SIGMA_PER_DIAMETER, SmoothChange
    from flyrecon.metrics import illuminated_mask
    from flyrecon.simulate import probe_diameter_px

    rows, cols = inp.object_init.shape
    mask = illuminated_mask(
        (rows, cols),
        inp.positions_px[:, 0] + rows / 2,
        inp.positions_px[:, 1] + cols / 2,
        inp.probe_init,
    )
    device = task.reconstructor.parameter_group.object.data.device
    sigma = LOWPASS_SIGMA_PER_DIAMETER * probe_diameter_px(inp.probe_init)
    return SmoothChange(torch.as_tensor(mask, device=device), max(sigma, 1.0))


_PTYCHI_BATCH_PUT: Callable[..., Any] | None = None
"""pty-chi's own `image_proc.batch_put`, kept while `_faster_kernels` replaces it."""


@contextmanager
def _faster_kernels():
    """Replace two of pty-chi's `image_proc` kernels by equal, cheaper ones while running.

    - `fourier_shift`: pty-chi shifts every probe by its position's fractional part each
      batch, building the phase ramp exp(-2 pi i (fy sy + fx sx)) pixel by pixel: a quarter
      of an LSQML epoch on the CPU. The ramp is separable (a row factor times a column
      factor), and a whole-pixel shift is the identity (`_separable_fourier_shift`).
    - `batch_put`: on the CPU pty-chi adds a batch of patches into the object with
      `index_put_(accumulate=True)`, a fifth of an LSQML epoch; `scatter_add_` does the same
      additions in the same order three to five times faster (`_cpu_batch_put`).

    Both results equal pty-chi's (tests/test_engine_speed.py): the shift to float rounding,
    the patch sums bit for bit.
    """
    import ptychi.image_proc as ip

    global _PTYCHI_BATCH_PUT
    originals = ip.fourier_shift, ip.batch_put
    if ip.batch_put is not _cpu_batch_put:
        _PTYCHI_BATCH_PUT = ip.batch_put
    ip.fourier_shift = _separable_fourier_shift
    ip.batch_put = _cpu_batch_put
    try:
        yield
    finally:
        ip.fourier_shift, ip.batch_put = originals


def _cpu_batch_put(
    image: Any,
    patches: Any,
    sy: Any,
    sx: Any,
    op: str = "add",
    check_bounds: bool = True,
) -> Any:
    """pty-chi's `batch_put` (same arguments and result); on the CPU, adding patches into
    `image` in place with `scatter_add_` (deterministic there) instead of `index_put_`."""
    import ptychi.image_proc as ip

    if op != "add" or image.device.type != "cpu":
        original = _PTYCHI_BATCH_PUT or ip.batch_put
        return original(image, patches, sy, sx, op=op, check_bounds=check_bounds)
    rows, cols = image.shape[-2:]
    if check_bounds and (
        sy.min() < 0
        or sy.max() + patches.shape[-2] > rows
        or sx.min() < 0
        or sx.max() + patches.shape[-1] > cols
    ):
        raise ValueError("Patch indices are out of bounds.")
    index = ip._patch_linear_indices(sy, sx, tuple(patches.shape[-2:]), cols)
    flat = image.reshape(-1)
    flat.scatter_add_(0, index.reshape(-1), patches.reshape(-1))
    return flat.reshape(rows, cols)


def _separable_fourier_shift(
    images: Any, shifts: Any, strictly_preserve_zeros: bool = False
) -> Any:
    """pty-chi's `fourier_shift` (same arguments and result), computed with separable ramps."""
    import ptychi.image_proc as ip
    import ptychi.maths as pmath
    import torch

    if strictly_preserve_zeros:
        zero_mask = (images == 0).float()
        zero_mask_shifted = _separable_fourier_shift(zero_mask, shifts)
    shifts = shifts.to(images.device)
    if shifts.device.type == "cpu" and not bool(torch.any(shifts)):
        shifted = images.clone()
    else:
        ft = pmath.fft2_precise(images)
        fy, fx = ip._fft_frequency_grid(ft.device, images.shape[-2], images.shape[-1])
        ramp_y = torch.exp(-2j * torch.pi * fy[None, :, :1] * shifts[:, 0].view(-1, 1, 1))
        ramp_x = torch.exp(-2j * torch.pi * fx[None, :1, :] * shifts[:, 1].view(-1, 1, 1))
        shifted = pmath.ifft2_precise(ft * ramp_y * ramp_x)
        if not images.dtype.is_complex:
            shifted = shifted.real
    if strictly_preserve_zeros:
        shifted[zero_mask_shifted > 0] = 0
    return shifted
