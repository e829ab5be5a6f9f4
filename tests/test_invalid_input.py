"""Every kind of invalid input: exit code 2, one line naming file and problem, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from corrupt_cases import CASES, Case
from flyrecon.cli import app
from flyrecon.options import ReconstructOptions
from flyrecon.reconstruct import reconstruct

runner = CliRunner()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_invalid_input_is_rejected_cleanly(case: Case, tmp_path: Path) -> None:
    bad = case.write(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["reconstruct", "--input-npz", str(bad), "--output-dir", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    message = " ".join(result.stderr.split())
    assert bad.name in message
    for fragment in case.expect:
        assert fragment in message
    assert "Traceback" not in result.output
    assert not (out / "result.json").exists()
    assert not (out / "ptychi_reconstruction.npz").exists()
    assert not Path(__file__).with_name("PWNED").exists(), "unpickling ran code"


def test_too_many_images_is_an_error(tiny_npz: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "reconstruct",
            "--input-npz",
            str(tiny_npz),
            "--output-dir",
            str(tmp_path),
            "--n-images",
            "100000",
        ],
    )
    assert result.exit_code == 2
    assert "--n-images 100000" in result.stderr and "tiny.npz" in result.stderr


def test_output_path_that_is_a_file(tiny_npz: Path, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = runner.invoke(
        app, ["reconstruct", "--input-npz", str(tiny_npz), "--output-dir", str(target)]
    )
    assert result.exit_code == 2 and "not a directory" in result.stderr
    assert target.read_text() == "x"


def test_function_returns_invalid_result_without_raising(tmp_path: Path) -> None:
    options = ReconstructOptions(input_npz=tmp_path / "absent.npz", output_dir=tmp_path / "o")
    result = reconstruct(options)
    assert result.returncode == 2 and result.status == "invalid"
    assert "absent.npz" in result.message
