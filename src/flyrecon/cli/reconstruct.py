"""`flyrecon reconstruct`: one pty-chi reconstruction of a DATA-001 NPZ."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from flyrecon.cli import _params as p
from flyrecon.cli._errors import err_console, fail, handled
from flyrecon.cli._progress import epoch_progress as _epochs
from flyrecon.options import ReconstructOptions

D = p.DEFAULTS


def reconstruct_command(
    input_npz: Annotated[
        Path,
        typer.Option(
            "--input-npz",
            metavar="NPZ",
            help="The DATA-001 file to reconstruct (diffraction amplitudes, probeGuess, "
            "objectGuess, xcoords/ycoords; see docs/data-contract.md).",
            show_default=False,
            parser=p.path_option,
        ),
    ],
    output_dir: p.OutputDirOpt = Path("flyrecon_out"),
    algorithm: p.AlgorithmOpt = D.algorithm,
    num_epochs: p.EpochsOpt = None,
    max_epochs: p.MaxEpochsOpt = D.max_epochs,
    n_images: p.NImagesOpt = D.n_images,
    batch_size: p.BatchOpt = D.batch_size,
    device: p.DeviceOpt = D.device,
    seed: p.SeedOpt = 0,
    object_init: p.ObjectInitOpt = D.object_init,
    probe_init: p.ProbeInitOpt = D.probe_init,
    noise_model: p.NoiseOpt = D.noise_model,
    threads: p.ThreadsOpt = D.threads,
    energy_ev: p.EnergyOpt = None,
    distance_m: p.DistanceOpt = None,
    pixel_size_m: p.PixelSizeOpt = None,
) -> None:
    """Reconstruct a DATA-001 NPZ with pty-chi (blind object start by default).

    DATA-001 is the study's NPZ layout: measured diffraction amplitudes, the probe and object
    guesses (objectGuess is the truth for simulated data) and the probe positions.

    Writes ptychi_reconstruction.npz, ptychodus_product.h5 (for ptychodus),
    reconstruction.png, reconstruct.log, result.json and, when the file holds the true
    object, metrics.json. Exit code 0 success, 1 the reconstruction failed, 2 invalid input,
    130 Ctrl-C, 143 SIGTERM (neither leaves output behind).
    """
    from flyrecon.reconstruct import reconstruct

    with handled():
        settings = p.settings_from(locals())
        options = ReconstructOptions(
            input_npz=input_npz,
            output_dir=output_dir,
            settings=settings,
            geometry=p.geometry_from(energy_ev, distance_m, pixel_size_m),
        )
    with handled(), _epochs() as on_epoch:
        result = reconstruct(options, on_epoch=on_epoch)
    for doubt in result.doubts:
        err_console.print(f"[yellow]warning:[/] {escape(doubt)}")
    if not result.ok:
        raise fail(result.message, result.returncode, result.traceback)
    err_console.print(f"[green]done[/] {result.message}")
    err_console.print(f"results in {result.output_dir}")
