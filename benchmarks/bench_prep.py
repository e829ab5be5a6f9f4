"""prep-synthetic's simulation against the bare batched FFT of the same patterns, same run.

Simulating N patterns (object patches x probe, FFT, intensity, Poisson counts, amplitude) is
compared with one `np.fft.fft2` call on the same N exit waves (64x64, complex128); the ratio
of median wall times is reported. Target: simulation / bare FFT <= 2.0.

Usage: python benchmarks/bench_prep.py [--patterns 4096] [--repeats 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import median, print_table

from flyrecon import simulate
from flyrecon.synthetic import expected_intensity, sample_amplitude


def _seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def run(patterns: int = 4096, repeats: int = 5, workers: int = 2) -> dict[str, float]:
    rng = np.random.default_rng(0)
    obj = simulate.procedural_object((512, 512), rng)
    probe = simulate.focused_probe(64)
    y = rng.integers(32, 480, patterns).astype(np.float64)
    x = rng.integers(32, 480, patterns).astype(np.float64)
    exit_waves = simulate.object_patches(obj.astype(np.complex128), y, x, 64) * probe

    def simulate_with(n_workers: int):
        def go() -> None:
            expected = expected_intensity(obj, probe, y, x, n_workers)
            sample_amplitude(expected, 1e5 / expected.sum(axis=(1, 2)).mean(), (0, 0), n_workers)

        return go

    fft = _seconds(lambda: np.fft.fft2(exit_waves), repeats)
    sim = _seconds(simulate_with(workers), repeats)
    sim_1 = _seconds(simulate_with(1), repeats)
    return {
        "fft_s": fft,
        "sim_s": sim,
        "sim_1_s": sim_1,
        "ratio": sim / fft,
        "ratio_1": sim_1 / fft,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patterns", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    r = run(args.patterns, args.repeats, args.workers)
    print_table(
        [
            (f"bare np.fft.fft2, {args.patterns} x 64x64 (median s)", f"{r['fft_s']:.3f}", ""),
            (f"simulation, {args.workers} workers (median s)", f"{r['sim_s']:.3f}", ""),
            ("simulation, 1 worker (median s)", f"{r['sim_1_s']:.3f}", ""),
            ("simulation / bare FFT", f"{r['ratio']:.2f}", "<= 2.0"),
            ("simulation (1 worker) / bare FFT", f"{r['ratio_1']:.2f}", ""),
        ],
        "prep-synthetic simulation over the bare batched FFT",
    )


if __name__ == "__main__":
    main()
