"""The convergence benchmark's bookkeeping: which targets a plain LSQML trace allows."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import bench_convergence as bench


def _rows(*points: tuple[int, float, float]) -> list[dict[str, float]]:
    return [{"epoch": e, "seconds": 0.1 * e, "phase_ssim": s, "error": err} for e, s, err in points]


def test_the_peak_ignores_the_flat_start_and_finds_both_bests() -> None:
    p = bench.peak(_rows((1, 0.9, 0.5), (2, 0.3, 0.20), (10, 0.5, 0.10), (30, 0.6, 0.12)))
    assert (p["ssim"], p["ssim_epoch"], p["error"], p["error_epoch"]) == (0.6, 30, 0.10, 10)


def test_epochs_that_meet_both_targets_are_found_or_none() -> None:
    # epoch 20 is within 0.01 of the best SSIM and 5 % of the lowest error; 30 is not
    p = bench.peak(_rows((2, 0.3, 0.2), (10, 0.55, 0.100), (20, 0.595, 0.104), (30, 0.6, 0.2)))
    assert p["both_epochs"] == [20, 20]
    # best SSIM at epoch 30 with a poor error, lowest error at epoch 2 with a poor SSIM
    p = bench.peak(_rows((2, 0.2, 0.10), (10, 0.4, 0.15), (30, 0.6, 0.20)))
    assert p["both_epochs"] is None


def test_the_verdict_and_summary_count_the_cells() -> None:
    plain = bench.peak(_rows((2, 0.3, 0.2), (10, 0.6, 0.1)))
    cells = {}
    for view, ssim, error, seconds in (("dense", 0.595, 0.104, 4.0), ("sparse", 0.5, 0.2, 6.0)):
        cell = {
            "plain_peak": plain,
            "plain100_seconds": 10.0,
            "patterns": 100,
            "default": {
                "phase_ssim": ssim,
                "error": error,
                "seconds": seconds,
                "epochs": 20,
                "stop_kind": "converged",
            },
        }
        cell["verdict"] = bench.verdict(cell)
        cells[f"obj/1000/{view}"] = cell
    assert cells["obj/1000/dense"]["verdict"] == {
        "ssim_ok": True,
        "error_ok": True,
        "time_ratio": 0.4,
        "time_ok": True,
    }
    assert not cells["obj/1000/sparse"]["verdict"]["time_ok"]
    summary = bench.summary({"cells": cells}).splitlines()
    assert summary[2].startswith("| dense | 1 | 1 | 1 | 1 | 1 | 1 |")
    assert summary[3].startswith("| sparse | 1 | 0 | 0 | 0 | 1 | 0 |")
    assert "†" not in bench.markdown({"cells": cells})
