"""The truth-free automatic stop of `run_engine` (the Poisson noise floor), and that a fixed
epoch count is exact.

Real pty-chi on a tiny scan (a few epochs of 32x32 patterns); where a test must know exactly
when the fit reaches the floor, the fit-vs-noise check is replaced by a scripted sequence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import simulated_dataset
from flyrecon import engine
from flyrecon.data import load_dataset, save_dataset
from flyrecon.engine import run_engine
from flyrecon.metrics import compare, illuminated_mask
from flyrecon.options import Algorithm, Device, ReconSettings, ReconstructOptions
from flyrecon.reconstruct import engine_input

pytestmark = pytest.mark.slow


def _input(npz: Path, settings: ReconSettings) -> engine.EngineInput:
    options = ReconstructOptions(input_npz=npz, output_dir=npz.parent, settings=settings)
    inp, _ = engine_input(load_dataset(npz), options)
    return inp


def _settings(**kw) -> ReconSettings:
    return ReconSettings(device=Device.CPU, threads=1, **kw)


@pytest.mark.parametrize("max_epochs", [6, 4])
def test_auto_stop_ends_at_the_first_epoch_whose_fit_reaches_the_noise_floor(
    tiny_npz: Path, monkeypatch: pytest.MonkeyPatch, max_epochs: int
) -> None:
    # epoch 1 is below the floor but never ends a run (LSQML only rescales the probe there)
    scripted = [(0.5, 1.0), (2.0, 1.0), (1.01, 1.0), (0.99, 1.0), (0.5, 1.0), (0.4, 1.0)]
    objects: list[np.ndarray] = []

    class ScriptedCheck:
        def __init__(self, task, intensities, positions_px, seed) -> None:
            self.task = task

        def __call__(self) -> tuple[float, float]:
            objects.append(self.task.get_data_to_cpu("object", as_numpy=True)[0].copy())
            return scripted[len(objects) - 1]

    monkeypatch.setattr(engine, "_FitVsNoise", ScriptedCheck)
    settings = _settings(num_epochs=None, max_epochs=max_epochs)
    result = run_engine(_input(tiny_npz, settings), settings)
    assert result.epochs_run == 4
    assert result.fit_history == [f for f, _ in scripted[:4]]
    assert result.noise_floor_history == [1.0] * 4
    assert "noise floor at epoch 4" in result.stop_reason
    np.testing.assert_array_equal(result.object, objects[3].astype(np.complex64))


def test_auto_stop_scores_fit_and_floor_every_epoch_up_to_max_epochs(tiny_npz: Path) -> None:
    settings = _settings(num_epochs=None, max_epochs=3)
    result = run_engine(_input(tiny_npz, settings), settings)
    assert result.epochs_run == 3 == len(result.fit_history) == len(result.noise_floor_history)
    assert result.stop_reason.startswith("max_epochs")
    # 1e5 photons: the floor is a fraction of 1/4 (dark pixels are below it) and the first
    # epochs fit far worse than the noise
    assert all(0.0 < f < 0.26 for f in result.noise_floor_history)
    assert result.fit_history[0] > result.fit_history[-1] > result.noise_floor_history[-1]


def test_auto_stop_does_not_trust_a_floor_for_data_that_are_not_counts(tiny_npz: Path) -> None:
    settings = _settings(num_epochs=None, max_epochs=2)
    inp = _input(tiny_npz, settings)
    scaled = engine.EngineInput(
        inp.intensities * np.float32(0.37), inp.positions_px, inp.object_init, inp.probe_init
    )
    result = run_engine(scaled, settings)
    assert result.epochs_run == 2 and result.fit_history == []
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
    options = ReconstructOptions(input_npz=npz, output_dir=tmp_path, settings=auto)
    inp, canvas = engine_input(load_dataset(npz), options)
    truth = np.zeros(canvas.shape, np.complex64)
    cr, cc, _, _ = canvas.crop_of(data.object_guess.shape)
    truth[cr, cc] = data.object_guess
    mask = illuminated_mask(
        canvas.shape,
        data.ycoords - canvas.origin_px[0],
        data.xcoords - canvas.origin_px[1],
        data.probe_guess,
    )
    stopped = run_engine(inp, auto)
    fixed = run_engine(inp, _settings(num_epochs=40))
    assert "noise floor" in stopped.stop_reason and stopped.epochs_run <= 15
    early = compare(stopped.object, truth, mask)
    late = compare(fixed.object, truth, mask)
    assert early["complex_relative_error"] < late["complex_relative_error"]
    assert early["phase_ssim"] > late["phase_ssim"]


@pytest.mark.parametrize("algorithm", [Algorithm.ADAM, Algorithm.LSQML])
def test_fixed_num_epochs_runs_exactly_that_many_on_every_pattern(
    tiny_npz: Path, algorithm: Algorithm
) -> None:
    settings = _settings(algorithm=algorithm, num_epochs=3)
    result = run_engine(_input(tiny_npz, settings), settings)
    assert result.epochs_run == 3 == len(result.loss_history)
    assert result.fit_history == [] and result.stop_reason == "fixed epochs"
    assert result.options["reconstructor_options"]["num_epochs"] == 3


def test_defaults_are_the_classical_baseline_from_a_scaled_probe() -> None:
    s = ReconSettings()
    assert s.algorithm == Algorithm.LSQML and s.num_epochs is None and s.max_epochs == 25
    assert s.probe_init == "scaled"
