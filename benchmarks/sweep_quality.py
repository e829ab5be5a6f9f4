"""The sweep behind flyrecon's default: quality against time, epoch by epoch, per setting.

For each dose/view cell of the quality data (as in `bench_quality.py`), every setting runs a
fixed number of epochs; after each epoch the object is scored against the truth (time spent
scoring is excluded) and the automatic stop's fit and noise floor are recorded, so one run
shows where each stop rule would have ended and what it would have scored. cdtools-py (the
peer, 30 epochs) is run once per cell for its quality and time. Writes JSON and
`docs/performance_sweep.png`.

Usage: python benchmarks/sweep_quality.py [--root DIR] [--epochs 50] [--settings b64 b32 ...]
       [--cells 1000/sparse ...] [--json OUT.json] [--plot OUT.png]
Needs the `bench` extra. About 25 minutes for every setting and cell on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_quality import DOSES, VIEWS, input_path, prepare, run_cdtools, score

from flyrecon.data import load_dataset
from flyrecon.options import Device, ReconSettings, ReconstructOptions

SETTINGS: dict[str, dict[str, Any]] = {
    "LSQML b64": {"batch_size": 64},
    "LSQML b32": {"batch_size": 32},
    "LSQML b128": {"batch_size": 128},
    "LSQML b32 Poisson": {"batch_size": 32, "noise_model": "poisson"},
}
"""Overrides of `ReconSettings()`; every run uses the automatic stop's check up to --epochs
without stopping, so the whole curve is seen."""


def trace(npz: Path, settings: ReconSettings, epochs: int) -> list[dict[str, float]]:
    """Per epoch: seconds of reconstruction so far, truth metrics, fit and noise floor."""
    from flyrecon import engine
    from flyrecon.reconstruct import engine_input

    dataset = load_dataset(npz)
    options = ReconstructOptions(input_npz=npz, output_dir=Path("unused"), settings=settings)
    rows: list[dict[str, float]] = []
    excluded = 0.0
    start = time.perf_counter()
    inp, canvas = engine_input(dataset, options)

    def inspect(epoch: int, get_object: Any) -> None:
        nonlocal excluded
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

    checks: list[tuple[float, float]] = []
    auto = settings.model_copy(update={"num_epochs": None, "max_epochs": epochs})
    with _never_stopping(checks):
        engine.run_engine(inp, auto, inspect=inspect)
    for row, (fit, floor) in zip(rows, checks, strict=True):
        row["fit"], row["floor"] = fit, floor
    return rows


@contextmanager
def _never_stopping(checks: list[tuple[float, float]]) -> Iterator[None]:
    """Record the automatic stop's (fit, floor) every epoch but never let it stop the run."""
    from flyrecon import engine

    original = engine._FitVsNoise.__call__

    def record(self: Any) -> tuple[float, float]:
        checks.append(original(self))
        return 1.0, 0.0  # fit above floor: go on

    engine._FitVsNoise.__call__ = record  # type: ignore[method-assign]
    try:
        yield
    finally:
        engine._FitVsNoise.__call__ = original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, help="existing prep-synthetic output to reuse")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--cells", nargs="*", help="dose/view, e.g. 1000/sparse (default all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("sweep_quality.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/performance_sweep.png"))
    args = parser.parse_args()
    cells = args.cells or [f"{d}/{v}" for d in DOSES for v in VIEWS]
    out: dict[str, Any] = {"cells": {}, "settings": {k: SETTINGS[k] for k in args.settings}}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp) / "study"
        prepare(root, DOSES)
        for cell in cells:
            dose, view = cell.split("/")
            npz = input_path(root, int(dose), view, "train")
            peer = run_cdtools(npz, 30, args.threads)
            entry: dict[str, Any] = {"cdtools": peer.__dict__}
            for name in args.settings:
                settings = ReconSettings(device=Device.CPU, threads=args.threads)
                settings = settings.model_copy(update=SETTINGS[name])
                entry[name] = trace(npz, settings, args.epochs)
                last = entry[name][-1]
                print(cell, name, f"{last['phase_ssim']:.3f}/{last['error']:.3f}", flush=True)
            out["cells"][cell] = entry
            args.json.write_text(json.dumps(out, indent=1))
    plot(out, args.plot)


def stop_epoch(rows: list[dict[str, float]], cap: int) -> dict[str, float]:
    """Where the default rule ends: the first epoch with fit <= floor, else the cap."""
    for row in rows[:cap]:
        if row["fit"] <= row["floor"]:
            return row
    return rows[min(cap, len(rows)) - 1]


def plot(out: dict[str, Any], path: Path) -> None:
    """Phase SSIM and error against seconds per cell; cdtools as a star, the stop as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(out["cells"])
    fig, axes = plt.subplots(2, len(cells), figsize=(2.6 * len(cells), 5.2), squeeze=False)
    for j, cell in enumerate(cells):
        entry = out["cells"][cell]
        for name in out["settings"]:
            rows = entry[name]
            t = [r["seconds"] for r in rows]
            for i, key in enumerate(("phase_ssim", "error")):
                (line,) = axes[i, j].plot(t, [r[key] for r in rows], lw=1, label=name)
                stop = stop_epoch(rows, ReconSettings().max_epochs)
                axes[i, j].plot(stop["seconds"], stop[key], "o", color=line.get_color(), ms=4)
        peer = entry["cdtools"]
        for i, key in enumerate(("phase_ssim", "error")):
            axes[i, j].plot(peer["seconds"], peer[key], "k*", ms=9, label="cdtools 30 ep")
            axes[i, j].set_xlabel("s")
        axes[0, j].set_title(cell, fontsize=9)
    axes[0, 0].set_ylabel("phase SSIM")
    axes[1, 0].set_ylabel("complex error")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
