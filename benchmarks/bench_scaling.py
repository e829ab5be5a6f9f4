"""Seconds per epoch against the number of patterns and against the object size, with a plot.

Each point runs in a fresh process (so its peak RSS is its own): a simulated 64x64-pattern
set at 1e5 photons, reconstructed for a few fixed epochs on the CPU; the first epoch (warm-up)
is dropped and the median of the rest is reported, with the process's peak RSS.

- patterns: one 520x520 object scanned with a 5 px raster (about 8000 positions); the first
  n = 64 .. 4096 patterns are used (what `--n-images n` does).
- object size: 256 patterns (a 16 x 16 raster) spread over objects of 128 .. 2048 px.

Reports the linear fit of seconds per epoch against patterns (cost must grow linearly: the
ratio of per-pattern cost at the largest and smallest n is printed) and the memory slope, from
which the pattern count that fills this machine's memory is extrapolated.
Writes docs/performance_scaling.png (and the numbers as JSON with --json).

Usage: python benchmarks/bench_scaling.py [--algorithm Adam LSQML] [--epochs 4]
       [--patterns 64 256 1024 4096] [--objects 128 256 512 1024 2048]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import print_table

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "performance_scaling.png"


def _dataset(path: Path, object_px: int, step_px: float, seed: int = 0) -> Path:
    from flyrecon import simulate
    from flyrecon.data import PtychoDataset, save_dataset

    rng = np.random.default_rng(seed)
    obj = simulate.procedural_object((object_px, object_px), rng)
    probe = simulate.focused_probe(64)
    lo, hi = 32, object_px - 32
    y, x = simulate.raster_scan((lo, hi), (lo, hi), step_px, 1.0, rng)
    expected = simulate.far_field_intensity(obj, probe, y, x)
    scale = simulate.dose_scale(expected, 1e5)
    amp = simulate.poisson_amplitude(expected, scale, rng)
    save_dataset(path, PtychoDataset(amp, obj, probe, x, y, metadata={"dose": 1e5}))
    return path


def point(npz: Path, n_images: int | None, algorithm: str, epochs: int, batch: int | None) -> dict:
    """One measurement, in this process: seconds per epoch (median, first dropped), peak RSS."""
    import resource

    from flyrecon.data import load_dataset
    from flyrecon.engine import run_engine
    from flyrecon.inputs import engine_input
    from flyrecon.options import Device, ReconSettings

    settings = ReconSettings(
        algorithm=algorithm,
        num_epochs=epochs,
        n_images=n_images,
        batch_size=batch,
        device=Device.CPU,
        probe_init="scaled",
        threads=2,
    )
    dataset = load_dataset(npz, n_images)
    inp, canvas = engine_input(dataset, settings)
    stamps = [time.perf_counter()]
    run_engine(inp, settings, on_epoch=lambda *_: stamps.append(time.perf_counter()))
    per_epoch = np.diff(stamps)[1:] if len(stamps) > 2 else np.diff(stamps)
    return {
        "patterns": dataset.n_patterns,
        "canvas": list(canvas.shape),
        "s_per_epoch": float(np.median(per_epoch)),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _in_subprocess(npz: Path, n: int | None, algorithm: str, epochs: int) -> dict:
    here = str(Path(__file__).parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import bench_scaling as b; "
        f"from pathlib import Path; "
        f"print(json.dumps(b.point(Path({str(npz)!r}), {n!r}, {algorithm!r}, {epochs}, None)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(
    algorithms: tuple[str, ...] = ("Adam", "LSQML"),
    epochs: int = 4,
    patterns: tuple[int, ...] = (64, 256, 1024, 4096),
    objects: tuple[int, ...] = (128, 256, 512, 1024, 2048),
    plot: Path | None = PLOT,
) -> dict:
    result: dict = {"patterns": {}, "objects": {}}
    with tempfile.TemporaryDirectory() as tmp:
        big = _dataset(Path(tmp) / "big.npz", 520, 5.0)
        obj_sets = {
            px: _dataset(Path(tmp) / f"obj{px}.npz", px, (px - 64) / 15.0) for px in objects
        }
        for alg in algorithms:
            result["patterns"][alg] = [_in_subprocess(big, n, alg, epochs) for n in patterns]
            result["objects"][alg] = [
                {**_in_subprocess(obj_sets[px], 256, alg, epochs), "object_px": px}
                for px in objects
            ]
    for alg in algorithms:
        pts = result["patterns"][alg]
        n = np.array([p["patterns"] for p in pts], dtype=float)
        s = np.array([p["s_per_epoch"] for p in pts])
        rss = np.array([p["peak_rss_mib"] for p in pts])
        slope, intercept = np.polyfit(n, s, 1)
        mem_slope, mem0 = np.polyfit(n, rss, 1)
        result.setdefault("fit", {})[alg] = {
            "s_per_pattern": slope,
            "s_fixed": intercept,
            "per_pattern_cost_ratio_largest_smallest": (s[-1] / n[-1]) / (s[0] / n[0]),
            "per_pattern_cost_ratio_largest_second": (s[-1] / n[-1]) / (s[-2] / n[-2]),
            "mib_per_pattern": mem_slope,
            "mib_fixed": mem0,
            "patterns_filling_24gb": (24 * 1024 - mem0) / mem_slope if mem_slope > 0 else None,
        }
    if plot is not None:
        _plot(result, plot)
    return result


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for alg, pts in result["patterns"].items():
        n = [p["patterns"] for p in pts]
        a.loglog(n, [p["s_per_epoch"] for p in pts], "o-", label=alg)
    n_all = np.array([p["patterns"] for pts in result["patterns"].values() for p in pts])
    if len(n_all):
        ref = np.array([n_all.min(), n_all.max()])
        first = next(iter(result["patterns"].values()))
        a.loglog(ref, first[-1]["s_per_epoch"] * ref / ref[-1], "k:", label="linear")
    a.set_xlabel("patterns (64x64)")
    a.set_ylabel("seconds per epoch (2 CPU cores)")
    a.set_title("cost against patterns")
    a.legend()
    for alg, pts in result["objects"].items():
        b.loglog([p["object_px"] for p in pts], [p["s_per_epoch"] for p in pts], "o-", label=alg)
    b.set_xlabel("object side (px), 256 patterns")
    b.set_ylabel("seconds per epoch")
    b.set_title("cost against object size")
    b.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def rows(result: dict) -> list[tuple[str, str, str]]:
    out = []
    for alg, pts in result["patterns"].items():
        for p in pts:
            out.append(
                (
                    f"{alg}: {p['patterns']} patterns, s/epoch (peak RSS MiB)",
                    f"{p['s_per_epoch']:.3f} ({p['peak_rss_mib']:.0f})",
                    "",
                )
            )
        fit = result["fit"][alg]
        out.append(
            (
                f"{alg}: per-pattern cost, largest n / smallest n",
                f"{fit['per_pattern_cost_ratio_largest_smallest']:.2f}",
                "<= 1 (linear or better)",
            )
        )
        out.append(
            (
                f"{alg}: memory per pattern (MiB); patterns filling 24 GB",
                f"{fit['mib_per_pattern']:.3f}; {fit['patterns_filling_24gb'] or 0:.3g}",
                "",
            )
        )
    for alg, pts in result["objects"].items():
        for p in pts:
            out.append(
                (
                    f"{alg}: object {p['object_px']} px, 256 patterns, s/epoch (RSS MiB)",
                    f"{p['s_per_epoch']:.3f} ({p['peak_rss_mib']:.0f})",
                    "",
                )
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--algorithm", nargs="+", default=["Adam", "LSQML"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--patterns", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--objects", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(tuple(args.algorithm), args.epochs, tuple(args.patterns), tuple(args.objects))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print_table(rows(result), f"seconds per epoch (plot: {PLOT})")


if __name__ == "__main__":
    main()
