"""Interop: ptychodus products out (read back by ptychodus itself), other methods' results in."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import flyrecon.reconstruct as rec
from flyrecon import layout
from flyrecon.cli import app
from flyrecon.data import load_dataset, save_dataset
from flyrecon.options import PhysicalGeometry, ReconSettings, ReconstructOptions
from flyrecon.product import read_product
from helpers import FakeEngine, simulated_dataset

runner = CliRunner()
ptychodus_io = pytest.importorskip("ptychodus.api.io")


class NoisyEngine(FakeEngine):
    """Returns a recognisable object and probe (not the start), so a product must carry them."""

    def __call__(self, inp, settings, *, on_epoch=None):
        result = super().__call__(inp, settings, on_epoch=on_epoch)
        rng = np.random.default_rng(0)
        result.object = (
            inp.object_init * np.exp(1j * rng.uniform(-1, 1, inp.object_init.shape))
        ).astype(np.complex64)
        result.probe = (inp.probe_init * (1 + 0.5j)).astype(np.complex64)
        return result


def _reconstruct(npz: Path, out: Path, **options) -> None:
    result = rec.reconstruct(
        ReconstructOptions(
            input_npz=npz, output_dir=out, settings=ReconSettings(num_epochs=3), **options
        ),
        engine=NoisyEngine(),
    )
    assert result.ok, result.message


def test_the_product_opens_in_ptychodus_with_flyrecons_object_probe_and_positions(
    tiny_npz: Path, tmp_path: Path
) -> None:
    _reconstruct(tiny_npz, tmp_path)
    product = ptychodus_io.load_product(tmp_path / layout.PRODUCT_H5)
    with np.load(tmp_path / layout.RESULT_NPZ) as npz:
        obj, probe, origin = npz["object"], npz["probe"], npz["canvas_origin_px"]
        losses = npz["loss_history"]
    np.testing.assert_array_equal(product.object_.get_array()[0], obj)
    np.testing.assert_array_equal(product.probes.get_array()[0, 0], probe)
    # positions: ptychodus's own geometry maps them onto flyrecon's canvas pixels exactly
    data = load_dataset(tiny_npz)
    geometry = product.object_.get_geometry()
    x_px = geometry.map_probe_positions_to_object_x_px(product.probe_positions)
    y_px = geometry.map_probe_positions_to_object_y_px(product.probe_positions)
    np.testing.assert_allclose(x_px, data.xcoords - origin[1], atol=1e-9)
    np.testing.assert_allclose(y_px, data.ycoords - origin[0], atol=1e-9)
    np.testing.assert_array_equal(product.probe_positions.get_indexes(), np.arange(data.n_patterns))
    # units: the documented defaults (the tiny file records no geometry), said in the comments
    default = PhysicalGeometry()
    assert product.metadata.photon_energy_eV == default.photon_energy_ev
    assert product.metadata.detector_distance_m == default.detector_distance_m
    assert geometry.pixel_width_m == pytest.approx(default.object_pixel_m(data.pattern_size))
    assert "flyrecon's defaults" in product.metadata.comments
    assert [loss.value for loss in product.losses] == pytest.approx(list(losses))
    # flyrecon's own reader agrees
    ours = read_product(tmp_path / layout.PRODUCT_H5)
    assert ours.origin_px == pytest.approx(tuple(origin))
    np.testing.assert_allclose(ours.xcoords, data.xcoords, atol=1e-9)


def test_recorded_geometry_wins_over_flags_and_flags_over_defaults(tmp_path: Path) -> None:
    data = simulated_dataset(object_px=64, step_px=8)
    recorded = PhysicalGeometry(
        photon_energy_ev=8000, detector_distance_m=1.5, detector_pixel_m=55e-6
    )
    with_geometry = type(data)(**{**data.__dict__, "metadata": {"geometry": recorded.model_dump()}})
    npz = tmp_path / "g.npz"
    save_dataset(npz, with_geometry)
    flags = PhysicalGeometry(photon_energy_ev=12000)
    _reconstruct(npz, tmp_path / "a", geometry=flags)
    product = read_product(tmp_path / "a" / layout.PRODUCT_H5)
    assert product.photon_energy_ev == 8000 and product.pixel_m == pytest.approx(
        recorded.object_pixel_m(32)
    )
    _reconstruct(Path(str(npz).replace("g.npz", "g.npz")), tmp_path / "b")
    plain = tmp_path / "p.npz"
    save_dataset(plain, data)
    _reconstruct(plain, tmp_path / "c", geometry=flags)
    product = read_product(tmp_path / "c" / layout.PRODUCT_H5)
    assert product.photon_energy_ev == 12000 and "given on the command line" in product.comments


@pytest.mark.parametrize(
    "recorded",
    [
        {"photon_energy_ev": 1e-300, "detector_distance_m": 2.0, "detector_pixel_m": 75e-6},
        {"photon_energy_ev": 8000, "detector_distance_m": float("inf"), "detector_pixel_m": 1e-4},
        {"photon_energy_ev": 8000},
        "8 keV",
    ],
)
def test_unusable_recorded_geometry_is_said_not_used(recorded: object) -> None:
    from flyrecon.product import resolve_geometry

    geometry, source = resolve_geometry({"geometry": recorded}, None)
    assert geometry == PhysicalGeometry()
    assert source == (
        "flyrecon's defaults; the input's metadata geometry is incomplete or out of range, not used"
    )
    flags = PhysicalGeometry(photon_energy_ev=12000)
    assert resolve_geometry({"geometry": recorded}, flags)[0] == flags
    assert resolve_geometry({}, None)[1] == "flyrecon's defaults (the input records none)"


@pytest.mark.parametrize(
    "flag", [("--energy-ev", "1e-300"), ("--distance-m", "inf"), ("--pixel-size-m", "3")]
)
def test_absurd_geometry_flags_are_usage_errors(tmp_path: Path, flag: tuple[str, str]) -> None:
    from typer.testing import CliRunner

    from flyrecon.cli import app

    args = ["prep-synthetic", "--fixture", "--output-root", str(tmp_path / "s"), *flag]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not (tmp_path / "s").exists()


def test_prep_synthetic_records_the_physical_geometry(tmp_path: Path) -> None:
    args = ["prep-synthetic", "--output-root", str(tmp_path), "--fixture", "--energy-ev", "9000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = load_dataset(layout.StudyRoot(tmp_path).input_path(1000, "dense", "train")).metadata
    geometry = meta["geometry"]
    expected = PhysicalGeometry(photon_energy_ev=9000)
    assert geometry["photon_energy_ev"] == 9000
    assert geometry["object_pixel_m"] == pytest.approx(expected.object_pixel_m(64))
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["design"]["geometry"] == geometry


def _shifted_truth(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = simulated_dataset(object_px=96, step_px=6)
    truth = tmp_path / "truth.npz"
    save_dataset(truth, data)
    return truth, data.object_guess


def test_evaluate_scores_a_shifted_phase_offset_copy_of_the_truth(tmp_path: Path) -> None:
    truth, obj = _shifted_truth(tmp_path)
    # another frame: a larger array, the object at an offset, a global phase of 1.3 rad
    copy = np.ones((110, 120), np.complex64)
    copy[5 : 5 + obj.shape[0], 9 : 9 + obj.shape[1]] = obj
    copy *= np.exp(1j * 1.3)
    np.savez(tmp_path / "net.npz", prediction=copy)
    out = tmp_path / "eval"
    args = ["evaluate", "--truth", str(truth), "--recon", str(tmp_path / "net.npz")]
    result = runner.invoke(app, [*args, "--key", "prediction", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / layout.METRICS_JSON).read_text())
    assert metrics["phase_ssim"] > 0.99 and metrics["complex_relative_error"] < 0.01
    assert "cross-correlation" in result.stderr and "phase SSIM" in result.stderr
    assert (out / layout.FIGURE_PNG).read_bytes()[:4] == b"\x89PNG"
    # the same keys as a study-run job's metrics.json
    assert {
        "phase_ssim",
        "phase_ms_ssim",
        "frc_resolution_0p5_px",
        "amplitude_ssim",
    } <= metrics.keys()


def test_evaluate_places_a_flyrecon_result_by_its_recorded_origin(tmp_path: Path) -> None:
    truth, _ = _shifted_truth(tmp_path)
    options = ReconstructOptions(
        input_npz=truth,
        output_dir=tmp_path / "job",
        settings=ReconSettings(num_epochs=2, object_init="guess"),
    )
    assert rec.reconstruct(options, engine=FakeEngine()).ok  # returns objectGuess on its canvas
    for recon in (tmp_path / "job", tmp_path / "job" / layout.PRODUCT_H5):
        result = runner.invoke(
            app,
            [
                "evaluate",
                "--truth",
                str(truth),
                "--recon",
                str(recon),
                "--output-dir",
                str(tmp_path / "e"),
            ],
        )
        assert result.exit_code == 0, result.output
        assert "recorded origin" in result.stderr


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"prediction": np.ones((4, 4))}, "no object array"),
        ({"object": np.ones((8, 8))}, "expected a 2-D complex object"),
        ({"object": np.full((8, 8), np.nan + 0j)}, "NaN"),
        ({"object": np.ones((0, 0), np.complex64)}, "empty"),
        ({"object": np.zeros((8, 8), np.complex64)}, "zero everywhere"),
        (
            {"object": np.ones((8, 8), np.complex64), "canvas_origin_px": np.array([np.nan, 0])},
            "canvas_origin_px: expected 2 finite numbers",
        ),
        (
            {"object": np.ones((8, 8), np.complex64), "canvas_origin_px": np.array(["a", "b"])},
            "canvas_origin_px: expected 2 finite numbers",
        ),
    ],
)
def test_evaluate_bad_input_is_one_line_exit_2(tmp_path: Path, payload: dict, message: str) -> None:
    truth, _ = _shifted_truth(tmp_path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **payload)
    result = runner.invoke(app, ["evaluate", "--truth", str(truth), "--recon", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.stderr and str(bad) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    missing = runner.invoke(
        app, ["evaluate", "--truth", str(truth), "--recon", str(tmp_path / "nope.h5")]
    )
    assert missing.exit_code == 2 and "not found" in missing.stderr


def _product_with_array_pixel_size(path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as h5:
        obj = h5.create_dataset("object", data=np.ones((1, 8, 8), np.complex64))
        obj.attrs["pixel_width_m"] = np.array([1e-8, 2e-8])
        h5.create_dataset("probe", data=np.ones((1, 1, 4, 4), np.complex64))
        h5.create_dataset("probe_position_x_m", data=np.zeros(3))
        h5.create_dataset("probe_position_y_m", data=np.zeros(3))


def _product_with_empty_object(path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as h5:
        h5.create_dataset("object", data=np.ones((0, 10, 10), np.complex64))
        h5.create_dataset("probe", data=np.ones((1, 1, 4, 4), np.complex64))
        h5.create_dataset("probe_position_x_m", data=np.zeros(3))
        h5.create_dataset("probe_position_y_m", data=np.zeros(3))


def _product_declaring_terabytes(path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as h5:  # chunked and never written: a few kB on disk
        h5.create_dataset("object", shape=(1, 10**6, 10**6), dtype=np.complex64, chunks=True)
        h5.create_dataset("probe", data=np.ones((1, 1, 4, 4), np.complex64))
        h5.create_dataset("probe_position_x_m", data=np.zeros(3))
        h5.create_dataset("probe_position_y_m", data=np.zeros(3))


def _damaged_zip(path: Path) -> None:
    np.savez(path, object=np.ones((8, 8), np.complex64))
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF  # inside the stored member: its CRC no longer matches
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("crc.npz", _damaged_zip, "cannot be read"),
        ("garbage.h5", lambda p: p.write_bytes(b"not HDF5" * 64), "not an HDF5 file"),
        ("array-attribute.h5", _product_with_array_pixel_size, "not a readable"),
        ("fifo.npz", lambda p: os.mkfifo(p), "not a regular file"),
        ("empty-object.h5", _product_with_empty_object, "object: is empty"),
        ("terabytes.h5", _product_declaring_terabytes, "more than this machine's memory"),
    ],
)
def test_evaluate_refuses_unreadable_files_without_hanging(
    tmp_path: Path, name: str, make, message: str
) -> None:
    if name.startswith("fifo") and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    truth, _ = _shifted_truth(tmp_path)
    bad = tmp_path / name
    make(bad)
    result = runner.invoke(app, ["evaluate", "--truth", str(truth), "--recon", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert message in result.stderr and str(bad) in result.stderr


def test_evaluate_output_dir_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    truth, obj = _shifted_truth(tmp_path)
    np.save(tmp_path / "net.npy", obj)
    (tmp_path / "a-file").write_text("x")
    args = ["evaluate", "--truth", str(truth), "--recon", str(tmp_path / "net.npy")]
    result = runner.invoke(app, [*args, "--output-dir", str(tmp_path / "a-file")])
    assert result.exit_code == 2, result.output
    assert "a-file: output path exists and is not a directory" in result.stderr


def test_evaluate_takes_a_bare_npy_array_as_the_object(tmp_path: Path) -> None:
    truth, obj = _shifted_truth(tmp_path)
    np.save(tmp_path / "net.npy", obj)
    args = ["evaluate", "--truth", str(truth), "--recon", str(tmp_path / "net.npy")]
    result = runner.invoke(app, [*args, "--output-dir", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "e" / layout.METRICS_JSON).read_text())
    assert metrics["phase_ssim"] > 0.99


def _run_study(study_tree: tuple[Path, Path], tmp_path: Path, monkeypatch, *args: str) -> Path:
    """A copy of the study tree run at dose 1000 (2 epochs, `args` added) with the real
    reconstruct and a stand-in engine; returns the study root."""
    import flyrecon.study.runner as study_runner
    from flyrecon.study.jobs import run_job

    root = tmp_path / "study"
    shutil.copytree(study_tree[0], root / "phase_c")
    shutil.copytree(study_tree[1], root / "phase_d")
    job = partial(run_job, engine=NoisyEngine())
    monkeypatch.setattr(
        study_runner, "run_study", partial(study_runner.run_study, job_fn=job, report=False)
    )
    command = ["study-run", "--study-root", str(root), "--dose", "1000", "--num-epochs", "2"]
    result = runner.invoke(app, [*command, *args])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def finished(study_tree: tuple[Path, Path], tmp_path: Path, monkeypatch) -> Path:
    """A 6-job study (one dose) run with the real reconstruct and a stand-in engine."""
    return _run_study(study_tree, tmp_path, monkeypatch)


def test_report_adds_a_second_methods_rows_and_curves(finished: Path, tmp_path: Path) -> None:
    out = finished / "reconstructions"
    other = tmp_path / "net"
    for job in json.loads((out / layout.MANIFEST_JSON).read_text())["execution_results"]:
        folder = layout.output_dir(other, job["dose"], job["view"], job["split"])
        if job["key"].endswith("sparse/test"):
            continue  # the other method has no result for one job
        folder.mkdir(parents=True)
        truth = load_dataset(job["input_npz"]).object_guess
        np.savez(folder / "pred.npz", object=(truth * np.exp(0.4j)).astype(np.complex64))
    result = runner.invoke(app, ["report", "--artifact-root", str(out), "--method", f"net={other}"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / layout.SUMMARY_CSV).open()))
    by_method = {m: [r for r in rows if r["method"] == m] for m in ("flyrecon", "net")}
    assert len(by_method["flyrecon"]) == 6 and len(by_method["net"]) == 6
    net_ok = [r for r in by_method["net"] if r["status"] == "succeeded"]
    assert len(net_ok) == 5 and all(float(r["phase_ssim"]) > 0.99 for r in net_ok)
    (missing,) = [r for r in by_method["net"] if r["status"] != "succeeded"]
    assert (
        missing["split"] == "test"
        and missing["view"] == "sparse"
        and "not scored" in missing["status"]
    )
    assert "| net |" in (out / layout.SUMMARY_MD).read_text()
    assert (out / layout.METRICS_VS_DOSE_PNG).read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, ["report", "--artifact-root", str(out), "--method", "net"])
    assert bad.exit_code == 2


def test_export_writes_products_for_an_existing_study(finished: Path) -> None:
    out = finished / "reconstructions"
    for product in out.rglob(layout.PRODUCT_H5):
        product.unlink()
    result = runner.invoke(app, ["export", "--artifact-root", str(out), "--energy-ev", "7000"])
    assert result.exit_code == 0, result.output
    products = sorted(out.rglob(layout.PRODUCT_H5))
    assert len(products) == 6
    loaded = ptychodus_io.load_product(products[0])
    assert loaded.metadata.photon_energy_eV == 7000


def test_export_uses_the_patterns_the_job_used(
    study_tree: tuple[Path, Path], tmp_path: Path, monkeypatch
) -> None:
    args = ("--view", "baseline", "--split", "train", "--n-images", "3")
    root = _run_study(study_tree, tmp_path, monkeypatch, *args)
    (product,) = (root / "reconstructions").rglob(layout.PRODUCT_H5)
    assert len(read_product(product).xcoords) == 3
    product.unlink()
    export = runner.invoke(app, ["export", "--artifact-root", str(root / "reconstructions")])
    assert export.exit_code == 0, export.output
    assert len(read_product(product).xcoords) == 3  # not every pattern of the input


def test_export_skips_a_job_folder_another_run_is_writing(
    study_tree: tuple[Path, Path], tmp_path: Path, monkeypatch
) -> None:
    from flyrecon.atomic import folder_lock

    root = _run_study(study_tree, tmp_path, monkeypatch, "--view", "baseline", "--split", "train")
    (product,) = (root / "reconstructions").rglob(layout.PRODUCT_H5)
    product.unlink()
    with folder_lock(product.parent):
        export = runner.invoke(app, ["export", "--artifact-root", str(root / "reconstructions")])
    assert export.exit_code == 0, export.output
    assert "another flyrecon run is writing" in " ".join(export.output.split())
    assert not product.exists()


def test_reconstruct_does_not_import_ptychodus(tiny_npz: Path, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from pathlib import Path\n"
        "from helpers import FakeEngine\n"
        "from flyrecon.options import ReconSettings, ReconstructOptions\n"
        "from flyrecon.reconstruct import reconstruct\n"
        "options = ReconstructOptions(input_npz=Path(sys.argv[1]), output_dir=Path(sys.argv[2]),"
        " settings=ReconSettings(num_epochs=2))\n"
        "r = reconstruct(options, engine=FakeEngine())\n"
        "assert r.ok, r.message\n"
        "print('ptychodus' in sys.modules, 'h5py' in sys.modules)\n"
    )
    tests = str(Path(__file__).parent)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tiny_npz), str(tmp_path), tests],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
    assert (tmp_path / layout.PRODUCT_H5).is_file()


def test_unusable_recorded_geometry_is_a_doubt_and_visible_light_is_a_geometry(
    tmp_path: Path,
) -> None:
    from flyrecon.cli._params import geometry_from

    assert geometry_from(1.96, 0.05, 5.5e-6).photon_energy_ev == 1.96  # a HeNe laser
    data = simulated_dataset(object_px=64, step_px=8)
    bad = {"photon_energy_ev": 1e-300, "detector_distance_m": 2.0, "detector_pixel_m": 75e-6}
    npz = tmp_path / "g.npz"
    save_dataset(npz, type(data)(**{**data.__dict__, "metadata": {"geometry": bad}}))
    options = ReconstructOptions(
        input_npz=npz, output_dir=tmp_path / "o", settings=ReconSettings(num_epochs=1)
    )
    result = rec.reconstruct(options, engine=FakeEngine())
    assert result.ok
    (doubt,) = result.doubts
    assert "metadata: geometry is incomplete or out of range" in doubt
    assert "flyrecon's default geometry instead" in doubt
