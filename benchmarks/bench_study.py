"""study-run in one process against the same jobs as separate `flyrecon reconstruct` processes.

Six small jobs (one dose x three views x two splits), run both ways side by side. Reports the
wall-time ratio (target <= 0.6) and the study's peak RSS against one job's (target <= 1.2).

Usage: python benchmarks/bench_study.py [--epochs 20] [--repeats 1]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _common import make_study_tree, median, print_table, python, run_with_rusage

from flyrecon.layout import StudyRoot


def run(epochs: int = 20, repeats: int = 1) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_study_tree(Path(tmp))
        settings = ["--num-epochs", str(epochs), "--device", "cpu"]
        study_cmd = [
            python(),
            "-m",
            "flyrecon",
            "study-run",
            "--study-root",
            str(root),
            "--force",
            *settings,
        ]
        study = StudyRoot(root)
        inputs = sorted(study.phase_c.rglob("*.npz")) + sorted(study.phase_d.rglob("*.npz"))
        study_s, sub_s, study_rss, job_rss = [], [], [], []
        for _ in range(repeats):
            wall, rss = run_with_rusage(study_cmd)
            study_s.append(wall)
            study_rss.append(rss)
            total = 0.0
            for i, npz in enumerate(inputs):
                out = root / "separate" / str(i)
                wall, rss = run_with_rusage(
                    [
                        python(),
                        "-m",
                        "flyrecon",
                        "reconstruct",
                        "--input-npz",
                        str(npz),
                        "--output-dir",
                        str(out),
                        *settings,
                    ]
                )
                total += wall
                job_rss.append(rss)
            sub_s.append(total)
            shutil.rmtree(root / "separate")
    return {
        "jobs": len(inputs),
        "in_process_s": median(study_s),
        "subprocess_s": median(sub_s),
        "time_ratio": median(study_s) / median(sub_s),
        "study_rss_mib": max(study_rss),
        "job_rss_mib": max(job_rss),
        "rss_ratio": max(study_rss) / max(job_rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    r = run(args.epochs, args.repeats)
    print_table(
        [
            (f"study-run, {r['jobs']} jobs in-process (s)", f"{r['in_process_s']:.1f}", ""),
            (f"{r['jobs']} separate reconstruct processes (s)", f"{r['subprocess_s']:.1f}", ""),
            ("in-process / separate processes", f"{r['time_ratio']:.3f}", "<= 0.6"),
            ("study peak RSS (MiB)", f"{r['study_rss_mib']:.0f}", ""),
            ("largest single-job peak RSS (MiB)", f"{r['job_rss_mib']:.0f}", ""),
            ("study RSS / job RSS", f"{r['rss_ratio']:.3f}", "<= 1.2"),
        ],
        "study-run: in-process against separate processes",
    )


if __name__ == "__main__":
    main()
