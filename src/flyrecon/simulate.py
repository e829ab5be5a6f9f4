"""Pure physics of the synthetic datasets: probe, object, scan, far-field counts.

No I/O and no torch: numpy only, vectorised over patterns. Conventions follow DATA-001:
positions are probe centres in object pixels (x = column, y = row), the probe centre is pixel
N/2 of its N x N window, and diffraction is amplitude with DC at the centre. Scan positions
are whole pixels, so each exit wave is exactly probe x object patch.
"""

from __future__ import annotations

import numpy as np


def _frequency_radius(size: int) -> np.ndarray:
    """Distance of each pixel from the array centre (pixel size/2), in pixels."""
    ax = np.arange(size) - size // 2
    return np.hypot(*np.meshgrid(ax, ax, indexing="ij"))


def focused_probe(
    size: int = 64,
    pupil_radius_px: float = 8.0,
    defocus_rad: float = 4.0,
    edge_taper_px: float = 4.0,
) -> np.ndarray:
    """A zone-plate-like focus: a circular pupil with a defocus phase, propagated to the sample.

    The pupil (radius `pupil_radius_px` in the Fourier plane, its edge softened over
    `edge_taper_px` so the Airy tails do not wrap round the window) carries a quadratic phase
    of `defocus_rad` at its edge; its inverse transform is a defocused Airy spot with rings and
    phase curvature. The defaults give a 23 px (90 % power) spot in a 64 px window. Normalised
    to unit total power (sum |P|^2 = 1).
    """
    rho = _frequency_radius(size)
    ramp = np.clip((pupil_radius_px - rho) / edge_taper_px + 0.5, 0.0, 1.0)
    aperture = 0.5 - 0.5 * np.cos(np.pi * ramp)
    pupil = aperture * np.exp(1j * defocus_rad * (rho / pupil_radius_px) ** 2)
    probe = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(pupil)))
    probe /= np.sqrt(np.sum(np.abs(probe) ** 2))
    return probe.astype(np.complex64)


def probe_diameter_px(probe: np.ndarray, power_fraction: float = 0.9) -> float:
    """Diameter of the disc about the probe's intensity centroid holding `power_fraction`."""
    intensity = np.abs(probe) ** 2
    total = intensity.sum()
    rows, cols = np.indices(intensity.shape)
    cy = (rows * intensity).sum() / total
    cx = (cols * intensity).sum() / total
    radius = np.hypot(rows - cy, cols - cx).ravel()
    order = np.argsort(radius)
    cumulative = np.cumsum(intensity.ravel()[order]) / total
    idx = int(np.searchsorted(cumulative, power_fraction))
    return float(2.0 * radius[order][min(idx, radius.size - 1)])


def _multiscale_field(shape: tuple[int, int], rng: np.random.Generator, slope: float) -> np.ndarray:
    """Random field with a power-law spectrum (structure at every scale), scaled to [0, 1]."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / f**slope
    spectrum[0, 0] = 0
    field = np.fft.ifft2(spectrum).real
    field -= field.min()
    return field / field.max()


def _sharp_features(shape: tuple[int, int], rng: np.random.Generator, count: int) -> np.ndarray:
    """Discs and bars with hard edges, down to one pixel wide, as a {0, 1} map."""
    rows, cols = np.indices(shape)
    mask = np.zeros(shape, dtype=bool)
    for _ in range(count):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        if rng.random() < 0.5:
            radius = rng.uniform(1.0, 10.0)
            mask ^= np.hypot(rows - cy, cols - cx) <= radius
        else:
            width = int(rng.integers(1, 4))
            length = rng.uniform(8, 40)
            if rng.random() < 0.5:
                mask |= (np.abs(rows - cy) < width / 2) & (np.abs(cols - cx) < length / 2)
            else:
                mask |= (np.abs(cols - cx) < width / 2) & (np.abs(rows - cy) < length / 2)
    return mask.astype(np.float64)


def procedural_object(
    shape: tuple[int, int], rng: np.random.Generator, phase_range_rad: float = 1.6
) -> np.ndarray:
    """A complex test object with structure at many scales.

    Amplitude lies in [0.3, 1.0], phase spans `phase_range_rad`; smooth 1/f texture plus
    hard-edged discs and bars down to a pixel. Amplitude and phase are correlated but not equal.
    """
    count = max(8, shape[0] * shape[1] // 800)
    features = _sharp_features(shape, rng, count)
    texture_a = _multiscale_field(shape, rng, slope=1.3)
    texture_p = _multiscale_field(shape, rng, slope=1.1)
    amplitude = 1.0 - 0.45 * texture_a - 0.25 * features
    phase = phase_range_rad * (0.6 * texture_p + 0.4 * features)
    amplitude = np.clip(amplitude, 0.3, 1.0)
    return (amplitude * np.exp(1j * (phase - phase.mean()))).astype(np.complex64)


def raster_scan(
    row_range: tuple[float, float],
    col_range: tuple[float, float],
    step_px: float,
    jitter_px: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Whole-pixel probe centres on a jittered raster covering the given centre ranges.

    Returns (ycoords, xcoords) as float64; every centre stays inside the ranges.
    """
    (r0, r1), (c0, c1) = row_range, col_range
    ys = np.arange(r0, r1 + 1e-9, step_px)
    xs = np.arange(c0, c1 + 1e-9, step_px)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    gy = gy.ravel() + rng.uniform(-jitter_px, jitter_px, gy.size)
    gx = gx.ravel() + rng.uniform(-jitter_px, jitter_px, gx.size)
    gy = np.clip(np.rint(gy), np.ceil(r0), np.floor(r1))
    gx = np.clip(np.rint(gx), np.ceil(c0), np.floor(c1))
    return gy.astype(np.float64), gx.astype(np.float64)


def fermat_scan(
    row_range: tuple[float, float], col_range: tuple[float, float], step_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Whole-pixel probe centres on a Fermat spiral of mean spacing `step_px`, clipped to a box."""
    (r0, r1), (c0, c1) = row_range, col_range
    cy, cx = (r0 + r1) / 2, (c0 + c1) / 2
    reach = np.hypot(r1 - r0, c1 - c0) / 2
    n = int(np.ceil(np.pi * reach**2 / step_px**2))
    k = np.arange(n)
    radius = step_px * np.sqrt(k / np.pi)
    theta = k * np.pi * (3 - np.sqrt(5))
    y = np.rint(cy + radius * np.sin(theta))
    x = np.rint(cx + radius * np.cos(theta))
    keep = (y >= r0) & (y <= r1) & (x >= c0) & (x <= c1)
    return y[keep].astype(np.float64), x[keep].astype(np.float64)


def object_patches(
    obj: np.ndarray, ycoords: np.ndarray, xcoords: np.ndarray, size: int
) -> np.ndarray:
    """(n, size, size) object windows whose pixel size//2 sits on each probe centre."""
    windows = np.lib.stride_tricks.sliding_window_view(obj, (size, size))
    top = np.rint(ycoords).astype(np.intp) - size // 2
    left = np.rint(xcoords).astype(np.intp) - size // 2
    if (
        top.min() < 0
        or left.min() < 0
        or top.max() > windows.shape[0] - 1
        or (left.max() > windows.shape[1] - 1)
    ):
        raise ValueError("a probe window reaches outside the object")
    return windows[top, left]


def far_field_intensity(
    obj: np.ndarray,
    probe: np.ndarray,
    ycoords: np.ndarray,
    xcoords: np.ndarray,
    chunk: int = 1024,
) -> np.ndarray:
    """Expected far-field intensity |FFT(probe * patch)|^2, DC at the centre, float32 (n, N, N).

    The FFT is unnormalised (as pty-chi's): total intensity = N^2 * sum |probe * patch|^2.
    Computed in chunks of `chunk` patterns so memory stays bounded.
    """
    size = probe.shape[0]
    out = np.empty((len(ycoords), size, size), dtype=np.float32)
    for start in range(0, len(ycoords), chunk):
        stop = start + chunk
        exit_waves = object_patches(obj, ycoords[start:stop], xcoords[start:stop], size) * probe
        field = np.fft.fft2(np.fft.ifftshift(exit_waves, axes=(-2, -1)))
        out[start:stop] = np.fft.fftshift(np.abs(field) ** 2, axes=(-2, -1))
    return out


def dose_scale(expected_intensity: np.ndarray, dose: float) -> float:
    """Factor making the mean expected total counts per pattern equal `dose` photons."""
    return float(dose / expected_intensity.sum(axis=(-2, -1)).mean())


def poisson_amplitude(
    expected_intensity: np.ndarray, scale: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson counts of `scale * expected_intensity`, returned as amplitude sqrt(counts)."""
    counts = rng.poisson(expected_intensity * scale)
    return np.sqrt(counts, dtype=np.float32)


def greedy_spacing_selection(
    ycoords: np.ndarray, xcoords: np.ndarray, min_spacing_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Indices of a subset whose centres are pairwise at least `min_spacing_px` apart.

    Visits positions in a seeded random order and keeps each one that is far enough from every
    position kept so far (reproducible for a given generator state). Returned sorted.
    """
    order = rng.permutation(len(ycoords))
    kept: list[int] = []
    ky = np.empty(len(ycoords))
    kx = np.empty(len(ycoords))
    for idx in order:
        n = len(kept)
        if n == 0 or np.min(np.hypot(ky[:n] - ycoords[idx], kx[:n] - xcoords[idx])) >= (
            min_spacing_px
        ):
            ky[n], kx[n] = ycoords[idx], xcoords[idx]
            kept.append(int(idx))
    return np.sort(np.array(kept, dtype=np.intp))


def shifted_probe(probe: np.ndarray) -> np.ndarray:
    """The probe times (-1)^(row + col), complex128, for the shift-free far field.

    For an even window N, |fft2(shifted_probe(P) * patch)|^2 equals
    |fftshift(fft2(ifftshift(P * patch)))|^2 (DC at pixel N/2): the input shift only changes
    the phase of the field, and the output shift is the checkerboard folded into the probe.
    """
    rows, cols = probe.shape
    if rows != cols or rows % 2:
        raise ValueError(f"the probe window must be square and even, got {probe.shape}")
    sign = 1 - 2 * (np.add.outer(np.arange(rows), np.arange(cols)) % 2)
    return probe.astype(np.complex128) * sign


def poisson_counts_split(
    expected_intensity: np.ndarray, scale: float, threshold: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson counts of `scale * expected_intensity` (n, ...), int64, exact in distribution.

    Pixels of expectation `scale * I < threshold` ("faint") are sampled by Poisson splitting:
    independent Poisson variables conditioned on their sum are multinomial in proportion to
    their means, so each pattern's faint total K ~ Poisson(sum of its faint means) is drawn,
    then its K counts are placed by inverse-CDF sampling (uniforms searched in the float64
    cumulative sum of the faint means, all patterns at once), costing about one uniform per
    photon instead of one Poisson draw per pixel. The other pixels draw Generator.poisson.
    Draws, in order: the n faint totals, the uniforms, the bright pixels' Poisson counts.
    """
    n = expected_intensity.shape[0]
    flat = expected_intensity.reshape(-1)
    npx = flat.size // max(n, 1)
    cut = flat.dtype.type(threshold / scale) if scale > 0 else np.inf
    faint = flat < cut
    cum = np.cumsum(np.where(faint, flat, 0), dtype=np.float64)
    ends = cum[npx - 1 :: npx]
    starts = np.empty_like(ends)
    starts[:1] = 0.0
    starts[1:] = ends[:-1]
    totals = ends - starts
    k = rng.poisson(totals * scale)
    row = np.repeat(np.arange(n), k)
    keys = rng.random(row.size)
    keys *= totals[row]
    keys += starts[row]
    keys.sort()  # sorted keys make the search faster; the placement is the same
    where = np.searchsorted(cum, keys, side="right")
    np.minimum(where, flat.size - 1, out=where)  # a key rounded onto the very end
    counts = np.bincount(where, minlength=flat.size)
    bright = np.flatnonzero(~faint)
    counts[bright] += rng.poisson(flat[bright] * np.float64(scale))
    return counts.reshape(expected_intensity.shape)


def far_field_intensity_into(
    windows: np.ndarray,
    probe_shifted: np.ndarray,
    ycoords: np.ndarray,
    xcoords: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write |FFT(probe * patch)|^2 (DC centred) of each position into `out` (n, N, N) float32.

    `windows` is `sliding_window_view(obj, (N, N))` of a complex64 object and `probe_shifted`
    the complex64 `shifted_probe`: the exit waves are formed, transformed (scipy.fft.fft2,
    single precision, one thread: callers thread over chunks) and squared in one buffer.
    Single precision changes the intensities by about 1e-6 relative (4e-7 of the brightest).
    """
    import scipy.fft

    size = probe_shifted.shape[0]
    top = np.rint(ycoords).astype(np.intp) - size // 2
    left = np.rint(xcoords).astype(np.intp) - size // 2
    if len(top) and (
        top.min() < 0
        or left.min() < 0
        or top.max() > windows.shape[0] - 1
        or left.max() > windows.shape[1] - 1
    ):
        raise ValueError("a probe window reaches outside the object")
    field = windows[top, left]
    field *= probe_shifted
    field = scipy.fft.fft2(field, overwrite_x=True, workers=1)
    parts = field.view(np.float32)
    np.square(parts, out=parts)
    np.add(parts[..., 0::2], parts[..., 1::2], out=out)
