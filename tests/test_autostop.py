"""The truth-free automatic stop of `run_engine`, and that a fixed epoch count is exact.

Real pty-chi on a tiny scan (a few epochs of 32x32 patterns); the held-out score is replaced by
a scripted sequence where the test needs to know exactly where the best epoch is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flyrecon import engine
from flyrecon.data import load_dataset
from flyrecon.engine import run_engine
from flyrecon.options import Algorithm, Device, ReconSettings, ReconstructOptions
from flyrecon.reconstruct import engine_input

pytestmark = pytest.mark.slow


def _input(npz: Path, settings: ReconSettings) -> engine.EngineInput:
    options = ReconstructOptions(input_npz=npz, output_dir=npz.parent, settings=settings)
    inp, _ = engine_input(load_dataset(npz), options)
    return inp


def _settings(**kw) -> ReconSettings:
    return ReconSettings(device=Device.CPU, threads=1, **kw)


def test_auto_stop_returns_the_best_epoch_and_stops_early(
    tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = [5.0, 4.0, 3.0, 3.5, 3.2, 3.9, 1.0, 0.5]  # best at epoch 3, then 3 worse
    objects: list[np.ndarray] = []

    class ScriptedScore:
        def __init__(self, task, intensities, positions_px) -> None:
            self.task = task
            self.n_held = len(intensities)

        def __call__(self) -> float:
            objects.append(self.task.get_data_to_cpu("object", as_numpy=True)[0].copy())
            return scripted[len(objects) - 1]

    monkeypatch.setattr(engine, "_HoldoutScore", ScriptedScore)
    settings = _settings(num_epochs=None, max_epochs=len(scripted), patience=3)
    result = run_engine(_input(tiny_npz, settings), settings)
    assert result.epochs_run == 6 < settings.max_epochs
    assert result.best_epoch == 3
    assert result.holdout_history == scripted[:6]
    assert "stopped falling" in result.stop_reason
    np.testing.assert_array_equal(result.object, objects[2].astype(np.complex64))
    assert not np.array_equal(result.object, objects[-1].astype(np.complex64))


def test_auto_stop_holds_patterns_out_and_scores_them_every_epoch(tiny_npz: Path) -> None:
    settings = _settings(num_epochs=None, max_epochs=4, patience=10)
    inp = _input(tiny_npz, settings)
    result = run_engine(inp, settings)
    n = inp.intensities.shape[0]
    assert result.epochs_run == 4 == len(result.holdout_history)
    assert result.stop_reason.startswith("max_epochs")
    assert len(result.holdout_indices) == max(2, round(settings.holdout_fraction * n))
    assert result.best_epoch == int(np.argmin(result.holdout_history)) + 1
    assert all(np.isfinite(result.holdout_history))


@pytest.mark.parametrize("algorithm", [Algorithm.ADAM, Algorithm.LSQML])
def test_fixed_num_epochs_runs_exactly_that_many_on_every_pattern(
    tiny_npz: Path, algorithm: Algorithm
) -> None:
    settings = _settings(algorithm=algorithm, num_epochs=3)
    result = run_engine(_input(tiny_npz, settings), settings)
    assert result.epochs_run == 3 == len(result.loss_history)
    assert result.holdout_history == [] and result.holdout_indices == []
    assert result.best_epoch is None and result.stop_reason == "fixed epochs"
    assert result.options["reconstructor_options"]["num_epochs"] == 3


def test_defaults_are_the_classical_baseline_from_a_scaled_probe() -> None:
    s = ReconSettings()
    assert s.algorithm == Algorithm.LSQML and s.num_epochs == 50
    assert s.probe_init == "scaled"
