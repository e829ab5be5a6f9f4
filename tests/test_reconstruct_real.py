"""The real pty-chi on tiny simulated data: the reconstruction must match the known object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flyrecon.cli import app
from flyrecon.data import PtychoDataset, save_dataset
from flyrecon.engine import run_engine
from flyrecon.inputs import engine_input
from flyrecon.metrics import compare
from flyrecon.options import ObjectInit, ReconSettings
from flyrecon.scoring import truth_region
from helpers import simulated_dataset

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """121 patterns of 32x32 at 1e5 photons: a few seconds of LSQML."""
    path = tmp_path_factory.mktemp("real") / "small.npz"
    save_dataset(path, simulated_dataset(object_px=96, step_px=6, seed=7))
    return path


def _initial_guess_scores(npz: Path) -> dict[str, float]:
    """Scores of the blind start (ones) against the truth: what 'no progress' gets."""
    from flyrecon.data import load_dataset

    data = load_dataset(npz)
    inp, canvas = engine_input(data, ReconSettings())
    truth, mask = truth_region(data, canvas)
    return compare(inp.object_init, truth, mask)


def test_positions_convention_is_exact(tmp_path: Path) -> None:
    """True object, true probe and noiseless data: pty-chi's first loss is zero."""
    data: PtychoDataset = simulated_dataset(object_px=64, step_px=8, noise=False, seed=5)
    settings = ReconSettings(
        algorithm="Adam",
        num_epochs=1,
        batch_size=1000,
        device="cpu",
        object_init=ObjectInit.GUESS,
    )
    inp, _ = engine_input(data, settings)
    true_probe = data.probe_guess * np.sqrt(data.metadata["intensity_scale"])
    inp = type(inp)(inp.intensities, inp.positions_px, inp.object_init, true_probe)
    exact = run_engine(inp, settings).loss_history[0]
    shifted = type(inp)(inp.intensities, inp.positions_px + 0.5, inp.object_init, true_probe)
    off_by_half = run_engine(shifted, settings).loss_history[0]
    assert exact < 1e-6 * off_by_half
    assert off_by_half > 1e-4


def test_lsqml_recovers_the_object(small_npz: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "reconstruct",
            "--input-npz",
            str(small_npz),
            "--output-dir",
            str(tmp_path),
            "--num-epochs",
            "20",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "result.json").read_text())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"] == metrics
    start = _initial_guess_scores(small_npz)
    assert start["phase_ssim"] < 0.1 and start["complex_relative_error"] > 0.2
    assert metrics["complex_relative_error"] < 0.5 * start["complex_relative_error"]
    assert metrics["complex_relative_error"] < 0.12
    assert metrics["phase_ssim"] > 0.45
    assert max(abs(s) for s in metrics["registration_shift_px"]) < 1.0
    with np.load(tmp_path / "ptychi_reconstruction.npz", allow_pickle=False) as npz:
        loss = npz["loss_history"]
    # the scaled probe starts close; the loss still falls 10-fold, to the Poisson floor
    assert len(loss) == 20 and loss[-1] < loss[0] / 8 and loss[-1] < min(loss[:10])


@pytest.mark.parametrize(
    ("algorithm", "extra", "bound"),
    [
        ("DM", [], 0.2),
        ("ePIE", [], 0.2),
        ("rPIE", [], 0.2),
        ("Adam", ["--probe-init", "scaled"], 0.2),
    ],
)
def test_other_engines_converge(
    small_npz: Path, tmp_path: Path, algorithm: str, extra: list[str], bound: float
) -> None:
    result = runner.invoke(
        app,
        [
            "reconstruct",
            "--input-npz",
            str(small_npz),
            "--output-dir",
            str(tmp_path),
            "--algorithm",
            algorithm,
            "--num-epochs",
            "20",
            "--device",
            "cpu",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["complex_relative_error"] < bound, metrics


def test_a_line_scan_reconstructs(tmp_path: Path) -> None:
    """Every centre on one row (as in the fixture): pty-chi's ROI would be empty (NaN)."""
    data = simulated_dataset(object_px=64, step_px=4, seed=3)
    row = data.ycoords == data.ycoords.min()
    line = PtychoDataset(
        diffraction=data.diffraction[row],
        object_guess=data.object_guess,
        probe_guess=data.probe_guess,
        xcoords=data.xcoords[row],
        ycoords=np.full(row.sum(), data.ycoords.min()),
        y_patches=None,
        metadata=data.metadata,
    )
    assert line.n_patterns >= 6 and np.ptp(line.ycoords) == 0
    npz = tmp_path / "line.npz"
    save_dataset(npz, line)
    args = ["reconstruct", "--input-npz", str(npz), "--output-dir", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--num-epochs", "10", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["complex_relative_error"] < 0.2, metrics


def test_the_seed_sets_the_batch_order() -> None:
    """pty-chi draws its batches from a generator of its own, whose seed torch fixes: the
    same seed must give the same object, another seed other batches (and object)."""
    data = simulated_dataset(object_px=64, step_px=8, seed=5)

    def run(seed: int) -> np.ndarray:
        settings = ReconSettings(
            algorithm="LSQML", num_epochs=2, batch_size=8, device="cpu", seed=seed, threads=1
        )
        inp, _ = engine_input(data, settings)
        return run_engine(inp, settings).object

    first = run(0)
    np.testing.assert_array_equal(run(0), first)
    assert np.abs(run(1) - first).max() > 1e-3 * np.abs(first).max()
