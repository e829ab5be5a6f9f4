"""Shared fixtures: small simulated DATA-001 files with known truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flyrecon import simulate
from flyrecon.data import PtychoDataset, save_dataset


def simulated_dataset(
    *,
    object_px: int = 96,
    probe_px: int = 32,
    step_px: float = 4.0,
    dose: float = 1e5,
    seed: int = 7,
    noise: bool = True,
) -> PtychoDataset:
    """A small far-field ptychography dataset whose truth is known."""
    rng = np.random.default_rng(seed)
    obj = simulate.procedural_object((object_px, object_px), rng)
    probe = simulate.focused_probe(
        probe_px, pupil_radius_px=probe_px / 8, defocus_rad=4.0, edge_taper_px=probe_px / 16
    )
    half = probe_px // 2
    y, x = simulate.raster_scan(
        (half, object_px - half), (half, object_px - half), step_px, 1.0, rng
    )
    expected = simulate.far_field_intensity(obj, probe, y, x)
    scale = simulate.dose_scale(expected, dose)
    if noise:
        amplitude = simulate.poisson_amplitude(expected, scale, rng)
    else:
        amplitude = np.sqrt(expected * scale).astype(np.float32)
    return PtychoDataset(
        diffraction=amplitude,
        object_guess=obj,
        probe_guess=probe,
        xcoords=x,
        ycoords=y,
        y_patches=simulate.object_patches(obj, y, x, probe_px).astype(np.complex64),
        metadata={"dose": dose, "intensity_scale": scale, "seed": seed},
    )


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 1e5-photon dataset (32x32 patterns) saved as DATA-001."""
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_dataset(path, simulated_dataset())
    return path


STUDY_DOSES = (1000, 10000, 100000)


def write_study_tree(
    root: Path, doses: tuple[int, ...] = STUDY_DOSES, skip: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """Phase C and D trees of tiny valid datasets for every dose, view and split.

    `skip` lists relative paths (e.g. "dose_1000/sparse/sparse_test.npz") left out of phase D.
    """
    phase_c, phase_d = root / "phase_c", root / "phase_d"
    for dose in doses:
        for split_index, split in enumerate(("train", "test")):
            data = simulated_dataset(object_px=64, step_px=8, dose=dose, seed=dose + split_index)
            c_dir = phase_c / f"dose_{dose}"
            c_dir.mkdir(parents=True, exist_ok=True)
            save_dataset(c_dir / f"patched_{split}.npz", data)
            for view in ("dense", "sparse"):
                rel = f"dose_{dose}/{view}/{view}_{split}.npz"
                if rel in skip:
                    continue
                (phase_d / f"dose_{dose}" / view).mkdir(parents=True, exist_ok=True)
                save_dataset(phase_d / rel, data)
    return phase_c, phase_d


@pytest.fixture(scope="session")
def study_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A complete 3-dose study tree (read-only: copy it before changing anything)."""
    return write_study_tree(tmp_path_factory.mktemp("study"))
