"""Run every benchmark and print one table: measure / value / target / pass.

Each benchmark module's `run()` is called in turn, in this one process (the measurements that
need fresh processes start them themselves), so all ratios come from the same run on the same
machine. `--quick` shortens the long ones (fewer repeats, one dose/view for quality, fewer
scaling points) to a few minutes; the full run takes about half an hour on 2 CPU cores.

Usage: python benchmarks/run_all.py [--quick] [--skip quality scaling ...] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

Row = tuple[str, str, str, str]


def _ok(flag: bool | None) -> str:
    return "n/a" if flag is None else ("yes" if flag else "NO")


def startup(quick: bool) -> list[Row]:
    import bench_startup

    r = bench_startup.run(repeats=3 if quick else 7)
    return [
        (
            '`flyrecon --help` / `python -c "import ptychi.api"` (wall, median)',
            f"{r['ratio']:.3f} ({r['help_s']:.2f} s / {r['ptychi_s']:.2f} s)",
            "<= 0.10",
            _ok(r["ratio"] <= 0.10),
        )
    ]


def overhead(quick: bool) -> list[Row]:
    import bench_overhead

    r = bench_overhead.run(repeats=2 if quick else 3, epochs=10 if quick else 30)
    return [
        (
            "`flyrecon reconstruct` / plain pty-chi script (wall, median)",
            f"{r['ratio']:.3f} ({r['flyrecon_s']:.1f} s / {r['plain_s']:.1f} s)",
            "<= 1.05",
            _ok(r["ratio"] <= 1.05),
        )
    ]


def study(quick: bool) -> list[Row]:
    import bench_study

    r = bench_study.run(epochs=5 if quick else 20, repeats=1)
    return [
        (
            f"study-run of {r['jobs']} jobs in-process / separate processes (wall)",
            f"{r['time_ratio']:.3f} ({r['in_process_s']:.1f} s / {r['subprocess_s']:.1f} s)",
            "<= 0.6",
            _ok(r["time_ratio"] <= 0.6),
        ),
        (
            f"study-run peak RSS over {r['jobs']} jobs / peak RSS of one job",
            f"{r['rss_ratio']:.3f} ({r['study_rss_mib']:.0f} / {r['job_rss_mib']:.0f} MiB)",
            "<= 1.2",
            _ok(r["rss_ratio"] <= 1.2),
        ),
    ]


def prep(quick: bool) -> list[Row]:
    import bench_prep

    r = bench_prep.run(patterns=4096, repeats=3 if quick else 5, workers=2)
    return [
        (
            "prep-synthetic simulation / the same scipy c64 FFT (4096 x 64x64)",
            f"{r['ratio']:.2f} ({r['sim_s']:.3f} s / {r['fft_s']:.3f} s)",
            "<= 2.0",
            _ok(r["ratio"] <= 2.0),
        ),
        (
            "prep-synthetic simulation (1 thread) / np.fft.fft2 complex128",
            f"{r['ratio_numpy']:.2f} ({r['sim_1_s']:.3f} s / {r['numpy_fft_s']:.3f} s)",
            "<= 2.0",
            _ok(r["ratio_numpy"] <= 2.0),
        ),
    ]


def dask(quick: bool) -> list[Row]:
    import bench_dask

    r = bench_dask.run(epochs=5 if quick else 20, repeats=1)
    return [
        (
            f"study-run dask (2 workers x 1 thread) / local (2 threads), {r['jobs']} jobs",
            f"{r['time_ratio']:.2f} ({r['dask_s']:.1f} s / {r['local_s']:.1f} s)",
            "~1 (report)",
            "n/a",
        ),
        ("Dask overhead per job (s)", f"{r['overhead_per_job_s']:.2f}", "(report)", "n/a"),
    ]


def quality(quick: bool) -> list[Row]:
    import bench_quality

    r = bench_quality.run(quick=quick)
    rows: list[Row] = []
    for key, cell in r["cells"].items():
        fly, peer = cell["flyrecon"], cell["cdtools"]
        rows.append(
            (
                f"quality {key}: default vs cdtools (SSIM / error / s)",
                f"{fly['phase_ssim']:.3f}/{fly['error']:.3f}/{fly['seconds']:.1f}s vs "
                f"{peer['phase_ssim']:.3f}/{peer['error']:.3f}/{peer['seconds']:.1f}s",
                "SSIM >=, error <=, s <=",
                _ok(r["passed"][key]),
            )
        )
    return rows


def scaling(quick: bool) -> list[Row]:
    import bench_scaling

    r = bench_scaling.run(
        algorithms=("Adam",) if quick else ("Adam", "LSQML"),
        epochs=3 if quick else 4,
        patterns=(64, 256, 1024) if quick else (64, 256, 1024, 4096),
        objects=(128, 512) if quick else (128, 256, 512, 1024, 2048),
        plot=None if quick else bench_scaling.PLOT,
    )
    rows: list[Row] = []
    for alg, fit in r["fit"].items():
        ratio = fit["per_pattern_cost_ratio_largest_second"]
        rows.append(
            (
                f"{alg}: per-pattern epoch cost, largest / second-largest n",
                f"{ratio:.2f}",
                "<= 1.3 (linear, within noise)",
                _ok(ratio <= 1.3),
            )
        )
    return rows


def jobs(quick: bool) -> list[Row]:
    import bench_jobs

    r = bench_jobs.run(repeats=1, epochs=10 if quick else 25)
    return [
        (
            f"study-run --jobs {r['jobs']} --threads 1 / --jobs 1 (4 quick baseline jobs)",
            f"{r['ratio']:.2f} ({r['packed_s']:.1f} s / {r['serial_s']:.1f} s)",
            "<= 0.8",
            _ok(r["ratio"] <= 0.8),
        )
    ]


def gpu(quick: bool) -> list[Row]:
    import subprocess

    import torch

    if not torch.cuda.is_available():
        return [("CUDA (benchmarks/bench_gpu.py)", "no CUDA device: not run", "", "n/a")]
    out = Path("gpu.json")
    script = Path(__file__).parent / "bench_gpu.py"
    subprocess.run([sys.executable, str(script), "--json", str(out)], check=False)
    r = json.loads(out.read_text())
    measures = [
        (
            f"CUDA / CPU whole process, one job ({r['device']})",
            r.get("single_job", {}).get("device_over_cpu"),
            "<= 0.5",
            lambda v: v <= 0.5,
        ),
        (
            "in-run / (plain loop + metrics), CUDA",
            r.get("overhead", {}).get("ratio"),
            "<= 1.1",
            lambda v: v <= 1.1,
        ),
        (
            "full-preset study --jobs 1 / --jobs 8, CUDA",
            r.get("study_speedup"),
            ">= 4",
            lambda v: v >= 4,
        ),
    ]
    return [
        (name, "n/a" if v is None else f"{v:.2f}", target, _ok(None if v is None else ok(v)))
        for name, v, target, ok in measures
    ]


BENCHMARKS: dict[str, Callable[[bool], list[Row]]] = {
    "startup": startup,
    "overhead": overhead,
    "study": study,
    "prep": prep,
    "dask": dask,
    "quality": quality,
    "scaling": scaling,
    "jobs": jobs,
    "gpu": gpu,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(BENCHMARKS))
    parser.add_argument("--only", nargs="*", default=[], choices=list(BENCHMARKS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows: list[Row] = []
    timings: dict[str, Any] = {}
    for name, fn in BENCHMARKS.items():
        if name in args.skip or (args.only and name not in args.only):
            continue
        start = time.perf_counter()
        print(f"running {name} ...", flush=True)
        try:
            rows += fn(args.quick)
        except Exception as exc:  # one failing benchmark must not hide the others
            traceback.print_exc()
            rows.append((name, f"failed: {type(exc).__name__}: {exc}"[:80], "", "NO"))
        timings[name] = time.perf_counter() - start
    from rich.console import Console
    from rich.table import Table

    table = Table(title="flyrecon benchmarks (ratios measured side by side in this run)")
    for col in ("measure", "value", "target", "pass"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "seconds": timings}, indent=2))


if __name__ == "__main__":
    main()
