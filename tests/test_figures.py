"""Figures: each function writes a valid PNG, for complete and incomplete studies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flyrecon.figures import (
    JobSummary,
    StopMarks,
    job_figure,
    reconstruction_figure,
    study_figures,
)
from flyrecon.metrics import evaluate
from flyrecon.report import phase_image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_size_px: tuple[int, int] = (200, 200)) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= min_size_px[0] and height >= min_size_px[1], (width, height)
    assert not list(path.parent.glob(f".{path.name}.*")), "temporary file left behind"


def field(seed: int, size_px: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(size_px)[:, None], np.fft.fftfreq(size_px)[None, :])
    noise = rng.standard_normal((size_px, size_px)) + 1j * rng.standard_normal((size_px, size_px))
    smooth = np.fft.ifft2(np.fft.fft2(noise) * np.exp(-((f / 0.1) ** 2)))
    return (0.7 + 0.2 * smooth.real / np.abs(smooth).max()) * np.exp(1j * smooth.imag * 10)


@pytest.fixture
def job() -> dict:
    truth = field(0)
    rows, cols = np.indices(truth.shape)
    mask = np.hypot(rows - 32, cols - 32) < 24
    recon = truth + 0.05 * field(1)
    evaluation = evaluate(recon, truth, mask)
    return {"truth": truth, "mask": mask, "evaluation": evaluation}


def test_reconstruction_figure_writes_a_png(tmp_path: Path) -> None:
    path = reconstruction_figure(tmp_path / "r.png", field(0), field(1)[:16, :16], [3, 2, 1], "t")
    assert_png(path)


def test_job_figure_writes_a_png(tmp_path: Path, job: dict) -> None:
    evaluation = job["evaluation"]
    path = job_figure(
        tmp_path / "job.png",
        evaluation.aligned,
        job["truth"],
        job["mask"],
        field(2)[:16, :16],
        [10.0, 3.0, 1.0, 0.5],
        evaluation.metrics["frc"],
        "job",
    )
    assert path == tmp_path / "job.png"
    assert_png(path, (800, 600))


@pytest.mark.parametrize("span", [(0.1, 0.012), (0.03, 0.021), (0.5, 1e-4)])
def test_job_figure_keeps_every_panel_and_its_labels_inside_the_figure(
    tmp_path: Path, job: dict, monkeypatch: pytest.MonkeyPatch, span: tuple[float, float]
) -> None:
    """A loss over less than two decades gets labelled minor ticks (0.028): the loss panel,
    at the figure's left edge, must leave them and its axis label room. Its epochs are
    whole numbers."""
    from matplotlib.figure import Figure

    save, cut, ticks = Figure.savefig, [], []

    def save_and_measure(fig: Figure, *args, **kwargs) -> None:
        save(fig, *args, **kwargs)
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            if ax.get_title().startswith("loss"):
                ticks.extend(ax.get_xticks())
            box = ax.get_tightbbox(renderer)
            if box.x0 < 0 or box.x1 > fig.bbox.width or box.y0 < 0:
                cut.append((ax.get_title(), box.x0, box.x1))

    monkeypatch.setattr(Figure, "savefig", save_and_measure)
    evaluation = job["evaluation"]
    loss = list(np.geomspace(*span, 17))  # 17 epochs: matplotlib would tick 2.5, 7.5
    job_figure(
        tmp_path / "job.png",
        evaluation.aligned,
        job["truth"],
        job["mask"],
        field(2)[:16, :16],
        loss,
        evaluation.metrics["frc"],
        "job",
        StopMarks({}, "noise floor", stop_epoch=17, averaged_epochs=8),
    )
    assert cut == []
    assert ticks and all(float(t).is_integer() for t in ticks)  # epochs


def test_job_figure_copes_without_loss_or_frc(tmp_path: Path, job: dict) -> None:
    path = job_figure(
        tmp_path / "bare.png", job["truth"], job["truth"], job["mask"], field(2), [], None, "bare"
    )
    assert_png(path)


def study_rows(tmp_path: Path) -> list:
    """Two splits, three views, doses with gaps, one failed job, phase from npz and arrays."""
    rows: list = []
    for d, dose in enumerate((1e4, 1e5, 1e6)):
        for v, view in enumerate(("baseline", "dense", "sparse")):
            if view == "sparse" and dose == 1e5:
                continue  # a missing dose
            for split in ("train", "test"):
                metrics = {
                    "phase_ssim": 0.3 + 0.2 * d - 0.05 * v,
                    "amplitude_ssim": 0.4 + 0.15 * d,
                    "complex_relative_error": 0.3 / (d + 1),
                    "frc_resolution_0p5_px": 8.0 / (d + 1),
                }
                rows.append(
                    JobSummary(
                        dose, view, split, "succeeded", metrics, phase_image=np.angle(field(d))
                    )
                )
    rows.append(JobSummary(1e5, "sparse", "test", "failed", None))
    out = tmp_path / "job"
    out.mkdir()
    np.savez(out / "ptychi_reconstruction.npz", object=field(7))
    rows.append(
        JobSummary(
            1e7,
            "dense",
            "test",
            "succeeded",
            {"phase_ssim": 0.95},
            phase_image=phase_image(out / "ptychi_reconstruction.npz"),
        )
    )
    never = phase_image(tmp_path / "never-written" / "ptychi_reconstruction.npz")
    rows.append(JobSummary(1e7, "baseline", "test", "failed", None, phase_image=never))
    return rows


def test_study_figures_write_pngs_with_failures_and_missing_doses(tmp_path: Path) -> None:
    paths = study_figures(tmp_path / "figures", study_rows(tmp_path))
    names = sorted(p.name for p in paths)
    assert names == ["metrics_vs_dose.png", "phase_grid_test.png", "phase_grid_train.png"]
    for path in paths:
        assert_png(path, (400, 400))


def test_study_of_only_failed_jobs_still_draws(tmp_path: Path) -> None:
    rows = [JobSummary(1e5, "baseline", "test", "failed", None)]
    paths = study_figures(tmp_path, rows)
    assert len(paths) == 2
    for path in paths:
        assert_png(path, (100, 100))


def test_phase_comes_from_the_npz_with_its_offset_removed(tmp_path: Path) -> None:
    obj = field(3)
    np.savez(tmp_path / "r.npz", object=obj * np.exp(1j * 2.0))
    np.savez(tmp_path / "s.npz", object=obj)
    assert phase_image(tmp_path / "missing.npz") is None
    assert np.allclose(phase_image(tmp_path / "r.npz"), phase_image(tmp_path / "s.npz"), atol=1e-9)
