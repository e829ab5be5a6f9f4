"""Typed options shared by every command: defined once, validated by pydantic.

`ReconSettings` holds everything that decides how one reconstruction runs; `reconstruct`
takes it together with its input and output paths, and `study-run` applies the same settings
to every job of its matrix, so one study job equals one `flyrecon reconstruct` call.
`SyntheticOptions` decides a `prep-synthetic` study.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Algorithm(StrEnum):
    """Reconstruction engines (all pty-chi)."""

    ALSQML = "aLSQML"
    """Accelerated LSQML: pty-chi's LSQML epochs with Nesterov extrapolation of the object
    between epochs (adaptive restart); the default. See `flyrecon.convergence`."""
    LSQML = "LSQML"
    """Plain pty-chi least-squares maximum likelihood: the study's classical baseline."""
    DM = "DM"
    """Difference map."""
    EPIE = "ePIE"
    """Extended ptychographic iterative engine."""
    RPIE = "rPIE"
    """Regularised PIE (alpha 0.3, batches of 8: pty-chi's alpha 0.1 diverges)."""
    ADAM = "Adam"
    """pty-chi's automatic-differentiation engine with the Adam optimiser."""


class Device(StrEnum):
    """Where the reconstruction runs; `auto` takes CUDA when torch sees a GPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class ObjectInit(StrEnum):
    """Initial object: `ones` is the blind baseline; `guess` starts from objectGuess."""

    ONES = "ones"
    GUESS = "guess"


class ProbeInit(StrEnum):
    """Initial probe.

    `guess`: probeGuess as stored. `scaled`: probeGuess rescaled so that its far-field power
    matches the mean measured counts (gradient engines need this; LSQML rescales by itself).
    `data`: a blind start, the inverse transform of the mean diffraction amplitude.
    """

    GUESS = "guess"
    SCALED = "scaled"
    DATA = "data"


class NoiseModel(StrEnum):
    """Likelihood of the measured counts (LSQML's noise model; the Adam engine's loss)."""

    GAUSSIAN = "gaussian"
    POISSON = "poisson"


DEFAULT_BATCH_SIZE: dict[Algorithm, int] = {
    Algorithm.ALSQML: 64,
    Algorithm.LSQML: 64,
    Algorithm.DM: 64,
    Algorithm.EPIE: 8,
    Algorithm.RPIE: 8,
    Algorithm.ADAM: 96,
}
"""Batch size per algorithm when none is given: the PIE family diverges with large batches;
LSQML's 64 gave the best quality per second (docs/performance.md: 32 costs 20 % more per
epoch, 128 loses quality at high dose). For Adam this is a cap: with no `batch_size` given, a
batch is also at most an eighth of the patterns, so a small scan still gets at least 8 updates
per epoch."""


MAX_DOSE = 10**18
"""Photons per pattern: beyond this a pixel's expected count leaves the range numpy's Poisson
sampler accepts."""
MAX_SEED = 2**32 - 1
"""Seeds are 32-bit unsigned integers (what numpy, torch and pty-chi all accept)."""
MAX_THREADS = 1024
"""More torch threads than this cannot be started on any machine flyrecon targets."""


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )

    @model_validator(mode="after")
    def _paths_are_text(self) -> Self:
        """Paths must be Unicode text: undecodable bytes (kept as lone surrogates) cannot be
        written into the JSON records or the log."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Path):
                try:
                    str(value).encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(f"{name}: {str(value)!a} is not valid UTF-8") from None
        return self


class ReconSettings(_Model):
    """How one reconstruction runs. Every field maps to one `reconstruct` flag."""

    algorithm: Algorithm = Algorithm.ALSQML
    """Engine. aLSQML (pty-chi LSQML with the object extrapolated between epochs) reaches
    plain LSQML's best quality in a fraction of its time (docs/performance.md), so it is the
    default; LSQML is plain pty-chi, the study's classical baseline."""
    num_epochs: int | None = Field(default=None, ge=1, le=100_000)
    """Exactly this many epochs. None (the default) stops automatically, without any truth:
    at the first epoch whose amplitude error reaches the error Poisson noise alone leaves
    (more epochs would fit the noise), or once the object has stopped drifting and only
    jitters (the last iterates are then averaged), or after `max_epochs`."""
    max_epochs: int = Field(default=300, ge=1, le=100_000)
    """Safety net of the automatic stop: it does not bind when the run converges. It caps
    each stage of a half-resolution start (`flyrecon.coarse`) on its own."""
    n_images: int | None = Field(default=None, ge=2)
    """Use the first n patterns; None uses all. More than the file holds is an error."""
    batch_size: int | None = Field(default=None, ge=1)
    """Patterns per update; None takes the algorithm's default (`DEFAULT_BATCH_SIZE`). aLSQML
    takes it as a most and splits the patterns into batches of equal size (65 patterns in
    batches of at most 64: 33 + 32; `engine.balanced_batch_size`)."""
    device: Device = Device.AUTO
    """Compute device."""
    seed: int | None = Field(default=0, ge=0, le=MAX_SEED)
    """Seed for pty-chi's random choices (batching); None leaves it unseeded."""
    object_init: ObjectInit = ObjectInit.ONES
    """Initial object policy."""
    probe_init: ProbeInit = ProbeInit.SCALED
    """Initial probe policy. `scaled` (probeGuess with its power matched to the data) by
    default: gradient engines do not rescale the probe and lose much quality without it; LSQML
    rescales the probe itself, so the policy does not change it."""
    noise_model: NoiseModel = NoiseModel.GAUSSIAN
    """Noise model of the measured intensities."""
    threads: int | None = Field(default=None, ge=1, le=MAX_THREADS)
    """torch CPU threads; None keeps torch's default. One thread makes seeded runs bitwise
    repeatable."""

    @property
    def effective_batch_size(self) -> int:
        """The batch size used: the given one, else the algorithm's default."""
        return self.batch_size or DEFAULT_BATCH_SIZE[self.algorithm]


PLANCK_EV_M = 1.239841984e-6
"""h c in eV m: wavelength_m = PLANCK_EV_M / photon_energy_ev."""


class PhysicalGeometry(_Model):
    """The far-field geometry DATA-001 does not carry: what turns pixels into metres.

    The object pixel is wavelength x detector distance / (N x detector pixel) for N x N
    patterns. prep-synthetic records it in each file's metadata (`geometry`); reconstruct
    uses the recorded one, else these values (the flags `--energy-ev`, `--distance-m`,
    `--pixel-size-m`). The defaults (10 keV, 2 m, 75 um pixels: an Eiger-like detector) are
    stated in every ptychodus product's comments when they were used.
    """

    photon_energy_ev: float = Field(default=10_000.0, ge=1e-3, le=1e7)
    """From the far infrared (visible-light ptychography uses 1.6-3.3 eV) to gamma rays;
    beyond, the units are wrong."""
    detector_distance_m: float = Field(default=2.0, ge=1e-6, le=1e3)
    detector_pixel_m: float = Field(default=75e-6, ge=1e-8, le=1e-1)

    @property
    def wavelength_m(self) -> float:
        return PLANCK_EV_M / self.photon_energy_ev

    def object_pixel_m(self, pattern_px: int) -> float:
        """The object (and probe) pixel size for N x N patterns."""
        return self.wavelength_m * self.detector_distance_m / (pattern_px * self.detector_pixel_m)


class ReconstructOptions(_Model):
    """One reconstruction: its input file, its output folder and its settings."""

    input_npz: Path
    output_dir: Path
    settings: ReconSettings = ReconSettings()
    log_name: str = "reconstruct.log"
    """Name of the log file written in `output_dir`."""
    geometry: PhysicalGeometry | None = None
    """Physical units for the ptychodus product when the input records none (None: the
    defaults of `PhysicalGeometry`). Does not change the reconstruction."""

    @model_validator(mode="after")
    def _log_name_is_a_plain_name(self) -> ReconstructOptions:
        if Path(self.log_name).name != self.log_name or self.log_name in {"", ".", ".."}:
            raise ValueError(f"log_name must be a plain file name, got {self.log_name!r}")
        return self


class View(StrEnum):
    """Study views: `baseline` is phase C (every position of the split); the others phase D."""

    BASELINE = "baseline"
    DENSE = "dense"
    SPARSE = "sparse"


class Split(StrEnum):
    """Spatial halves of the object: `train` (top) and `test` (bottom)."""

    TRAIN = "train"
    TEST = "test"


class Executor(StrEnum):
    """Where study jobs run."""

    LOCAL = "local"
    DASK = "dask"


class StudyOptions(_Model):
    """The dose x view x split study: where inputs live, what to run, and how."""

    phase_c_root: Path
    phase_d_root: Path
    artifact_root: Path
    doses: tuple[int, ...] = ()
    """Keep only these doses (photons per pattern); empty keeps every dose found."""
    views: tuple[View, ...] = ()
    """Keep only these views; empty keeps all three."""
    splits: tuple[Split, ...] = ()
    """Keep only these splits; empty keeps both."""
    allow_missing_phase_d: bool = False
    """Record a missing phase D input as a skip instead of failing."""
    force: bool = False
    """Rerun jobs whose outputs are complete and current."""
    executor: Executor = Executor.LOCAL
    """Where jobs run: `local` (this machine) or `dask` (a Dask cluster)."""
    jobs: int = Field(default=1, ge=1)
    """Local executor: jobs at once, each in its own worker process (1: in this process)."""
    scheduler_address: str | None = None
    """Dask: join the cluster of this scheduler (tcp://host:port)."""
    workers: int | None = Field(default=None, ge=1)
    """Dask: start a LocalCluster of this many single-threaded worker processes."""
    settings: ReconSettings = ReconSettings()
    geometry: PhysicalGeometry | None = None
    """Physical units for inputs that record none (see `ReconstructOptions.geometry`)."""

    @model_validator(mode="after")
    def _jobs_are_local(self) -> StudyOptions:
        if self.jobs > 1 and self.executor == Executor.DASK:
            raise ValueError("jobs: --jobs runs jobs on this machine; with Dask use --workers")
        return self


# --- prep-synthetic --------------------------------------------------------------------


class Preset(StrEnum):
    """Dataset sizes: `quick` for demos and CI, `full` for the study's real scale."""

    QUICK = "quick"
    FULL = "full"


class ScanKind(StrEnum):
    """Scan pattern of each split: a jittered raster or a Fermat spiral."""

    RASTER = "raster"
    FERMAT = "fermat"


PRESETS: dict[Preset, dict[str, Any]] = {
    Preset.QUICK: {"object_px": 216, "step_px": 6.0, "jitter_px": 1.0},
    Preset.FULL: {"object_px": 536, "step_px": 5.0, "jitter_px": 1.0},
}
"""Values a preset gives to the options left unset."""

_SEED_PURPOSES = ("object", "scan", "noise", "selection")
FIXTURE_PROBE_PX = 64
"""The seed ticket's fixture layout: a 64 px probe (and a 128 px object)."""


class SyntheticOptions(_Model):
    """Everything that decides a synthetic study (`prep-synthetic`); unset sizes come from the
    preset."""

    output_root: Path
    preset: Preset = Preset.QUICK
    object_px: int = Field(default=None, ge=16)  # type: ignore[assignment]
    """Side of the square procedural object (ignored with `object_npz`)."""
    probe_px: int = Field(default=64, ge=8)
    """Side of the probe window (even; a `probe_npz` must match)."""
    step_px: float = Field(default=None, gt=0)  # type: ignore[assignment]
    """Raster step, or the mean spacing of the Fermat spiral."""
    jitter_px: float = Field(default=None, ge=0)  # type: ignore[assignment]
    """Uniform random offset of each raster position, at most this many pixels."""
    scan: ScanKind = ScanKind.RASTER
    doses: tuple[int, ...] = Field(default=(1_000, 10_000, 100_000), min_length=1)
    """Mean expected photons per pattern; one `dose_<int>` folder each."""
    dense_overlap: float = Field(default=0.7, ge=0, lt=1)
    sparse_overlap: float = Field(default=0.2, ge=0, lt=1)
    min_positions: int = Field(default=8, ge=2)
    """A view keeping fewer positions than this in a split is an error."""
    seed: int = Field(default=0, ge=0)
    """Base seed; each unset purpose seed derives from it."""
    object_seed: int | None = Field(default=None, ge=0)
    scan_seed: int | None = Field(default=None, ge=0)
    noise_seed: int | None = Field(default=None, ge=0)
    selection_seed: int | None = Field(default=None, ge=0)
    probe_npz: Path | None = None
    """Measured probe: key `probeGuess` of this NPZ (normalised to unit power)."""
    object_npz: Path | None = None
    """Object: key `objectGuess` of this NPZ."""
    fixture: bool = False
    """Write the seed ticket's minimal layout (8 patterns per file), simulated."""
    noiseless: bool = False
    """Store sqrt(expected counts) instead of Poisson samples (for checks)."""
    compress: bool = True
    workers: int = Field(default=2, ge=1)
    """Threads for the FFT and Poisson chunks (the results do not depend on it)."""
    geometry: PhysicalGeometry = PhysicalGeometry()
    """The physical geometry recorded in every file's metadata (photon energy, detector
    distance and pixel; the object pixel follows)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            preset = Preset(data.get("preset") or Preset.QUICK)
            data = {**data, "preset": preset}
            for key, value in PRESETS[preset].items():
                if data.get(key) is None:
                    data[key] = value
        return data

    @model_validator(mode="after")
    def _check(self) -> SyntheticOptions:
        if self.probe_px % 2:
            raise ValueError(f"probe_px must be even, got {self.probe_px}")
        if len(set(self.doses)) != len(self.doses):
            raise ValueError(f"doses must be distinct, got {list(self.doses)}")
        if any(not 1 <= d <= MAX_DOSE for d in self.doses):
            raise ValueError(f"doses must lie from 1 to {MAX_DOSE:.0e} photons per pattern")
        if self.fixture and (self.probe_npz or self.object_npz):
            raise ValueError("--fixture uses its own 128 px object and 64 px probe")
        if self.fixture and self.probe_px != FIXTURE_PROBE_PX:
            raise ValueError(f"--fixture needs probe_px {FIXTURE_PROBE_PX}")
        if self.dense_overlap <= self.sparse_overlap:
            raise ValueError(
                f"dense_overlap ({self.dense_overlap}) must be larger than sparse_overlap "
                f"({self.sparse_overlap})"
            )
        return self

    def seeds(self) -> dict[str, int]:
        """The seed of each purpose: the given one, else derived from `seed` (recorded)."""
        import numpy as np

        out = {}
        for index, purpose in enumerate(_SEED_PURPOSES):
            given = getattr(self, f"{purpose}_seed")
            derived = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
            out[purpose] = derived if given is None else given
        return out
