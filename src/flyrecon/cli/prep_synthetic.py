"""`flyrecon prep-synthetic`: simulate the study's phase C and phase D datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flyrecon.cli import _params as p
from flyrecon.cli._errors import err_console, handled
from flyrecon.cli._progress import step_bar

SIZE = "Sizes (override the preset)"
SEEDS = "Seeds (unset ones derive from --seed)"


def prep_synthetic_command(
    output_root: Annotated[
        Path,
        typer.Option(
            "--output-root",
            help="Folder for phase_c/, phase_d/ and study.json.",
            show_default=False,
        ),
    ],
    preset: Annotated[
        str, typer.Option("--preset", help="quick (demo, CI) or full (thousands per split).")
    ] = "quick",
    dose: Annotated[
        list[float] | None,
        typer.Option(
            "--dose", help="Photons per pattern; repeat for several [default: 1e3 1e4 1e5]."
        ),
    ] = None,
    fixture: Annotated[
        bool,
        typer.Option("--fixture", help="The seed ticket's minimal layout (8 patterns per file)."),
    ] = False,
    object_px: Annotated[
        int | None, typer.Option("--object-px", min=16, help="Object side.", rich_help_panel=SIZE)
    ] = None,
    probe_px: Annotated[
        int | None,
        typer.Option(
            "--probe-px", min=8, help="Probe window (even) [default: 64].", rich_help_panel=SIZE
        ),
    ] = None,
    step_px: Annotated[
        float | None,
        typer.Option("--step-px", min=0.1, help="Scan step.", rich_help_panel=SIZE),
    ] = None,
    jitter_px: Annotated[
        float | None,
        typer.Option("--jitter-px", min=0.0, help="Raster jitter.", rich_help_panel=SIZE),
    ] = None,
    scan: Annotated[
        str, typer.Option("--scan", help="raster or fermat.", rich_help_panel=SIZE)
    ] = "raster",
    dense_overlap: Annotated[
        float, typer.Option("--dense-overlap", help="Overlap fraction f of the dense view.")
    ] = 0.7,
    sparse_overlap: Annotated[
        float, typer.Option("--sparse-overlap", help="Overlap fraction f of the sparse view.")
    ] = 0.2,
    min_positions: Annotated[
        int, typer.Option("--min-positions", min=2, help="Fewest positions a view may keep.")
    ] = 8,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Base seed.", rich_help_panel=SEEDS)
    ] = 0,
    object_seed: Annotated[
        int | None, typer.Option("--object-seed", min=0, rich_help_panel=SEEDS)
    ] = None,
    scan_seed: Annotated[
        int | None, typer.Option("--scan-seed", min=0, rich_help_panel=SEEDS)
    ] = None,
    noise_seed: Annotated[
        int | None, typer.Option("--noise-seed", min=0, rich_help_panel=SEEDS)
    ] = None,
    selection_seed: Annotated[
        int | None, typer.Option("--selection-seed", min=0, rich_help_panel=SEEDS)
    ] = None,
    probe_npz: Annotated[
        Path | None, typer.Option("--probe-npz", help="Measured probe (key probeGuess).")
    ] = None,
    object_npz: Annotated[
        Path | None, typer.Option("--object-npz", help="Object (key objectGuess).")
    ] = None,
    noiseless: Annotated[
        bool, typer.Option("--noiseless", help="Store sqrt(expected counts), no Poisson noise.")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Threads.")] = 2,
    energy_ev: p.EnergyOpt = None,
    distance_m: p.DistanceOpt = None,
    pixel_size_m: p.PixelSizeOpt = None,
) -> None:
    """Simulate phase C (patched_{train,test}) and phase D (dense, sparse views) for each dose.

    Writes <root>/phase_c/dose_<int>/patched_<split>.npz,
    <root>/phase_d/dose_<int>/<view>/<view>_<split>.npz and <root>/study.json (design, seeds,
    version, SHA-256 of every file). Exit code 0 success, 2 invalid options or inputs.
    """
    from flyrecon.options import PhysicalGeometry, SyntheticOptions
    from flyrecon.synthetic import prepare_study

    given: dict[str, Any] = {
        "object_px": object_px,
        "probe_px": probe_px,
        "step_px": step_px,
        "jitter_px": jitter_px,
        "object_seed": object_seed,
        "scan_seed": scan_seed,
        "noise_seed": noise_seed,
        "selection_seed": selection_seed,
        "doses": tuple(dose) if dose else None,
    }
    with handled():
        options = SyntheticOptions(
            output_root=output_root,
            preset=preset,
            scan=scan,
            dense_overlap=dense_overlap,
            sparse_overlap=sparse_overlap,
            min_positions=min_positions,
            seed=seed,
            probe_npz=probe_npz,
            object_npz=object_npz,
            fixture=fixture,
            noiseless=noiseless,
            workers=workers,
            geometry=p.geometry_from(energy_ev, distance_m, pixel_size_m) or PhysicalGeometry(),
            **{k: v for k, v in given.items() if v is not None},
        )
    with handled(), step_bar("simulating") as on_step:
        result = prepare_study(options, progress=on_step)
    _summary(result)
    err_console.print(f"[green]done[/] {len(result.files)} files; design in {result.study_json}")


def _summary(result: Any) -> None:
    """Per dose and view: patterns per split, spacing threshold, acceptance."""
    from rich.table import Table

    counts = {(c.view, c.split): c for c in result.counts}
    table = Table(title=f"prep-synthetic (probe diameter {result.probe_diameter_px:.1f} px)")
    for col in ("dose", "view", "train", "test", "min spacing px", "accepted"):
        table.add_column(col, justify="right" if col not in ("view",) else "left")
    for dose in result.doses:
        for view in ("baseline", "dense", "sparse"):
            train, test = counts[view, "train"], counts[view, "test"]
            spacing = "-" if train.min_spacing_px is None else f"{train.min_spacing_px:.1f}"
            accepted = (train.kept + test.kept) / (train.candidates + test.candidates)
            table.add_row(
                str(dose), view, str(train.kept), str(test.kept), spacing, f"{accepted:.0%}"
            )
    err_console.print(table)
