"""The engine's faster Fourier shift equals pty-chi's own, and is only in place during a run."""

from __future__ import annotations

import pytest
import torch

ptychi_ip = pytest.importorskip("ptychi.image_proc")

from flyrecon import engine  # noqa: E402


@pytest.mark.parametrize("complex_images", [True, False])
@pytest.mark.parametrize("kind", ["fractional", "whole", "mixed"])
def test_separable_fourier_shift_equals_ptychis(complex_images: bool, kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(5, 24, 32, generator=gen)
    if complex_images:
        images = torch.complex(images, torch.randn(5, 24, 32, generator=gen))
    shifts = {
        "fractional": torch.rand(5, 2, generator=gen) - 0.5,
        "whole": torch.zeros(5, 2),
        "mixed": torch.tensor([[0.0, 0.0], [0.3, -0.2], [0.0, 0.5], [-0.49, 0.0], [0.0, 0.0]]),
    }[kind]
    ours = engine._separable_fourier_shift(images, shifts)
    theirs = ptychi_ip.fourier_shift(images, shifts)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-5)
    assert ours.data_ptr() != images.data_ptr()  # a new tensor, as pty-chi returns


def test_strictly_preserved_zeros_match_too() -> None:
    images = torch.ones(2, 16, 16, dtype=torch.complex64)
    images[:, :4] = 0
    shifts = torch.tensor([[0.25, 0.0], [0.0, 0.0]])
    ours = engine._separable_fourier_shift(images, shifts, strictly_preserve_zeros=True)
    theirs = ptychi_ip.fourier_shift(images, shifts, strictly_preserve_zeros=True)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-5)


def test_the_replacement_is_undone_after_the_run() -> None:
    original = ptychi_ip.fourier_shift
    with engine._fast_fourier_shift():
        assert ptychi_ip.fourier_shift is engine._separable_fourier_shift
    assert ptychi_ip.fourier_shift is original
