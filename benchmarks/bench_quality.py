"""Quality per second: flyrecon's default reconstruction against cdtools-py, same data, same run.

For each dose (1e3, 1e4, 1e5 photons per pattern) and view (baseline, dense, sparse) of one
split of `flyrecon prep-synthetic` data, these reconstructions run one after the other:

- flyrecon's default (`ReconSettings()`: aLSQML with its truth-free stop; see
  docs/performance.md),
- the peer, cdtools-py 0.3.2 `FancyPtycho` with `Adam_optimize` defaults (lr 0.005, batch 15),
  30 epochs, the probe started from probeGuess scaled to the data, positions fixed,
- reference settings named with `--also` (default: `lsqml50`, plain LSQML for a fixed 50
  epochs, the previous default); see `REFERENCES`.

Every engine starts from a blind (flat) object and the same scaled probeGuess, runs on the CPU
with the same torch thread count, and is scored by `flyrecon.metrics.compare` against
objectGuess on the same canvas and illuminated mask as `flyrecon reconstruct` (phase SSIM and
complex relative error after removing the global phase, a phase ramp and registering).
Seconds are reconstruction wall time after the data are loaded (imports, figures and output
files excluded for every engine).

Target: flyrecon's default reaches at least cdtools' phase SSIM and at most its complex
error, in no more time, in every cell.

Usage: python benchmarks/bench_quality.py [--quick] [--root DIR] [--split train]
       [--peer-epochs 30] [--threads 2] [--also lsqml50 adam ...] [--json OUT.json]
Needs the `bench` extra (`pip install -e .[bench]`, which brings cdtools-py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flyrecon import scoring
from flyrecon.data import PtychoDataset, load_dataset
from flyrecon.geometry import Canvas, canvas_for
from flyrecon.layout import StudyRoot
from flyrecon.options import Algorithm, Device, ReconSettings

DOSES = (1000, 10000, 100000)
VIEWS = ("baseline", "dense", "sparse")
PREP_ARGS = ("--object-px", "280", "--step-px", "5.5")
"""Study data close to the issue's reference set: 560 baseline patterns of 64x64 per split."""


@dataclass
class Outcome:
    engine: str
    phase_ssim: float
    error: float
    seconds: float
    epochs: int
    note: str = ""


def input_path(root: Path, dose: int, view: str, split: str) -> Path:
    return StudyRoot(root).input_path(dose, view, split)


def prepare(root: Path, doses: tuple[int, ...]) -> None:
    """Simulate the study data with `flyrecon prep-synthetic` unless already there."""
    if all(input_path(root, d, v, "train").exists() for d in doses for v in VIEWS):
        return
    cmd = [sys.executable, "-m", "flyrecon", "prep-synthetic", "--output-root", str(root)]
    cmd += [*PREP_ARGS, *(a for d in doses for a in ("--dose", str(d)))]
    subprocess.run(cmd, check=True, capture_output=True)


def score(dataset: PtychoDataset, canvas: Canvas, obj: np.ndarray) -> dict[str, Any]:
    """The same scoring as `flyrecon reconstruct` (`flyrecon.scoring`)."""
    scored = scoring.score(dataset, canvas, obj)
    if scored is None:
        raise RuntimeError("too few illuminated pixels inside objectGuess to score")
    return scored.metrics


def run_flyrecon(npz: Path, settings: ReconSettings, name: str) -> Outcome:
    """One flyrecon reconstruction (engine only: load, convert, run pty-chi), scored."""
    from flyrecon.engine import run_engine
    from flyrecon.inputs import engine_input

    dataset = load_dataset(npz, settings.n_images)
    start = time.perf_counter()
    inp, canvas = engine_input(dataset, settings)
    result = run_engine(inp, settings)
    seconds = time.perf_counter() - start
    m = score(dataset, canvas, result.object)
    note = result.stop_reason
    return Outcome(
        name, m["phase_ssim"], m["complex_relative_error"], seconds, result.epochs_run, note
    )


def run_cdtools(
    npz: Path, epochs: int = 30, threads: int | None = 2, device: str = "cpu", **adam: Any
) -> Outcome:
    """cdtools-py FancyPtycho + Adam_optimize, mapped onto flyrecon's canvas and scored.

    Geometry: wavelength 1 nm, distance 1 m and a 15.625 um detector pixel give a 1 um object
    pixel; translations are (x, y) in um of the probe window's top-left corner, so cdtools
    object pixel (i, j) is objectGuess pixel (i, j) + `min_translation` (read back from the
    model and checked against `translations_to_pixel`).
    """
    import torch
    from cdtools.datasets import Ptycho2DDataset
    from cdtools.models import FancyPtycho
    from cdtools.tools.interactions import translations_to_pixel

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        dataset = load_dataset(npz)
        n = dataset.pattern_size
        canvas = canvas_for(dataset.ycoords, dataset.xcoords, n)
        start = time.perf_counter()
        pixel = 1e-6
        wavelength, distance = 1e-9, 1.0
        det_pitch = wavelength * distance / (n * pixel)
        basis = np.array([[0.0, det_pitch], [det_pitch, 0.0], [0.0, 0.0]])
        top = dataset.ycoords.astype(np.float64) - n / 2
        left = dataset.xcoords.astype(np.float64) - n / 2
        translations = np.stack([left * pixel, top * pixel, np.zeros_like(top)], axis=1)
        cd = Ptycho2DDataset(
            torch.as_tensor(translations, dtype=torch.float32),
            torch.as_tensor(np.square(dataset.diffraction, dtype=np.float32)),
            wavelength=wavelength,
            detector_geometry={"distance": distance, "basis": torch.as_tensor(basis)},
        )
        model = FancyPtycho.from_dataset(cd, obj_padding=0)
        pix = translations_to_pixel(model.obj_basis, torch.as_tensor(translations).float())
        expected = np.stack([top, left], axis=1)
        if not np.allclose(pix.numpy(), expected, atol=1e-3):
            raise RuntimeError("cdtools geometry does not map to objectGuess pixels")
        # probe: probeGuess scaled so that sum |P|^2 = mean total counts (orthonormal FFT)
        probe = dataset.probe_guess.astype(np.complex128)
        counts = float(np.mean(np.sum(dataset.diffraction.astype(np.float64) ** 2, axis=(1, 2))))
        probe *= np.sqrt(counts / np.sum(np.abs(probe) ** 2))
        norm = float(np.abs(probe).max())  # cdtools stores probe / probe_norm (max 1)
        with torch.no_grad():
            model.probe_norm.fill_(norm)
            model.probe.data[:] = torch.as_tensor((probe / norm).astype(np.complex64))[None]
        model.translation_offsets.requires_grad = False  # positions fixed, as in flyrecon
        model.to(device=device)
        cd.get_as(device=device)
        epochs_run = 0
        for _ in model.Adam_optimize(epochs, cd, thread=False, **adam):
            epochs_run += 1
        if device != "cpu":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        obj = model.obj.detach().cpu().numpy()
        origin = np.round(model.min_translation.detach().cpu().numpy()).astype(int)
    finally:
        torch.set_num_threads(old_threads)
    # cdtools pixel (i, j) = objectGuess (i + origin); canvas pixel (i, j) = objectGuess
    # (i + canvas.origin_px): copy the overlap, leave the rest flat (outside the mask anyway)
    out = np.ones(canvas.shape, dtype=np.complex64)
    dr, dc = canvas.origin_px[0] - origin[0], canvas.origin_px[1] - origin[1]
    r0, c0 = max(0, -dr), max(0, -dc)
    r1 = min(canvas.shape[0], obj.shape[0] - dr)
    c1 = min(canvas.shape[1], obj.shape[1] - dc)
    out[r0:r1, c0:c1] = obj[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
    m = score(dataset, canvas, out)
    return Outcome("cdtools", m["phase_ssim"], m["complex_relative_error"], seconds, epochs_run)


REFERENCES: dict[str, dict[str, Any]] = {
    "lsqml50": {"num_epochs": 50},
    "lsqml30": {"num_epochs": 30},
    "lsqml-b32": {"batch_size": 32},
    "lsqml-b100": {"batch_size": 100},
    "adam": {"algorithm": Algorithm.ADAM, "max_epochs": 60},
}
"""Settings compared with the default, as overrides of `ReconSettings()`."""


def run(
    quick: bool = False,
    root: Path | None = None,
    split: str = "train",
    peer_epochs: int = 30,
    threads: int = 2,
    also: tuple[str, ...] = ("lsqml50",),
) -> dict[str, Any]:
    """Every cell: {(dose, view): {engine: Outcome}} plus a pass flag per cell."""
    doses = (100000,) if quick else DOSES
    views = ("baseline",) if quick else VIEWS
    default = ReconSettings(device=Device.CPU, threads=threads)
    references = {name: default.model_copy(update=REFERENCES[name]) for name in also}
    import cdtools.models  # noqa: F401  imports are not part of any engine's time
    import ptychi.api.task  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        data_root = root or Path(tmp) / "study"
        prepare(data_root, DOSES if root else doses)
        cells: dict[str, dict[str, Outcome]] = {}
        for dose in doses:
            for view in views:
                npz = input_path(data_root, dose, view, split)
                key = f"{dose}/{view}"
                cell = {
                    "flyrecon": run_flyrecon(npz, default, "flyrecon default"),
                    "cdtools": run_cdtools(npz, peer_epochs, threads),
                }
                for name, settings in references.items():
                    cell[name] = run_flyrecon(npz, settings, name)
                cells[key] = cell
                print(key, {k: v.__dict__ for k, v in cell.items()}, flush=True)
    passed = {
        key: (
            c["flyrecon"].phase_ssim >= c["cdtools"].phase_ssim
            and c["flyrecon"].error <= c["cdtools"].error
            and c["flyrecon"].seconds <= c["cdtools"].seconds
        )
        for key, c in cells.items()
    }
    return {
        "cells": {k: {e: o.__dict__ for e, o in c.items()} for k, c in cells.items()},
        "passed": passed,
        "all_passed": all(passed.values()),
        "settings": default.model_dump(mode="json"),
        "references": {k: v.model_dump(mode="json") for k, v in references.items()},
    }


def _fmt(o: dict[str, Any]) -> str:
    return f"{o['phase_ssim']:.3f} / {o['error']:.3f} / {o['seconds']:.1f}s ({o['epochs']} ep)"


def rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    out = []
    for key, cell in result["cells"].items():
        fly, peer = cell["flyrecon"], cell["cdtools"]
        others = [_fmt(o) for name, o in cell.items() if name not in ("flyrecon", "cdtools")]
        ratio = fly["seconds"] / peer["seconds"]
        verdict = "yes" if result["passed"][key] else "NO"
        out.append((key, _fmt(fly), _fmt(peer), *others, f"{verdict} ({ratio:.2f}x time)"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one dose (1e5) and view")
    parser.add_argument("--root", type=Path, help="existing prep-synthetic output to reuse")
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--peer-epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--also", nargs="*", default=["lsqml50"], choices=sorted(REFERENCES), help="references"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(
        args.quick, args.root, args.split, args.peer_epochs, args.threads, tuple(args.also)
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    from rich.console import Console
    from rich.table import Table

    table = Table(title="phase SSIM / complex error / seconds against the truth")
    for col in ("dose/view", "flyrecon default", "cdtools-py", *args.also, "default >= peer"):
        table.add_column(col)
    for row in rows(result):
        table.add_row(*row)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
