"""Every kind of invalid input: exit code 2, one line naming file and problem, nothing written
or removed."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from corrupt.cases import CASES, PWNED, Case
from flyrecon.cli import app
from flyrecon.data import load_dataset
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
    assert not out.exists()  # checked before the output folder is made
    assert not PWNED.exists(), "unpickling ran code"


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


STUDY_CASES = [c for c in CASES if c.name != "missing-file"]  # missing: a study-level error


@pytest.mark.parametrize("case", STUDY_CASES, ids=[c.name for c in STUDY_CASES])
def test_invalid_study_input_fails_its_job_cleanly(case: Case, tmp_path: Path) -> None:
    """The same corpus as a study's only input: the job is recorded invalid, study exits 1."""
    import json

    bad = case.write(tmp_path)
    dose_dir = tmp_path / "study" / "phase_c" / "dose_1000"
    dose_dir.mkdir(parents=True)
    target = dose_dir / "patched_train.npz"
    if bad.is_dir():
        target.mkdir()
    else:
        bad.rename(target)
    out = tmp_path / "study" / "out"
    result = runner.invoke(
        app,
        [
            "study-run",
            "--study-root",
            str(tmp_path / "study"),
            "--artifact-root",
            str(out),
            "--view",
            "baseline",
            "--split",
            "train",
            "--allow-missing-phase-d",
        ],
    )
    if result.exit_code == 2:  # a directory is not an input file: refused up front
        assert "patched_train.npz" in result.stderr
        return
    assert result.exit_code == 1, result.output
    (record,) = json.loads((out / "reconstruction_manifest.json").read_text())["execution_results"]
    assert record["returncode"] == 2 and record["status"] == "invalid"
    for fragment in case.expect:
        assert fragment in record["reason"]
    job = out / "dose_1000" / "baseline" / "train"
    assert not (job / "result.json").exists() and not (job / "ptychi_reconstruction.npz").exists()
    assert "Traceback" not in result.output
    assert not PWNED.exists()


PROBE_CASES = [
    c
    for c in CASES
    if c.name
    in {
        "missing-probeGuess",
        "probe-3d",
        "real-probe",
        "nan-probeGuess",
        "inf-probeGuess",
        "empty-file",
        "truncated-zip",
        "not-npz",
        "directory",
        "missing-file",
    }
]


@pytest.mark.parametrize("case", PROBE_CASES, ids=[c.name for c in PROBE_CASES])
def test_invalid_probe_npz_for_prep_synthetic(case: Case, tmp_path: Path) -> None:
    bad = case.write(tmp_path)
    out = tmp_path / "prep"
    result = runner.invoke(
        app, ["prep-synthetic", "--output-root", str(out), "--probe-npz", str(bad)]
    )
    assert result.exit_code == 2, result.output
    assert bad.name in " ".join(result.stderr.split()) and "Traceback" not in result.output
    assert not list(out.rglob("*.npz")) and not (out / "study.json").exists()
    assert not PWNED.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["prep-synthetic", "--fixture", "--dose", "inf"], "dose"),
        (["prep-synthetic", "--fixture", "--dose", "1e300"], "dose"),
        (["prep-synthetic", "--fixture", "--energy-ev", "inf"], "energy"),
        (["reconstruct", "--seed", str(2**70)], "seed"),
        (["reconstruct", "--threads", "100000"], "threads"),
    ],
    ids=["dose-inf", "dose-huge", "energy-inf", "seed-huge", "threads-huge"],
)
def test_out_of_range_values_are_usage_errors(
    args: list[str], fragment: str, tiny_npz: Path, tmp_path: Path
) -> None:
    out = ["--output-dir", str(tmp_path / "o")] if args[0] == "reconstruct" else []
    where = ["--input-npz", str(tiny_npz)] if args[0] == "reconstruct" else []
    root = ["--output-root", str(tmp_path / "r")] if args[0] == "prep-synthetic" else []
    result = runner.invoke(app, [*args, *where, *out, *root])
    assert result.exit_code == 2, result.output
    assert fragment in result.output.lower()
    assert "Traceback" not in result.output
    assert not (tmp_path / "o" / "result.json").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_unusable_artifact_root_is_an_input_error(
    dry_run: bool, study_tree: tuple[Path, Path], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    phase_c, phase_d = study_tree
    for root in (blocker, blocker / "under"):
        args = ["study-run", "--phase-c-root", str(phase_c), "--phase-d-root", str(phase_d)]
        args += ["--artifact-root", str(root), "--dose", "1000", "--view", "baseline"]
        result = runner.invoke(app, [*args, *(["--dry-run"] if dry_run else [])])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "a-file" in lines[0] and "not a directory" in lines[0]
    assert blocker.read_text() == "x"


def test_prep_synthetic_output_root_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = runner.invoke(
        app, ["prep-synthetic", "--fixture", "--output-root", str(blocker / "study")]
    )
    assert result.exit_code == 2, result.output
    assert "a-file" in result.stderr and "not a directory" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr  # no line left by a bar


def test_prep_synthetic_refuses_a_dose_too_bright_to_reconstruct(tmp_path: Path) -> None:
    """reconstruct takes intensities up to 1e12 per pixel (single precision); a study it
    would refuse is not simulated."""
    root = tmp_path / "study"
    args = ["prep-synthetic", "--fixture", "--output-root", str(root)]
    result = runner.invoke(app, [*args, "--dose", "1e15"])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error: --dose: at 1e+15 photons per pattern the brightest")
    assert "choose a dose below" in message and len(message.splitlines()) == 1
    assert not root.exists()
    assert runner.invoke(app, [*args, "--dose", "1e12"]).exit_code == 0


def test_prep_synthetic_refuses_an_object_too_bright_to_simulate(tmp_path: Path) -> None:
    bright = tmp_path / "bright.npz"
    np.savez(bright, objectGuess=np.full((64, 64), 1e19, np.complex64))
    root = tmp_path / "study"
    result = runner.invoke(
        app, ["prep-synthetic", "--output-root", str(root), "--object-npz", str(bright)]
    )
    assert result.exit_code == 2, result.output
    assert "bright.npz" in result.stderr and "objectGuess" in result.stderr
    assert "rescale" in result.stderr and not any(root.rglob("*.npz"))


@pytest.mark.parametrize(("half", "rows"), [("train", "0-127"), ("test", "128-255")])
def test_prep_synthetic_refuses_an_object_half_of_zeros(
    tmp_path: Path, half: str, rows: str
) -> None:
    obj = np.ones((256, 256), np.complex64)
    obj[slice(0, 128) if half == "train" else slice(128, None)] = 0
    path = tmp_path / "half.npz"
    np.savez(path, objectGuess=obj)
    root = tmp_path / "study"
    result = runner.invoke(
        app, ["prep-synthetic", "--output-root", str(root), "--object-npz", str(path)]
    )
    assert result.exit_code == 2, result.output
    assert f"half.npz: objectGuess: the {half} half of the object (rows {rows}) is all zero" in (
        " ".join(result.stderr.split())
    )
    assert not any(root.rglob("*.npz"))


def test_prep_synthetic_dense_overlap_must_exceed_sparse(tmp_path: Path) -> None:
    root = tmp_path / "study"
    args = ["prep-synthetic", "--output-root", str(root), "--fixture"]
    result = runner.invoke(app, [*args, "--dense-overlap", "0.2", "--sparse-overlap", "0.5"])
    assert result.exit_code == 2, result.output
    assert "dense_overlap (0.2) must be larger than sparse_overlap (0.5)" in result.stderr
    assert not root.exists()


def test_cuda_requested_without_one_is_an_input_error(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flyrecon.engine as engine
    import flyrecon.reconstruct as rec
    from helpers import FakeEngine

    out = tmp_path / "out"
    earlier = ReconstructOptions(input_npz=tiny_npz, output_dir=out)
    assert rec.reconstruct(earlier, engine=FakeEngine()).ok
    before = sorted(p.name for p in out.iterdir())
    monkeypatch.setattr(engine, "cuda_available", lambda: False)
    args = ["reconstruct", "--input-npz", str(tiny_npz), "--output-dir", str(out)]
    result = runner.invoke(app, [*args, "--device", "cuda", "--num-epochs", "1"])
    assert result.exit_code == 2, result.output
    assert "--device cuda: torch sees no CUDA device" in result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == before  # a wrong node wipes nothing


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        ("zero", "all patterns chosen (the first 2, --n-images) are zero"),
        ("same-place", "positions (the first 2, --n-images) lie within"),
    ],
)
def test_n_images_checks_the_patterns_it_keeps(tmp_path: Path, mutate: str, message: str) -> None:
    from corrupt.cases import valid_arrays

    arrays = valid_arrays()
    if mutate == "zero":
        arrays["diffraction"][:2] = 0
    else:
        arrays["xcoords"][1] = arrays["xcoords"][0]
        arrays["ycoords"][1] = arrays["ycoords"][0]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    args = ["reconstruct", "--input-npz", str(bad), "--output-dir", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--n-images", "2"])
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert load_dataset(bad).n_patterns == len(arrays["xcoords"])  # the whole file is fine
    assert load_dataset(bad, 3).n_patterns == 3


def test_an_unexpected_error_is_one_line_with_the_traceback_behind_debug(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flyrecon.evaluation as evaluation

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug nobody foresaw")

    monkeypatch.setattr(evaluation, "evaluate_files", broken)
    args = ["evaluate", "--truth", str(tiny_npz), "--recon", str(tiny_npz)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        "error: unexpected ZeroDivisionError: a bug nobody foresaw (--debug shows where)"
    ]
    debug = runner.invoke(app, ["--debug", *args])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr


@pytest.mark.parametrize("name", ["ptychi_reconstruction.npz", "job.json", "reconstruct.log"])
def test_an_input_that_is_an_output_of_its_job_is_refused_untouched(
    tiny_npz: Path, tmp_path: Path, name: str
) -> None:
    import shutil

    out = tmp_path / "out"
    out.mkdir()
    inside = out / name
    shutil.copy(tiny_npz, inside)
    before = inside.read_bytes()
    args = ["reconstruct", "--input-npz", str(inside), "--output-dir", str(out)]
    result = runner.invoke(app, [*args, "--num-epochs", "1"])
    assert result.exit_code == 2, result.output
    assert "the input is a file this job writes" in result.stderr
    assert inside.read_bytes() == before and [p.name for p in out.iterdir()] == [name]


def test_a_path_that_is_not_utf8_is_a_usage_error(tiny_npz: Path, tmp_path: Path) -> None:
    bad = tmp_path / b"out-\xff".decode("utf-8", "surrogateescape")
    args = ["reconstruct", "--input-npz", str(tiny_npz), "--output-dir", str(bad)]
    result = runner.invoke(app, [*args, "--num-epochs", "1"])
    assert result.exit_code == 2, result.output
    assert "output_dir" in result.stderr and "is not valid UTF-8" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not bad.exists()


def test_reconstruct_into_a_job_folder_removes_the_studys_stamp(
    tiny_npz: Path, tmp_path: Path
) -> None:
    from flyrecon import layout
    from helpers import FakeEngine

    out = tmp_path / "job"
    out.mkdir()
    (out / layout.JOB_JSON).write_text("{}")
    options = ReconstructOptions(input_npz=tiny_npz, output_dir=out)
    assert reconstruct(options, engine=FakeEngine()).ok
    assert not (out / layout.JOB_JSON).exists()


def test_prep_synthetic_refuses_a_root_that_holds_a_study(tmp_path: Path) -> None:
    root = tmp_path / "study"
    args = ["prep-synthetic", "--output-root", str(root), "--fixture"]
    assert runner.invoke(app, [*args, "--dose", "1000"]).exit_code == 0
    before = sorted(str(p) for p in root.rglob("*"))
    result = runner.invoke(app, [*args, "--dose", "2000", "--seed", "5"])
    assert result.exit_code == 2, result.output
    assert "already holds another study" in result.stderr
    assert sorted(str(p) for p in root.rglob("*")) == before
    again = runner.invoke(app, [*args, "--dose", "1000"])  # the same design: the same files
    assert again.exit_code == 0, again.output
    assert sorted(str(p) for p in root.rglob("*")) == before


@pytest.mark.parametrize("flags", [["--object-px", "200000"], ["--step-px", "0.2"]])
def test_prep_synthetic_refuses_a_design_larger_than_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str]
) -> None:
    import flyrecon.memory as memory
    import flyrecon.synthetic as synthetic

    def too_late(*args, **kwargs):  # quadratic in the positions: minutes for millions
        raise AssertionError("the views were chosen before the memory check")

    monkeypatch.setattr(memory, "usable_memory_bytes", lambda: 2 * 10**9)
    monkeypatch.setattr(synthetic, "_select_views", too_late)
    root = tmp_path / "study"
    result = runner.invoke(app, ["prep-synthetic", "--output-root", str(root), *flags])
    assert result.exit_code == 2, result.output
    assert "more than this machine's memory (2.0 GB)" in result.stderr
    assert not root.exists()


@pytest.mark.parametrize(
    ("slip", "doubt"),
    [
        ("counts", "every value is a whole number"),
        ("corner", "brighter in their corners"),
        ("hot pixel", None),
        (None, None),
    ],
)
def test_unit_and_layout_slips_are_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slip: str | None, doubt: str | None
) -> None:
    import flyrecon.reconstruct as rec
    from corrupt.cases import valid_arrays
    from helpers import FakeEngine

    arrays = valid_arrays()
    amplitudes = arrays["diffraction"] / arrays["diffraction"].max() * 30
    if slip == "counts":
        amplitudes = np.round(amplitudes**2)  # photon counts, not their square roots
    elif slip == "corner":
        amplitudes = np.fft.ifftshift(amplitudes, axes=(-2, -1))
    elif slip == "hot pixel":  # a masked detector pixel, bright in every frame: no slip
        amplitudes[:, 1, -2] = 65535
    arrays["diffraction"] = amplitudes.astype(np.float32)
    path = tmp_path / "in.npz"
    np.savez(path, **arrays)
    data = load_dataset(path)
    assert len(data.doubts) == (doubt is not None)
    monkeypatch.setattr(rec, "reconstruct", partial(rec.reconstruct, engine=FakeEngine()))
    out = tmp_path / "out"
    result = runner.invoke(app, ["reconstruct", "--input-npz", str(path), "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "result.json").read_text())["doubts"]
    if doubt is None:
        assert recorded == [] and "warning" not in result.stderr
    else:
        assert doubt in recorded[0] and doubt in " ".join(result.stderr.split())
        assert doubt in (out / "reconstruct.log").read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["reconstruct", "--input-npz", "IN", "--output-dir", ""],
        ["reconstruct", "--input-npz", "", "--output-dir", "out"],
        ["study-run", "--study-root", "", "--dry-run"],
        ["prep-synthetic", "--fixture", "--output-root", ""],
        ["evaluate", "--truth", "IN", "--recon", "IN", "--output-dir", ""],
        ["report", "--artifact-root", ""],
        ["export", "--artifact-root", ""],
    ],
)
def test_an_empty_path_is_a_usage_error_not_the_current_folder(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [str(tiny_npz) if a == "IN" else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "an empty path" in result.output and list(tmp_path.iterdir()) == []


def test_prep_synthetic_the_same_study_written_otherwise_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import simulated_dataset

    obj = simulated_dataset(object_px=192).object_guess
    np.savez(tmp_path / "obj.npz", objectGuess=obj)
    root = tmp_path / "study"
    base = ["prep-synthetic", "--output-root", str(root), "--step-px", "8", "--min-positions", "4"]
    first = [*base, "--object-npz", str(tmp_path / "obj.npz"), "--dose", "1000", "--dose", "1e4"]
    assert runner.invoke(app, first).exit_code == 0
    monkeypatch.chdir(tmp_path)  # the object by a relative path, the doses in another order
    again = [*base, "--object-npz", "obj.npz", "--dose", "1e4", "--dose", "1000"]
    result = runner.invoke(app, again)
    assert result.exit_code == 0, result.output
    np.savez(tmp_path / "obj.npz", objectGuess=obj * 0.5)  # the same path, another object
    result = runner.invoke(app, again)
    assert result.exit_code == 2 and "another study" in result.stderr
    (root / "study.json").unlink()  # a run killed before it wrote study.json
    result = runner.invoke(app, again)
    assert result.exit_code == 2 and "unfinished study" in result.stderr


@pytest.mark.parametrize(("limit", "expected"), [("1000000", 1_000_000), ("max", None)])
def test_memory_follows_the_cgroup_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str, expected: int | None
) -> None:
    import flyrecon.memory as memory

    (tmp_path / "memory.max").write_text(limit + "\n")
    monkeypatch.setattr(memory, "CGROUP_MEMORY_LIMITS", (tmp_path / "memory.max",))
    available = memory.usable_memory_bytes()
    assert available is not None
    assert available == expected if expected is not None else available > 1_000_000


@pytest.fixture
def earlier_result(tiny_npz: Path, tmp_path: Path) -> Path:
    """A folder holding a complete result of `tiny_npz` (a stand-in engine's)."""
    from helpers import FakeEngine

    out = tmp_path / "out"
    options = ReconstructOptions(input_npz=tiny_npz, output_dir=out)
    assert reconstruct(options, engine=FakeEngine()).ok
    return out


@pytest.mark.parametrize("case", CASES[:6], ids=[c.name for c in CASES[:6]])
def test_a_bad_input_leaves_an_earlier_result_whole(
    case: Case, earlier_result: Path, tmp_path: Path
) -> None:
    """A job re-run on a broken input must not wipe the folder's complete earlier result."""
    out = earlier_result
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = case.write(tmp_path)
    result = runner.invoke(app, ["reconstruct", "--input-npz", str(bad), "--output-dir", str(out)])
    assert result.exit_code == 2, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("name", ["reconstruct.log", "result.json", "ptychi_reconstruction.npz"])
def test_an_output_name_taken_by_a_folder_is_refused_before_anything_is_written(
    name: str, earlier_result: Path, tiny_npz: Path
) -> None:
    from helpers import FakeEngine

    out = earlier_result
    blocked = out / name
    blocked.unlink()
    blocked.mkdir()
    before = sorted(p.name for p in out.iterdir())
    result = reconstruct(
        ReconstructOptions(input_npz=tiny_npz, output_dir=out), engine=FakeEngine()
    )
    assert result.returncode == 2
    assert result.message == f"{blocked}: is in the way of an output of this job (not a file)"
    assert sorted(p.name for p in out.iterdir()) == before  # the earlier outputs stay
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


def test_a_scan_whose_canvas_this_machine_cannot_hold_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small file can describe a huge scan: 8 patterns spread over a 3000 px object (the
    canvas, not the file, sets what a run holds)."""
    import flyrecon.memory as memory
    from corrupt.cases import valid_arrays

    arrays = valid_arrays()
    arrays["diffraction"] = arrays["diffraction"][:8]
    arrays["objectGuess"] = np.ones((3000, 3000), dtype=np.complex64)
    arrays["xcoords"] = np.linspace(100, 2900, 8)
    arrays["ycoords"] = np.linspace(100, 2900, 8)[::-1].copy()
    for key in ("xcoords_start", "ycoords_start"):
        arrays[key] = arrays[key[:7]]
    bad = tmp_path / "wide.npz"
    np.savez_compressed(bad, **arrays)
    monkeypatch.setattr(memory, "usable_memory_bytes", lambda: 2**30)
    out = tmp_path / "out"
    result = reconstruct(ReconstructOptions(input_npz=bad, output_dir=out))
    assert result.returncode == 2, result.message
    assert result.message.startswith(f"{bad}: xcoords, ycoords: reconstructing the scan's ")
    assert "more than this machine's memory (1.1 GB)" in result.message
    assert not out.exists()


def test_no_import_is_left_running_when_a_bad_input_returns(tmp_path: Path) -> None:
    """The engine's warm-up thread (torch, pty-chi) must be done before `reconstruct` returns:
    a process that exits while a thread imports torch can crash (segfault at exit)."""
    import threading

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = reconstruct(ReconstructOptions(input_npz=bad, output_dir=tmp_path / "out"))
    assert result.returncode == 2
    assert not [t for t in threading.enumerate() if t.name == "flyrecon-warm-up"]


def test_control_characters_and_foreign_symbols_in_metadata_draw_quietly(
    tmp_path: Path,
) -> None:
    """A file's metadata reaches the figure's title: no control character and no warning
    about a glyph the font lacks (its source lines and raw bytes on stderr)."""
    import warnings

    from corrupt.cases import valid_arrays
    from flyrecon.reconstruct import job_label
    from helpers import FakeEngine

    arrays = valid_arrays()
    arrays["metadata"] = np.array(json.dumps({"view": "a\u0000b\u5bc6", "split": "\n\r"}))
    odd = tmp_path / "odd.npz"
    np.savez(odd, **arrays)
    assert job_label(load_dataset(odd).metadata, odd) == "a?b\u5bc6 view, ?? split"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = reconstruct(
            ReconstructOptions(input_npz=odd, output_dir=tmp_path / "out"), engine=FakeEngine()
        )
    assert result.ok, result.message
    assert (tmp_path / "out" / "reconstruction.png").exists()


def test_huge_metadata_is_not_copied_into_every_record(tmp_path: Path) -> None:
    """result.json and the manifest (rewritten after every job) keep the small entries."""
    from corrupt.cases import valid_arrays
    from helpers import FakeEngine

    arrays = valid_arrays()
    meta = {"dose": 1000, "view": "dense", "notes": "x" * 5_000_000, "split": "train"}
    arrays["metadata"] = np.array(json.dumps(meta))
    big = tmp_path / "big.npz"
    np.savez(big, **arrays)
    out = tmp_path / "out"
    result = reconstruct(ReconstructOptions(input_npz=big, output_dir=out), engine=FakeEngine())
    assert result.ok, result.message
    assert (out / "result.json").stat().st_size < 100_000
    recorded = json.loads((out / "result.json").read_text())["input_metadata"]
    assert recorded == {
        "dose": 1000,
        "view": "dense",
        "split": "train",
        "flyrecon_note": "too large to copy here, see the input file: notes",
    }


def test_a_bug_while_reading_fails_the_job_rather_than_calling_the_input_invalid(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flyrecon.reconstruct as rec
    from helpers import FakeEngine

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug nobody foresaw")

    monkeypatch.setattr(rec, "engine_input", broken)
    out = tmp_path / "out"
    result = reconstruct(
        ReconstructOptions(input_npz=tiny_npz, output_dir=out), engine=FakeEngine()
    )
    assert (result.returncode, str(result.status)) == (1, "failed")
    assert result.message == "unexpected error: ZeroDivisionError: a bug nobody foresaw"
    assert not out.exists()
