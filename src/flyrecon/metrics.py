"""Quality of a reconstruction against the known object: pure numpy and scikit-image.

Scores are computed on the illuminated region only, after removing the global complex scale
(phase offset and amplitude factor) and registering the reconstruction to the truth with
sub-pixel cross-correlation.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def illuminated_mask(
    shape: tuple[int, int],
    ycoords: np.ndarray,
    xcoords: np.ndarray,
    probe: np.ndarray,
    threshold: float = 0.1,
) -> np.ndarray:
    """Pixels where the summed probe intensity over the scan reaches `threshold` of its max."""
    size = probe.shape[0]
    intensity = np.abs(probe) ** 2
    cover = np.zeros((shape[0] + 2 * size, shape[1] + 2 * size))
    for y, x in zip(np.rint(ycoords).astype(int), np.rint(xcoords).astype(int), strict=True):
        top, left = y - size // 2 + size, x - size // 2 + size
        cover[top : top + size, left : left + size] += intensity
    cover = cover[size:-size, size:-size]
    return cover >= threshold * cover.max()


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def align_to_truth(
    recon: np.ndarray, truth: np.ndarray, mask: np.ndarray, upsample: int = 20
) -> tuple[np.ndarray, tuple[float, float]]:
    """Register `recon` to `truth` (sub-pixel shift), then remove the global complex scale."""
    from scipy.ndimage import fourier_shift
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(truth * mask, recon * mask, upsample_factor=upsample)
    shifted = np.fft.ifft2(fourier_shift(np.fft.fft2(recon), shift))
    t, r = truth[mask], shifted[mask]
    scale = np.vdot(r, t) / np.vdot(r, r).real
    return (shifted * scale).astype(np.complex64), (float(shift[0]), float(shift[1]))


def compare(recon: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Scores of `recon` against `truth` on `mask` (both on the same pixel grid)."""
    from skimage.metrics import structural_similarity

    aligned, shift = align_to_truth(recon, truth, mask)
    box = _bounding_box(mask)
    inner = mask[box]
    t, r = truth[box], aligned[box]
    rel_err = float(np.linalg.norm((r - t)[inner]) / np.linalg.norm(t[inner]))
    phase_t, phase_r = np.angle(t), np.angle(r)
    amp_t, amp_r = np.abs(t), np.abs(r)

    def ssim(a: np.ndarray, b: np.ndarray) -> float:
        lo, hi = float(a[inner].min()), float(a[inner].max())
        _, full = structural_similarity(a, b, data_range=max(hi - lo, 1e-6), full=True)
        return float(full[inner].mean())

    return {
        "registration_shift_px": list(shift),
        "complex_relative_error": rel_err,
        "phase_ssim": ssim(phase_t, phase_r),
        "amplitude_ssim": ssim(amp_t, amp_r),
        "phase_mae_rad": float(np.abs(phase_r - phase_t)[inner].mean()),
        "amplitude_mae": float(np.abs(amp_r - amp_t)[inner].mean()),
        "scored_pixels": int(inner.sum()),
    }
