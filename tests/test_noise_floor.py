"""The Poisson amplitude noise floor behind the automatic stop."""

from __future__ import annotations

import numpy as np
import pytest

from flyrecon.noise_floor import LAM_MAX, LAM_MIN, amplitude_noise_floor


@pytest.mark.parametrize("lam", [1e-3, 0.05, 0.5, 2.0, 10.0, 99.0, 101.0, 3000.0])
def test_the_floor_is_the_expected_squared_amplitude_error_of_poisson_counts(lam: float) -> None:
    rng = np.random.default_rng(int(lam * 1000))
    counts = rng.poisson(lam, size=2_000_000)
    monte_carlo = np.mean((np.sqrt(counts) - np.sqrt(lam)) ** 2)
    standard_error = np.std((np.sqrt(counts) - np.sqrt(lam)) ** 2) / np.sqrt(counts.size)
    assert abs(float(amplitude_noise_floor(lam)) - monte_carlo) < 5 * standard_error + 1e-4


def test_the_floor_has_the_known_limits_and_shape() -> None:
    lam = np.array([0.0, 1e-9, LAM_MIN / 2, 1.0, LAM_MAX * 10, 1e7])
    floor = amplitude_noise_floor(lam)
    assert floor[0] == 0.0
    np.testing.assert_allclose(floor[1:3], 2 * lam[1:3])  # faint pixels: about 2 lam
    np.testing.assert_allclose(floor[4:], 0.25, atol=2e-4)  # bright pixels: 1/4
    grid = np.logspace(-4, 0, 50)
    assert np.all(np.diff(amplitude_noise_floor(grid)) > 0)  # rises with lam up to ~1


def test_numpy_and_torch_give_the_same_floor() -> None:
    torch = pytest.importorskip("torch")
    lam = np.random.default_rng(0).gamma(0.3, 20.0, size=(4, 16, 16)).astype(np.float32)
    lam[0, 0, :4] = [0.0, 1e-8, 150.0, 1e5]
    expected = amplitude_noise_floor(lam)
    got = amplitude_noise_floor(torch.as_tensor(lam)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)
