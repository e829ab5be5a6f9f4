"""Quality of a reconstruction against the known object: pure numpy, scipy and scikit-image.

Everything is scored on the region the scan illuminated (`illuminated_mask`), after aligning
the reconstruction to the truth (`align`):

1. sub-pixel registration: scikit-image `phase_cross_correlation` (upsampled 100x, so shifts
   resolve to 0.01 px) of the mean-removed complex images, both weighted by a window that
   tapers to zero inside the illuminated region (unlit canvas never enters), applied to the
   reconstruction as a Fourier shift; iterated, so the window's pull towards zero shift fades;
2. optional removal of a linear phase ramp (default on): a blind reconstruction is only
   defined up to one (object x exp(i g.r) with probe x exp(-i g.r) fits the data equally
   well), so it is not an error; found from the peak of the zero-padded spectrum of
   truth x conj(recon), refined by an amplitude-weighted least-squares plane fit;
3. the global complex scale (phase offset and amplitude factor): least squares on the mask.

Phase of the reconstruction is taken as truth phase + wrapped phase difference, so a phase
wrap in either image is not counted as an error. All values returned by `compare` are plain
floats, ints, bools, strings and lists (JSON-ready).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

UPSAMPLE = 100
"""Registration precision: 1/UPSAMPLE px."""
MAX_ALIGN_ITERATIONS = 6
SHIFT_TOLERANCE_PX = 0.005
MIN_REGISTRATION_CORRELATION = 0.5
"""Below this normalised correlation the images share too little to register: no shift."""
SSIM_SIGMA_PX = 1.5
SSIM_TRUNCATE = 3.5
"""Gaussian SSIM window of Wang et al. (2004): sigma 1.5 px, 11 x 11 px."""
SSIM_HALF_WINDOW_PX = int(SSIM_TRUNCATE * SSIM_SIGMA_PX + 0.5)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Wang, Simoncelli & Bovik (2003), scales 1 (finest) to 5."""
PSNR_CAP_DB = 100.0
"""PSNR of identical images (infinite) is reported as this, to stay JSON-safe."""
HALF_BIT = (0.2071, 1.9102, 1.2071, 0.9102)
"""van Heel & Schatz (2005): T = (a + b / sqrt(n)) / (c + d / sqrt(n)), n pixels in the ring."""
NYQUIST_PX = 2.0


# --- the illuminated region -----------------------------------------------------------------


def illuminated_mask(
    shape: tuple[int, int],
    ycoords: np.ndarray,
    xcoords: np.ndarray,
    probe: np.ndarray,
    threshold: float = 0.1,
) -> np.ndarray:
    """Pixels where the summed probe intensity over the scan reaches `threshold` of its max.

    Positions are probe centres (pixel N/2 of the probe window) in canvas pixels, rounded to
    whole pixels; the sum is a convolution of the position counts with |probe|^2.
    """
    ph, pw = probe.shape
    rows, cols = shape
    top = np.rint(np.asarray(ycoords)).astype(int) - ph // 2 + ph
    left = np.rint(np.asarray(xcoords)).astype(int) - pw // 2 + pw
    counts = np.zeros((rows + 2 * ph, cols + 2 * pw))
    keep = (top >= 0) & (top <= rows + ph) & (left >= 0) & (left <= cols + pw)
    np.add.at(counts, (top[keep], left[keep]), 1.0)
    cover = _convolve_full(counts, np.abs(probe).astype(np.float64) ** 2)
    cover = cover[ph : ph + rows, pw : pw + cols]
    peak = cover.max()
    if peak <= 0:
        return np.zeros(shape, dtype=bool)
    return cover >= threshold * peak


def _convolve_full(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The full linear convolution of two real 2-D arrays, by FFT (numpy's: scipy.signal's
    import alone costs about 0.9 s of a run)."""
    shape = (a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1)
    spectrum = np.fft.rfft2(a, shape) * np.fft.rfft2(b, shape)
    return np.fft.irfft2(spectrum, shape)


def bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The smallest (rows, cols) slices holding every True pixel of `mask`."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty: nothing to score")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def taper_window(mask: np.ndarray, width_px: float | None = None) -> np.ndarray:
    """A weight that is 1 deep inside `mask` and falls as sin^2 to 0 at its edge (0 outside).

    The default width is a tenth of the mask's smaller extent, clipped to 2-8 px.
    """
    from scipy.ndimage import distance_transform_edt

    if width_px is None:
        rows, cols = bounding_box(mask)
        extent = min(rows.stop - rows.start, cols.stop - cols.start)
        width_px = float(np.clip(0.1 * extent, 2.0, 8.0))
    depth = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.sin(0.5 * np.pi * np.clip(depth / width_px, 0.0, 1.0)) ** 2


# --- alignment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Alignment:
    """The reconstruction aligned to the truth, and what was removed to get there."""

    aligned: np.ndarray
    """scale x exp(-i ramp.(r - centre)) x shift(recon), on the full canvas (complex128)."""
    shift_px: tuple[float, float]
    """(rows, cols) shift applied to the reconstruction to register it on the truth."""
    ramp_rad_per_px: tuple[float, float] | None
    """(d/drow, d/dcol) phase ramp of the reconstruction relative to the truth, removed."""
    scale: complex
    """Global complex factor applied last (amplitude factor and phase offset)."""
    correlation: float
    """Normalised correlation of the windowed images at the registration peak (0 to 1)."""

    @property
    def registered(self) -> bool:
        """Whether the correlation was high enough for the shift to be applied."""
        return self.correlation >= MIN_REGISTRATION_CORRELATION


def _fourier_shift(image: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
    from scipy.ndimage import fourier_shift

    if not np.any(shift_px):
        return image.copy()
    return np.fft.ifft2(fourier_shift(np.fft.fft2(image), shift_px))


def _weighted_centred(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """`image` minus its `weight`-ed mean, times `weight`."""
    mean = np.sum(weight * image) / np.sum(weight)
    return (image - mean) * weight


def _register(
    reference: np.ndarray, moving: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, float]:
    """Sub-pixel shift registering `moving` on `reference` (both windowed by `weight`), and
    the normalised correlation |<reference, shifted moving>| / (|reference| |moving|) there."""
    import warnings

    from skimage.registration import phase_cross_correlation

    with warnings.catch_warnings():  # a structureless image: reported as correlation 0
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        shift, error, _ = phase_cross_correlation(
            _weighted_centred(reference, weight),
            _weighted_centred(moving, weight),
            upsample_factor=UPSAMPLE,
            normalization=None,
        )
    correlation = math.sqrt(max(0.0, 1.0 - float(error) ** 2)) if np.isfinite(error) else 0.0
    return np.asarray(shift, dtype=np.float64), correlation


def _coords(shape: tuple[int, int], weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates relative to the `weight` centroid."""
    rows, cols = np.indices(shape, dtype=np.float64)
    total = weight.sum()
    return rows - (rows * weight).sum() / total, cols - (cols * weight).sum() / total


def _fit_ramp(product: np.ndarray, weight: np.ndarray, pad: int = 4) -> np.ndarray:
    """(gy, gx) in rad/px such that `product` ~ c exp(i (gy y + gx x)) on `weight` > 0."""
    ny, nx = product.shape
    spectrum = np.abs(np.fft.fft2(weight * product, s=(pad * ny, pad * nx)))
    iy, ix = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    freq = np.array([np.fft.fftfreq(pad * ny)[iy], np.fft.fftfreq(pad * nx)[ix]])
    ramp = 2 * np.pi * freq
    y, x = _coords(product.shape, weight)
    w = weight * np.abs(product)
    for _ in range(2):  # refine: the residual phase is small now, so no wraps
        residual = product * np.exp(-1j * (ramp[0] * y + ramp[1] * x))
        phase = np.angle(residual * np.conj(np.sum(w * residual)))
        sw = np.sqrt(w.ravel())
        design = np.stack([np.ones(y.size), y.ravel(), x.ravel()], axis=1) * sw[:, None]
        coef, *_ = np.linalg.lstsq(design, phase.ravel() * sw, rcond=None)
        ramp = ramp + coef[1:]
    return ramp


def align(
    recon: np.ndarray, truth: np.ndarray, mask: np.ndarray, *, remove_ramp: bool = True
) -> Alignment:
    """Register `recon` on `truth`, remove a linear phase ramp (optional) and the global scale.

    Ramp and shift are estimated alternately on the mask's bounding box until the shift
    changes by less than SHIFT_TOLERANCE_PX. The ramp is removed before the Fourier shift,
    so the shifted image has no ramp-sized jump across the canvas edge to ring from.
    """
    recon = np.asarray(recon, dtype=np.complex128)
    truth = np.asarray(truth, dtype=np.complex128)
    box = bounding_box(mask)
    inner = mask[box]
    t = truth[box]
    weight = taper_window(inner)
    y, x = _coords(inner.shape, weight)
    rows, cols = np.indices(recon.shape, dtype=np.float64)
    rows -= box[0].start - float(y[0, 0])  # canvas coordinates relative to the same centroid
    cols -= box[1].start - float(x[0, 0])

    def deramped(ramp: np.ndarray) -> np.ndarray:
        if not np.any(ramp):
            return recon
        return recon * np.exp(-1j * (ramp[0] * rows + ramp[1] * cols))

    shift = np.zeros(2)
    ramp = np.zeros(2)
    correlation = 0.0
    for _ in range(MAX_ALIGN_ITERATIONS):
        moved = _fourier_shift(deramped(ramp), shift)[box]
        residual = np.zeros(2)
        if remove_ramp:
            residual = -_fit_ramp(t * np.conj(moved), weight)
            ramp = ramp + residual
        moved = moved * np.exp(-1j * (residual[0] * y + residual[1] * x))
        step, correlation = _register(t, moved, weight)
        if correlation < MIN_REGISTRATION_CORRELATION:
            shift = np.zeros(2)  # nothing in common to register on: leave the image in place
            break
        shift = shift + step
        if np.max(np.abs(step)) < SHIFT_TOLERANCE_PX:
            break
    moved_full = _fourier_shift(deramped(ramp), shift)
    r = moved_full[mask]
    norm = np.vdot(r, r).real
    scale = complex(np.vdot(r, truth[mask]) / norm) if norm > 0 else 1.0 + 0j
    return Alignment(
        aligned=moved_full * scale,
        shift_px=(float(shift[0]), float(shift[1])),
        ramp_rad_per_px=(float(ramp[0]), float(ramp[1])) if remove_ramp else None,
        scale=scale,
        correlation=correlation,
    )


# --- image scores -------------------------------------------------------------------------


def _ssim_valid(inner: np.ndarray) -> np.ndarray:
    """Mask pixels whose whole SSIM window lies in the mask (or the mask, if none does)."""
    from scipy.ndimage import binary_erosion

    size = 2 * SSIM_HALF_WINDOW_PX + 1
    valid = binary_erosion(inner, structure=np.ones((size, size), bool), border_value=0)
    return valid if valid.any() else inner


def ssim_on_mask(
    truth: np.ndarray, recon: np.ndarray, inner: np.ndarray, data_range: float
) -> float:
    """Mean SSIM (Gaussian window of Wang et al. 2004) over the pixels `_ssim_valid` keeps."""
    from skimage.metrics import structural_similarity

    pad = SSIM_HALF_WINDOW_PX  # reflect-pad so a region smaller than the window still works
    a, b = (np.pad(im, pad, mode="reflect") for im in (truth, recon))
    _, full = structural_similarity(
        a,
        b,
        data_range=data_range,
        gaussian_weights=True,
        sigma=SSIM_SIGMA_PX,
        use_sample_covariance=False,
        full=True,
    )
    return float(full[pad:-pad, pad:-pad][_ssim_valid(inner)].mean())


def _ssim_terms(a: np.ndarray, b: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and contrast-structure maps (Gaussian window, as `structural_similarity`)."""
    from scipy.ndimage import gaussian_filter

    def blur(image: np.ndarray) -> np.ndarray:
        return gaussian_filter(image, SSIM_SIGMA_PX, truncate=SSIM_TRUNCATE, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return luminance, (2 * cov + c2) / (var_a + var_b + c2)


def _halve(image: np.ndarray) -> np.ndarray:
    """2 x 2 box average then decimation by 2 (the low-pass of Wang et al.'s code)."""
    ny, nx = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    return image[:ny, :nx].reshape(ny // 2, 2, nx // 2, 2).mean(axis=(1, 3))


def ms_ssim_on_mask(
    truth: np.ndarray, recon: np.ndarray, inner: np.ndarray, data_range: float
) -> tuple[float | None, int, str]:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) on the mask: (value, scales, note).

    Up to 5 scales, halving each time, while some pixel's 11 x 11 window still lies inside
    the (halved) mask; with fewer than 5 the standard weights of the scales used are
    renormalised to sum to 1. Mean contrast-structure terms are clipped at 0 (a fractional
    power of a negative mean is undefined). Needs at least 2 scales, else value is None.
    """
    size = 2 * SSIM_HALF_WINDOW_PX + 1
    a, b, m = truth.astype(np.float64), recon.astype(np.float64), inner
    terms: list[tuple[float, float]] = []
    while len(terms) < len(MS_SSIM_WEIGHTS) and min(m.shape) >= size:
        valid = _ssim_valid(m)
        if valid is m:  # no window fits inside the mask at this scale
            break
        luminance, cs = _ssim_terms(a, b, data_range)
        terms.append((float(cs[valid].mean()), float((luminance * cs)[valid].mean())))
        a, b = _halve(a), _halve(b)
        m = _halve(m.astype(np.float64)) == 1.0
    if len(terms) < 2:
        return None, len(terms), "region too small for two scales of an 11 x 11 window"
    weights = np.asarray(MS_SSIM_WEIGHTS[: len(terms)])
    weights = weights / weights.sum()
    values = [max(cs, 0.0) for cs, _ in terms[:-1]] + [max(terms[-1][1], 0.0)]
    note = "" if len(terms) == len(MS_SSIM_WEIGHTS) else "weights of the scales used renormalised"
    return float(np.prod(np.power(values, weights))), len(terms), note


def psnr_db(truth: np.ndarray, recon: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / mean squared error), capped
    at PSNR_CAP_DB (identical inputs).

    The definition of `skimage.metrics.peak_signal_noise_ratio` (tests compare the two); its
    module imports scipy.stats, 0.3 s of every process, for another function.
    """
    mse = float(np.mean(np.square(np.asarray(truth, np.float64) - np.asarray(recon, np.float64))))
    if mse == 0.0:
        return PSNR_CAP_DB
    return float(min(10.0 * math.log10(data_range**2 / mse), PSNR_CAP_DB))


# --- Fourier ring correlation -------------------------------------------------------------


@dataclass(frozen=True)
class FRCCurve:
    """Ring-averaged Fourier ring correlation from 0 to Nyquist."""

    frequency_cycles_per_px: np.ndarray
    frc: np.ndarray
    half_bit_threshold: np.ndarray
    ring_pixels: np.ndarray

    def to_json(self) -> dict[str, list[float]]:
        return {
            "frequency_cycles_per_px": [float(v) for v in self.frequency_cycles_per_px],
            "frc": [float(v) for v in self.frc],
            "half_bit_threshold": [float(v) for v in self.half_bit_threshold],
            "ring_pixels": [int(v) for v in self.ring_pixels],
        }


def half_bit_threshold(ring_pixels: np.ndarray) -> np.ndarray:
    """The half-bit information threshold for rings of `ring_pixels` pixels."""
    a, b, c, d = HALF_BIT
    root = np.sqrt(np.maximum(np.asarray(ring_pixels, dtype=np.float64), 1.0))
    return (a + b / root) / (c + d / root)


def fourier_ring_correlation(
    first: np.ndarray, second: np.ndarray, weight: np.ndarray | None = None
) -> FRCCurve:
    """FRC of two images (complex or real) on the same grid, rings 1 / min(shape) wide.

    With `weight` (an apodising window), each image's weighted mean is removed and the image
    multiplied by the window before the transform. Rings run from the first non-zero
    frequency to Nyquist (the mean carries no resolution). A ring with no power scores 0.
    """
    if weight is not None:
        first, second = _weighted_centred(first, weight), _weighted_centred(second, weight)
    spec_a, spec_b = np.fft.fft2(first), np.fft.fft2(second)
    ny, nx = first.shape
    step = 1.0 / min(ny, nx)
    radius = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :])
    ring = np.rint(radius / step).astype(int)
    n_rings = int(np.floor(0.5 / step + 1e-9)) + 1
    keep = ring < n_rings
    idx = ring[keep]

    def ring_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(idx, weights=values[keep], minlength=n_rings)

    cross = ring_sum(np.real(spec_a * np.conj(spec_b)))
    power = ring_sum(np.abs(spec_a) ** 2) * ring_sum(np.abs(spec_b) ** 2)
    frc = np.divide(cross, np.sqrt(power), out=np.zeros(n_rings), where=power > 0)
    pixels = np.bincount(idx, minlength=n_rings)
    rings = slice(1, None)
    return FRCCurve(
        np.arange(n_rings)[rings] * step,
        frc[rings],
        half_bit_threshold(pixels[rings]),
        pixels[rings],
    )


def frc_resolution_px(
    frequency: np.ndarray, frc: np.ndarray, threshold: np.ndarray | float
) -> tuple[float, bool]:
    """Period (px) where the FRC first drops below `threshold` (linear interpolation).

    Below threshold at the first ring: the period of that ring. Returns (NYQUIST_PX, True)
    if the curve never drops: the resolution is then limited by the pixel size.
    """
    frequency, frc = np.asarray(frequency, float), np.asarray(frc, float)
    thr = np.broadcast_to(np.asarray(threshold, float), frc.shape)
    margin = frc - thr
    for k in range(len(frc)):
        if margin[k] < 0:
            if k == 0:
                return float(1.0 / frequency[0]), False
            frac = margin[k - 1] / (margin[k - 1] - margin[k])
            crossing = frequency[k - 1] + frac * (frequency[k] - frequency[k - 1])
            return float(1.0 / crossing), False
    return NYQUIST_PX, True


# --- everything together ------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """`align` plus the scores: the aligned image (for figures) and JSON-ready metrics."""

    alignment: Alignment
    metrics: dict[str, Any]

    @property
    def aligned(self) -> np.ndarray:
        return self.alignment.aligned


def _data_range(values: np.ndarray) -> float:
    return max(float(values.max() - values.min()), 1e-6)


def _pair_scores(
    name: str, unit: str, truth: np.ndarray, recon: np.ndarray, inner: np.ndarray
) -> dict[str, Any]:
    """SSIM, MS-SSIM, PSNR, MAE, MSE of one real-valued pair (phase or amplitude)."""
    t, r = truth[inner], recon[inner]
    data_range = _data_range(t)
    ms_value, scales, note = ms_ssim_on_mask(truth, recon, inner, data_range)
    diff = r - t
    return {
        f"{name}_ssim": ssim_on_mask(truth, recon, inner, data_range),
        f"{name}_ms_ssim": ms_value,
        f"{name}_psnr_db": psnr_db(t, r, data_range),
        f"{name}_mae{unit}": float(np.abs(diff).mean()),
        f"{name}_mse{unit}{'2' if unit else ''}": float(np.mean(diff**2)),
        f"{name}_data_range{unit}": data_range,
        f"{name}_ms_ssim_scales": scales,
        f"{name}_ms_ssim_note": note,
    }


def evaluate(
    recon: np.ndarray, truth: np.ndarray, mask: np.ndarray, *, remove_ramp: bool = True
) -> Evaluation:
    """Align `recon` to `truth` and score it on `mask` (all on the same pixel grid)."""
    mask = np.asarray(mask, dtype=bool)
    alignment = align(recon, truth, mask, remove_ramp=remove_ramp)
    box = bounding_box(mask)
    inner = mask[box]
    t = np.asarray(truth, dtype=np.complex128)[box]
    r = alignment.aligned[box]
    phase_t = np.angle(t)
    phase_r = phase_t + np.angle(r * np.conj(t))
    frc = fourier_ring_correlation(r, t, taper_window(inner))
    res_half, half_limited = frc_resolution_px(frc.frequency_cycles_per_px, frc.frc, 0.5)
    res_bit, bit_limited = frc_resolution_px(
        frc.frequency_cycles_per_px, frc.frc, frc.half_bit_threshold
    )
    metrics: dict[str, Any] = {
        "scored_pixels": int(inner.sum()),
        "registration_shift_px": list(alignment.shift_px),
        "registration_correlation": alignment.correlation,
        "registered": alignment.registered,
        "phase_ramp_removed": remove_ramp,
    }
    if alignment.ramp_rad_per_px is not None:
        metrics["phase_ramp_rad_per_px"] = list(alignment.ramp_rad_per_px)
    metrics |= {
        "phase_offset_rad": float(np.angle(alignment.scale)),
        "amplitude_scale": float(abs(alignment.scale)),
        "complex_relative_error": float(
            np.linalg.norm((r - t)[inner]) / max(np.linalg.norm(t[inner]), 1e-30)
        ),
    }
    metrics |= _pair_scores("phase", "_rad", phase_t, phase_r, inner)
    metrics |= _pair_scores("amplitude", "", np.abs(t), np.abs(r), inner)
    metrics |= {
        "frc_resolution_0p5_px": res_half,
        "frc_0p5_nyquist_limited": half_limited,
        "frc_resolution_halfbit_px": res_bit,
        "frc_halfbit_nyquist_limited": bit_limited,
        "frc": frc.to_json(),
    }
    return Evaluation(alignment, metrics)


def compare(
    recon: np.ndarray, truth: np.ndarray, mask: np.ndarray, *, remove_ramp: bool = True
) -> dict[str, Any]:
    """JSON-ready scores of `recon` against `truth` on `mask` (see `evaluate`)."""
    return evaluate(recon, truth, mask, remove_ramp=remove_ramp).metrics


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def summary_line(metrics: dict[str, Any]) -> str:
    """One line for a terminal: the headline scores of `compare`'s dict."""
    shift = metrics.get("registration_shift_px") or [float("nan")] * 2
    frc_note = " (Nyquist)" if metrics.get("frc_0p5_nyquist_limited") else ""
    return (
        f"phase SSIM {_fmt(metrics.get('phase_ssim'), '.3f')}"
        f", MS-SSIM {_fmt(metrics.get('phase_ms_ssim'), '.3f')}"
        f", PSNR {_fmt(metrics.get('phase_psnr_db'), '.1f')} dB"
        f"; amplitude SSIM {_fmt(metrics.get('amplitude_ssim'), '.3f')}"
        f"; complex error {_fmt(metrics.get('complex_relative_error'), '.3f')}"
        f"; FRC 0.5 {_fmt(metrics.get('frc_resolution_0p5_px'), '.2f')} px{frc_note}"
        f", half-bit {_fmt(metrics.get('frc_resolution_halfbit_px'), '.2f')} px"
        f"; shift ({_fmt(shift[0], '+.2f')}, {_fmt(shift[1], '+.2f')}) px"
    )
