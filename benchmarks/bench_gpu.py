"""The CUDA path, as one prepared script of at most about 5 minutes (issue 15).

Phases, each timed side by side on the same machine and written to the JSON as it finishes
(a phase that would overrun `--budget-s` is skipped and says so):

1. **single job**: `flyrecon reconstruct` (default settings) as a whole process on 560
   patterns of 64x64 at 1e5 photons, `--device cpu --threads <all cores>` against
   `--device cuda`; quality and wall time of each.
2. **overhead**: plain pty-chi LSQML's loop for 25 epochs on the GPU (in-process, CUDA
   synchronised) plus the metrics, against flyrecon's in-run time for the same settings
   (`--algorithm LSQML --num-epochs 25`, result.json's wall time). Target: <= 1.1.
3. **batch sizes on CUDA**: the default engine at batch 64 and 256: epochs, quality and
   in-run seconds (what a GPU default should be, measured rather than assumed).
4. **study packing**: the full preset (3 doses, 18 jobs) with `--jobs 1` and `--jobs 8`,
   `--device cuda`, `--num-epochs` fixed (20) so the two do the same work. Target: >= 4x.

GPU utilisation is sampled with `nvidia-smi` (every 0.2 s) during phases 1, 2 and 4.
`--cpu` runs the same script on the CPU with small data, to check it where there is no GPU.

Usage: python benchmarks/bench_gpu.py [--json OUT.json] [--budget-s 300] [--cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import python

from flyrecon import layout


class GpuSampler:
    """Samples GPU utilisation (%) with nvidia-smi in the background; mean over the block."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
            self._proc = subprocess.Popen([*cmd, "-lms", "200"], stdout=subprocess.PIPE, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                self.values.append(float(line.split(",")[0]))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None


def _flyrecon(*args: str) -> list[str]:
    return [python(), "-m", "flyrecon", *args]


def _run(cmd: list[str]) -> float:
    """Seconds `cmd` took; a failure raises with the end of its output (a one-shot GPU run
    must say why a phase failed)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"exit {done.returncode}: " + " | ".join(tail))
    return time.perf_counter() - start


def _result(out: Path) -> dict[str, Any]:
    result = json.loads((out / layout.RESULT_JSON).read_text())
    metrics = result.get("metrics") or {}
    return {
        "in_run_s": result["wall_time_s"],
        "epochs": result["epochs_run"],
        "stop": result.get("stop_kind"),
        "device": result["device"],
        "phase_ssim": metrics.get("phase_ssim"),
        "error": metrics.get("complex_relative_error"),
    }


def single_job(npz: Path, work: Path, gpu: str, cores: int) -> dict[str, Any]:
    rows = {}
    for label, extra in (
        (f"cpu, {cores} threads", ["--device", "cpu", "--threads", str(cores)]),
        (gpu, ["--device", gpu]),
    ):
        out = work / f"single-{label.split(',')[0]}"
        with GpuSampler() as sampler:
            seconds = _run(
                _flyrecon("reconstruct", "--input-npz", str(npz), "--output-dir", str(out), *extra)
            )
        rows[label] = {"whole_process_s": seconds, "gpu_util_pct": sampler.mean, **_result(out)}
    cpu, dev = rows.values()
    return {"rows": rows, "device_over_cpu": dev["whole_process_s"] / cpu["whole_process_s"]}


def plain_loop(npz: Path, device: str, epochs: int) -> dict[str, Any]:
    """pty-chi LSQML's own loop (task.run) on flyrecon's inputs, synchronised, plus metrics."""
    import torch

    from flyrecon.data import load_dataset
    from flyrecon.engine import build_options, data_fits_on_device, import_ptychi, new_task
    from flyrecon.inputs import engine_input
    from flyrecon.options import Algorithm, ReconSettings
    from flyrecon.scoring import score

    import_ptychi()
    settings = ReconSettings(algorithm=Algorithm.LSQML, num_epochs=epochs, device=device)
    dataset = load_dataset(npz)
    inp, canvas = engine_input(dataset, settings)
    options = build_options(settings, device, inp.intensities.shape[0])
    # as flyrecon's run keeps them: patterns on the GPU where they fit
    options.data_options.save_data_on_device = data_fits_on_device(device, inp.intensities.nbytes)
    task = new_task(options, inp)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    task.run()
    sync()
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    obj = task.get_data_to_cpu("object", as_numpy=True)[0]
    scored = score(dataset, canvas, obj)
    metrics_s = time.perf_counter() - start
    del task
    if device == "cuda":
        torch.cuda.empty_cache()  # leave the GPU's memory to the phases after this one
    return {"loop_s": loop_s, "metrics_s": metrics_s, "phase_ssim": scored.metrics["phase_ssim"]}


def overhead(npz: Path, work: Path, device: str, epochs: int = 25) -> dict[str, Any]:
    plain = plain_loop(npz, device, epochs)
    out = work / "overhead"
    with GpuSampler() as sampler:
        _run(
            _flyrecon(
                "reconstruct",
                "--input-npz",
                str(npz),
                "--output-dir",
                str(out),
                "--algorithm",
                "LSQML",
                "--num-epochs",
                str(epochs),
                "--device",
                device,
            )
        )
    fly = _result(out)
    ratio = fly["in_run_s"] / (plain["loop_s"] + plain["metrics_s"])
    return {"plain": plain, "flyrecon": fly, "ratio": ratio, "gpu_util_pct": sampler.mean}


def batch_sizes(npz: Path, work: Path, device: str, sizes: tuple[int, ...]) -> dict[str, Any]:
    rows = {}
    for batch in sizes:
        out = work / f"batch{batch}"
        args = ["--input-npz", str(npz), "--output-dir", str(out), "--device", device]
        _run(_flyrecon("reconstruct", *args, "--batch-size", str(batch)))
        rows[str(batch)] = _result(out)
    return rows


def study(root: Path, device: str, jobs: int, epochs: int) -> dict[str, Any]:
    out = root / f"reconstructions-jobs{jobs}"
    shutil.rmtree(out, ignore_errors=True)
    args = ["study-run", "--study-root", str(root), "--artifact-root", str(out)]
    args += ["--jobs", str(jobs), "--device", device, "--num-epochs", str(epochs)]
    with GpuSampler() as sampler:
        seconds = _run(_flyrecon(*args))
    records = json.loads((out / layout.MANIFEST_JSON).read_text())["execution_results"]
    return {
        "whole_process_s": seconds,
        "jobs": len(records),
        "failed": sum(1 for r in records if r["returncode"] != 0),
        "gpu_util_pct": sampler.mean,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu.json")
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--cpu", action="store_true", help="check the script on the CPU")
    parser.add_argument("--study-epochs", type=int, default=20)
    args = parser.parse_args()
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device visible to torch: run with --cpu to check the script")
        sys.exit(0)
    device = "cpu" if args.cpu else "cuda"
    cores = len(os.sched_getaffinity(0))
    started = time.perf_counter()
    report: dict[str, Any] = {
        "device": "cpu" if args.cpu else torch.cuda.get_device_name(0),
        "cores": cores,
        "torch": torch.__version__,
        "skipped": [],
    }

    def save() -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))

    def phase(name: str, estimate_s: float, fn, *fn_args) -> None:
        left = args.budget_s - (time.perf_counter() - started)
        if estimate_s > left:
            report["skipped"].append(f"{name} (needs ~{estimate_s:.0f} s, {left:.0f} s left)")
        else:
            t0 = time.perf_counter()
            try:
                report[name] = fn(*fn_args)
            except Exception as exc:  # one failing phase must not lose the others
                report[name] = {"error": f"{type(exc).__name__}: {exc}"}
            report[name + "_s"] = time.perf_counter() - t0
        print(name, json.dumps(report.get(name), default=str)[:400], flush=True)
        save()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "single"
        small = ["--object-px", "192"] if args.cpu else []
        size = small or ["--object-px", "280", "--step-px", "5.5"]
        prep = ["prep-synthetic", "--output-root", str(data), *size, "--dose", "100000"]
        subprocess.run(_flyrecon(*prep), check=True, capture_output=True)
        npz = layout.StudyRoot(data).input_path(100000, "baseline", "train")
        full = work / "full"
        preset = ["--object-px", "192", "--dose", "100000"] if args.cpu else ["--preset", "full"]
        prep = ["prep-synthetic", "--output-root", str(full), *preset]
        subprocess.run(_flyrecon(*prep), check=True, capture_output=True)
        phase("single_job", 60, single_job, npz, work, device, cores)
        phase("overhead", 45, overhead, npz, work, device)
        phase("batch_sizes", 40, batch_sizes, npz, work, device, (64, 256))
        phase("study_jobs8", 60, study, full, device, 8, args.study_epochs)
        phase("study_jobs1", 120, study, full, device, 1, args.study_epochs)
    one, eight = report.get("study_jobs1", {}), report.get("study_jobs8", {})
    if "whole_process_s" in one and "whole_process_s" in eight:
        report["study_speedup"] = one["whole_process_s"] / eight["whole_process_s"]
    report["total_s"] = time.perf_counter() - started
    save()
    print(json.dumps({k: report.get(k) for k in ("device", "study_speedup", "total_s")}))


if __name__ == "__main__":
    main()
