"""The study's record files: typed models, their JSON schemas, and old manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flyrecon import layout
from flyrecon.errors import InputError
from flyrecon.records import (
    JobRecord,
    JobResult,
    JobStatus,
    Manifest,
    json_schemas,
    read_record,
    write_record,
)
from flyrecon.study.manifest import load_manifest

SCHEMA_DIR = Path(__file__).parent.parent / "docs" / "schemas"

MANIFEST_0_1 = {  # as flyrecon 0.1 wrote it (a resumed job, a failed one; keys since added absent)
    "timestamp": "2026-11-27T10:00:00+00:00",
    "started": "2026-11-27T09:59:00+00:00",
    "state": "finished",
    "flyrecon_version": "0.1.0",
    "phase_c_root": "demo/phase_c",
    "phase_d_root": "demo/phase_d",
    "artifact_root": "demo/reconstructions",
    "filters": {"dose": [1000], "view": [], "split": ["train"]},
    "settings": {"algorithm": "LSQML", "num_epochs": None, "max_epochs": 25},
    "doses_found": [1000, 10000],
    "total_jobs": 12,
    "filtered_jobs": 3,
    "filtered_out": 9,
    "missing_jobs": 0,
    "jobs": [
        {
            "dose": 1000,
            "view": "baseline",
            "split": "train",
            "input_npz": "demo/phase_c/dose_1000/patched_train.npz",
            "output_dir": "demo/reconstructions/dose_1000/baseline/train",
            "algorithm": "LSQML",
            "num_epochs": None,
        }
    ],
    "execution_results": [
        {
            "dose": 1000,
            "view": "baseline",
            "split": "train",
            "key": "dose_1000/baseline/train",
            "input_npz": "demo/phase_c/dose_1000/patched_train.npz",
            "output_dir": "demo/reconstructions/dose_1000/baseline/train",
            "status": "resumed",
            "returncode": 0,
            "reason": "outputs complete and current; not rerun",
            "log_path": "demo/reconstructions/dose_1000/baseline/train/reconstruct.log",
            "wall_time_s": 0.0,
            "input_metadata": {},
            "metrics": {"phase_ssim": 0.4},
            "fingerprint": "ab",
            "input_sha256": "cd",
        },
        {
            "dose": 1000,
            "view": "dense",
            "split": "train",
            "key": "dose_1000/dense/train",
            "input_npz": "x",
            "output_dir": "y",
            "status": "failed",
            "returncode": 1,
            "reason": "loss became nan at epoch 3",
            "some_key_of_a_later_version": 1,
        },
    ],
}


def test_the_schemas_in_docs_are_current() -> None:
    """docs/schemas/ holds the generated JSON schema of every record file; regenerate with
    `python -m flyrecon.records docs/schemas` when a model changes."""
    for name, schema in json_schemas().items():
        stored = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
        assert stored == schema, f"docs/schemas/{name}.schema.json is out of date"


def test_a_manifest_of_version_0_1_still_loads(tmp_path: Path) -> None:
    (tmp_path / layout.MANIFEST_JSON).write_text(json.dumps(MANIFEST_0_1))
    manifest = load_manifest(tmp_path)
    resumed, failed = manifest.execution_results
    assert resumed.status == JobStatus.RESUMED and resumed.metrics == {"phase_ssim": 0.4}
    assert resumed.stop_kind is None and resumed.epochs_run is None  # not recorded in 0.1
    assert failed.returncode == 1 and failed.metrics is None
    assert manifest.filters.split == ["train"]


def test_an_unusable_manifest_fails_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / layout.MANIFEST_JSON
    path.write_text(json.dumps({**MANIFEST_0_1, "total_jobs": "many"}))
    with pytest.raises(InputError) as info:
        load_manifest(tmp_path)
    assert str(info.value).startswith(f"{path}: total_jobs: not a valid Manifest")
    path.write_text("{not json")
    with pytest.raises(InputError, match="not a valid Manifest"):
        load_manifest(tmp_path)
    with pytest.raises(InputError, match="no study manifest here"):
        load_manifest(tmp_path / "elsewhere")


def test_records_round_trip_and_keep_the_traceback_out(tmp_path: Path) -> None:
    result = JobResult(
        returncode=1,
        status=JobStatus.FAILED,
        message="boom",
        input_npz="a.npz",
        output_dir="out",
        traceback="Traceback ...",
    )
    path = write_record(tmp_path / layout.RESULT_JSON, result)
    assert "traceback" not in json.loads(path.read_text())
    again = read_record(path, JobResult)
    assert again.model_dump(exclude={"traceback"}) == result.model_dump(exclude={"traceback"})
    assert not again.ok
    with pytest.raises(Exception, match="status"):
        JobRecord(**{**MANIFEST_0_1["execution_results"][0], "status": "kinda done"})


def test_the_manifest_model_lists_the_keys_used_downstream() -> None:
    keys = set(Manifest.model_fields)
    assert {
        "timestamp",
        "phase_c_root",
        "phase_d_root",
        "artifact_root",
        "filters",
        "total_jobs",
        "filtered_jobs",
        "missing_jobs",
        "jobs",
        "execution_results",
    } <= keys
    assert {"dose", "view", "split", "returncode", "log_path"} <= set(JobRecord.model_fields)
