"""flyrecon reconstruct with and without its malloc thresholds (`flyrecon/allocator.py`).

Each command runs as a fresh process, the two settings alternately: "glibc" sets a malloc
tunable that changes nothing (`GLIBC_TUNABLES=glibc.malloc.perturb=0`), which tells flyrecon
to leave malloc as it is; "flyrecon" is a plain run. Reported per command: median wall and
system seconds, peak RSS, and the ratio flyrecon / glibc (below 1: faster). Only Linux with
glibc changes anything.

Usage: python benchmarks/bench_allocator.py [--repeats 3] [--npz FILE ...] [--commands default]
       [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import make_dataset, median, python, run_measured

ENVIRONMENTS = {
    "glibc": {"GLIBC_TUNABLES": "glibc.malloc.perturb=0"},
    "flyrecon": {},
}
COMMANDS = {"default": [], "LSQML 40 epochs": ["--algorithm", "LSQML", "--num-epochs", "40"]}


def run_once(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall seconds, system seconds and peak RSS (MiB) of one process."""
    wall, usage = run_measured(cmd, env)
    return {"wall_s": wall, "sys_s": usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}


def run(
    npzs: list[Path], repeats: int, work: Path, commands: list[str] | None = None
) -> list[dict]:
    rows = []
    for npz in npzs:
        for label in commands or list(COMMANDS):
            flags = COMMANDS[label]
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in ENVIRONMENTS}
            for _ in range(repeats):
                for name, env in ENVIRONMENTS.items():
                    cmd = [python(), "-m", "flyrecon", "reconstruct", "--input-npz", str(npz)]
                    cmd += ["--output-dir", str(work / name), "--device", "cpu", *flags]
                    runs[name].append(run_once(cmd, env))
            row: dict = {"npz": npz.name, "command": label}
            for name, values in runs.items():
                for key in ("wall_s", "sys_s", "rss_mib"):
                    row[f"{name}_{key}"] = median([v[key] for v in values])
            row["wall_ratio"] = row["flyrecon_wall_s"] / row["glibc_wall_s"]
            rows.append(row)
            print(
                f"{npz.name} {label}: wall {row['glibc_wall_s']:.2f} -> "
                f"{row['flyrecon_wall_s']:.2f} s (x{row['wall_ratio']:.2f}), system "
                f"{row['glibc_sys_s']:.2f} -> {row['flyrecon_sys_s']:.2f} s, peak RSS "
                f"{row['glibc_rss_mib']:.0f} -> {row['flyrecon_rss_mib']:.0f} MiB",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--npz", type=Path, nargs="*", help="DATA-001 files (default: one made)")
    parser.add_argument("--commands", nargs="*", choices=list(COMMANDS), help="default: all")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        npzs = args.npz or [make_dataset(work / "bench.npz", object_px=160, step_px=5.5)]
        rows = run(npzs, args.repeats, work, args.commands)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
