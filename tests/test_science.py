"""The study's physics shows in the metrics: quality rises with dose, dense beats sparse.

A small prep-synthetic study (3 doses x 3 views, train split) reconstructed with the real
pty-chi LSQML for a fixed number of epochs.
"""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from flyrecon.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, str], dict[str, float]]:
    root = tmp_path_factory.mktemp("science")
    prep = runner.invoke(
        app,
        ["prep-synthetic", "--output-root", str(root), "--preset", "quick", "--object-px", "192"],
    )
    assert prep.exit_code == 0, prep.output
    run = runner.invoke(
        app,
        [
            "study-run",
            "--study-root",
            str(root),
            "--split",
            "train",
            "--algorithm",
            "LSQML",
            "--num-epochs",
            "25",
            "--device",
            "cpu",
        ],
    )
    assert run.exit_code == 0, run.output
    rows = csv.DictReader((root / "reconstructions" / "study_summary.csv").open())
    return {
        (int(r["dose"]), r["view"]): {
            "phase_ssim": float(r["phase_ssim"]),
            "error": float(r["complex_relative_error"]),
        }
        for r in rows
    }


@pytest.mark.parametrize("view", ["baseline", "dense", "sparse"])
def test_quality_improves_with_dose(summary, view: str) -> None:
    ssim = [summary[(dose, view)]["phase_ssim"] for dose in (1000, 10000, 100000)]
    error = [summary[(dose, view)]["error"] for dose in (1000, 10000, 100000)]
    assert ssim[0] < ssim[1] < ssim[2], ssim
    assert error[0] > error[1] > error[2], error


def test_dense_at_least_as_good_as_sparse_at_the_highest_dose(summary) -> None:
    dense, sparse = summary[(100000, "dense")], summary[(100000, "sparse")]
    assert dense["phase_ssim"] >= sparse["phase_ssim"]
    assert dense["error"] <= sparse["error"]
