"""The GPU path's failure modes, with torch's CUDA calls stood in (no GPU here): a GPU torch
counts but cannot use, and memory running out, end as one-line errors or go to the CPU."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import flyrecon.engine as engine
from flyrecon import convergence
from flyrecon.errors import ReconstructionError
from flyrecon.options import Device, ReconSettings, ReconstructOptions
from flyrecon.reconstruct import reconstruct

BUSY = (
    "CUDA error: CUDA-capable device(s) is/are busy or unavailable\n"
    "CUDA kernel errors might be asynchronously reported at some other API call"
)


@pytest.fixture
def busy_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch counts a GPU, but creating its context fails (exclusive mode, held elsewhere)."""

    def refuse() -> None:
        raise RuntimeError(BUSY)

    monkeypatch.setattr(engine, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", refuse)


@pytest.mark.usefixtures("busy_gpu")
def test_an_unusable_gpu_sends_auto_to_the_cpu_and_fails_cuda_in_one_line() -> None:
    device, note = engine.usable_device(Device.AUTO)
    assert device == "cpu"
    assert note.startswith("the GPU cannot be used (RuntimeError: CUDA error: CUDA-capable")
    assert "\n" not in note
    with pytest.raises(ReconstructionError) as caught:
        engine.usable_device(Device.CUDA)
    assert "\n" not in str(caught.value) and "busy or unavailable" in str(caught.value)
    assert engine.usable_device(Device.CPU) == ("cpu", "")


@pytest.mark.slow
@pytest.mark.usefixtures("busy_gpu")
def test_auto_on_an_unusable_gpu_reconstructs_on_the_cpu_and_says_so(
    tiny_npz: Path, tmp_path: Path
) -> None:
    settings = ReconSettings(device=Device.AUTO, num_epochs=2, threads=1)
    result = reconstruct(
        ReconstructOptions(input_npz=tiny_npz, output_dir=tmp_path, settings=settings)
    )
    assert result.ok, result.message
    assert result.device == "cpu"
    assert result.stop_reason.startswith("the GPU cannot be used (RuntimeError: CUDA error")


CPU_EXHAUSTED = (
    "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 4294967296 bytes."
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"),
            "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB more",
        ),
        (RuntimeError(CPU_EXHAUSTED), f"RuntimeError: {CPU_EXHAUSTED}"),
    ],
)
def test_running_out_of_memory_in_a_run_is_a_one_line_failure(
    tiny_npz: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    message: str,
) -> None:
    """flyrecon's own per-epoch copies (iterate window, drift, momentum) can exhaust a GPU."""

    def exhausted(self, x) -> None:
        raise error

    monkeypatch.setattr(convergence.IterateWindow, "push", exhausted)
    settings = ReconSettings(device=Device.CPU, threads=1)
    result = reconstruct(
        ReconstructOptions(input_npz=tiny_npz, output_dir=tmp_path, settings=settings)
    )
    assert (result.returncode, result.message) == (1, f"out of memory: {message}")
    assert not (tmp_path / "ptychi_reconstruction.npz").exists()


def test_patterns_that_do_not_fit_on_the_gpu_stay_on_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Other jobs on the GPU can take the memory `data_fits_on_device` saw free."""
    import ptychi.api.task

    tries: list[bool] = []

    def task(options, **arrays):
        tries.append(options.data_options.save_data_on_device)
        if options.data_options.save_data_on_device:
            raise torch.OutOfMemoryError("CUDA out of memory")
        bounds = SimpleNamespace(tensor=torch.tensor([0, 8, 0, 8]))
        group = SimpleNamespace(object=SimpleNamespace(roi_bbox=bounds))
        return SimpleNamespace(reconstructor=SimpleNamespace(parameter_group=group))

    engine.import_ptychi()
    monkeypatch.setattr(ptychi.api.task, "PtychographyTask", task)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    options = engine.build_options(ReconSettings(), "cpu", 16)
    options.data_options.save_data_on_device = True
    inp = engine.EngineInput(
        intensities=np.zeros((16, 8, 8), np.float32),
        positions_px=np.zeros((16, 2)),
        object_init=np.ones((16, 16), np.complex64),
        probe_init=np.ones((8, 8), np.complex64),
    )
    engine.new_task(options, inp)
    assert tries == [True, False]
    with pytest.raises(torch.OutOfMemoryError):  # already on the host: nothing left to try
        monkeypatch.setattr(ptychi.api.task, "PtychographyTask", _refuse)
        engine.new_task(options, inp)


def _refuse(options, **arrays) -> None:
    raise torch.OutOfMemoryError("CUDA out of memory")


@pytest.mark.parametrize(("count", "chosen"), [(3, [0, 1, 2, 0, 1]), (1, []), (0, [])])
def test_study_workers_take_the_gpus_in_turn(
    monkeypatch: pytest.MonkeyPatch, count: int, chosen: list[int]
) -> None:
    from flyrecon.study.executors.processes import use_gpu_of_slot

    picked: list[int] = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_device", picked.append)
    for slot in range(5):
        use_gpu_of_slot(slot)
    assert picked == chosen


def test_a_worker_whose_gpu_cannot_be_chosen_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from flyrecon.study.executors.processes import use_gpu_of_slot

    def broken() -> int:
        raise RuntimeError(BUSY)

    monkeypatch.setattr(torch.cuda, "device_count", broken)
    use_gpu_of_slot(1)  # the run itself reports the GPU (`engine.usable_device`)
