"""The engine's faster kernels (Fourier shift, patch accumulation) equal pty-chi's own, and
are only in place during a run."""

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


def _patch_batch(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(40, 48, generator=gen).to(dtype)
    patches = torch.randn(9, 16, 16, generator=gen).to(dtype)
    if dtype.is_complex:
        image = image + 1j * torch.randn(40, 48, generator=gen)
        patches = patches + 1j * torch.randn(9, 16, 16, generator=gen)
    sy = torch.randint(0, 40 - 16 + 1, (9,), generator=gen, dtype=torch.int32)
    sx = torch.randint(0, 48 - 16 + 1, (9,), generator=gen, dtype=torch.int32)
    sy[:3] = 5  # overlapping patches: the additions must accumulate
    sx[:3] = torch.tensor([7, 7, 8], dtype=torch.int32)
    return image, patches, sy, sx


@pytest.mark.parametrize("dtype", [torch.complex64, torch.float32])
def test_cpu_patch_accumulation_equals_ptychis_bit_for_bit(dtype: torch.dtype) -> None:
    image, patches, sy, sx = _patch_batch(dtype)
    theirs = ptychi_ip.batch_put(image.clone(), patches, sy, sx, op="add", check_bounds=False)
    mine = image.clone()
    ours = engine._cpu_batch_put(mine, patches, sy, sx, op="add", check_bounds=False)
    assert torch.equal(ours, theirs)
    assert torch.equal(mine, theirs)  # in place, as pty-chi's


def test_cpu_patch_accumulation_checks_bounds_and_leaves_set_to_ptychi() -> None:
    image, patches, sy, sx = _patch_batch(torch.complex64)
    with pytest.raises(ValueError, match="out of bounds"):
        engine._cpu_batch_put(image, patches, sy + 40, sx, op="add")
    theirs = ptychi_ip.batch_put(image.clone(), patches, sy, sx, op="set")
    ours = engine._cpu_batch_put(image.clone(), patches, sy, sx, op="set")
    assert torch.equal(ours, theirs)


def test_the_replacements_are_undone_after_the_run() -> None:
    shift, put = ptychi_ip.fourier_shift, ptychi_ip.batch_put
    with engine._faster_kernels():
        assert ptychi_ip.fourier_shift is engine._separable_fourier_shift
        assert ptychi_ip.batch_put is engine._cpu_batch_put
        with engine._faster_kernels():  # nested runs keep pty-chi's own function
            pass
        assert engine._PTYCHI_BATCH_PUT is put
    assert ptychi_ip.fourier_shift is shift
    assert ptychi_ip.batch_put is put
