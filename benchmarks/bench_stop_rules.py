"""Stop rules, replayed: the default's path recorded once without its converged stop, then
variants of the stop rule replayed on the recording (how issue 13's thresholds were chosen).

- **record**: for every baseline and dense cell (family set x dose x view, train split) the
  default engine (aLSQML: momentum, probe hold) runs to `--epochs` with the converged stop
  switched off; the noise floor and the cap still end a run. After every epoch it keeps what
  the stop rule is shown (fit, noise floor, straightness, which the engine withholds while a
  momentum restart is in the window, and movement) and the in-run seconds; every `--every`
  epochs it scores the 8-iterate average (what a converged stop returns) against the truth,
  and at the end the object the run returned.
- **replay**: each variant (`--straightness` x `--movement` thresholds) gets a fresh
  `convergence.StopRule` fed the recorded numbers epoch by epoch. Where it stops converged,
  its quality is the scored average at the last scored epoch up to the stop (at most
  `--every` - 1 epochs early); otherwise the run's recorded end. With `--results` (a
  `bench_convergence.py --json` file of the same cells and version) each cell is judged
  against plain LSQML's peak, its time estimated as the default's whole-process seconds plus
  the difference in epochs at the recorded seconds per epoch. The recording is exact for the
  rule's inputs: a variant changes only where the run ends, never its path.

Usage:
  python benchmarks/bench_stop_rules.py record --root DIR --json traces.json [--sets NAME ...]
         [--doses 1000 ...] [--views baseline dense] [--epochs 160] [--every 4]
  python benchmarks/bench_stop_rules.py replay traces.json [--results convergence.json]
         [--straightness 0.2 0.25] [--movement 0.01 0.015] [--cells]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _family
from bench_convergence import TIME_TARGET, within_targets

from flyrecon import convergence
from flyrecon.convergence import (
    SETTLED_MOVEMENT,
    STRAIGHTNESS_CONVERGED,
    WINDOW_EPOCHS,
    StopDecision,
    StopKind,
    StopRule,
)


@dataclass
class _Recording(StopRule):
    """The engine's stop rule with the converged stop off, keeping what it is shown."""

    straightness_converged: float = -math.inf
    settled_movement: float = -math.inf
    seen: list[list[float | None]] = field(default_factory=list)

    def decide(self, *numbers: Any) -> StopDecision | None:
        """`StopRule.decide`, its arguments (epoch, fit, floor, straightness, movement) kept."""
        self.seen.append(list(numbers))
        return super().decide(*numbers)


def record_cell(npz: Path, epochs: int, every: int, threads: int) -> dict[str, Any]:
    """The default's path on one input without its converged stop (see the module doc)."""
    import numpy as np
    from bench_quality import score

    from flyrecon.data import load_dataset
    from flyrecon.engine import run_engine
    from flyrecon.inputs import engine_input
    from flyrecon.options import Device, ReconSettings

    dataset = load_dataset(npz)
    settings = ReconSettings(device=Device.CPU, threads=threads, max_epochs=epochs)
    inp, canvas = engine_input(dataset, settings)
    window: deque[Any] = deque(maxlen=WINDOW_EPOCHS)
    scored: dict[str, list[float]] = {}
    excluded = 0.0
    rules: list[_Recording] = []

    def inspect(epoch: int, get_object: Any) -> None:
        nonlocal excluded
        t0 = time.perf_counter()
        window.append(get_object())
        if epoch % every == 0 and len(window) == WINDOW_EPOCHS:
            m = score(dataset, canvas, np.mean(np.stack(window), 0))
            scored[str(epoch)] = [m["phase_ssim"], m["complex_relative_error"]]
        excluded += time.perf_counter() - t0

    def recording(**kwargs: Any) -> _Recording:
        rules.append(_Recording(**kwargs))
        return rules[-1]

    original = convergence.StopRule
    convergence.StopRule = recording  # type: ignore[assignment,misc]  (the engine's lookup)
    try:
        start = time.perf_counter()
        result = run_engine(inp, settings, inspect=inspect)
        seconds = time.perf_counter() - start - excluded
    finally:
        convergence.StopRule = original  # type: ignore[misc]
    end = score(dataset, canvas, result.object)
    rule = rules[-1]
    return {
        "max_epochs": rule.max_epochs,
        "use_noise_floor": rule.use_noise_floor,
        "seen": rule.seen,
        "epochs": result.epochs_run,
        "stop_kind": str(result.stop_kind),
        "seconds_per_epoch": seconds / result.epochs_run,
        "scored": scored,
        "end": [end["phase_ssim"], end["complex_relative_error"]],
    }


def replay(cell: dict[str, Any], straightness: float, movement: float) -> dict[str, Any]:
    """Where a rule with these thresholds ends the recorded run, and what it returns there."""
    rule = StopRule(
        max_epochs=cell["max_epochs"],
        use_noise_floor=cell["use_noise_floor"],
        straightness_converged=straightness,
        settled_movement=movement,
    )
    for epoch, fit, floor, straight, moved in cell["seen"]:
        decision = rule.decide(int(epoch), fit, floor, straight, moved)
        if decision is not None and decision.kind == StopKind.CONVERGED:
            done = [int(e) for e in cell["scored"] if int(e) <= decision.epoch]
            at = max(done) if done else min(int(e) for e in cell["scored"])
            ssim, error = cell["scored"][str(at)]
            return {"epoch": decision.epoch, "kind": "converged", "ssim": ssim, "error": error}
        if decision is not None:
            break
    ssim, error = cell["end"]
    return {"epoch": cell["epochs"], "kind": cell["stop_kind"], "ssim": ssim, "error": error}


def judge(stop: dict[str, Any], cell: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Targets met by a replayed stop, against a bench_convergence cell (`result`)."""
    ssim_ok, error_ok = within_targets(stop["ssim"], stop["error"], result["plain_peak"])
    default = result["default"]
    seconds = default["seconds"] + (stop["epoch"] - default["epochs"]) * cell["seconds_per_epoch"]
    ratio = seconds / result["plain100_seconds"]
    return {"quality": ssim_ok and error_ok, "time": ratio <= TIME_TARGET, "ratio": ratio}


def record(args: argparse.Namespace) -> None:
    import ptychi.api.task  # noqa: F401  (imports are not part of any in-run time)

    sets = [s for s in _family.ALL_SETS if not args.sets or s.name in args.sets]
    out = json.loads(args.json.read_text()) if args.json.exists() else {}
    for spec in sets:
        study = _family.build(spec, args.root)
        for dose in args.doses:
            for view in args.views:
                key = f"{spec.name}/{dose}/{view}"
                if key in out:
                    continue
                npz = _family.input_path(study, dose, view)
                out[key] = record_cell(npz, args.epochs, args.every, args.threads)
                args.json.write_text(json.dumps(out))
                cell = out[key]
                print(key, cell["epochs"], cell["stop_kind"], flush=True)


def replay_all(args: argparse.Namespace) -> None:
    cells = json.loads(args.traces.read_text())
    results = json.loads(args.results.read_text())["cells"] if args.results else {}
    first: dict[str, str] = {}
    for straightness in args.straightness:
        for movement in args.movement:
            is_first = not first
            counts = {"cells": 0, "quality": 0, "time": 0, "all three": 0}
            lines = []
            for key, cell in cells.items():
                stop = replay(cell, straightness, movement)
                line = f"  {key}: {stop['epoch']} epochs ({stop['kind']}), "
                line += f"{stop['ssim']:.3f} / {stop['error']:.4f}"
                if key in results:
                    v = judge(stop, cell, results[key])
                    counts["cells"] += 1
                    counts["quality"] += v["quality"]
                    counts["time"] += v["time"]
                    counts["all three"] += v["quality"] and v["time"]
                    line += f", quality {'met' if v['quality'] else 'missed'}, "
                    line += f"time {v['ratio']:.2f}"
                if is_first:
                    first[key] = line
                if is_first or first.get(key) != line:
                    lines.append(line)
            print(f"straightness < {straightness}, movement < {movement}: {counts}")
            if args.cells:
                print("\n".join(lines or ["  (every cell as the first variant)"]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record the default's paths without the converged stop")
    rec.add_argument("--root", type=Path, default=Path("bench_family"))
    rec.add_argument("--json", type=Path, required=True, help="traces (resumed if it exists)")
    rec.add_argument("--sets", nargs="*")
    rec.add_argument("--doses", nargs="*", type=int, default=list(_family.DOSES))
    rec.add_argument(
        "--views", nargs="*", default=["baseline", "dense"], choices=["baseline", "dense"]
    )
    rec.add_argument("--epochs", type=int, default=160)
    rec.add_argument("--every", type=int, default=4, help="score the average every N epochs")
    rec.add_argument("--threads", type=int, default=2)
    rep = sub.add_parser("replay", help="replay stop-rule variants on recorded paths")
    rep.add_argument("traces", type=Path)
    rep.add_argument("--results", type=Path, help="bench_convergence.py --json of the cells")
    rep.add_argument("--straightness", nargs="*", type=float, default=[STRAIGHTNESS_CONVERGED])
    rep.add_argument("--movement", nargs="*", type=float, default=[SETTLED_MOVEMENT])
    rep.add_argument("--cells", action="store_true", help="the cells each variant changes")
    args = parser.parse_args()
    if args.command == "record":
        record(args)
    else:
        replay_all(args)


if __name__ == "__main__":
    main()
