"""study-run on a 2-worker Dask LocalCluster against the local executor, same six jobs.

Six small jobs (one dose x three views x two splits), run side by side: `--executor dask
--workers 2 --threads 1` (two single-threaded worker processes, one torch thread per job)
against the local executor with `--threads 2`. On a 2-core machine the ratio should be near 1:
the point of Dask is a correct path to many machines, not speed on one.

Reports the wall-time ratio, the fixed cost of starting and closing the cluster (a run where
every job is already current, both ways), and the per-job overhead Dask adds: the time not
spent inside jobs (study wall minus the busiest worker's summed job wall times), Dask minus
local, divided by the number of jobs.

Usage: python benchmarks/bench_dask.py [--epochs 20] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from _common import make_study_tree, median, print_table, python, timed

from flyrecon.layout import MANIFEST_JSON


def _study(root: Path, out: str, *extra: str) -> list[str]:
    return [
        python(),
        "-m",
        "flyrecon",
        "study-run",
        "--study-root",
        str(root),
        "--artifact-root",
        str(root / out),
        "--device",
        "cpu",
        *extra,
    ]


def _busy(root: Path, out: str) -> tuple[float, float, int]:
    """(summed job wall s, the busiest worker's summed job wall s, jobs) from a manifest."""
    m = json.loads((root / out / MANIFEST_JSON).read_text())
    per_worker: dict[str, float] = defaultdict(float)
    for r in m["execution_results"]:
        assert r["returncode"] == 0, r
        per_worker[r.get("worker", "local")] += r.get("wall_time_s") or 0.0
    return sum(per_worker.values()), max(per_worker.values()), len(m["execution_results"])


def run(epochs: int = 20, repeats: int = 1) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_study_tree(Path(tmp))
        epochs_args = ("--num-epochs", str(epochs))
        local_cmd = _study(root, "local", *epochs_args, "--threads", "2")
        dask_cmd = _study(
            root, "dask", *epochs_args, "--threads", "1", "--executor", "dask", "--workers", "2"
        )
        local_s, dask_s, overhead, local_busy, dask_busy, dask_max = [], [], [], [], [], []
        for _ in range(repeats):
            local_s.append(timed([*local_cmd, "--force"]))
            dask_s.append(timed([*dask_cmd, "--force"]))
            l_sum, l_max, jobs = _busy(root, "local")
            d_sum, d_max, _ = _busy(root, "dask")
            local_busy.append(l_sum)
            dask_busy.append(d_sum)
            dask_max.append(d_max)
            overhead.append(((dask_s[-1] - d_max) - (local_s[-1] - l_max)) / jobs)
        # every job current: what is left is process start, planning and the cluster
        local_resume = timed(local_cmd)
        dask_resume = timed(dask_cmd)
    return {
        "jobs": jobs,
        "local_s": median(local_s),
        "dask_s": median(dask_s),
        "time_ratio": median(dask_s) / median(local_s),
        "local_job_sum_s": median(local_busy),
        "dask_job_sum_s": median(dask_busy),
        "dask_busiest_worker_s": median(dask_max),
        "overhead_per_job_s": median(overhead),
        "local_resume_s": local_resume,
        "dask_resume_s": dask_resume,
        "cluster_fixed_s": dask_resume - local_resume,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    r = run(args.epochs, args.repeats)
    n = r["jobs"]
    print_table(
        [
            (f"local executor, {n} jobs, --threads 2 (s)", f"{r['local_s']:.1f}", ""),
            (f"dask, 2 workers x 1 thread, {n} jobs (s)", f"{r['dask_s']:.1f}", ""),
            ("dask / local wall time", f"{r['time_ratio']:.3f}", "near 1 on 2 cores"),
            ("local: summed job wall times (s)", f"{r['local_job_sum_s']:.1f}", ""),
            ("dask: summed job wall times (s)", f"{r['dask_job_sum_s']:.1f}", ""),
            ("dask: busiest worker's job wall times (s)", f"{r['dask_busiest_worker_s']:.1f}", ""),
            ("per-job overhead Dask adds (s)", f"{r['overhead_per_job_s']:.2f}", ""),
            ("all jobs current: local run (s)", f"{r['local_resume_s']:.1f}", ""),
            ("all jobs current: dask run (s)", f"{r['dask_resume_s']:.1f}", ""),
            ("cluster start + close (s)", f"{r['cluster_fixed_s']:.1f}", ""),
        ],
        "study-run: Dask LocalCluster against the local executor",
    )


if __name__ == "__main__":
    main()
