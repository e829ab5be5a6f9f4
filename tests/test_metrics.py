"""Ground-truth metrics: alignment, scores and FRC on synthetic complex images (no pty-chi)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import fourier_shift, gaussian_filter

from flyrecon import metrics
from flyrecon.metrics import compare, illuminated_mask
from helpers import simulated_dataset

SIZE_PX = 96
SCORES = (
    "phase_ssim",
    "amplitude_ssim",
    "phase_ms_ssim",
    "amplitude_ms_ssim",
    "phase_psnr_db",
    "amplitude_psnr_db",
    "phase_mae_rad",
    "amplitude_mae",
    "complex_relative_error",
    "frc_resolution_0p5_px",
    "frc_resolution_halfbit_px",
)


def smooth_field(seed: int = 0, cutoff: float = 0.15) -> np.ndarray:
    """A band-limited random complex image: amplitude 0.45-0.95, phase within +-1 rad."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(SIZE_PX)[:, None], np.fft.fftfreq(SIZE_PX)[None, :])
    low_pass = np.exp(-0.5 * (f / cutoff) ** 2)

    def band_limited() -> np.ndarray:
        field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((SIZE_PX, SIZE_PX))) * low_pass).real
        return field / np.abs(field).max()

    return (0.7 + 0.25 * band_limited()) * np.exp(1j * band_limited())


def disc_mask(radius_px: float = 36.0) -> np.ndarray:
    rows, cols = np.indices((SIZE_PX, SIZE_PX))
    return np.hypot(rows - SIZE_PX / 2, cols - SIZE_PX / 2) < radius_px


def shifted(image: np.ndarray, shift_px: tuple[float, float]) -> np.ndarray:
    return np.fft.ifft2(fourier_shift(np.fft.fft2(image), shift_px))


def complex_noise(sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (SIZE_PX, SIZE_PX)
    return sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return smooth_field()


@pytest.fixture(scope="module")
def realistic() -> tuple[np.ndarray, np.ndarray]:
    """The procedural test object (hard edges, 1/f texture) and its scan's illuminated mask."""
    data = simulated_dataset(object_px=SIZE_PX, step_px=6, noise=False)
    mask = illuminated_mask(data.object_guess.shape, data.ycoords, data.xcoords, data.probe_guess)
    return data.object_guess.astype(np.complex128), mask


def test_illuminated_mask_matches_a_loop_over_positions() -> None:
    data = simulated_dataset(object_px=64, step_px=5, noise=False)
    shape = (70, 66)
    y, x = data.ycoords + 3.3, data.xcoords - 2.6
    size = data.probe_guess.shape[0]
    cover = np.zeros((shape[0] + 2 * size, shape[1] + 2 * size))
    for yy, xx in zip(np.rint(y).astype(int), np.rint(x).astype(int), strict=True):
        top, left = yy - size // 2 + size, xx - size // 2 + size
        cover[top : top + size, left : left + size] += np.abs(data.probe_guess) ** 2
    cover = cover[size:-size, size:-size]
    expected = cover >= 0.1 * cover.max()
    got = illuminated_mask(shape, y, x, data.probe_guess)
    assert got.shape == shape and 100 < expected.sum() < expected.size
    assert np.array_equal(got, expected)


def test_psnr_matches_scikit_image() -> None:
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(3)
    truth = rng.normal(size=(40, 50))
    recon = truth + rng.normal(scale=0.1, size=truth.shape)
    expected = peak_signal_noise_ratio(truth, recon, data_range=2 * np.pi)
    assert metrics.psnr_db(truth, recon, 2 * np.pi) == pytest.approx(expected, rel=1e-12)
    assert metrics.psnr_db(truth, truth, 1.0) == metrics.PSNR_CAP_DB


def test_identical_images_score_perfectly(truth: np.ndarray) -> None:
    scores = compare(truth, truth, disc_mask())
    assert scores["registration_shift_px"] == pytest.approx([0, 0], abs=1e-9)
    assert scores["complex_relative_error"] == pytest.approx(0, abs=1e-12)
    for key in ("phase_ssim", "amplitude_ssim", "phase_ms_ssim", "amplitude_ms_ssim"):
        assert scores[key] == pytest.approx(1, abs=1e-9), key
    assert scores["phase_psnr_db"] == metrics.PSNR_CAP_DB
    assert scores["phase_mae_rad"] == pytest.approx(0, abs=1e-12)
    assert scores["amplitude_mae"] == pytest.approx(0, abs=1e-12)
    assert np.allclose(scores["frc"]["frc"], 1.0, atol=1e-9)
    assert scores["frc_resolution_0p5_px"] == metrics.NYQUIST_PX
    assert scores["frc_0p5_nyquist_limited"] and scores["frc_halfbit_nyquist_limited"]
    assert scores["scored_pixels"] == int(disc_mask().sum())


def test_scores_are_json_ready(truth: np.ndarray) -> None:
    scores = compare(truth + complex_noise(0.05), truth, disc_mask())
    assert json.loads(json.dumps(scores, allow_nan=False)) == scores
    curve = scores["frc"]
    size_px = 71  # the disc's bounding box
    freq = curve["frequency_cycles_per_px"]
    assert len(freq) == len(curve["frc"]) == len(curve["half_bit_threshold"]) == size_px // 2
    assert freq[0] == pytest.approx(1 / size_px) and freq[-1] == pytest.approx(35 / size_px)


@pytest.mark.parametrize("shift_px", [(0.3, -0.45), (-1.37, 0.62), (0.05, 0.0)])
def test_subpixel_shift_is_recovered(truth: np.ndarray, shift_px: tuple[float, float]) -> None:
    scores = compare(shifted(truth, shift_px), truth, disc_mask())
    assert scores["registration_shift_px"] == pytest.approx([-s for s in shift_px], abs=0.05)
    assert scores["registered"] and scores["registration_correlation"] > 0.99
    assert scores["complex_relative_error"] < 0.01


def test_shift_is_recovered_on_the_procedural_object_with_noise_and_ramp(
    realistic: tuple[np.ndarray, np.ndarray],
) -> None:
    obj, mask = realistic
    rows, cols = np.indices(obj.shape)
    recon = shifted(obj, (0.333, -0.457)) + complex_noise(0.03)
    recon *= 0.8 * np.exp(1j * (2.5 + 0.04 * rows - 0.07 * cols))
    scores = compare(recon, obj, mask)
    assert scores["registration_shift_px"] == pytest.approx([-0.333, 0.457], abs=0.05)
    assert scores["phase_ramp_rad_per_px"] == pytest.approx([0.04, -0.07], abs=2e-3)


def test_phase_offset_and_amplitude_scale_do_not_change_the_scores(truth: np.ndarray) -> None:
    recon = shifted(truth, (0.2, 0.7)) + complex_noise(0.05)
    plain = compare(recon, truth, disc_mask())
    scaled = compare(recon * 2.7 * np.exp(-1j * 2.9), truth, disc_mask())
    for key in SCORES:
        assert scaled[key] == pytest.approx(plain[key], rel=1e-6, abs=1e-9), key
    assert scaled["amplitude_scale"] == pytest.approx(plain["amplitude_scale"] / 2.7)


def test_more_noise_scores_worse(truth: np.ndarray) -> None:
    mask = disc_mask()
    runs = [compare(truth + complex_noise(sigma), truth, mask) for sigma in (0.02, 0.06, 0.18)]
    for key in ("phase_ssim", "amplitude_ssim", "phase_psnr_db", "amplitude_psnr_db"):
        values = [run[key] for run in runs]
        assert values[0] > values[1] > values[2], (key, values)
    for key in ("complex_relative_error", "phase_mae_rad", "amplitude_mae"):
        values = [run[key] for run in runs]
        assert values[0] < values[1] < values[2], (key, values)
    assert runs[0]["phase_ms_ssim"] > runs[2]["phase_ms_ssim"]
    assert runs[0]["frc_resolution_halfbit_px"] < runs[2]["frc_resolution_halfbit_px"]


def test_frc_of_an_image_with_itself_is_one_everywhere(truth: np.ndarray) -> None:
    curve = metrics.fourier_ring_correlation(truth, truth, metrics.taper_window(disc_mask()))
    assert curve.frc.shape == curve.frequency_cycles_per_px.shape
    assert np.allclose(curve.frc, 1.0, atol=1e-12)
    unrelated = metrics.fourier_ring_correlation(truth, smooth_field(seed=9))
    assert np.abs(unrelated.frc[1:]).max() < 0.5


def test_frc_resolution_is_worse_for_a_blurred_image(truth: np.ndarray) -> None:
    """Blur alone is invisible to a ring-normalised FRC; blur before the noise is not."""
    mask = disc_mask()
    noise = complex_noise(0.01)

    def blur(image: np.ndarray) -> np.ndarray:
        return gaussian_filter(image.real, 1.5) + 1j * gaussian_filter(image.imag, 1.5)

    sharp = compare(truth + noise, truth, mask)
    blurred = compare(blur(truth) + noise, truth, mask)
    assert not blurred["frc_0p5_nyquist_limited"]
    assert blurred["frc_resolution_0p5_px"] > 1.2 * sharp["frc_resolution_0p5_px"]
    assert blurred["frc_resolution_halfbit_px"] > sharp["frc_resolution_halfbit_px"]


def test_resolution_crossing_is_interpolated() -> None:
    freq = np.linspace(0, 0.5, 11)
    frc = np.array([1, 1, 0.9, 0.7, 0.6, 0.4, 0.2, 0.1, 0, 0, 0])
    assert metrics.frc_resolution_px(freq, frc, 0.5) == pytest.approx((1 / 0.225, False))
    assert metrics.frc_resolution_px(freq, np.ones(11), 0.5) == (2.0, True)
    assert metrics.frc_resolution_px(freq[1:], frc[1:] - 1.5, 0.0) == (20.0, False)


def test_half_bit_threshold_matches_van_heel_and_schatz() -> None:
    thresholds = metrics.half_bit_threshold(np.array([1, 100, 1e20]))
    assert thresholds[0] == pytest.approx((0.2071 + 1.9102) / (1.2071 + 0.9102))
    assert thresholds[2] == pytest.approx(0.2071 / 1.2071, abs=1e-6)
    assert thresholds[0] > thresholds[1] > thresholds[2]


def test_ramp_removal_removes_a_known_linear_phase_ramp(truth: np.ndarray) -> None:
    rows, cols = np.indices(truth.shape)
    recon = truth * np.exp(1j * (0.05 * rows - 0.12 * cols + 1.0))
    kept = compare(recon, truth, disc_mask(), remove_ramp=False)
    removed = compare(recon, truth, disc_mask())
    assert removed["phase_ramp_rad_per_px"] == pytest.approx([0.05, -0.12], abs=1e-6)
    assert removed["complex_relative_error"] < 1e-6
    assert removed["phase_ssim"] == pytest.approx(1, abs=1e-6)
    assert "phase_ramp_rad_per_px" not in kept and not kept["phase_ramp_removed"]
    assert kept["complex_relative_error"] > 0.5 and kept["phase_ssim"] < 0.5


def test_ssim_matches_scikit_image_on_full_windows(truth: np.ndarray) -> None:
    """The multi-scale code's first scale is the Wang et al. SSIM scikit-image computes."""
    from skimage.metrics import structural_similarity

    a = np.angle(truth)
    b = np.angle(truth + complex_noise(0.1))
    _, expected = structural_similarity(
        a,
        b,
        data_range=2.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    luminance, cs = metrics._ssim_terms(a, b, 2.0)
    inner = slice(6, -6)
    assert np.allclose((luminance * cs)[inner, inner], expected[inner, inner], atol=1e-10)


def test_ms_ssim_records_its_scales_and_gives_up_on_small_regions(truth: np.ndarray) -> None:
    a, b = np.abs(truth), np.abs(truth + complex_noise(0.05))
    value, scales, note = metrics.ms_ssim_on_mask(a, b, np.ones_like(a, bool), 0.5)
    assert scales == 4 and "renormalised" in note and 0 < value < 1
    small = np.zeros_like(a, bool)
    small[40:58, 40:58] = True
    assert metrics.ms_ssim_on_mask(a, b, small, 0.5)[:2] == (None, 1)


def test_structureless_reconstruction_is_not_registered(truth: np.ndarray) -> None:
    scores = compare(np.ones_like(truth), truth, disc_mask())
    assert not scores["registered"]
    assert scores["registration_shift_px"] == [0.0, 0.0]
    assert scores["phase_ssim"] < 0.1 and scores["complex_relative_error"] > 0.2
    assert scores["frc_resolution_0p5_px"] > 20


def test_summary_line_is_one_line(truth: np.ndarray) -> None:
    line = metrics.summary_line(compare(truth + complex_noise(0.05), truth, disc_mask()))
    assert "\n" not in line and "phase SSIM 0." in line and "FRC 0.5" in line
    assert "n/a" in metrics.summary_line({"phase_ssim": None})


def test_metrics_module_stays_pure() -> None:
    import subprocess
    import sys

    code = (
        "import sys, flyrecon.metrics as m, numpy as np; "
        "t = np.ones((32, 32), complex); m.compare(t, t, np.ones((32, 32), bool)); "
        "print(sorted(k for k in ('torch', 'ptychi', 'matplotlib') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_phase_and_amplitude_keep_their_own_ms_ssim_notes() -> None:
    """Each of phase and amplitude reports its MS-SSIM scales and note under its own key (the
    amplitude's used to overwrite the phase's)."""
    rng = np.random.default_rng(0)
    truth = np.exp(1j * rng.uniform(-1, 1, (48, 48))).astype(np.complex64)
    mask = np.zeros(truth.shape, bool)
    mask[4:44, 4:44] = True
    m = compare(truth * 0.9, truth, mask)
    for part in ("phase", "amplitude"):
        assert isinstance(m[f"{part}_ms_ssim_scales"], int)
        assert isinstance(m[f"{part}_ms_ssim_note"], str)
    assert "ms_ssim_scales" not in m and "ms_ssim_note" not in m
