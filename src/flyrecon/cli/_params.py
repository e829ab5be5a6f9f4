"""Options shared by several commands, declared once as `Annotated` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flyrecon.options import (
    Algorithm,
    Device,
    NoiseModel,
    ObjectInit,
    PhysicalGeometry,
    ProbeInit,
    ReconSettings,
)

_DEFAULTS = ReconSettings()
RECON = "Reconstruction settings"

AlgorithmOpt = Annotated[
    Algorithm,
    typer.Option(
        "--algorithm", help="pty-chi engine.", case_sensitive=False, rich_help_panel=RECON
    ),
]
EpochsOpt = Annotated[
    int | None,
    typer.Option(
        "--num-epochs",
        min=1,
        help="Exactly this many epochs [default: stop automatically once the fit reaches the "
        "data's Poisson noise floor, at most --max-epochs].",
        show_default=False,
        rich_help_panel=RECON,
    ),
]
MaxEpochsOpt = Annotated[
    int,
    typer.Option(
        "--max-epochs",
        min=1,
        help="Cap on epochs when stopping automatically (no --num-epochs).",
        rich_help_panel=RECON,
    ),
]
NImagesOpt = Annotated[
    int | None,
    typer.Option(
        "--n-images",
        min=2,
        help="Use the first N patterns (default: all; more than the file holds is an error).",
        rich_help_panel=RECON,
    ),
]
BatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        help="Patterns per update [default: LSQML 32, DM 64, ePIE/rPIE 8, Adam min(96, n/8)].",
        rich_help_panel=RECON,
    ),
]
DeviceOpt = Annotated[
    Device,
    typer.Option(
        "--device",
        help="auto takes CUDA when torch sees a GPU.",
        case_sensitive=False,
        rich_help_panel=RECON,
    ),
]
SeedOpt = Annotated[
    int,
    typer.Option("--seed", min=0, help="Seed of pty-chi's random choices.", rich_help_panel=RECON),
]
ObjectInitOpt = Annotated[
    ObjectInit,
    typer.Option(
        "--object-init",
        help="ones: blind baseline; guess: start from objectGuess.",
        case_sensitive=False,
        rich_help_panel=RECON,
    ),
]
ProbeInitOpt = Annotated[
    ProbeInit,
    typer.Option(
        "--probe-init",
        help="guess: probeGuess as stored; scaled: probeGuess scaled to the data's power; "
        "data: from the mean diffraction amplitude.",
        case_sensitive=False,
        rich_help_panel=RECON,
    ),
]
NoiseOpt = Annotated[
    NoiseModel,
    typer.Option(
        "--noise-model",
        help="Likelihood of the counts.",
        case_sensitive=False,
        rich_help_panel=RECON,
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="torch CPU threads (1 makes seeded runs bitwise repeatable).",
        rich_help_panel=RECON,
    ),
]
UNITS = "Physical units (for the ptychodus product)"
_GEOMETRY = PhysicalGeometry()
EnergyOpt = Annotated[
    float | None,
    typer.Option(
        "--energy-ev",
        min=0.0,
        help=f"Photon energy in eV, when the input records none "
        f"[default: {_GEOMETRY.photon_energy_ev:g}].",
        show_default=False,
        rich_help_panel=UNITS,
    ),
]
DistanceOpt = Annotated[
    float | None,
    typer.Option(
        "--distance-m",
        min=0.0,
        help=f"Sample-detector distance in m, when the input records none "
        f"[default: {_GEOMETRY.detector_distance_m:g}].",
        show_default=False,
        rich_help_panel=UNITS,
    ),
]
PixelSizeOpt = Annotated[
    float | None,
    typer.Option(
        "--pixel-size-m",
        min=0.0,
        help=f"Detector pixel size in m, when the input records none "
        f"[default: {_GEOMETRY.detector_pixel_m:g}]; the object pixel is wavelength x "
        "distance / (N x detector pixel).",
        show_default=False,
        rich_help_panel=UNITS,
    ),
]


def geometry_from(
    energy_ev: float | None, distance_m: float | None, pixel_size_m: float | None
) -> PhysicalGeometry | None:
    """The geometry the flags give (unset ones take the defaults), or None when none is set."""
    given = {
        "photon_energy_ev": energy_ev,
        "detector_distance_m": distance_m,
        "detector_pixel_m": pixel_size_m,
    }
    given = {k: v for k, v in given.items() if v is not None}
    return PhysicalGeometry(**given) if given else None


OutputDirOpt = Annotated[
    Path, typer.Option("--output-dir", help="Folder for the results (created if missing).")
]


def settings_from(params: dict[str, object]) -> ReconSettings:
    """`ReconSettings` from a command's parameters (pass `locals()`): every settings field is
    a parameter of the same name (tests/test_reconstruct_cli.py checks each command has them)."""
    return ReconSettings(**{name: params[name] for name in ReconSettings.model_fields})


DEFAULTS = _DEFAULTS
