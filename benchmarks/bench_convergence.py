"""Converged by default? flyrecon's default against plain pty-chi LSQML's peak, cell by cell.

For every cell (data set x dose x view, train split) of the object family in `_family.py`
(scikit-image image pairs and flyrecon's procedural object, raster and Fermat scans, two
steps; `--held-back` runs the set kept out of the tuning, `--fresh` the set made later):

- **plain LSQML's peak**: plain pty-chi LSQML (batches of 64, blind flat start, probeGuess
  scaled) for `--epochs` (300) epochs, scored against the truth after every epoch up to 30,
  every 2nd to 100, every 5th after: the best phase SSIM (epochs >= 2: epoch 1 only rescales
  the probe and leaves the flat start, which phase SSIM rewards in flat regions), the lowest
  complex error, their epochs and the in-run seconds to reach them, and the epochs at which
  plain LSQML's own iterate meets both targets (none where its best SSIM and lowest error
  are too far apart: a dagger in the table). Cached in `<root>/plain_traces.json` (it does
  not depend on flyrecon's default).
- **plain LSQML, 100 epochs, whole process**: `plain_ptychi.py` (a hand-written pty-chi
  script) run as a fresh process, wall time.
- **flyrecon's default, whole process**: `flyrecon reconstruct` with no algorithm or epoch
  flags, fresh process, wall time; its metrics.json, epochs and stop reason.
- **cdtools-py** (`--peer`, optional): FancyPtycho with Adam defaults, the best of epochs
  25/50/75/100.

Targets (issue 13): the default within 0.01 phase SSIM of the peak and within 5 % of the
lowest error, in at most half the whole-process time of plain LSQML's 100 epochs.

Usage: python benchmarks/bench_convergence.py [--root DIR] [--held-back] [--sets NAME ...]
       [--doses 1000 ...] [--views baseline ...] [--epochs 300] [--peer] [--json OUT]
       python benchmarks/bench_convergence.py --markdown OUT   (the tables of a run)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _family
from bench_quality import run_cdtools, score

from flyrecon import layout
from flyrecon.data import load_dataset
from flyrecon.options import Algorithm, Device, ReconSettings

HERE = Path(__file__).parent
SSIM_TOLERANCE = 0.01
ERROR_TOLERANCE = 0.05
TIME_TARGET = 0.5


def scored_epochs(epochs: int) -> set[int]:
    return set(range(1, 31)) | set(range(32, 101, 2)) | set(range(105, epochs + 1, 5))


def plain_trace(npz: Path, epochs: int, threads: int) -> list[dict[str, float]]:
    """Plain LSQML for `epochs`, scored on the way: [{epoch, seconds, phase_ssim, error}]."""
    from flyrecon.engine import run_engine
    from flyrecon.inputs import engine_input

    settings = ReconSettings(
        algorithm=Algorithm.LSQML, num_epochs=epochs, device=Device.CPU, threads=threads
    )
    dataset = load_dataset(npz)
    want = scored_epochs(epochs)
    rows: list[dict[str, float]] = []
    excluded = 0.0
    start = time.perf_counter()
    inp, canvas = engine_input(dataset, settings)

    def inspect(epoch: int, get_object: Any) -> None:
        nonlocal excluded
        if epoch not in want:
            return
        t0 = time.perf_counter()
        m = score(dataset, canvas, get_object())
        rows.append(
            {
                "epoch": epoch,
                "seconds": t0 - start - excluded,
                "phase_ssim": m["phase_ssim"],
                "error": m["complex_relative_error"],
            }
        )
        excluded += time.perf_counter() - t0

    run_engine(inp, settings, inspect=inspect)
    return rows


def within_targets(ssim: float, error: float, peak_: dict[str, Any]) -> tuple[bool, bool]:
    """Whether a phase SSIM and an error are within the targets' tolerances of a peak."""
    return (
        ssim >= peak_["ssim"] - SSIM_TOLERANCE,
        error <= peak_["error"] * (1 + ERROR_TOLERANCE),
    )


def peak(rows: list[dict[str, float]]) -> dict[str, Any]:
    """The best phase SSIM and lowest error over epochs >= 2, and where they are; and the
    first and last scored epochs at which plain LSQML's own iterate meets both targets
    (None: its best SSIM and lowest error are too far apart for any one epoch to)."""
    usable = [r for r in rows if r["epoch"] >= 2]
    best = max(usable, key=lambda r: r["phase_ssim"])
    low = min(usable, key=lambda r: r["error"])
    out: dict[str, Any] = {
        "ssim": best["phase_ssim"],
        "ssim_epoch": best["epoch"],
        "ssim_seconds": best["seconds"],
        "error_at_ssim_peak": best["error"],
        "error": low["error"],
        "error_epoch": low["epoch"],
    }
    both = [r["epoch"] for r in usable if all(within_targets(r["phase_ssim"], r["error"], out))]
    out["both_epochs"] = [both[0], both[-1]] if both else None
    return out


def whole_process(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def run_default(npz: Path, out: Path, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "flyrecon", "reconstruct", "--input-npz", str(npz)]
    cmd += ["--output-dir", str(out), "--device", "cpu", "--threads", str(threads)]
    seconds = whole_process(cmd)
    metrics = json.loads((out / layout.METRICS_JSON).read_text())
    result = json.loads((out / layout.RESULT_JSON).read_text())
    return {
        "seconds": seconds,
        "in_run_seconds": result["wall_time_s"],
        "phase_ssim": metrics["phase_ssim"],
        "error": metrics["complex_relative_error"],
        "epochs": result["epochs_run"],
        "coarse_epochs": result.get("coarse_epochs", 0),
        "stop_kind": result["stop_kind"],
    }


def run_plain100(npz: Path, out: Path) -> float:
    """Whole-process seconds of the plain pty-chi script (torch's default threads: all cores)."""
    script = HERE / "plain_ptychi.py"
    return whole_process([sys.executable, str(script), str(npz), str(out), "100", "64"])


def run_peer(npz: Path, threads: int) -> dict[str, Any]:
    best = None
    for epochs in (25, 50, 75, 100):
        o = run_cdtools(npz, epochs, threads)
        if best is None or o.phase_ssim > best["phase_ssim"]:
            best = {"phase_ssim": o.phase_ssim, "error": o.error, "epochs": epochs}
        best[f"seconds_{epochs}"] = o.seconds
    return best or {}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def verdict(cell: dict[str, Any]) -> dict[str, Any]:
    p, d = cell["plain_peak"], cell["default"]
    ssim_ok, error_ok = within_targets(d["phase_ssim"], d["error"], p)
    ratio = d["seconds"] / cell["plain100_seconds"]
    return {
        "ssim_ok": ssim_ok,
        "error_ok": error_ok,
        "time_ratio": ratio,
        "time_ok": ratio <= TIME_TARGET,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sets = _family.FRESH if args.fresh else _family.HELD_BACK if args.held_back else _family.TUNING
    if args.sets:
        sets = tuple(s for s in _family.ALL_SETS if s.name in args.sets)
    root = args.root
    cache_path = root / "plain_traces.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    out: dict[str, Any] = {"cells": {}}
    if args.json and args.json.exists():
        out = json.loads(args.json.read_text())
    import ptychi.api.task  # noqa: F401  (in-process imports are not part of any timing)

    for spec in sets:
        study = _family.build(spec, root)
        for dose in args.doses:
            for view in args.views:
                npz = _family.input_path(study, dose, view)
                key = f"{spec.name}/{dose}/{view}"
                trace_key = f"{_sha(npz)}/{args.epochs}/{args.threads}"
                if trace_key not in cache:
                    cache[trace_key] = plain_trace(npz, args.epochs, args.threads)
                    cache_path.write_text(json.dumps(cache))
                rows = cache[trace_key]
                with tempfile.TemporaryDirectory() as tmp:
                    cell: dict[str, Any] = {
                        "patterns": load_dataset(npz).n_patterns,
                        "plain_peak": peak(rows),
                        "plain100_seconds": run_plain100(npz, Path(tmp) / "p.npz"),
                        "default": run_default(npz, Path(tmp) / "d", args.threads),
                    }
                if args.peer:
                    cell["cdtools"] = run_peer(npz, args.threads)
                cell["verdict"] = verdict(cell)
                out["cells"][key] = cell
                print(key, row(key, cell), flush=True)
                if args.json:
                    args.json.write_text(json.dumps(out, indent=1))
    return out


def _epochs(default: dict[str, Any]) -> str:
    """ "24", or "3+2" after 3 epochs at half resolution."""
    half = default.get("coarse_epochs")
    return f"{half}+{default['epochs']}" if half else str(default["epochs"])


def row(key: str, cell: dict[str, Any]) -> str:
    p, d, v = cell["plain_peak"], cell["default"], cell["verdict"]
    mark = lambda ok: "" if ok else "!"  # noqa: E731
    return (
        f"peak {p['ssim']:.3f}@{p['ssim_epoch']} / {p['error']:.4f}@{p['error_epoch']} | "
        f"default {d['phase_ssim']:.3f}{mark(v['ssim_ok'])} / {d['error']:.4f}"
        f"{mark(v['error_ok'])} ({_epochs(d)} ep, {d['stop_kind']}) | "
        f"{d['seconds']:.1f} s / plain100 {cell['plain100_seconds']:.1f} s = "
        f"{v['time_ratio']:.2f}{mark(v['time_ok'])}"
    )


def _peer_cell(cell: dict[str, Any]) -> str:
    c = cell.get("cdtools")
    if not c:
        return " - |"
    return f" {c['phase_ssim']:.3f} / {c['error']:.4f} ({c['epochs']}) |"


def summary(result: dict[str, Any]) -> str:
    """Targets met per view, for docs/performance.md. "plain LSQML meets both" counts the
    cells where one epoch of plain LSQML is itself within both tolerances of its bests."""
    lines = [
        "| view | cells | SSIM within 0.01 | error within 5 % | both | plain LSQML meets both "
        "at one epoch | time <= 0.5 | whole-process time / plain 100 epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for view in ("baseline", "dense", "sparse"):
        cells = [c for k, c in result["cells"].items() if k.endswith(f"/{view}")]
        if not cells:
            continue
        v = [c["verdict"] for c in cells]
        ratios = [x["time_ratio"] for x in v]
        feasible = sum(c["plain_peak"].get("both_epochs") is not None for c in cells)
        lines.append(
            f"| {view} | {len(cells)} | {sum(x['ssim_ok'] for x in v)} | "
            f"{sum(x['error_ok'] for x in v)} | "
            f"{sum(x['ssim_ok'] and x['error_ok'] for x in v)} | {feasible} | "
            f"{sum(x['time_ok'] for x in v)} | {min(ratios):.2f}-{max(ratios):.2f} "
            f"(median {statistics.median(ratios):.2f}) |"
        )
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """The cell-by-cell table for docs/performance.md; a dagger marks the cells where no
    single epoch of plain LSQML meets both quality targets itself."""
    peer = any("cdtools" in cell for cell in result["cells"].values())
    lines = [
        "| cell (patterns) | plain LSQML best SSIM (epoch) / lowest error (epoch) | default "
        "SSIM / error (epochs, stop) | whole process: default / plain 100 ep | targets met |"
        + (" cdtools best of 25/50/75/100 ep: SSIM / error (epochs) |" if peer else ""),
        "|---|---|---|---|---|" + ("---|" if peer else ""),
    ]
    for key, cell in result["cells"].items():
        p, d, v = cell["plain_peak"], cell["default"], cell["verdict"]
        met = [
            name
            for name, ok in (
                ("SSIM", v["ssim_ok"]),
                ("error", v["error_ok"]),
                ("time", v["time_ok"]),
            )
            if ok
        ]
        dagger = " †" if "both_epochs" in p and p["both_epochs"] is None else ""
        lines.append(
            f"| {key} ({cell['patterns']}) | {p['ssim']:.3f} ({p['ssim_epoch']}) / "
            f"{p['error']:.4f} ({p['error_epoch']}){dagger} | "
            f"{d['phase_ssim']:.3f} / {d['error']:.4f} "
            f"({_epochs(d)}, {d['stop_kind']}) | {d['seconds']:.1f} / "
            f"{cell['plain100_seconds']:.1f} s = {v['time_ratio']:.2f} | "
            f"{', '.join(met) or 'none'} |" + (_peer_cell(cell) if peer else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("bench_family"))
    parser.add_argument("--held-back", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="the set made after the others")
    parser.add_argument("--sets", nargs="*")
    parser.add_argument("--doses", nargs="*", type=int, default=list(_family.DOSES))
    parser.add_argument("--views", nargs="*", default=["baseline", "dense", "sparse"])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer", action="store_true", help="also cdtools-py (slow)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, help="print the table of this JSON and exit")
    args = parser.parse_args()
    if args.markdown:
        result = json.loads(args.markdown.read_text())
        print(summary(result), markdown(result), sep="\n\n")
        return
    result = run(args)
    cells = result["cells"].values()
    met = sum(all(c["verdict"][k] for k in ("ssim_ok", "error_ok", "time_ok")) for c in cells)
    print(f"{met} of {len(result['cells'])} cells meet every target")


if __name__ == "__main__":
    main()
