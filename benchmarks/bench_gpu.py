"""The CUDA path: flyrecon's default reconstruction on CPU and on the GPU, same data, same run.

A prepared check for a machine with a CUDA device (a few minutes at most). On one
prep-synthetic set (560 patterns of 64x64 at 1e5 photons, the quality benchmark's baseline
view) it runs flyrecon's default settings and the tuned Adam engine (30 epochs) with `--device
cpu` and `--device auto` (which must pick CUDA), and, when cdtools-py is installed, the peer on
the GPU; it reports phase SSIM, complex relative error and seconds for each, the GPU's name,
and the CPU / GPU time ratio. Without CUDA it says so and exits with code 0.

Usage: python benchmarks/bench_gpu.py [--dose 100000] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import print_table


def cuda_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def run(dose: int = 100000, threads: int = 2) -> dict[str, Any]:
    """{'gpu': name or None, 'rows': {label: outcome dict}}; empty rows without CUDA."""
    name = cuda_name()
    if name is None:
        return {"gpu": None, "rows": {}}
    import bench_quality as bq

    from flyrecon.options import Algorithm, Device, ReconSettings

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "study"
        bq.prepare(root, (dose,))
        npz = bq.input_path(root, dose, "baseline", "train")
        out: dict[str, Any] = {}
        # warm-up: CUDA context and kernels, not timed
        bq.run_flyrecon(npz, ReconSettings(num_epochs=2, device=Device.AUTO), "warm-up")
        for label, device in (("cpu", Device.CPU), ("cuda", Device.AUTO)):
            default = ReconSettings(device=device, threads=threads)
            out[f"flyrecon default, {label}"] = bq.run_flyrecon(npz, default, label).__dict__
            adam = ReconSettings(
                algorithm=Algorithm.ADAM, num_epochs=30, device=device, threads=threads
            )
            out[f"Adam 30 epochs, {label}"] = bq.run_flyrecon(npz, adam, label).__dict__
        with contextlib.suppress(ImportError):  # the peer only when the bench extra is in
            out["cdtools 30 epochs, cuda"] = bq.run_cdtools(
                npz, 30, threads, device="cuda"
            ).__dict__
    cpu = out["flyrecon default, cpu"]["seconds"]
    gpu = out["flyrecon default, cuda"]["seconds"]
    return {"gpu": name, "rows": out, "cpu_over_gpu": cpu / gpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dose", type=int, default=100000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.dose)
    if result["gpu"] is None:
        print("no CUDA device visible to torch: the CUDA path was not run (nothing to compare)")
        sys.exit(0)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    rows = [
        (
            k,
            f"{v['phase_ssim']:.3f} / {v['error']:.3f} / {v['seconds']:.1f}s ({v['epochs']} ep)",
            "",
        )
        for k, v in result["rows"].items()
    ]
    rows.append(
        ("flyrecon default: CPU seconds / GPU seconds", f"{result['cpu_over_gpu']:.1f}", "")
    )
    print_table(rows, f"CUDA path on {result['gpu']}: phase SSIM / complex error / seconds")


if __name__ == "__main__":
    main()
