"""`flyrecon prep-synthetic`: simulate the study's phase C and phase D datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from flyrecon.cli import _params as p
from flyrecon.cli._errors import err_console, handled
from flyrecon.cli._progress import step_bar
from flyrecon.options import PRESETS, Preset, ScanKind, SyntheticOptions

SIZE = "Sizes (override the preset)"
SEEDS = "Seeds (unset ones derive from --seed)"


def _preset_text() -> str:
    return "; ".join(
        f"{preset}: {v['object_px']} px object, {v['step_px']:g} px step, "
        f"{v['jitter_px']:g} px jitter"
        for preset, v in PRESETS.items()
    )


_D = SyntheticOptions(output_root=Path("."))


def prep_synthetic_command(
    output_root: Annotated[
        Path,
        typer.Option(
            "--output-root",
            metavar="DIR",
            help="Folder for phase_c/, phase_d/ and study.json.",
            show_default=False,
            parser=p.path_option,
        ),
    ],
    preset: Annotated[
        Preset,
        typer.Option(
            "--preset",
            metavar=p.choices(Preset),
            help=f"Sizes: quick (the demo and CI, ~200 patterns per split) or full (thousands "
            f"per split). {_preset_text()}.",
            case_sensitive=False,
        ),
    ] = _D.preset,
    dose: Annotated[
        list[int] | None,
        typer.Option(
            "--dose",
            metavar="PHOTONS",
            parser=p.parse_dose,
            help="Photons per pattern, 1000 or 1e3 alike; repeat for several [default: "
            + " ".join(f"{d:g}" for d in _D.doses)
            + "].",
            show_default=False,
        ),
    ] = None,
    fixture: Annotated[
        bool,
        typer.Option(
            "--fixture",
            help="The CI smoke layout of the project's first ticket: 8 patterns per file, a "
            "128 px object, simulated content.",
        ),
    ] = False,
    object_px: Annotated[
        int | None,
        typer.Option(
            "--object-px",
            min=16,
            metavar="PX",
            help="Object side [default: the preset's].",
            show_default=False,
            rich_help_panel=SIZE,
        ),
    ] = None,
    probe_px: Annotated[
        int | None,
        typer.Option(
            "--probe-px",
            min=8,
            metavar="PX",
            help=f"Probe window, even [default: {_D.probe_px}].",
            show_default=False,
            rich_help_panel=SIZE,
        ),
    ] = None,
    step_px: Annotated[
        float | None,
        typer.Option(
            "--step-px",
            min=0.1,
            metavar="PX",
            help="Scan step [default: the preset's].",
            show_default=False,
            rich_help_panel=SIZE,
        ),
    ] = None,
    jitter_px: Annotated[
        float | None,
        typer.Option(
            "--jitter-px",
            min=0.0,
            metavar="PX",
            help="Largest random offset of a raster position [default: the preset's].",
            show_default=False,
            rich_help_panel=SIZE,
        ),
    ] = None,
    scan: Annotated[
        ScanKind,
        typer.Option(
            "--scan",
            metavar=p.choices(ScanKind),
            help="Scan pattern of each split.",
            case_sensitive=False,
            rich_help_panel=SIZE,
        ),
    ] = _D.scan,
    dense_overlap: Annotated[
        float,
        typer.Option(
            "--dense-overlap",
            metavar="F",
            help="Overlap fraction of the dense view: positions at least (1 - F) probe "
            "diameters apart.",
        ),
    ] = _D.dense_overlap,
    sparse_overlap: Annotated[
        float,
        typer.Option("--sparse-overlap", metavar="F", help="The same for the sparse view."),
    ] = _D.sparse_overlap,
    min_positions: Annotated[
        int,
        typer.Option(
            "--min-positions", min=2, metavar="N", help="Fewest positions a view may keep."
        ),
    ] = _D.min_positions,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            min=0,
            metavar="N",
            help="Base seed of every random choice.",
            rich_help_panel=SEEDS,
        ),
    ] = _D.seed,
    object_seed: Annotated[
        int | None,
        typer.Option(
            "--object-seed",
            min=0,
            metavar="N",
            help="[default: derived from --seed]",
            show_default=False,
            rich_help_panel=SEEDS,
        ),
    ] = None,
    scan_seed: Annotated[
        int | None,
        typer.Option(
            "--scan-seed",
            min=0,
            metavar="N",
            help="[default: derived from --seed]",
            show_default=False,
            rich_help_panel=SEEDS,
        ),
    ] = None,
    noise_seed: Annotated[
        int | None,
        typer.Option(
            "--noise-seed",
            min=0,
            metavar="N",
            help="[default: derived from --seed]",
            show_default=False,
            rich_help_panel=SEEDS,
        ),
    ] = None,
    selection_seed: Annotated[
        int | None,
        typer.Option(
            "--selection-seed",
            min=0,
            metavar="N",
            help="[default: derived from --seed]",
            show_default=False,
            rich_help_panel=SEEDS,
        ),
    ] = None,
    probe_npz: Annotated[
        Path | None,
        typer.Option(
            "--probe-npz",
            metavar="NPZ",
            help="A measured probe (key probeGuess).",
            show_default=False,
            parser=p.path_option,
        ),
    ] = None,
    object_npz: Annotated[
        Path | None,
        typer.Option(
            "--object-npz",
            metavar="NPZ",
            help="An object (key objectGuess).",
            show_default=False,
            parser=p.path_option,
        ),
    ] = None,
    noiseless: Annotated[
        bool,
        typer.Option("--noiseless", help="Store sqrt(expected counts): no Poisson noise."),
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, metavar="N", help="Threads (same results).")
    ] = _D.workers,
    energy_ev: p.EnergyOpt = None,
    distance_m: p.DistanceOpt = None,
    pixel_size_m: p.PixelSizeOpt = None,
) -> None:
    """Simulate the study's data for each dose: phase C (the baseline view, every scan
    position of a split) and phase D (the dense and sparse overlap views), spatially split
    into train and test halves that share no object pixel.

    Writes ROOT/phase_c/dose_<int>/patched_<split>.npz,
    ROOT/phase_d/dose_<int>/<view>/<view>_<split>.npz (DATA-001 files: see
    docs/data-contract.md) and ROOT/study.json (design, seeds, version, SHA-256 of every
    file). Exit code 0 success, 2 invalid options or inputs.
    """
    from flyrecon.options import PhysicalGeometry
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
