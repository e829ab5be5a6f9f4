"""The truth-free automatic stop of `run_engine` (noise floor, convergence, cap) with the real
pty-chi, and that a fixed epoch count is exact.

Real pty-chi on tiny scans (32x32 patterns); where a test must know exactly when the fit
reaches the floor, the fit-vs-noise check is replaced by a scripted sequence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flyrecon import convergence, engine
from flyrecon.convergence import WINDOW_EPOCHS, StopKind
from flyrecon.data import load_dataset, save_dataset
from flyrecon.engine import run_engine
from flyrecon.inputs import engine_input
from flyrecon.metrics import compare
from flyrecon.options import Algorithm, Device, ReconSettings
from flyrecon.scoring import truth_region
from helpers import simulated_dataset

pytestmark = pytest.mark.slow


def _input(npz: Path, settings: ReconSettings) -> engine.EngineInput:
    inp, _ = engine_input(load_dataset(npz), settings)
    return inp


def _settings(**kw) -> ReconSettings:
    return ReconSettings(device=Device.CPU, threads=1, **kw)


def _script_the_fit(
    monkeypatch: pytest.MonkeyPatch, scripted: list[tuple[float, float]]
) -> list[np.ndarray]:
    """Replace the engine's fit check by `scripted` (fit, floor) pairs, one per epoch; the
    returned list fills with the object each check saw (the epoch's iterate)."""
    objects: list[np.ndarray] = []

    class ScriptedCheck:
        def __init__(self, task, intensities, positions_px, seed) -> None:
            self.task = task

        def __call__(self) -> tuple[float, float]:
            objects.append(self.task.get_data_to_cpu("object", as_numpy=True)[0].copy())
            return scripted[len(objects) - 1]

    monkeypatch.setattr(engine, "_FitVsNoise", ScriptedCheck)
    return objects


@pytest.mark.parametrize("max_epochs", [6, 4])
def test_auto_stop_ends_at_the_first_epoch_whose_fit_reaches_the_noise_floor(
    tiny_npz: Path, monkeypatch: pytest.MonkeyPatch, max_epochs: int
) -> None:
    # epoch 1 is below the floor but never ends a run (LSQML only rescales the probe there)
    scripted = [(0.5, 1.0), (2.0, 1.0), (1.01, 1.0), (0.93, 1.0), (0.5, 1.0), (0.4, 1.0)]
    objects = _script_the_fit(monkeypatch, scripted)
    settings = _settings(num_epochs=None, max_epochs=max_epochs)
    result = run_engine(_input(tiny_npz, settings), settings)
    assert result.epochs_run == 4 and result.stop_kind == StopKind.NOISE_FLOOR
    assert result.trace.fit == [f for f, _ in scripted[:4]]
    assert result.averaged_epochs == 0
    assert result.trace.noise_floor == [1.0] * 4
    assert "noise floor at epoch 4" in result.stop_reason
    # the object where the fit crossed 0.95 x the floor: three quarters of the way from epoch
    # 3's iterate (1.01) to epoch 4's (0.93), not the point momentum would continue from
    expected = objects[2] + 0.75 * (objects[3] - objects[2])
    np.testing.assert_allclose(result.object, expected, rtol=1e-5, atol=1e-6)


def test_a_late_noise_floor_stop_returns_the_average_of_the_last_iterates(
    tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After more than WINDOW_EPOCHS epochs the window no longer holds the start: a
    noise-floor stop then returns the average of the window's iterates, as a converged stop
    does, not the crossing."""
    stop_at = WINDOW_EPOCHS + 2
    scripted = [(2.0, 1.0)] * (stop_at - 1) + [(0.9, 1.0)]
    objects = _script_the_fit(monkeypatch, scripted)
    settings = _settings(num_epochs=None, max_epochs=stop_at + 5)
    result = run_engine(_input(tiny_npz, settings), settings)
    assert result.epochs_run == stop_at and result.stop_kind == StopKind.NOISE_FLOOR
    assert result.averaged_epochs == WINDOW_EPOCHS
    assert f"average of the last {WINDOW_EPOCHS} iterates" in result.stop_reason
    expected = np.mean(objects[-WINDOW_EPOCHS:], axis=0)
    np.testing.assert_allclose(result.object, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("restart_at", "stop_at"), [(None, 10), (6, 14)])
def test_no_converged_stop_while_a_momentum_restart_is_in_the_window(
    tiny_npz: Path, monkeypatch: pytest.MonkeyPatch, restart_at: int | None, stop_at: int
) -> None:
    """The drift is scripted as converged from the start (straightness 0.1); the stop still
    waits until a full window of epochs has passed without a momentum restart."""

    class ScriptedDrift:
        def __init__(self, smooth, travelled: float = 0.0) -> None:
            self.smooth = lambda a, b: None
            self.travelled = travelled

        def update(self, change) -> convergence.Drift:
            return convergence.Drift(1.0, 0.1, 0.1)

    class RestartingMomentum(convergence.ObjectMomentum):
        epoch = 1

        def step(self, x, straightness=None):
            self.epoch += 1  # called from epoch 2 on
            point, beta = super().step(x, straightness)
            if self.epoch == restart_at:
                self.j = 1  # as a restart leaves it
            return point, beta

    monkeypatch.setattr(convergence, "DriftMonitor", ScriptedDrift)
    monkeypatch.setattr(convergence, "ObjectMomentum", RestartingMomentum)
    settings = _settings(num_epochs=None, max_epochs=20)
    result = run_engine(_input(tiny_npz, settings), settings)
    assert result.stop_kind == StopKind.CONVERGED and result.epochs_run == stop_at
    assert result.trace.straightness[2:] == [0.1] * (stop_at - 2)  # traced as measured


def test_auto_stop_traces_every_epoch_up_to_max_epochs(tiny_npz: Path) -> None:
    settings = _settings(num_epochs=None, max_epochs=3)
    result = run_engine(_input(tiny_npz, settings), settings)
    trace = result.trace
    assert result.epochs_run == 3 == len(trace.fit) == len(trace.noise_floor)
    assert result.stop_kind == StopKind.CAP and result.stop_reason.startswith("max_epochs")
    # 1e5 photons: the floor is a fraction of 1/4 (dark pixels are below it) and the first
    # epochs fit far worse than the noise
    assert all(0.0 < f < 0.26 for f in trace.noise_floor)
    assert trace.fit[0] > trace.fit[-1] > trace.noise_floor[-1]
    # the drift is measured from epoch 3 on; the window is not full yet
    assert np.isnan(trace.drift[:2]).all() and trace.drift[2] > 0
    assert np.isnan(trace.straightness).all()
    assert trace.momentum[0] == 0.0  # the default extrapolates from epoch 2 on


def test_auto_stop_does_not_trust_a_floor_for_data_that_are_not_counts(tiny_npz: Path) -> None:
    settings = _settings(num_epochs=None, max_epochs=2)
    inp = _input(tiny_npz, settings)
    scaled = engine.EngineInput(
        inp.intensities * np.float32(0.37), inp.positions_px, inp.object_init, inp.probe_init
    )
    result = run_engine(scaled, settings)
    assert result.epochs_run == 2 and np.isnan(result.trace.fit).all()
    assert "not whole photon counts" in result.stop_reason


def test_the_noise_floor_stops_a_sparse_low_dose_scan_before_it_fits_the_noise(
    tmp_path: Path,
) -> None:
    """36 patterns at 300 photons: LSQML fits the noise within a few epochs. The stop must
    come early, and its object must be closer to the truth than 40 fixed epochs'."""
    data = simulated_dataset(object_px=96, step_px=12.0, dose=300, seed=11)
    npz = tmp_path / "sparse.npz"
    save_dataset(npz, data)
    auto = _settings(num_epochs=None, max_epochs=40)
    inp, canvas = engine_input(load_dataset(npz), auto)
    truth, mask = truth_region(data, canvas)
    stopped = run_engine(inp, auto)
    fixed = run_engine(inp, _settings(num_epochs=40))
    assert stopped.stop_kind == StopKind.NOISE_FLOOR and stopped.epochs_run <= 15
    early = compare(stopped.object, truth, mask)
    late = compare(fixed.object, truth, mask)
    assert early["complex_relative_error"] < late["complex_relative_error"]
    assert early["phase_ssim"] > late["phase_ssim"]


@pytest.mark.parametrize("algorithm", [Algorithm.ADAM, Algorithm.LSQML, Algorithm.ALSQML])
def test_fixed_num_epochs_runs_exactly_that_many_on_every_pattern(
    tiny_npz: Path, algorithm: Algorithm
) -> None:
    settings = _settings(algorithm=algorithm, num_epochs=3)
    result = run_engine(_input(tiny_npz, settings), settings)
    assert result.epochs_run == 3 == len(result.loss_history)
    assert result.stop_kind == StopKind.FIXED and result.averaged_epochs == 0
    assert np.isnan(result.trace.fit).all()
    assert result.options["reconstructor_options"]["num_epochs"] == 3


def test_plain_lsqml_with_fixed_epochs_is_plain_ptychi(tiny_npz: Path) -> None:
    """`--algorithm LSQML --num-epochs N` is the comparison baseline: no extrapolation."""
    settings = _settings(algorithm=Algorithm.LSQML, num_epochs=4)
    result = run_engine(_input(tiny_npz, settings), settings)
    assert result.trace.momentum == [0.0] * 4


def test_defaults_are_the_accelerated_engine_with_a_safety_net() -> None:
    s = ReconSettings()
    assert s.algorithm == Algorithm.ALSQML and s.num_epochs is None and s.max_epochs == 300
    assert s.probe_init == "scaled" and s.effective_batch_size == 64


@pytest.mark.parametrize("most", [1, 7, 64, 96])
def test_balanced_batches_keep_the_batch_count_and_leave_no_straggler(most: int) -> None:
    """pty-chi cuts a random order into chunks of the batch size: with the balanced size
    there are as many chunks as with `most`, none larger than `most`, and the last is at
    most (number of batches - 1) smaller than the others (65 in 64s: 33 + 32, not 64 + 1)."""
    for n in range(1, 700):
        size = engine.balanced_batch_size(n, most)
        chunks = [min(size, n - start) for start in range(0, n, size)]
        assert len(chunks) == -(-n // most)
        assert max(chunks) <= most and min(chunks) >= max(chunks) - (len(chunks) - 1)
    assert engine.balanced_batch_size(65, 64) == 33
    assert engine.balanced_batch_size(261, 64) == 53


def test_alsqml_splits_the_patterns_into_equal_batches_and_plain_lsqml_does_not() -> None:
    def batch(algorithm: Algorithm, n_patterns: int, batch_size: int | None = None) -> int:
        settings = _settings(algorithm=algorithm, batch_size=batch_size)
        options = engine.build_options(settings, "cpu", n_patterns)
        return options.reconstructor_options.batch_size

    assert batch(Algorithm.ALSQML, 65) == 33 and batch(Algorithm.ALSQML, 128) == 64
    assert batch(Algorithm.ALSQML, 40) == 40 and batch(Algorithm.ALSQML, 100, 30) == 25
    assert batch(Algorithm.LSQML, 65) == 64  # the comparison baseline stays plain pty-chi


def test_the_default_lands_within_reach_of_a_long_plain_runs_best(tmp_path: Path) -> None:
    """Blind, with no epoch flags, the default reaches plain LSQML's best (over 120 fixed
    epochs, scored every 4) to within 0.01 phase SSIM and 5 % complex error, in fewer epochs."""
    data = simulated_dataset(object_px=96, step_px=5, dose=1e5, seed=21)
    npz = tmp_path / "d.npz"
    save_dataset(npz, data)
    plain = _settings(algorithm=Algorithm.LSQML, num_epochs=120)
    inp, canvas = engine_input(load_dataset(npz), plain)
    truth, mask = truth_region(data, canvas)
    scores: list[dict] = []

    def inspect(epoch: int, get_object) -> None:
        if epoch >= 2 and epoch % 4 == 0:
            scores.append(compare(get_object(), truth, mask))

    run_engine(inp, plain, inspect=inspect)
    best_ssim = max(s["phase_ssim"] for s in scores)
    best_error = min(s["complex_relative_error"] for s in scores)
    default = run_engine(inp, _settings())
    got = compare(default.object, truth, mask)
    assert default.stop_kind in (StopKind.CONVERGED, StopKind.NOISE_FLOOR)
    assert default.epochs_run < 120
    assert got["phase_ssim"] >= best_ssim - 0.01, (got["phase_ssim"], best_ssim)
    assert got["complex_relative_error"] <= 1.05 * best_error


def test_alsqml_holds_the_probe_for_its_first_epochs_and_plain_lsqml_does_not(
    tiny_npz: Path,
) -> None:
    """aLSQML refines the probe only from epoch PROBE_HOLD_EPOCHS + 1 on (the first object
    step is not absorbed into it); plain LSQML keeps pty-chi's schedule. Epoch 1 only
    rescales probe and object in both, so plain LSQML's probe changes shape at epoch 2."""

    def reshaped(probe: np.ndarray) -> float:
        """How far `probe` is from a multiple of the initial probe (LSQML rescales it)."""
        scale = np.vdot(inp.probe_init, probe) / np.vdot(inp.probe_init, inp.probe_init)
        return float(np.linalg.norm(probe - scale * inp.probe_init) / np.linalg.norm(probe))

    held = _settings(num_epochs=engine.PROBE_HOLD_EPOCHS)
    inp = _input(tiny_npz, held)
    assert reshaped(run_engine(inp, held).probe) < 1e-6
    after = _settings(num_epochs=engine.PROBE_HOLD_EPOCHS + 1)
    assert reshaped(run_engine(inp, after).probe) > 1e-3
    plain = _settings(algorithm=Algorithm.LSQML, num_epochs=2)
    assert reshaped(run_engine(inp, plain).probe) > 1e-3
