"""`flyrecon --help` against `python -c "import ptychi.api"`, side by side, fresh processes.

The CLI imports pty-chi (and torch) only on the code paths that reconstruct, so its help must
cost a small fraction of importing pty-chi. Both commands run alternately; the ratio of the
median wall times is reported. Target: flyrecon --help / import ptychi.api <= 0.10.

Usage: python benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from _common import median, print_table, python, side_by_side


def _flyrecon_cmd() -> list[str]:
    """The installed console script (what users type), else `python -m flyrecon`."""
    script = Path(python()).with_name("flyrecon")
    if script.exists():
        return [str(script), "--help"]
    found = shutil.which("flyrecon")
    return [found, "--help"] if found else [python(), "-m", "flyrecon", "--help"]


def run(repeats: int = 5) -> dict[str, float]:
    commands = {
        "help": _flyrecon_cmd(),
        "ptychi": [python(), "-c", "import ptychi.api"],
    }
    side_by_side(commands, 1)  # warm the file cache for both
    times = side_by_side(commands, repeats)
    help_s, ptychi_s = median(times["help"]), median(times["ptychi"])
    return {"help_s": help_s, "ptychi_s": ptychi_s, "ratio": help_s / ptychi_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    r = run(args.repeats)
    print_table(
        [
            ("flyrecon --help (median s)", f"{r['help_s']:.3f}", ""),
            ('python -c "import ptychi.api" (median s)', f"{r['ptychi_s']:.3f}", ""),
            ("flyrecon --help / import ptychi.api", f"{r['ratio']:.3f}", "<= 0.10"),
        ],
        "CLI start-up against importing pty-chi",
    )


if __name__ == "__main__":
    main()
