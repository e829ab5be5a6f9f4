"""A DATA-001 dataset in the engine's conventions: intensities, positions on a canvas, and the
initial object and probe (numpy only).

DATA-001 stores amplitudes and probe centres in objectGuess pixels; pty-chi wants intensities
and positions relative to the centre of its object buffer (`geometry.Canvas`).
"""

from __future__ import annotations

import numpy as np

from flyrecon.data import PtychoDataset
from flyrecon.engine import EngineInput
from flyrecon.geometry import Canvas, canvas_for, object_on_canvas
from flyrecon.options import ObjectInit, ProbeInit, ReconSettings


def initial_probe(dataset: PtychoDataset, policy: ProbeInit) -> np.ndarray:
    """The starting probe for `policy` (see `ProbeInit`)."""
    if policy == ProbeInit.GUESS:
        return dataset.probe_guess.copy()
    size = dataset.pattern_size
    mean_counts = float(np.mean(np.sum(dataset.diffraction.astype(np.float64) ** 2, axis=(1, 2))))
    if policy == ProbeInit.DATA:
        mean_amplitude = np.mean(dataset.diffraction, axis=0)
        probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(mean_amplitude)))
    else:
        probe = dataset.probe_guess.astype(np.complex128)
    power = size**2 * np.sum(np.abs(probe) ** 2)
    return (probe * np.sqrt(mean_counts / power)).astype(np.complex64)


def engine_input(dataset: PtychoDataset, settings: ReconSettings) -> tuple[EngineInput, Canvas]:
    """Convert a DATA-001 dataset into the engine's conventions on a canvas covering the scan."""
    canvas = canvas_for(dataset.ycoords, dataset.xcoords, dataset.pattern_size)
    if settings.object_init == ObjectInit.GUESS:
        obj = object_on_canvas(dataset.object_guess, canvas)
    else:
        obj = np.ones(canvas.shape, dtype=np.complex64)
    return (
        EngineInput(
            intensities=np.square(dataset.diffraction, dtype=np.float32),
            positions_px=canvas.positions_px(dataset.ycoords, dataset.xcoords),
            object_init=obj,
            probe_init=initial_probe(dataset, settings.probe_init),
        ),
        canvas,
    )
