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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flyrecon.errors import ReconstructionError
from flyrecon.options import Algorithm, Device, NoiseModel, ReconSettings

EpochCallback = Callable[[int, int, float], None]
"""Called after each epoch with (epochs done, epochs planned, loss)."""
ObjectCallback = Callable[[int, Callable[[], np.ndarray]], None]
"""Called after each epoch with (epochs done, a function returning a copy of the object)."""

MIN_EPOCHS_BEFORE_STOP = 2
"""The automatic stop never ends a run before this epoch: LSQML's first epoch only rescales
the probe, so a very faint data set could otherwise return the untouched starting object."""
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
    fit_history: list[float] = field(default_factory=list)
    """Automatic stop: mean squared amplitude error on the sampled patterns after each epoch."""
    noise_floor_history: list[float] = field(default_factory=list)
    """Automatic stop: the error Poisson noise alone would leave there (`noise_floor`)."""
    stop_reason: str = "fixed epochs"


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch)."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: Device) -> str:
    """`cpu` or `cuda` for the requested device; asking for CUDA without one is an error."""
    if device == Device.CPU:
        return "cpu"
    has_cuda = cuda_available()
    if device == Device.CUDA and not has_cuda:
        raise ReconstructionError("--device cuda was requested but torch sees no CUDA device")
    return "cuda" if has_cuda else "cpu"


ADAM_OBJECT_STEP = 2e-2
"""Adam step size of the object (pty-chi autodiff `step_size`); see docs/performance.md."""
ADAM_PROBE_STEP = 1e-3
"""Adam step size of the probe."""
ADAM_MIN_UPDATES = 8
"""Default Adam batches hold at most 1/8 of the patterns: >= 8 updates per epoch."""


def build_options(settings: ReconSettings, device: str, n_patterns: int) -> Any:
    """The pty-chi options object for `settings` (blind positions: not refined)."""
    import ptychi.api as api

    algorithm = settings.algorithm
    if algorithm == Algorithm.LSQML:
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
    if algorithm == Algorithm.ADAM and settings.batch_size is None:
        rec.batch_size = max(1, min(rec.batch_size, max(8, n_patterns // ADAM_MIN_UPDATES)))
    rec.default_device = api.Devices.GPU if device == "cuda" else api.Devices.CPU
    rec.random_seed = settings.seed
    rec.allow_nondeterministic_algorithms = settings.seed is None
    options.object_options.optimizable = True
    options.probe_options.optimizable = True
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
        torch.set_default_device(old_device)
        torch.set_default_dtype(old_dtype)


DEVICE_DATA_SHARE = 0.25
"""Keep the measured patterns on the GPU when they take at most this share of its free memory."""


def _data_fits_on_device(device: str, nbytes: int) -> bool:
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
) -> EngineResult:
    """Run pty-chi and return the result.

    With `settings.num_epochs` set, exactly that many epochs. With None, training stops after
    the first epoch whose amplitude error on a sample of the patterns is at most the error that
    Poisson noise alone leaves (further epochs would fit the noise), or after `max_epochs`.
    `inspect` sees the object after every epoch (benchmarks/sweep_quality.py scores it).
    Raises `ReconstructionError` when pty-chi raises or the loss stops being finite.
    """
    import logging
    import warnings

    device = resolve_device(settings.device)
    auto = settings.num_epochs is None
    planned = settings.max_epochs if auto else settings.num_epochs
    stop_reason = "fixed epochs"
    if auto:
        stop_reason = f"max_epochs ({planned}) reached above the noise floor"
        if not counts_like(inp.intensities):
            auto = False
            stop_reason = (
                f"max_epochs ({planned}): the data are not whole photon counts, so their "
                "noise floor is unknown"
            )
    with _torch_state(settings.threads), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        from ptychi.api.task import PtychographyTask

        logging.getLogger("ptychi").setLevel(logging.WARNING)
        options = build_options(settings, device, inp.intensities.shape[0])
        options.reconstructor_options.num_epochs = planned
        options.data_options.save_data_on_device = _data_fits_on_device(
            device, inp.intensities.nbytes
        )
        try:
            task = PtychographyTask(
                options,
                diffraction_data=inp.intensities,
                object_data=inp.object_init[None],
                probe_data=inp.probe_init[None, None],
                probe_position_x_px=inp.positions_px[:, 1],
                probe_position_y_px=inp.positions_px[:, 0],
            )
            _widen_flat_roi(task)
            check = (
                _FitVsNoise(task, inp.intensities, inp.positions_px, settings.seed)
                if auto
                else None
            )
        except Exception as exc:
            raise ReconstructionError(
                f"pty-chi could not set up the task: {_one_line(exc)}"
            ) from exc
        if device == "cpu":
            import torch

            torch.set_default_device(None)  # pty-chi's device mode only adds per-call overhead

        losses: list[float] = []
        fits: list[float] = []
        floors: list[float] = []
        for epoch in range(1, planned + 1):
            try:
                task.run(n_epochs=1)
            except Exception as exc:
                raise ReconstructionError(
                    f"pty-chi failed at epoch {epoch}: {_one_line(exc)}"
                ) from exc
            loss = _last_loss(task)
            losses.append(loss)
            if not math.isfinite(loss):
                raise ReconstructionError(f"loss became {loss} at epoch {epoch}")
            if on_epoch is not None:
                on_epoch(epoch, planned, loss)
            if inspect is not None:
                inspect(epoch, lambda task=task: _snapshot(task)[0])
            if check is None:
                continue
            fit, floor = check()
            if not math.isfinite(fit):
                raise ReconstructionError(f"the model's prediction became {fit} at epoch {epoch}")
            fits.append(fit)
            floors.append(floor)
            if fit <= floor and epoch >= MIN_EPOCHS_BEFORE_STOP:
                stop_reason = (
                    f"reached the Poisson noise floor at epoch {epoch} (amplitude error "
                    f"{fit:.4g} <= {floor:.4g}): more epochs would fit the noise"
                )
                break

        obj, probe = _snapshot(task)
        positions = task.get_data_to_cpu("probe_positions", as_numpy=True)
        if not (np.isfinite(obj).all() and np.isfinite(probe).all()):
            raise ReconstructionError("the reconstructed object or probe holds NaN or Inf")
        try:
            options_dict = json.loads(json.dumps(options.get_dict(), default=str))
        except Exception:  # pragma: no cover - recording options must never fail a job
            options_dict = {"unavailable": True}
        del task, check
    return EngineResult(
        object=obj.astype(np.complex64),
        probe=probe.astype(np.complex64),
        positions_px=np.array(positions, dtype=np.float64),
        loss_history=losses,
        options=options_dict,
        device=device,
        epochs_run=len(losses),
        fit_history=fits,
        noise_floor_history=floors,
        stop_reason=stop_reason,
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
