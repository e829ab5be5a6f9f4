"""The half-resolution start for scans with little overlap (`flyrecon.coarse`): which scans
get it, the coarse data's conventions, the way back to full resolution, and (real pty-chi)
that it beats a flat start on a sparse scan, the refinement returning its iterates' average."""

from __future__ import annotations

import numpy as np
import pytest

from flyrecon import coarse, engine
from flyrecon.convergence import WINDOW_EPOCHS, StopKind
from flyrecon.engine import EngineInput, EngineResult, run_engine
from flyrecon.errors import ReconstructionError
from flyrecon.inputs import engine_input
from flyrecon.metrics import compare
from flyrecon.options import Algorithm, Device, ObjectInit, ReconSettings
from flyrecon.scoring import truth_region
from flyrecon.simulate import probe_diameter_px
from helpers import simulated_dataset


def _disc_probe(size: int = 64, radius: float = 10.0) -> np.ndarray:
    rows, cols = np.indices((size, size)) - size / 2
    return (np.hypot(rows, cols) <= radius).astype(np.complex64)


def _raster(step: float, count: int = 6) -> np.ndarray:
    y, x = np.meshgrid(np.arange(count) * step, np.arange(count) * step, indexing="ij")
    return np.stack([y.ravel(), x.ravel()], axis=1)


def test_the_scan_step_is_the_median_nearest_neighbour_distance() -> None:
    assert coarse.scan_step_px(_raster(5.0)) == pytest.approx(5.0)
    repeated = np.concatenate([_raster(7.0), _raster(7.0)[:3]])
    assert coarse.scan_step_px(repeated) == pytest.approx(7.0)  # a repeat is not a neighbour
    assert coarse.scan_step_px(np.zeros((1, 2))) == np.inf


def test_only_scans_with_little_overlap_get_the_coarse_start() -> None:
    probe = _disc_probe()
    diameter = probe_diameter_px(probe)
    assert coarse.wants_coarse_start(_raster(0.9 * diameter), probe)
    assert not coarse.wants_coarse_start(_raster(0.3 * diameter), probe)
    assert coarse.wants_coarse_start(_raster(0.45 * diameter), probe)  # between the two
    assert not coarse.wants_coarse_start(_raster(0.9 * 6), _disc_probe(16, 3.0))  # too small
    assert not coarse.wants_coarse_start(_raster(0.9 * diameter), _disc_probe(62))  # not /4


def test_the_coarse_data_keep_the_centre_the_counts_and_the_probe() -> None:
    n = 64
    intensities = np.zeros((3, n, n), dtype=np.float32)
    intensities[:, n // 2, n // 2] = 100.0  # DC at the centre
    intensities[:, 0, 0] = 5.0  # outside the centre half: dropped
    rows, cols = np.indices((n, n)) - n / 2
    probe = np.exp(-(rows**2 + cols**2) / (2 * 6.0**2)).astype(np.complex64)  # band-limited
    positions = np.array([[0.0, 0.0], [3.0, -5.0], [-7.5, 2.5]])
    small, moved, small_probe, shape = coarse.coarse_data(intensities, positions, probe, (101, 98))
    assert small.shape == (3, 32, 32) and small[:, 16, 16].tolist() == [100.0] * 3
    assert small.sum() == 300.0
    np.testing.assert_allclose(moved, positions / 2)
    assert shape == (52, 50)  # half, rounded up to even sizes
    # the cropped probe is the probe sampled every second pixel, scaled to the cropped counts
    expected = probe[::2, ::2] * np.sqrt(100.0 / (32 * 32 * np.sum(np.abs(probe[::2, ::2]) ** 2)))
    np.testing.assert_allclose(small_probe, expected, atol=1e-4 * np.abs(expected).max())


def test_the_fine_start_puts_coarse_features_back_where_they_were() -> None:
    probe = _disc_probe(64, 8.0)  # diameter ~15 px: a low-pass sigma of ~1.5 px
    fine_shape = (120, 100)
    small_shape = (60, 50)
    rows, cols = np.indices(small_shape)
    bump_at = (20, 31)
    phase = np.exp(-((rows - bump_at[0]) ** 2 + (cols - bump_at[1]) ** 2) / (2 * 3.0**2))
    start = coarse.fine_start(np.exp(1j * phase), fine_shape, probe)
    assert start.shape == fine_shape and start.dtype == np.complex64
    weight = np.angle(start)
    centre = [float((np.indices(fine_shape)[i] * weight).sum() / weight.sum()) for i in (0, 1)]
    # full-resolution p <-> coarse (p - rows / 2) / 2 + coarse_rows / 2
    pairs = zip(bump_at, small_shape, fine_shape, strict=True)
    expected = [2 * (q - s / 2) + f / 2 for q, s, f in pairs]
    assert np.allclose(centre, expected, atol=0.1), (centre, expected)
    flat = coarse.fine_start(np.ones(small_shape, np.complex64), fine_shape, probe)
    np.testing.assert_allclose(flat, 1.0, atol=1e-5)


@pytest.mark.slow
def test_a_sparse_scan_reconstructs_better_from_the_coarse_start() -> None:
    """Real pty-chi: on a scan whose step is 0.7 probe diameters the default starts at half
    resolution, the noise floor ends the full-resolution run, which returns the average of
    its iterates, and that object is closer to the truth than the same run from a flat
    start."""
    data = simulated_dataset(object_px=112, step_px=16.0, dose=1e4, seed=5)
    settings = ReconSettings(device=Device.CPU, threads=1)
    inp, canvas = engine_input(data, settings)
    truth, mask = truth_region(data, canvas)
    assert coarse.wants_coarse_start(inp.positions_px, inp.probe_init)
    iterates: list[np.ndarray] = []
    started = run_engine(inp, settings, inspect=lambda _, get: iterates.append(get()))
    flat = run_engine(inp, settings, coarse_start=False)
    assert started.coarse_epochs > 0 and "half resolution" in started.stop_reason
    assert flat.coarse_epochs == 0
    # the noise floor ends the refinement, which returns the average of its iterates
    assert started.stop_kind == StopKind.NOISE_FLOOR
    n = min(started.epochs_run, WINDOW_EPOCHS)
    assert len(iterates) == started.epochs_run and started.averaged_epochs == n
    assert np.allclose(started.object, np.mean(iterates[-n:], axis=0), atol=1e-5)
    assert f"average of the last {n} iterates" in started.stop_reason
    better = compare(started.object, truth, mask)
    worse = compare(flat.object, truth, mask)
    assert better["complex_relative_error"] < worse["complex_relative_error"]
    assert better["phase_ssim"] > worse["phase_ssim"]


class _Stages:
    """A stand-in for the engine's `_run`: records each stage's input and settings."""

    def __init__(self, fail_coarse: bool = False) -> None:
        self.calls: list[tuple[tuple[int, ...], ReconSettings]] = []
        self.starts: list[np.ndarray] = []
        self.average_after: list[int | None] = []
        self.travelled_before: list[float] = []
        self.fail_coarse = fail_coarse

    def __call__(
        self,
        inp,
        settings,
        *,
        on_epoch=None,
        inspect=None,
        average_at_floor_after=WINDOW_EPOCHS,
        travelled_before=0.0,
    ) -> EngineResult:
        self.calls.append((inp.intensities.shape, settings))
        self.average_after.append(average_at_floor_after)
        self.travelled_before.append(travelled_before)
        self.starts.append(inp.object_init)
        if self.fail_coarse and len(self.calls) == 1:
            raise ReconstructionError("loss became nan at epoch 3")
        first = len(self.calls) == 1 and inp.intensities.shape[-1] == 32
        return EngineResult(
            object=np.full(inp.object_init.shape, 2.0 if first else 1.0, np.complex64),
            probe=inp.probe_init,
            positions_px=inp.positions_px,
            loss_history=[1.0] * 5,
            options={},
            device="cpu",
            epochs_run=5,
            stop_kind=StopKind.CAP if first else StopKind.NOISE_FLOOR,
            stop_reason="stage reason",
            travelled=travelled_before + (0.5 if first else 0.25),
        )


def _sparse_input() -> EngineInput:
    probe = _disc_probe(64, 10.0)
    positions = _raster(0.9 * probe_diameter_px(probe)) - 40.0
    return EngineInput(
        intensities=np.ones((positions.shape[0], 64, 64), np.float32),
        positions_px=positions,
        object_init=np.ones((200, 200), np.complex64),
        probe_init=probe,
    )


def test_the_default_runs_the_half_resolution_stage_first_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stages = _Stages()
    monkeypatch.setattr(engine, "_run", stages)
    result = engine.run_engine(_sparse_input(), ReconSettings(max_epochs=300))
    (coarse_shape, coarse_settings), (fine_shape, fine_settings) = stages.calls
    assert coarse_shape[-2:] == (32, 32) and fine_shape[-2:] == (64, 64)
    assert coarse_settings.max_epochs == coarse.MAX_EPOCHS and fine_settings.max_epochs == 300
    assert np.all(stages.starts[0] == 1) and np.median(stages.starts[1].real) > 1.9  # its object
    # the stage keeps the crossing; the full-resolution run refining its object averages
    assert stages.average_after == [None, 0]
    # the refinement counts the stage's path as travelled (the settled-movement stop)
    assert stages.travelled_before == [0.0, 0.5] and result.travelled == 0.75
    assert result.coarse_epochs == 5 and result.epochs_run == 5
    assert result.stop_reason == (
        "after 5 epochs at half resolution (little overlap; its cap of 5), stage reason"
    )


@pytest.mark.parametrize(
    "settings",
    [
        ReconSettings(num_epochs=20),
        ReconSettings(algorithm=Algorithm.LSQML),
        ReconSettings(object_init=ObjectInit.GUESS),
    ],
    ids=["fixed epochs", "plain LSQML", "objectGuess start"],
)
def test_fixed_epochs_other_engines_and_a_given_start_run_as_asked(
    monkeypatch: pytest.MonkeyPatch, settings: ReconSettings
) -> None:
    stages = _Stages()
    monkeypatch.setattr(engine, "_run", stages)
    result = engine.run_engine(_sparse_input(), settings)
    assert [shape[-1] for shape, _ in stages.calls] == [64]
    assert result.coarse_epochs == 0 and result.stop_reason == "stage reason"
    stages.calls.clear()
    engine.run_engine(_sparse_input(), ReconSettings(), coarse_start=False)
    assert [shape[-1] for shape, _ in stages.calls] == [64]


def test_a_failed_half_resolution_stage_falls_back_to_a_flat_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stages = _Stages(fail_coarse=True)
    monkeypatch.setattr(engine, "_run", stages)
    inp = _sparse_input()
    result = engine.run_engine(inp, ReconSettings())
    assert [shape[-1] for shape, _ in stages.calls] == [32, 64]
    assert stages.starts[1] is inp.object_init  # flat, as given
    assert result.coarse_epochs == 0
    assert result.stop_reason.startswith("the half-resolution start failed (loss became nan")
