"""The stop-rule replay's bookkeeping: where a variant ends a recorded run, what it returns."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import bench_stop_rules as bench

from flyrecon.convergence import StopKind


def _cell(fits: list[float] | None = None) -> dict:
    """20 recorded epochs: a steady path (straightness 0.9) to epoch 10, jitter (0.15) from
    epoch 11; the movement 5 % to epoch 15, 0.5 % from 16. Scored every 4 epochs."""
    seen = []
    for epoch in range(1, 21):
        straight = None if epoch < 8 else 0.9 if epoch <= 10 else 0.15
        moved = None if epoch < 8 else 0.05 if epoch <= 15 else 0.005
        fit = fits[epoch - 1] if fits else 2.0
        seen.append([epoch, fit, 1.0, straight, moved])
    return {
        "max_epochs": 20,
        "use_noise_floor": True,
        "seen": seen,
        "epochs": 20,
        "stop_kind": "max epochs",
        "seconds_per_epoch": 0.5,
        "scored": {str(e): [e / 100, 1 / e] for e in (8, 12, 16, 20)},
        "end": [0.99, 0.01],
    }


def test_a_variant_stops_where_its_thresholds_are_first_met() -> None:
    cell = _cell()
    # straightness below 0.2 from epoch 11: the scored average of epoch 8 (<= 11)
    assert bench.replay(cell, 0.2, 0.01) == {
        "epoch": 11,
        "kind": "converged",
        "ssim": 0.08,
        "error": 1 / 8,
    }
    # a stricter straightness: the movement below 1 % from epoch 16
    assert bench.replay(cell, 0.1, 0.01)["epoch"] == 16
    assert bench.replay(cell, 0.1, 0.01)["ssim"] == 0.16
    # neither: the recorded end and what the run returned
    assert bench.replay(cell, 0.1, 0.001) == {
        "epoch": 20,
        "kind": "max epochs",
        "ssim": 0.99,
        "error": 0.01,
    }


def test_the_noise_floor_ends_the_replay_as_it_ended_the_run() -> None:
    fits = [2.0] * 5 + [0.9] * 15  # below 0.95 x the floor at epoch 6
    cell = _cell(fits) | {"epochs": 6, "stop_kind": "noise floor", "seen": _cell(fits)["seen"][:6]}
    stop = bench.replay(cell, 0.2, 0.01)
    assert (stop["epoch"], stop["kind"], stop["ssim"]) == (6, "noise floor", 0.99)


def test_the_judge_shifts_the_default_time_by_the_epochs() -> None:
    result = {
        "plain_peak": {"ssim": 0.2, "error": 0.1},
        "plain100_seconds": 20.0,
        "default": {"seconds": 9.5, "epochs": 10},
    }
    stop = {"epoch": 12, "ssim": 0.195, "error": 0.104}
    verdict = bench.judge(stop, _cell(), result)
    assert verdict["quality"] and not verdict["time"]
    assert verdict["ratio"] == pytest.approx((9.5 + 2 * 0.5) / 20.0)
    assert bench.judge(stop | {"epoch": 8}, _cell(), result)["time"]


def test_the_recording_rule_never_stops_converged_and_keeps_what_it_saw() -> None:
    rule = bench._Recording(max_epochs=5)
    assert rule.decide(3, 2.0, 1.0, 0.0, 0.0) is None  # a converged path, not stopped
    stop = rule.decide(4, 0.5, 1.0, 0.0, 0.0)
    assert stop is not None and stop.kind == StopKind.NOISE_FLOOR
    assert rule.seen == [[3, 2.0, 1.0, 0.0, 0.0], [4, 0.5, 1.0, 0.0, 0.0]]
