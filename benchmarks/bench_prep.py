"""prep-synthetic's simulation against the bare batched FFT of the same patterns, same run.

Simulating N patterns (object patches x probe, FFT, intensity, Poisson counts, amplitude) is
compared with one bare FFT call on the same N exit waves, using the SAME FFT routine, dtype and
thread count as the simulation: `scipy.fft.fft2` on complex64 64x64 arrays, `workers` threads
(the simulation threads over chunks of 256 patterns, the reference passes `workers=`). So the
ratio measures only the simulation's extra work (patch extraction, probe product, |.|^2,
Poisson sampling, sqrt), not a choice of FFT. Ratios use the reference timed with the same
worker count; each repeat times all variants in turn (medians of the per-repeat ratios).
Target: simulation / bare FFT <= 2.0.

Usage: python benchmarks/bench_prep.py [--patterns 4096] [--repeats 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.fft
from _common import median, print_table

from flyrecon import simulate
from flyrecon.synthetic import expected_intensity, sample_amplitude


def run(patterns: int = 4096, repeats: int = 5, workers: int = 2) -> dict[str, float]:
    rng = np.random.default_rng(0)
    obj = simulate.procedural_object((512, 512), rng)
    probe = simulate.focused_probe(64)
    y = rng.integers(32, 480, patterns).astype(np.float64)
    x = rng.integers(32, 480, patterns).astype(np.float64)
    exit_waves = (simulate.object_patches(obj, y, x, 64) * probe).astype(np.complex64)

    def simulate_with(n_workers: int):
        def go() -> None:
            expected = expected_intensity(obj, probe, y, x, n_workers)
            scale = 1e5 / expected.sum(axis=(1, 2), dtype=np.float64).mean()
            sample_amplitude(expected, scale, (0, 0), n_workers)

        return go

    def fft_with(n_workers: int):
        return lambda: scipy.fft.fft2(exit_waves, workers=n_workers)

    exit_waves_128 = exit_waves.astype(np.complex128)
    variants = {
        "numpy_fft_s": lambda: np.fft.fft2(exit_waves_128),
        "fft_s": fft_with(workers),
        "sim_s": simulate_with(workers),
        "fft_1_s": fft_with(1),
        "sim_1_s": simulate_with(1),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    out = {name: median(t) for name, t in times.items()}
    out["ratio"] = median([s / f for s, f in zip(times["sim_s"], times["fft_s"], strict=True)])
    out["ratio_1"] = median(
        [s / f for s, f in zip(times["sim_1_s"], times["fft_1_s"], strict=True)]
    )
    out["ratio_numpy"] = median(
        [s / f for s, f in zip(times["sim_1_s"], times["numpy_fft_s"], strict=True)]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patterns", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    r = run(args.patterns, args.repeats, args.workers)
    w = args.workers
    print_table(
        [
            (
                f"bare scipy.fft.fft2 c64, {args.patterns} x 64x64, {w} workers (median s)",
                f"{r['fft_s']:.3f}",
                "",
            ),
            (f"simulation, {w} workers (median s)", f"{r['sim_s']:.3f}", ""),
            ("bare scipy.fft.fft2 c64, 1 worker (median s)", f"{r['fft_1_s']:.3f}", ""),
            ("simulation, 1 worker (median s)", f"{r['sim_1_s']:.3f}", ""),
            (f"simulation / bare FFT ({w} workers each)", f"{r['ratio']:.2f}", "<= 2.0"),
            ("simulation / bare FFT (1 worker each)", f"{r['ratio_1']:.2f}", "<= 2.0"),
            (
                "simulation (1 worker) / numpy's np.fft.fft2, complex128",
                f"{r['ratio_numpy']:.2f}",
                "<= 2.0",
            ),
        ],
        "prep-synthetic simulation over the bare batched FFT (same routine, dtype, threads)",
    )


if __name__ == "__main__":
    main()
