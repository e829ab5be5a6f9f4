"""Every pty-chi call in flyrecon lives here; torch and pty-chi are imported only inside.

`run_engine` takes arrays already in pty-chi's conventions (intensities, positions relative to
the canvas centre) and returns numpy results. It runs epoch by epoch so it can report progress
and stop at the first non-finite loss, raising `ReconstructionError` with a one-line reason.
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

MIN_PATTERNS_FOR_HOLDOUT = 20
"""Below this many patterns an automatic stop holds nothing out and runs `max_epochs`."""


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
    holdout_history: list[float] = field(default_factory=list)
    """Automatic stop: error on the held-out patterns after each epoch."""
    best_epoch: int | None = None
    """Automatic stop: the epoch whose object and probe are returned."""
    holdout_indices: list[int] = field(default_factory=list)
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


def holdout_split(n: int, fraction: float, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) pattern indices; nothing is held out for small scans."""
    if n < MIN_PATTERNS_FOR_HOLDOUT:
        return np.arange(n), np.arange(0)
    n_hold = max(2, round(fraction * n))
    held = np.sort(np.random.default_rng(seed).choice(n, size=n_hold, replace=False))
    return np.setdiff1d(np.arange(n), held), held


class _HoldoutScore:
    """Error of pty-chi's current model on patterns it never trained on.

    The predicted intensity uses pty-chi's own patch extraction and every probe mode; the error
    is the mean squared difference of amplitudes (square roots of intensities).
    """

    def __init__(self, task: Any, intensities: np.ndarray, positions_px: np.ndarray) -> None:
        import torch

        self.task = task
        device = task.object.data.device
        self.positions = torch.as_tensor(positions_px, dtype=torch.float32, device=device)
        self.amplitudes = torch.as_tensor(np.sqrt(intensities), device=device)

    def __call__(self) -> float:
        import torch

        with torch.no_grad():
            probe = self.task.probe.data[0]  # (modes, N, N), first OPR mode
            patches = self.task.object.extract_patches(self.positions, probe.shape[-2:])[:, 0]
            far = torch.fft.fft2(patches[:, None] * probe[None])
            predicted = torch.fft.fftshift((far.abs() ** 2).sum(1), dim=(-2, -1)).sqrt()
            return float(((predicted - self.amplitudes) ** 2).mean())


def _snapshot(task: Any) -> tuple[np.ndarray, np.ndarray]:
    obj = task.get_data_to_cpu("object", as_numpy=True)[0]
    probe = task.get_data_to_cpu("probe", as_numpy=True)[0, 0]
    return obj.copy(), probe.copy()


def run_engine(
    inp: EngineInput,
    settings: ReconSettings,
    *,
    on_epoch: EpochCallback | None = None,
) -> EngineResult:
    """Run pty-chi and return the result.

    With `settings.num_epochs` set, exactly that many epochs on every pattern. With None, a
    seeded `holdout_fraction` of the patterns is held out; training stops when their error has
    not improved for `patience` epochs (or after `max_epochs`), and the object and probe of
    the best epoch are returned. Raises `ReconstructionError` when pty-chi raises or the loss
    stops being finite.
    """
    import logging
    import warnings

    device = resolve_device(settings.device)
    auto = settings.num_epochs is None
    n = inp.intensities.shape[0]
    train, held = (
        holdout_split(n, settings.holdout_fraction, settings.seed)
        if auto
        else (np.arange(n), np.arange(0))
    )
    planned = settings.max_epochs if auto else settings.num_epochs
    with _torch_state(settings.threads), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        from ptychi.api.task import PtychographyTask

        logging.getLogger("ptychi").setLevel(logging.WARNING)
        options = build_options(settings, device, len(train))
        options.reconstructor_options.num_epochs = planned
        options.data_options.save_data_on_device = _data_fits_on_device(
            device, inp.intensities[train].nbytes
        )
        try:
            task = PtychographyTask(
                options,
                diffraction_data=inp.intensities[train],
                object_data=inp.object_init[None],
                probe_data=inp.probe_init[None, None],
                probe_position_x_px=inp.positions_px[train, 1],
                probe_position_y_px=inp.positions_px[train, 0],
            )
            score = (
                _HoldoutScore(task, inp.intensities[held], inp.positions_px[held])
                if len(held)
                else None
            )
        except Exception as exc:
            raise ReconstructionError(
                f"pty-chi could not set up the task: {_one_line(exc)}"
            ) from exc

        losses: list[float] = []
        holdout: list[float] = []
        best: tuple[np.ndarray, np.ndarray] | None = None
        best_epoch: int | None = None
        stop_reason = "fixed epochs" if not auto else f"max_epochs ({planned}) reached"
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
            if score is None:
                continue
            holdout.append(score())
            if best_epoch is None or holdout[-1] < holdout[best_epoch - 1]:
                best, best_epoch = _snapshot(task), epoch
            elif epoch - best_epoch >= settings.patience:
                stop_reason = (
                    f"held-out error stopped falling (best at epoch {best_epoch}, "
                    f"{settings.patience} epochs without improvement)"
                )
                break

        obj, probe = best if best is not None else _snapshot(task)
        positions = task.get_data_to_cpu("probe_positions", as_numpy=True)
        if not (np.isfinite(obj).all() and np.isfinite(probe).all()):
            raise ReconstructionError("the reconstructed object or probe holds NaN or Inf")
        try:
            options_dict = json.loads(json.dumps(options.get_dict(), default=str))
        except Exception:  # pragma: no cover - recording options must never fail a job
            options_dict = {"unavailable": True}
        del task, score
    full_positions = np.array(inp.positions_px, dtype=np.float64)
    full_positions[train] = positions
    return EngineResult(
        object=obj.astype(np.complex64),
        probe=probe.astype(np.complex64),
        positions_px=full_positions,
        loss_history=losses,
        options=options_dict,
        device=device,
        epochs_run=len(losses),
        holdout_history=holdout,
        best_epoch=best_epoch,
        holdout_indices=[int(i) for i in held],
        stop_reason=stop_reason,
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
