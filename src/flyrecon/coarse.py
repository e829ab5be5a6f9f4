"""A half-resolution start for scans with little overlap (numpy only).

Where neighbouring probe positions are far apart (little overlap), each full-resolution
object pixel is seen by few patterns, and LSQML soon fits noise. The same data at half the
resolution (the centre half of every pattern: pixels twice as large, a quarter as many
unknowns) are far better determined. The default engine first reconstructs there and starts
the full-resolution run from that object, upsampled and low-passed (what is kept is the
slowly varying phase and amplitude; finer detail is left to the full-resolution data).

Measured on the benchmark family (docs/performance.md): its sparse views met all three
targets of issue 13 in 17 of 30 cells against 4 from a flat start; on its dense and baseline
scans (steps of 0.22-0.34 probe diameters) the start did not help (39 of 60 cells against
44: the full-resolution run stopped sooner, before its own slow tail), at 0.39-0.54 it did
(23 of 33 cells against 20), so it is used only from `STEP_PER_DIAMETER` on.
"""

from __future__ import annotations

import numpy as np

from flyrecon.simulate import probe_diameter_px

FACTOR = 2
"""Coarse pixels are this many full-resolution pixels wide."""
STEP_PER_DIAMETER = 0.37
"""Scans whose typical step (median nearest-neighbour distance) is at least this fraction of
the probe diameter (90 % power) get the coarse start. The benchmark's sparse views sit at
0.86-1.02, its dense and baseline scans at 0.22-0.34, where the start did not pay; at
0.39-0.54 (`INTERMEDIATE` in benchmarks/_family.py) it did (version 0.6.0; 0.6 before)."""
MIN_PATTERN_PX = 32
"""Smaller (or odd-sized) patterns are not cropped: the coarse patterns would be tiny."""
MAX_EPOCHS = 40
"""The coarse run's own cap: at high dose its fit does not reach the noise floor (the crop
is not an exact model of the data), and 40 epochs cost about a tenth of a second on 35
patterns of 32 x 32."""
LOWPASS_SIGMA_PER_DIAMETER = 0.1
"""The Gaussian low-pass of the upsampled start, as a fraction of the probe diameter. The
coarse object's finest structure (near its Nyquist frequency) takes the full-resolution run
longer to undo than a flat start's. On the 30 sparse benchmark views, both quality targets
in 13 cells without it, 15 / 17 / 17 / 14 / 11 at 0.05 / 0.1 / 0.14 / 0.175 / 0.3; on 18
scans of 0.61-0.75 probe diameters no choice was made on, 11 at 0.1 against 10 at 0.175."""
_NEIGHBOUR_SAMPLE = 512
"""The median step is measured from at most this many (evenly spaced) positions."""
_DISTANCES_PER_CHUNK = 1 << 20
"""Distances computed at once (8 MB): the memory stays small for any number of positions."""


def scan_step_px(positions_px: np.ndarray) -> float:
    """The median distance from a position to its nearest neighbour (pixels)."""
    positions = np.asarray(positions_px, dtype=np.float64)
    if positions.shape[0] < 2:
        return float("inf")
    picked = positions[:: max(1, positions.shape[0] // _NEIGHBOUR_SAMPLE)]
    rows = max(1, _DISTANCES_PER_CHUNK // positions.shape[0])
    nearest = []
    for chunk in np.array_split(picked, range(rows, picked.shape[0], rows)):
        distance = np.hypot(
            chunk[:, None, 0] - positions[None, :, 0], chunk[:, None, 1] - positions[None, :, 1]
        )
        distance[distance == 0] = np.inf  # itself (and exact repeats)
        nearest.append(distance.min(axis=1))
    return float(np.median(np.concatenate(nearest)))


def wants_coarse_start(positions_px: np.ndarray, probe: np.ndarray) -> bool:
    """Whether a scan has so little overlap that the coarse start pays."""
    size = probe.shape[-1]
    if size < MIN_PATTERN_PX or size % (2 * FACTOR) or probe.shape[-2] != size:
        return False
    step = scan_step_px(positions_px)
    return bool(np.isfinite(step) and step >= STEP_PER_DIAMETER * probe_diameter_px(probe))


def coarse_data(
    intensities: np.ndarray,
    positions_px: np.ndarray,
    probe: np.ndarray,
    object_shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """The same scan at 1/FACTOR resolution: the patterns' centre (DC at the centre), the
    positions in coarse pixels, the probe with its spectrum cropped alike (scaled to the
    cropped counts) and the coarse object shape (even sizes)."""
    n = intensities.shape[-1]
    m = n // FACTOR
    lo = (n - m) // 2
    cropped = np.ascontiguousarray(intensities[:, lo : lo + m, lo : lo + m])
    spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probe.astype(np.complex128))))
    small = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(spectrum[lo : lo + m, lo : lo + m])))
    power = m * m * float(np.sum(np.abs(small) ** 2))
    counts = float(np.mean(np.sum(cropped, axis=(1, 2), dtype=np.float64)))
    if power > 0 and counts > 0:
        small = small * np.sqrt(counts / power)
    rows, cols = (-(-s // FACTOR) for s in object_shape)
    shape = (rows + rows % 2, cols + cols % 2)
    return cropped, np.asarray(positions_px) / FACTOR, small.astype(np.complex64), shape


def fine_start(coarse: np.ndarray, fine_shape: tuple[int, int], probe: np.ndarray) -> np.ndarray:
    """The coarse object on the full-resolution canvas (linear interpolation), low-passed.

    Both canvases put position 0 at their centre: full-resolution pixel p lies at coarse
    coordinate (p - rows / 2) / FACTOR + coarse_rows / 2.
    """
    up = np.asarray(coarse, dtype=np.complex128)
    for axis, size in enumerate(fine_shape):
        small = up.shape[axis]
        q = (np.arange(size) - size / 2) / FACTOR + small / 2
        q = np.clip(q, 0, small - 1)
        i0 = np.minimum(np.floor(q).astype(int), small - 2)  # coarse sizes are even, >= 2
        w = q - i0
        a = np.take(up, i0, axis=axis)
        b = np.take(up, i0 + 1, axis=axis)
        shape = [1, 1]
        shape[axis] = size
        up = a + w.reshape(shape) * (b - a)
    sigma = LOWPASS_SIGMA_PER_DIAMETER * probe_diameter_px(probe)
    return (1.0 + _gaussian_blur(up - 1.0, sigma)).astype(np.complex64)


def _gaussian_blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur with zero padding (FFT); the canvas edge is unilluminated (1 - 1 = 0)."""
    pad = int(np.ceil(3 * sigma_px))
    rows, cols = image.shape
    shape = (rows + 2 * pad, cols + 2 * pad)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    gauss = np.exp(-2 * (np.pi * sigma_px) ** 2 * (fy**2 + fx**2))
    return np.fft.ifft2(np.fft.fft2(image, s=shape) * gauss)[:rows, :cols]
