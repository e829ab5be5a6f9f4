"""Helpers shared by the benchmark scripts: datasets, timing, tables."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from flyrecon import simulate
from flyrecon.data import PtychoDataset, save_dataset
from flyrecon.layout import StudyRoot


def make_dataset(
    path: Path, *, object_px: int = 192, step_px: float = 5.0, dose: float = 1e5, seed: int = 0
) -> Path:
    """A 64x64-pattern simulated dataset with known truth, saved as DATA-001."""
    rng = np.random.default_rng(seed)
    obj = simulate.procedural_object((object_px, object_px), rng)
    probe = simulate.focused_probe(64)
    y, x = simulate.raster_scan((32, object_px - 32), (32, object_px - 32), step_px, 1.0, rng)
    expected = simulate.far_field_intensity(obj, probe, y, x)
    scale = simulate.dose_scale(expected, dose)
    amp = simulate.poisson_amplitude(expected, scale, rng)
    save_dataset(
        path,
        PtychoDataset(amp, obj, probe, x, y, metadata={"dose": dose, "intensity_scale": scale}),
    )
    return path


def timed(cmd: list[str], **kwargs) -> float:
    """Wall seconds of one subprocess run (raises if it fails)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - start


def side_by_side(commands: dict[str, list[str]], repeats: int) -> dict[str, list[float]]:
    """Run the commands alternately `repeats` times; wall seconds per command."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, cmd in commands.items():
            times[name].append(timed(cmd))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def python() -> str:
    return sys.executable


def print_table(rows: list[tuple[str, str, str]], title: str) -> None:
    """Print rows of (measure, value, target) with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("measure", "value", "target"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, Any]:
    """Run a command (its environment updated by `env`); return its wall seconds and the
    resource usage (`os.wait4`) of that process alone. Raises if it fails."""
    import os

    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=None if env is None else {**os.environ, **env},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return time.perf_counter() - start, usage


def run_with_rusage(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MiB) of that process alone."""
    wall, usage = run_measured(cmd)
    return wall, usage.ru_maxrss / 1024


def make_study_tree(root: Path, dose: int = 100000, object_px: int = 128) -> Path:
    """A one-dose study tree (baseline, dense, sparse x train, test): six small jobs."""
    for split, seed in (("train", 1), ("test", 2)):
        src = make_dataset(
            root / f"src_{split}.npz", object_px=object_px, step_px=6.0, dose=dose, seed=seed
        )
        for view in ("baseline", "dense", "sparse"):
            path = StudyRoot(root).input_path(dose, view, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(src.read_bytes())
    return root
