"""`flyrecon prep-synthetic`: physics, views, reproducibility, fixture layout, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flyrecon.cli import app
from flyrecon.data import load_dataset
from flyrecon.options import Preset, SyntheticOptions
from flyrecon.synthetic import prepare_study

runner = CliRunner()
SMALL = {"object_px": 192, "step_px": 6.0, "jitter_px": 1.0, "doses": (10_000,)}
"""132 positions per split, 51-56 dense and 12-13 sparse: well under a second."""


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same small study, noisy, noiseless, repeated, and with another noise seed."""
    base = tmp_path_factory.mktemp("prep")
    runs = {
        "noisy": {},
        "again": {},
        "noiseless": {"noiseless": True},
        "other_noise": {"noise_seed": 999},
    }
    for name, extra in runs.items():
        prepare_study(SyntheticOptions(output_root=base / name, **SMALL, **extra))
    return {name: base / name for name in runs}


def _file(root: Path, view: str, split: str, dose: int = 10_000) -> Path:
    if view == "baseline":
        return root / "phase_c" / f"dose_{dose}" / f"patched_{split}.npz"
    return root / "phase_d" / f"dose_{dose}" / view / f"{view}_{split}.npz"


# --------------------------------------------------------------------------------- physics


def test_mean_counts_match_the_dose(small: dict[str, Path]) -> None:
    totals = []
    for split in ("train", "test"):
        data = load_dataset(_file(small["noisy"], "baseline", split))
        counts = np.rint(data.diffraction.astype(np.float64) ** 2)
        totals.append(counts.sum(axis=(1, 2)))
        assert data.metadata["dose"] == 10_000
    totals = np.concatenate(totals)
    # mean of n Poisson totals of mean 1e4: standard error sqrt(1e4 / n)
    assert abs(totals.mean() - 10_000) < 4 * np.sqrt(10_000 / totals.size)
    assert totals.std() > 0


def test_noise_is_poisson(small: dict[str, Path]) -> None:
    noisy = load_dataset(_file(small["noisy"], "baseline", "train")).diffraction.astype(float)
    clean = load_dataset(_file(small["noiseless"], "baseline", "train")).diffraction.astype(float)
    counts, lam = noisy**2, clean**2
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-3)  # whole photons
    assert np.all(counts[lam == 0] == 0)
    bright = lam > 20
    z = (counts[bright] - lam[bright]) / np.sqrt(lam[bright])
    assert bright.sum() > 10_000
    assert abs(z.mean()) < 0.03
    assert 0.95 < z.var() < 1.05  # variance ~ mean
    faint = (lam > 0.5) & (lam < 2)
    residual = counts[faint] - lam[faint]
    assert abs(residual.mean()) < 0.05
    assert abs(np.mean(residual**2 / lam[faint]) - 1) < 0.1


def test_noiseless_diffraction_is_the_far_field_of_probe_times_patch(
    small: dict[str, Path],
) -> None:
    data = load_dataset(_file(small["noiseless"], "baseline", "test"))
    n = data.pattern_size
    scale = data.metadata["intensity_scale"]
    for j in (0, 17, data.n_patterns - 1):
        r, c = int(data.ycoords[j]), int(data.xcoords[j])
        patch = data.object_guess[r - n // 2 : r + n // 2, c - n // 2 : c + n // 2]
        exit_wave = data.probe_guess.astype(np.complex128) * patch
        far = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(exit_wave)))
        np.testing.assert_allclose(
            data.diffraction[j],
            np.sqrt(scale) * np.abs(far),
            rtol=1e-4,
            atol=1e-4 * data.diffraction[j].max(),
        )
        np.testing.assert_array_equal(data.y_patches[j], patch)
    assert abs(np.sum(np.abs(data.probe_guess) ** 2) - 1) < 1e-5


def _window_masks(root: Path, dose: int) -> dict[str, np.ndarray]:
    """Per split, the object pixels inside the N x N window of any position of any of its
    files (computed from the files' coordinates and pattern size only)."""
    masks: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        for view in ("baseline", "dense", "sparse"):
            data = load_dataset(_file(root, view, split, dose))
            half = data.pattern_size // 2
            mask = masks.setdefault(split, np.zeros(data.object_guess.shape, dtype=bool))
            for y, x in zip(data.ycoords, data.xcoords, strict=True):
                r, c = int(y), int(x)
                assert r - half >= 0 and c - half >= 0, "window outside the object"
                assert r + half <= mask.shape[0] and c + half <= mask.shape[1]
                mask[r - half : r + half, c - half : c + half] = True
    return masks


def _assert_splits_disjoint(root: Path, dose: int) -> None:
    masks = _window_masks(root, dose)
    assert masks["train"].any() and masks["test"].any()
    assert not np.any(masks["train"] & masks["test"])
    rows = {s: np.flatnonzero(m.any(axis=1)) for s, m in masks.items()}
    for split in ("train", "test"):  # the metadata tells the truth about the files
        meta = load_dataset(_file(root, "baseline", split, dose)).metadata["split_geometry"]
        assert meta["window_rows"][split] == [int(rows[split][0]), int(rows[split][-1])]
        assert meta["window_gap_px"] == rows["test"][0] - rows["train"][-1] - 1 >= 0
    study = json.loads((root / "study.json").read_text())
    assert study["design"]["split"] == meta


def test_train_and_test_never_share_object_area(small: dict[str, Path]) -> None:
    _assert_splits_disjoint(small["noisy"], 10_000)
    train = load_dataset(_file(small["noisy"], "baseline", "train"))
    test = load_dataset(_file(small["noisy"], "baseline", "test"))
    assert test.ycoords.min() - train.ycoords.max() >= train.pattern_size
    # nor do the ground-truth patches: Y is exactly the object under each window
    for data in (train, test):
        half = data.pattern_size // 2
        for j in (0, data.n_patterns - 1):
            r, c = int(data.ycoords[j]), int(data.xcoords[j])
            window = data.object_guess[r - half : r + half, c - half : c + half]
            np.testing.assert_array_equal(data.y_patches[j], window)


RANDOM_OPTIONS = [  # a few option sets drawn once (seeded), every scan kind
    {"object_px": 150, "step_px": 4.3, "jitter_px": 2.7, "scan": "raster", "probe_px": 48},
    {"object_px": 203, "step_px": 7.9, "jitter_px": 0.0, "scan": "raster"},
    {"object_px": 181, "step_px": 5.2, "jitter_px": 3.0, "scan": "fermat"},
    {"object_px": 257, "step_px": 9.5, "jitter_px": 1.5, "scan": "fermat", "min_positions": 4},
]


@pytest.mark.parametrize("extra", RANDOM_OPTIONS, ids=lambda o: f"{o['scan']}-{o['object_px']}")
def test_random_geometries_keep_the_splits_apart(tmp_path: Path, extra: dict) -> None:
    prepare_study(SyntheticOptions(output_root=tmp_path, doses=(1000,), noiseless=True, **extra))
    _assert_splits_disjoint(tmp_path, 1000)


@pytest.mark.parametrize("preset", ["quick", "full"])
def test_presets_keep_the_splits_apart(tmp_path: Path, preset: str) -> None:
    prepare_study(SyntheticOptions(output_root=tmp_path, preset=preset, doses=(1000,)))
    _assert_splits_disjoint(tmp_path, 1000)


def test_object_too_small_for_two_halves_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["prep-synthetic", "--output-root", str(out), "--object-px", "120", "--dose", "1000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert "object height 120 px is too small" in message and "at least 128 px" in message
    assert len(message.splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()


# ----------------------------------------------------------------------------------- views


def test_views_respect_the_spacing(small: dict[str, Path]) -> None:
    root = small["noisy"]
    for split in ("train", "test"):
        base = _arrays(_file(root, "baseline", split))
        kept = {}
        for view in ("dense", "sparse"):
            arrays = _arrays(_file(root, view, split))
            meta = json.loads(str(arrays["metadata"]))
            y, x = arrays["ycoords"], arrays["xcoords"]
            dist = np.hypot(y[:, None] - y[None, :], x[:, None] - x[None, :])
            dist[np.diag_indices_from(dist)] = np.inf
            assert dist.min() >= meta["min_spacing_px"]
            f = meta["overlap_fraction"]
            assert meta["min_spacing_px"] == pytest.approx((1 - f) * meta["probe_diameter_px"])
            assert meta["accepted"] == len(y)
            assert meta["accepted"] + meta["rejected"] == len(base["ycoords"])
            index = arrays["scan_index"]  # a subset of the baseline, with its patterns
            np.testing.assert_array_equal(base["ycoords"][index], y)
            np.testing.assert_array_equal(base["diffraction"][index], arrays["diffraction"])
            kept[view] = len(y)
        assert kept["dense"] > kept["sparse"] >= 8


def test_too_sparse_view_fails_with_a_clear_message(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["prep-synthetic", "--output-root", str(out), "--object-px", "160"]
    result = runner.invoke(app, [*args, "--sparse-overlap", "0", "--dose", "1000"])
    assert result.exit_code == 2, result.output
    assert "the sparse view keeps" in result.output and "minimum 8" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


# -------------------------------------------------------------------------- reproducibility


def test_same_seeds_give_identical_files(small: dict[str, Path]) -> None:
    first = json.loads((small["noisy"] / "study.json").read_text())
    again = json.loads((small["again"] / "study.json").read_text())
    assert len(first["files"]) == 6
    assert [f["sha256"] for f in first["files"]] == [f["sha256"] for f in again["files"]]
    for f in first["files"]:
        assert (
            f["sha256"]
            == __import__("hashlib").sha256((small["noisy"] / f["path"]).read_bytes()).hexdigest()
        )


def test_another_noise_seed_changes_only_the_diffraction(small: dict[str, Path]) -> None:
    for view in ("baseline", "dense", "sparse"):
        a = _arrays(_file(small["noisy"], view, "train"))
        b = _arrays(_file(small["other_noise"], view, "train"))
        assert a.keys() == b.keys()
        assert not np.array_equal(a["diffraction"], b["diffraction"])
        for key in a.keys() - {"diffraction", "metadata"}:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        meta_a, meta_b = json.loads(str(a["metadata"])), json.loads(str(b["metadata"]))
        assert meta_a["seeds"]["noise"] != meta_b["seeds"]["noise"] == 999
        meta_a.pop("seeds"), meta_b.pop("seeds")
        assert meta_a == meta_b


def test_presets_and_overrides() -> None:
    quick = SyntheticOptions(output_root=Path("x"))
    full = SyntheticOptions(output_root=Path("x"), preset=Preset.FULL, step_px=7.0)
    assert (quick.object_px, quick.step_px) == (216, 6.0)
    assert (full.object_px, full.step_px) == (536, 7.0)
    assert quick.seeds() == SyntheticOptions(output_root=Path("y")).seeds()
    assert len(set(quick.seeds().values())) == 4


# --------------------------------------------------------------------------------- fixture

SEED_LAYOUT = {  # the seed ticket's "Data Prep" payload
    "diffraction": ((8, 64, 64), np.float32),
    "objectGuess": ((128, 128), np.complex64),
    "probeGuess": ((64, 64), np.complex64),
    "Y": ((8, 128, 128), np.complex64),
    "xcoords": ((8,), np.float32),
    "ycoords": ((8,), np.float32),
}


def test_fixture_matches_the_seed_layout(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prep-synthetic", "--output-root", str(tmp_path), "--fixture"])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.rglob("*.npz"))
    assert len(files) == 18
    for dose in (1000, 10000, 100000):
        for split in ("train", "test"):
            for view in ("baseline", "dense", "sparse"):
                assert _file(tmp_path, view, split, dose) in files
    coords = {}
    for path in files:
        arrays = _arrays(path)
        assert set(arrays) == {*SEED_LAYOUT, "filenames", "metadata"}, path
        for key, (shape, dtype) in SEED_LAYOUT.items():
            assert arrays[key].shape == shape and arrays[key].dtype == dtype, (path, key)
        assert arrays["filenames"].dtype.kind == "U"
        assert list(arrays["filenames"][:2]) == ["img_0000", "img_0001"]
        data = load_dataset(path)
        meta = data.metadata
        assert meta["fixture"] is True and meta["dose"] in (1000, 10000, 100000)
        # physically consistent: the centre of each Y window is the probe's patch
        r, c = int(data.ycoords[0]), int(data.xcoords[0])
        np.testing.assert_array_equal(
            data.y_patches[0][32:96, 32:96], data.object_guess[r - 32 : r + 32, c - 32 : c + 32]
        )
        # and the rest of the 2N window shows nothing of the other split (it reads 1)
        other = slice(64, 128) if meta["split"] == "train" else slice(0, 64)
        for y_c, patch in zip(data.ycoords, data.y_patches, strict=True):
            rows = np.arange(int(y_c) - 64, int(y_c) + 64)
            in_other = (rows >= other.start) & (rows < other.stop)
            assert np.all(patch[in_other] == 1), path
        totals = (data.diffraction.astype(np.float64) ** 2).sum(axis=(1, 2))
        expected = meta["mean_expected_counts"]
        assert 0.7 * meta["dose"] < expected < 1.3 * meta["dose"]
        assert abs(totals.mean() - expected) < 5 * np.sqrt(expected / 8)
        coords[meta["split"]] = data.ycoords
    assert coords["test"].min() - coords["train"].max() >= 64  # disjoint 64 px windows
    _assert_splits_disjoint(tmp_path, 1000)


# ---------------------------------------------------------------------------------- errors


def test_bad_probe_npz_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "probe.npz"
    np.savez(bad, probe=np.ones((64, 64), np.complex64))
    result = runner.invoke(
        app, ["prep-synthetic", "--output-root", str(tmp_path / "o"), "--probe-npz", str(bad)]
    )
    assert result.exit_code == 2
    assert f"{bad}: probeGuess: missing required key" in result.output


def test_output_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = runner.invoke(app, ["prep-synthetic", "--output-root", str(target), "--fixture"])
    assert result.exit_code == 2
    assert "not a directory" in result.output


def test_prep_does_not_import_torch_ptychi_or_matplotlib(tmp_path: Path) -> None:
    code = (
        "import sys; from flyrecon.cli import app\n"
        "try: app(['prep-synthetic', '--output-root', sys.argv[1], '--fixture'])\n"
        "except SystemExit as e: assert e.code in (0, None), e.code\n"
        "print(sorted(m for m in ('torch', 'ptychi', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


# ------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_quick_preset_reconstructs_at_the_highest_dose(tmp_path: Path) -> None:
    root = tmp_path / "prep"
    result = runner.invoke(
        app, ["prep-synthetic", "--output-root", str(root), "--dose", "1e5", "--dose", "1e3"]
    )
    assert result.exit_code == 0, result.output
    study = json.loads((root / "study.json").read_text())
    assert study["design"]["doses"] == [100000, 1000] and len(study["files"]) == 12
    out = tmp_path / "recon"
    npz = _file(root, "dense", "train", 100000)
    args = ["reconstruct", "--input-npz", str(npz), "--output-dir", str(out)]
    result = runner.invoke(app, [*args, "--num-epochs", "40", "--device", "cpu", "--seed", "0"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    # measured: complex error 0.090, phase SSIM 0.66 (87 patterns, 40 LSQML epochs)
    assert metrics["complex_relative_error"] < 0.15
    assert metrics["phase_ssim"] > 0.6


# ------------------------------------------------------------------------- noise sampling


def test_poisson_splitting_matches_poisson_statistics() -> None:
    from flyrecon.simulate import poisson_counts_split

    rng = np.random.default_rng(5)
    lam = np.concatenate([rng.uniform(0, 0.5, 40), [0.0, 1e-4, 0.9, 1.5, 4.0, 30.0]])
    expected = np.tile(lam.astype(np.float32).reshape(1, 46), (20_000, 1))  # 20000 samples
    counts = poisson_counts_split(expected, 1.0, 1.0, np.random.default_rng(7))
    assert counts.dtype.kind == "i" and counts.shape == expected.shape
    assert np.all(counts[:, lam == 0] == 0)
    mean, var = counts.mean(axis=0), counts.var(axis=0)
    lam64 = lam.astype(np.float32).astype(np.float64)
    se = np.sqrt(np.maximum(lam64, 1e-3) / counts.shape[0])
    assert np.all(np.abs(mean - lam64) < 5 * se)
    nz = lam64 > 0.05  # Poisson: variance = mean
    assert np.all(np.abs(var[nz] / lam64[nz] - 1) < 0.08)
    faint = lam64 < 1.0  # the split part: its total per sample is Poisson(sum of faint means)
    totals = counts[:, faint].sum(axis=1)
    mu = lam64[faint].sum()
    assert abs(totals.mean() - mu) < 5 * np.sqrt(mu / totals.size)
    assert abs(totals.var() / mu - 1) < 0.05
    values, freq = np.unique(totals, return_counts=True)
    from scipy.stats import poisson

    common = poisson.pmf(values, mu) * totals.size > 200
    np.testing.assert_allclose(
        freq[common] / totals.size, poisson.pmf(values[common], mu), rtol=0.15
    )


def test_sampling_is_reproducible_and_independent_of_workers() -> None:
    from flyrecon import simulate
    from flyrecon.synthetic import expected_intensity, sample_amplitude

    rng = np.random.default_rng(1)
    obj = simulate.procedural_object((160, 160), rng)
    probe = simulate.focused_probe(64)
    y = rng.integers(32, 128, 600).astype(np.float64)
    x = rng.integers(32, 128, 600).astype(np.float64)
    e1 = expected_intensity(obj, probe, y, x, 1)
    e2 = expected_intensity(obj, probe, y, x, 2)
    np.testing.assert_array_equal(e1, e2)
    reference = simulate.far_field_intensity(obj, probe, y, x)
    np.testing.assert_allclose(e1, reference, rtol=1e-3, atol=1e-6 * reference.max())
    scale = 1e5 / e1.sum(axis=(1, 2)).mean()
    a = sample_amplitude(e1, scale, (3, 4), 1)
    b = sample_amplitude(e1, scale, (3, 4), 2)
    c = sample_amplitude(e1, scale, (3, 5), 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    totals = (a.astype(np.float64) ** 2).sum(axis=(1, 2))
    assert abs(totals.mean() - 1e5) < 5 * np.sqrt(1e5 / len(totals))
