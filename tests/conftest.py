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
