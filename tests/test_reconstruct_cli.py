"""`flyrecon reconstruct` with pty-chi stubbed: every option reaches the engine."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import flyrecon.reconstruct as rec
from flyrecon.cli import app
from flyrecon.data import load_dataset
from flyrecon.errors import ReconstructionError
from flyrecon.options import Algorithm, Device, NoiseModel, ObjectInit, ProbeInit, ReconSettings
from helpers import FakeEngine

runner = CliRunner()


REAL_RECONSTRUCT = rec.reconstruct


def _use_engine(monkeypatch: pytest.MonkeyPatch, fake: FakeEngine) -> FakeEngine:
    """Make the reconstruct command's library call run `fake` as its engine."""
    monkeypatch.setattr(rec, "reconstruct", partial(REAL_RECONSTRUCT, engine=fake))
    return fake


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    return _use_engine(monkeypatch, FakeEngine())


def test_main_uses_cli_arguments(tiny_npz: Path, tmp_path: Path, fake_engine: FakeEngine) -> None:
    out = tmp_path / "nested" / "out"
    args = [
        "reconstruct",
        "--input-npz",
        str(tiny_npz),
        "--output-dir",
        str(out),
        "--algorithm",
        "rPIE",
        "--num-epochs",
        "7",
        "--n-images",
        "40",
        "--batch-size",
        "9",
        "--device",
        "cpu",
        "--seed",
        "11",
        "--object-init",
        "guess",
        "--probe-init",
        "scaled",
        "--noise-model",
        "poisson",
        "--threads",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ((inp, settings),) = fake_engine.calls
    assert settings == ReconSettings(
        algorithm=Algorithm.RPIE,
        num_epochs=7,
        n_images=40,
        batch_size=9,
        device=Device.CPU,
        seed=11,
        object_init=ObjectInit.GUESS,
        probe_init=ProbeInit.SCALED,
        noise_model=NoiseModel.POISSON,
        threads=1,
    )
    data = load_dataset(tiny_npz)
    # n-images: the first 40 patterns, squared into intensities
    np.testing.assert_allclose(inp.intensities, data.diffraction[:40] ** 2, rtol=1e-6)
    assert inp.positions_px.shape == (40, 2)
    # object-init guess: the canvas holds objectGuess, not ones
    assert not np.allclose(inp.object_init, 1)
    # probe-init scaled: probeGuess times a positive factor matching the data's power
    ratio = inp.probe_init / data.probe_guess
    assert np.allclose(ratio, ratio.flat[0], rtol=1e-4) and abs(ratio.flat[0]) > 1
    mean_counts = np.mean(np.sum(data.diffraction[:40].astype(float) ** 2, axis=(1, 2)))
    assert np.isclose(32**2 * np.sum(np.abs(inp.probe_init) ** 2), mean_counts, rtol=1e-3)
    saved = json.loads((out / "result.json").read_text())
    assert saved["returncode"] == 0 and saved["n_patterns"] == 40
    assert saved["options"]["algorithm"] == "rPIE"


def test_defaults_are_blind_and_use_every_pattern(
    tiny_npz: Path, tmp_path: Path, fake_engine: FakeEngine
) -> None:
    result = runner.invoke(
        app, ["reconstruct", "--input-npz", str(tiny_npz), "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    ((inp, settings),) = fake_engine.calls
    data = load_dataset(tiny_npz)
    assert settings == ReconSettings()
    assert inp.intensities.shape[0] == data.n_patterns
    assert np.array_equal(inp.object_init, np.ones_like(inp.object_init))
    # the probe is probeGuess, rescaled so its far-field power matches the mean counts
    scale = inp.probe_init[data.probe_guess != 0] / data.probe_guess[data.probe_guess != 0]
    np.testing.assert_allclose(scale, scale.real.mean(), rtol=1e-4)
    counts = np.mean(np.sum(data.diffraction.astype(np.float64) ** 2, axis=(1, 2)))
    power = data.pattern_size**2 * np.sum(np.abs(inp.probe_init.astype(np.complex128)) ** 2)
    np.testing.assert_allclose(power, counts, rtol=1e-4)


def test_outputs_are_complete_and_typed(
    tiny_npz: Path, tmp_path: Path, fake_engine: FakeEngine
) -> None:
    result = runner.invoke(
        app,
        [
            "reconstruct",
            "--input-npz",
            str(tiny_npz),
            "--output-dir",
            str(tmp_path),
            "--num-epochs",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [
            "metrics.json",
            "ptychi_reconstruction.npz",
            "ptychodus_product.h5",
            "reconstruct.log",
            "reconstruction.png",
            "result.json",
        ]
    )
    with np.load(tmp_path / "ptychi_reconstruction.npz", allow_pickle=False) as npz:
        assert npz["object"].dtype == np.complex64 and npz["probe"].dtype == np.complex64
        assert npz["loss_history"].shape == (3,)
        assert str(npz["algorithm"]) == ReconSettings().algorithm and int(npz["num_epochs"]) == 3
        assert json.loads(str(npz["ptychi_options_json"])) == {"stub": True}
    assert (tmp_path / "reconstruction.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"phase_ssim", "complex_relative_error", "frc_resolution_0p5_px"} <= metrics.keys()
    assert "epoch 3/3" in (tmp_path / "reconstruct.log").read_text()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (ReconstructionError("loss became nan at epoch 3"), "loss became nan at epoch 3"),
        (RuntimeError("singular matrix"), "RuntimeError: singular matrix"),
    ],
)
def test_engine_failure_is_exit_1_with_one_line(
    tiny_npz: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    expected: str,
) -> None:
    _use_engine(monkeypatch, FakeEngine(fail_with=failure))
    result = runner.invoke(
        app, ["reconstruct", "--input-npz", str(tiny_npz), "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert expected in result.stderr and "Traceback" not in result.output
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["status"] == "failed" and saved["returncode"] == 1
    assert not (tmp_path / "ptychi_reconstruction.npz").exists()


def test_debug_flag_shows_the_traceback(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_engine(monkeypatch, FakeEngine(fail_with=RuntimeError("boom")))
    result = runner.invoke(
        app, ["--debug", "reconstruct", "--input-npz", str(tiny_npz), "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 1 and "Traceback" in result.stderr


def test_rerun_failure_removes_stale_results(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_engine(monkeypatch, FakeEngine())
    args = ["reconstruct", "--input-npz", str(tiny_npz), "--output-dir", str(tmp_path)]
    assert runner.invoke(app, args).exit_code == 0
    _use_engine(monkeypatch, FakeEngine(fail_with=RuntimeError("x")))
    assert runner.invoke(app, args).exit_code == 1
    assert not (tmp_path / "ptychi_reconstruction.npz").exists()
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "failed"


def test_no_temporary_files_left(tiny_npz: Path, tmp_path: Path, fake_engine: FakeEngine) -> None:
    runner.invoke(app, ["reconstruct", "--input-npz", str(tiny_npz), "--output-dir", str(tmp_path)])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_usage_errors_exit_2(tiny_npz: Path, tmp_path: Path) -> None:
    for args in (
        ["reconstruct"],
        ["reconstruct", "--input-npz", str(tiny_npz), "--algorithm", "nope"],
        ["reconstruct", "--input-npz", str(tiny_npz), "--num-epochs", "-3"],
        ["reconstruct", "--input-npz", str(tiny_npz), "--device", "tpu"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, args


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from flyrecon.cli import app\n"
        "for args in (['--help'], ['reconstruct', '--help']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        "heavy = sorted(m for m in ('torch', 'ptychi', 'matplotlib') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    assert _run_python(code).stdout.strip() == "[]"


def test_python_dash_m_runs_the_app() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flyrecon", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("flyrecon ")


@pytest.mark.parametrize(("given", "expected"), [(None, "__all__"), ("logfire", "logfire")])
def test_the_command_turns_off_pydantic_plugins_unless_the_user_chose(
    given: str | None, expected: str
) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if given is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = given
    code = (
        "import os, sys\n"
        "sys.argv = ['flyrecon', '--version']\n"
        "from flyrecon.entry import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ['PYDANTIC_DISABLE_PLUGINS'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.stdout.strip().splitlines()[-1] == expected, proc.stderr


def test_the_automatic_stop_is_the_default_and_num_epochs_fixes_the_count(
    tiny_npz: Path, tmp_path: Path, fake_engine: FakeEngine
) -> None:
    args = ["reconstruct", "--input-npz", str(tiny_npz), "--output-dir", str(tmp_path)]
    assert runner.invoke(app, [*args, "--max-epochs", "7"]).exit_code == 0
    assert runner.invoke(app, [*args, "--num-epochs", "3"]).exit_code == 0
    (_, auto), (_, fixed) = fake_engine.calls
    assert auto.num_epochs is None and auto.max_epochs == 7
    assert fixed.num_epochs == 3


@pytest.mark.parametrize("command", ["reconstruct", "study-run"])
def test_every_setting_has_its_flag_with_the_models_default(command: str) -> None:
    """The settings are defined once (`ReconSettings`); each command takes every field as a
    flag of the same name, defaulting to the model's default."""
    import inspect

    from flyrecon.cli.reconstruct import reconstruct_command
    from flyrecon.cli.study_run import study_run_command

    fn = reconstruct_command if command == "reconstruct" else study_run_command
    params = inspect.signature(fn).parameters
    defaults = ReconSettings()
    for name in ReconSettings.model_fields:
        assert name in params, name
        default = params[name].default
        expected = getattr(defaults, name)
        assert default == expected, (name, default, expected)


@pytest.mark.parametrize("placeholder", ["all zero", "all ones", "smaller than an SSIM window"])
def test_a_placeholder_object_guess_is_no_truth_to_score_against(
    tmp_path: Path, placeholder: str
) -> None:
    from dataclasses import replace

    from flyrecon.data import save_dataset
    from flyrecon.options import ReconstructOptions
    from helpers import simulated_dataset

    data = simulated_dataset()
    npz = tmp_path / "placeholder.npz"
    if placeholder == "all zero":
        data = replace(data, object_guess=np.zeros_like(data.object_guess))
    elif placeholder == "all ones":
        data = replace(data, object_guess=np.ones_like(data.object_guess))
    else:  # 8 x 8 pixels, the positions squeezed inside it
        data = replace(
            data,
            object_guess=np.ones((8, 8), np.complex64),
            xcoords=data.xcoords * 8 / data.object_guess.shape[1],
            ycoords=data.ycoords * 8 / data.object_guess.shape[0],
        )
    save_dataset(npz, data)
    out = tmp_path / "o"
    options = ReconstructOptions(
        input_npz=npz, output_dir=out, settings=ReconSettings(num_epochs=2)
    )
    result = rec.reconstruct(options, engine=FakeEngine())
    assert result.ok and result.metrics is None  # not "phase SSIM 1.000"
    assert not (out / "metrics.json").exists()
    assert "no metrics: objectGuess" in (out / "reconstruct.log").read_text()
