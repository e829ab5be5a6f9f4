"""`flyrecon export`: ptychodus products for an existing study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flyrecon.cli import _params as p
from flyrecon.cli._errors import err_console, handled


def export_command(
    artifact_root: Annotated[
        Path,
        typer.Option(
            "--artifact-root",
            metavar="DIR",
            help="A study-run artifact root.",
            show_default=False,
            parser=p.path_option,
        ),
    ],
    energy_ev: p.EnergyOpt = None,
    distance_m: p.DistanceOpt = None,
    pixel_size_m: p.PixelSizeOpt = None,
) -> None:
    """Write ptychodus_product.h5 (ptychodus 1.7's product layout) into every succeeded
    job's folder, from its result and its input; reconstructs nothing.

    Example: flyrecon export --artifact-root demo/reconstructions
    """
    from flyrecon.export import export_study

    with handled():
        result = export_study(artifact_root, p.geometry_from(energy_ev, distance_m, pixel_size_m))
    for line in result.skipped:
        err_console.print(f"skipped {line}", markup=False)
    err_console.print(f"[green]done[/] {len(result.written)} product(s) written")
