"""Options shared by several commands, declared once as `Annotated` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flyrecon.options import (
    DEFAULT_BATCH_SIZE,
    MAX_DOSE,
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


def path_option(value: str | Path) -> Path:
    """A path given on the command line; an empty one (which would mean the current folder,
    whose files a job replaces) is a usage error."""
    if isinstance(value, Path):
        return value
    if not value.strip():
        raise typer.BadParameter("an empty path (write . for the current folder)")
    return Path(value)


def choices(enum: type) -> str:
    """A metavar listing an enum's values as they are written: [aLSQML|LSQML|...]."""
    return "[" + "|".join(str(member) for member in enum) + "]"


def _batch_defaults() -> str:
    by_size: dict[int, list[str]] = {}
    for algorithm, size in DEFAULT_BATCH_SIZE.items():
        by_size.setdefault(size, []).append(str(algorithm))
    parts = [f"{'/'.join(names)} {size}" for size, names in by_size.items()]
    return ", ".join(parts).replace(
        f"Adam {DEFAULT_BATCH_SIZE[Algorithm.ADAM]}", "Adam min(96, n/8)"
    )


AlgorithmOpt = Annotated[
    Algorithm,
    typer.Option(
        "--algorithm",
        help="Engine: aLSQML (accelerated LSQML, the default), LSQML (plain pty-chi, the "
        "study's classical baseline), DM, ePIE, rPIE or Adam (pty-chi's autodiff).",
        case_sensitive=False,
        metavar=choices(Algorithm),
        rich_help_panel=RECON,
    ),
]
EpochsOpt = Annotated[
    int | None,
    typer.Option(
        "--num-epochs",
        min=1,
        metavar="N",
        help="Run exactly N epochs [default: stop automatically, without the truth, once the "
        "fit falls below the data's Poisson noise floor or the object stops drifting; at most "
        "--max-epochs].",
        show_default=False,
        rich_help_panel=RECON,
    ),
]
MaxEpochsOpt = Annotated[
    int,
    typer.Option(
        "--max-epochs",
        min=1,
        metavar="N",
        help="Safety net of the automatic stop (without --num-epochs); caps each stage "
        "of a half-resolution start on its own.",
        rich_help_panel=RECON,
    ),
]
NImagesOpt = Annotated[
    int | None,
    typer.Option(
        "--n-images",
        min=2,
        metavar="N",
        help="Use the first N patterns [default: all; more than the file holds is an error].",
        show_default=False,
        rich_help_panel=RECON,
    ),
]
BatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        metavar="N",
        help=f"Patterns per update; aLSQML: at most N, in batches of equal size "
        f"[default: {_batch_defaults()}].",
        show_default=False,
        rich_help_panel=RECON,
    ),
]
DeviceOpt = Annotated[
    Device,
    typer.Option(
        "--device",
        help="Where to compute; auto takes CUDA when torch sees a GPU.",
        case_sensitive=False,
        metavar=choices(Device),
        rich_help_panel=RECON,
    ),
]
SeedOpt = Annotated[
    int,
    typer.Option(
        "--seed",
        min=0,
        metavar="N",
        help="Seed of pty-chi's random choices.",
        rich_help_panel=RECON,
    ),
]
ObjectInitOpt = Annotated[
    ObjectInit,
    typer.Option(
        "--object-init",
        help="ones: blind baseline; guess: start from objectGuess (not scored).",
        case_sensitive=False,
        metavar=choices(ObjectInit),
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
        metavar=choices(ProbeInit),
        rich_help_panel=RECON,
    ),
]
NoiseOpt = Annotated[
    NoiseModel,
    typer.Option(
        "--noise-model",
        help="Likelihood of the counts.",
        case_sensitive=False,
        metavar=choices(NoiseModel),
        rich_help_panel=RECON,
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        metavar="N",
        help="torch CPU threads [default: torch's, all cores]; 1 makes seeded runs bitwise "
        "repeatable.",
        show_default=False,
        rich_help_panel=RECON,
    ),
]
OutputDirOpt = Annotated[
    Path,
    typer.Option(
        "--output-dir",
        metavar="DIR",
        help="Folder for the results (created if missing).",
        parser=path_option,
    ),
]


def settings_from(params: dict[str, object]) -> ReconSettings:
    """`ReconSettings` from a command's parameters (pass `locals()`): every settings field is
    a parameter of the same name (tests/test_reconstruct_cli.py checks each command has them)."""
    return ReconSettings(**{name: params[name] for name in ReconSettings.model_fields})


UNITS = "Physical units (for the ptychodus product)"
_GEOMETRY = PhysicalGeometry()
EnergyOpt = Annotated[
    float | None,
    typer.Option(
        "--energy-ev",
        min=0.0,
        metavar="EV",
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
        metavar="M",
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
        metavar="M",
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


DEFAULTS = _DEFAULTS


def parse_dose(value: str) -> int:
    """A dose in photons per pattern, written 1000 or 1e3 alike (a whole number >= 1)."""
    try:
        number = float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number") from None
    if not 1 <= number <= MAX_DOSE or number != int(number):
        raise typer.BadParameter(
            f"{value!r}: a dose is a whole number of photons from 1 to {MAX_DOSE:.0e}"
        )
    return int(number)
