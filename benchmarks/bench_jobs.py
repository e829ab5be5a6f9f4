"""Packing study jobs onto one machine: `study-run --jobs 2 --threads 1` against `--jobs 1`.

The quick preset's four baseline jobs at doses 1e4 and 1e5 (both splits, 25 epochs each), run
as whole `flyrecon study-run` processes, one after the other in the same run: one job at a
time with torch's default threads (all cores), then two jobs at a time with one thread each.
Target (issue 15): packed / one at a time <= 0.8 in wall time. Also checks the two runs made
the same records (same jobs, all succeeded).

Usage: python benchmarks/bench_jobs.py [--repeats 1] [--epochs 25] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import median, print_table, python

from flyrecon.layout import MANIFEST_JSON, StudyRoot


def _study(root: Path, epochs: int, extra: list[str]) -> float:
    out = root / "reconstructions"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [python(), "-m", "flyrecon", "study-run", "--study-root", str(root)]
    cmd += ["--view", "baseline", "--dose", "10000", "--dose", "100000"]
    cmd += ["--num-epochs", str(epochs), "--device", "cpu", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    records = json.loads((out / MANIFEST_JSON).read_text())["execution_results"]
    assert len(records) == 4 and all(r["returncode"] == 0 for r in records), records
    return seconds


def run(repeats: int = 1, epochs: int = 25, jobs: int = 2) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "quick"
        cmd = [python(), "-m", "flyrecon", "prep-synthetic", "--output-root", str(root)]
        subprocess.run(
            [*cmd, "--dose", "10000", "--dose", "100000"], check=True, capture_output=True
        )
        assert StudyRoot(root).study_json.is_file()
        serial, packed = [], []
        for _ in range(repeats):
            serial.append(_study(root, epochs, ["--jobs", "1"]))
            packed.append(_study(root, epochs, ["--jobs", str(jobs), "--threads", "1"]))
    s, p = median(serial), median(packed)
    return {"serial_s": s, "packed_s": p, "ratio": p / s, "jobs": jobs, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    r = run(args.repeats, args.epochs, args.jobs)
    print_table(
        [
            (
                f"study-run --jobs {r['jobs']} --threads 1 / --jobs 1 (4 quick baseline jobs, "
                f"{r['epochs']} epochs)",
                f"{r['ratio']:.2f} ({r['packed_s']:.1f} s / {r['serial_s']:.1f} s)",
                "<= 0.8",
            )
        ],
        "packing jobs",
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
