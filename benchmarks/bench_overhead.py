"""flyrecon reconstruct against a plain pty-chi script, same data and settings, side by side.

Both run as fresh processes (import, reconstruction, writing results), alternately, and the
ratio of median wall times is reported. Target: flyrecon / plain <= 1.05.

Usage: python benchmarks/bench_overhead.py [--repeats 3] [--epochs 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import make_dataset, median, print_table, python, side_by_side


def run(repeats: int = 3, epochs: int = 30, batch: int = 32) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        npz = make_dataset(work / "bench.npz")
        here = Path(__file__).parent
        commands = {
            "flyrecon": [
                python(),
                "-m",
                "flyrecon",
                "reconstruct",
                "--input-npz",
                str(npz),
                "--output-dir",
                str(work / "fly"),
                "--num-epochs",
                str(epochs),
                "--batch-size",
                str(batch),
                "--device",
                "cpu",
                "--algorithm",
                "LSQML",
                "--probe-init",
                "guess",
            ],
            "plain": [
                python(),
                str(here / "plain_ptychi.py"),
                str(npz),
                str(work / "plain.npz"),
                str(epochs),
                str(batch),
            ],
        }
        times = side_by_side(commands, repeats)
    fly, plain = median(times["flyrecon"]), median(times["plain"])
    return {"flyrecon_s": fly, "plain_s": plain, "ratio": fly / plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    r = run(args.repeats, args.epochs)
    print_table(
        [
            ("flyrecon reconstruct (median s)", f"{r['flyrecon_s']:.2f}", ""),
            ("plain pty-chi script (median s)", f"{r['plain_s']:.2f}", ""),
            ("flyrecon / plain", f"{r['ratio']:.3f}", "<= 1.05"),
        ],
        "reconstruct overhead over plain pty-chi",
    )


if __name__ == "__main__":
    main()
