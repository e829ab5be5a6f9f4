"""`prep-synthetic`: simulate the dose/overlap study's phase C and phase D datasets.

Pure numpy (no pty-chi, torch or matplotlib). One object, probe and scan serve every dose;
only the Poisson noise differs. The expected intensities of each split are computed once;
the doses are then sampled and written one at a time, so memory does not grow with the number
of doses. See docs/synthetic-data.md for the physics, seeds, presets and layout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from flyrecon import __version__, layout, simulate
from flyrecon.atomic import unwritable_dir_reason, write_json
from flyrecon.data import MAX_AMPLITUDE, PtychoDataset, load_complex_array, save_dataset
from flyrecon.errors import InputError
from flyrecon.hashing import file_sha256
from flyrecon.memory import check_memory
from flyrecon.options import FIXTURE_PROBE_PX, ScanKind, SyntheticOptions

SPLITS = ("train", "test")
"""Spatial halves: train is the top half of the object (small y), test the bottom half."""
VIEWS = ("dense", "sparse")
"""Phase D views (phase C is the `baseline` view: every position of the split)."""
PROBE_POWER_FRACTION = 0.9
"""The probe diameter is the disc about the intensity centroid holding this power fraction."""
CHUNK_PATTERNS = 256
"""Patterns per chunk: bounds memory and fixes the noise streams (one generator per chunk)."""
COMPRESS_LEVEL = 1
"""zlib level of the NPZ members (Y, complex ground truth, is stored uncompressed)."""
FIXTURE_OBJECT_PX = 128
FIXTURE_COLS_PX = (32, 41, 50, 59, 69, 78, 87, 96)
"""Fixture scan: one row of 8 positions per split, 9-10 px apart (the object's whole width)."""
_FAINT_COUNTS = 1.0
"""Pixels expecting fewer photons than this are sampled by Poisson splitting (measured best)."""
NOISE_STREAM = (
    "chunk k (of CHUNK_PATTERNS patterns) of split s (train 0, test 1) at dose d draws from "
    "numpy default_rng([noise_seed, d, s, k]): first each pattern's total count over its faint "
    f"pixels (expecting < {_FAINT_COUNTS:g} photon) as Poisson, then one uniform per faint photon "
    "placed by inverse CDF over the faint pixels (float64 cumulative sum, row-major pattern "
    "order), then Poisson counts of the other pixels in row-major order "
    "(simulate.poisson_counts_split)"
)
SELECTION_STREAM = (
    "view v (dense 0, sparse 1) of split s (train 0, test 1) selects with numpy "
    "default_rng([selection_seed, v, s])"
)
COUNTS_MODEL = (
    "counts ~ Poisson(intensity_scale * |fftshift(fft2(ifftshift(probeGuess * patch)))|^2), "
    "diffraction = sqrt(counts); patch = objectGuess[y - N/2 : y + N/2, x - N/2 : x + N/2]"
)
DIAMETER_DEFINITION = (
    f"diameter of the disc about the probe's intensity centroid holding "
    f"{PROBE_POWER_FRACTION:.0%} of its power"
)

Progress = Callable[[str, int, int], None]
"""Called as progress(description, steps_done, steps_total)."""


@dataclass(frozen=True)
class SplitGeometry:
    """Where each split may put its probe centres so that no object pixel lies inside the
    N x N probe window of both a train and a test position.

    Train windows stay in rows [0, boundary), test windows in rows [boundary, H): train centres
    have y <= boundary - N/2 and test centres y >= boundary + N/2, a centre gap of at least N.
    Jittered positions are clipped into these ranges, so jitter never narrows the gap.
    """

    height_px: int
    width_px: int
    probe_px: int

    @property
    def boundary_row(self) -> int:
        return self.height_px // 2

    @property
    def min_height_px(self) -> int:
        """The smallest object height holding one probe window in each half."""
        return 2 * self.probe_px

    def centre_ranges(self) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
        """(rows, cols) of the allowed probe centres per split, inclusive."""
        half = self.probe_px // 2
        b = self.boundary_row
        cols = (float(half), float(self.width_px - half))
        return {
            "train": ((float(half), float(b - half)), cols),
            "test": ((float(b + half), float(self.height_px - half)), cols),
        }

    def check(self, where: Path | str) -> None:
        """Fail in one line when the object cannot hold two disjoint halves."""
        if self.width_px < self.probe_px:
            raise InputError(
                where,
                f"object width {self.width_px} px is narrower than the {self.probe_px} px "
                "probe window",
            )
        if self.height_px < self.min_height_px:
            raise InputError(
                where,
                f"object height {self.height_px} px is too small for disjoint train and test "
                f"halves: it must be at least {self.min_height_px} px (one {self.probe_px} px "
                "probe window per half)",
            )

    def record(self, positions: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
        """The split as written (JSON): the rows each split's windows cover and the gaps."""
        half = self.probe_px // 2
        rows = {}
        for split, (y, _) in positions.items():
            rows[split] = [int(y.min()) - half, int(y.max()) + half - 1] if len(y) else None
        centre_gap = int(positions["test"][0].min() - positions["train"][0].max())
        return {
            "rule": "no object pixel lies inside the N x N probe window of both a train and a "
            "test position: train windows cover rows < boundary_row, test windows rows >= "
            "boundary_row",
            "boundary_row": self.boundary_row,
            "window_px": self.probe_px,
            "centre_rows": {
                split: [int(r0), int(r1)] for split, ((r0, r1), _) in self.centre_ranges().items()
            },
            "window_rows": rows,
            "centre_gap_px": centre_gap,
            "window_gap_px": centre_gap - self.probe_px,
        }


@dataclass(frozen=True)
class Scene:
    """The dose-independent part of the study: object, probe and positions per split."""

    obj: np.ndarray
    probe: np.ndarray
    positions: dict[str, tuple[np.ndarray, np.ndarray]]
    """split -> (ycoords, xcoords), whole pixels, float64."""
    views: dict[tuple[str, str], np.ndarray]
    """(view, split) -> indices into the split's positions."""
    probe_diameter_px: float
    geometry: SplitGeometry

    @cached_property
    def split_record(self) -> dict[str, Any]:
        """The split geometry as written, for study.json and each file's metadata."""
        return self.geometry.record(self.positions)

    def min_spacing_px(self, overlap: float) -> float:
        return (1.0 - overlap) * self.probe_diameter_px


@dataclass(frozen=True)
class WrittenFile:
    """One NPZ written, with its SHA-256 content hash."""

    path: str
    """Relative to the output root."""
    sha256: str
    bytes: int
    dose: int
    view: str
    split: str
    n_patterns: int


@dataclass(frozen=True)
class ViewCount:
    """Positions kept by a view in a split (the same at every dose)."""

    view: str
    split: str
    kept: int
    candidates: int
    min_spacing_px: float | None


@dataclass
class PrepResult:
    """What `prepare_study` wrote."""

    output_root: Path
    phase_c_root: Path
    phase_d_root: Path
    study_json: Path
    doses: tuple[int, ...]
    probe_diameter_px: float
    files: list[WrittenFile] = field(default_factory=list)
    counts: list[ViewCount] = field(default_factory=list)


# ---------------------------------------------------------------------------------- the scene


def _load_probe(options: SyntheticOptions) -> np.ndarray:
    if options.probe_npz is None:
        return simulate.focused_probe(options.probe_px)
    probe = load_complex_array(options.probe_npz, "probeGuess")
    rows, cols = probe.shape
    if rows != cols or rows % 2:
        raise InputError(
            options.probe_npz,
            f"probe must be square with an even side, got {probe.shape}",
            "probeGuess",
        )
    if "probe_px" in options.model_fields_set and rows != options.probe_px:
        raise InputError(
            options.probe_npz,
            f"probe is {rows} px but --probe-px is {options.probe_px}",
            "probeGuess",
        )
    probe = probe.astype(np.complex128)
    return (probe / np.sqrt(np.sum(np.abs(probe) ** 2))).astype(np.complex64)


MAX_OBJECT_AMPLITUDE = 1e3
"""The largest object amplitude simulated: beyond it the expected counts leave the range that
Poisson sampling and single-precision intensities can hold (an 8-bit image used as
amplitude, 255, is still fine)."""


def _load_object(options: SyntheticOptions, rng: np.random.Generator) -> np.ndarray:
    if options.object_npz is None:
        side = options.object_px
        return simulate.procedural_object((side, side), rng)
    obj = load_complex_array(options.object_npz, "objectGuess")
    brightest = float(np.abs(obj).max())
    if brightest > MAX_OBJECT_AMPLITUDE:
        raise InputError(
            options.object_npz,
            f"amplitudes reach {brightest:.3g}: a transmission object's are about 1 or less "
            f"(at most {MAX_OBJECT_AMPLITUDE:g} is simulated); rescale it",
            "objectGuess",
        )
    return obj


def _scan(
    options: SyntheticOptions,
    ranges: tuple[tuple[float, float], tuple[float, float]],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = ranges
    if options.scan == ScanKind.FERMAT:
        return simulate.fermat_scan(rows, cols, options.step_px)
    return simulate.raster_scan(rows, cols, options.step_px, options.jitter_px, rng)


def _select_views(
    options: SyntheticOptions,
    positions: dict[str, tuple[np.ndarray, np.ndarray]],
    diameter_px: float,
    selection_seed: int,
) -> dict[tuple[str, str], np.ndarray]:
    views = {}
    for v, view in enumerate(VIEWS):
        overlap = getattr(options, f"{view}_overlap")
        spacing = (1.0 - overlap) * diameter_px
        for s, split in enumerate(SPLITS):
            y, x = positions[split]
            rng = np.random.default_rng([selection_seed, v, s])
            kept = simulate.greedy_spacing_selection(y, x, spacing, rng)
            if len(kept) < options.min_positions:
                raise InputError(
                    None,
                    f"the {view} view keeps {len(kept)} of {len(y)} {split} positions at a "
                    f"spacing of at least {spacing:.1f} px ((1 - {overlap}) x {diameter_px:.1f} "
                    f"px probe diameter), fewer than the minimum {options.min_positions}; raise "
                    f"--{view}-overlap or --object-px, or lower --min-positions",
                )
            views[view, split] = kept
    return views


def build_scene(options: SyntheticOptions) -> Scene:
    """Object, probe, scan positions of both splits and the views (everything but the noise)."""
    seeds = options.seeds()
    probe = _load_probe(options)
    diameter = simulate.probe_diameter_px(probe, PROBE_POWER_FRACTION)
    if options.fixture:
        return _fixture_scene(options, probe, diameter, seeds["object"])
    obj = _load_object(options, np.random.default_rng(seeds["object"]))
    size = probe.shape[0]
    where = options.object_npz or "options"
    geometry = SplitGeometry(obj.shape[0], obj.shape[1], size)
    geometry.check(where)
    _check_halves(obj, geometry, where)
    scan_rng = np.random.default_rng(seeds["scan"])
    positions = {}
    for split, ranges in geometry.centre_ranges().items():
        positions[split] = _scan(options, ranges, scan_rng)
        if not len(positions[split][0]):
            raise InputError(where, f"the {options.scan} scan puts no position in the {split} half")
    n = sum(len(y) for y, _ in positions.values())  # refused before the views are chosen
    _check_memory(n * size**2 * SIMULATION_BYTES_PER_PIXEL, f"{n} patterns", options)
    views = _select_views(options, positions, diameter, seeds["selection"])
    return Scene(obj, probe, positions, views, diameter, geometry)


def _check_halves(obj: np.ndarray, geometry: SplitGeometry, where: Path | str) -> None:
    """Fail in one line when a split's half of the object is all zero (no diffraction: its
    files would hold nothing to reconstruct)."""
    b = geometry.boundary_row
    for split, rows in (("train", slice(0, b)), ("test", slice(b, None))):
        if not np.any(obj[rows]):
            first, last = rows.indices(obj.shape[0])[:2]
            raise InputError(
                where,
                f"the {split} half of the object (rows {first}-{last - 1}) is all zero: it "
                "would diffract nothing",
                "objectGuess",
            )


def _fixture_scene(
    options: SyntheticOptions, probe: np.ndarray, diameter: float, object_seed: int
) -> Scene:
    """The seed's 128 px object with one row of 8 positions per half: with a 64 px probe the
    split rule leaves exactly one centre row per half (train row 32, test row 96)."""
    side = FIXTURE_OBJECT_PX
    obj = simulate.procedural_object((side, side), np.random.default_rng(object_seed))
    geometry = SplitGeometry(side, side, probe.shape[0])
    positions = {}
    for split, ((row, _), _) in geometry.centre_ranges().items():
        x = np.array(FIXTURE_COLS_PX, dtype=np.float64)
        positions[split] = (np.full_like(x, row), x)
    views = {(v, s): np.arange(len(positions[s][0])) for v in VIEWS for s in SPLITS}
    return Scene(obj, probe, positions, views, diameter, geometry)


# ----------------------------------------------------------------------------- the simulation


def _chunks(n: int) -> Iterator[tuple[int, slice]]:
    for k, start in enumerate(range(0, n, CHUNK_PATTERNS)):
        yield k, slice(start, min(start + CHUNK_PATTERNS, n))


def expected_intensity(
    obj: np.ndarray, probe: np.ndarray, ycoords: np.ndarray, xcoords: np.ndarray, workers: int = 1
) -> np.ndarray:
    """|FFT(probe * patch)|^2 of every position (DC centred, float32), in threaded chunks.

    Single-precision FFTs (scipy.fft, complex64; the object and probe are complex64 anyway):
    intensities within about 1e-6 relative of double precision. Chunks are fixed, so the
    result does not depend on `workers`.
    """
    shifted = simulate.shifted_probe(probe).astype(np.complex64)
    size = probe.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(obj.astype(np.complex64), (size, size))
    out = np.empty((len(ycoords), size, size), dtype=np.float32)

    def one(chunk: slice) -> None:
        simulate.far_field_intensity_into(
            windows, shifted, ycoords[chunk], xcoords[chunk], out[chunk]
        )

    _run_chunks(one, [c for _, c in _chunks(len(ycoords))], workers)
    return out


def sample_amplitude(
    expected: np.ndarray,
    scale: float,
    stream: tuple[int, ...],
    workers: int = 1,
    noiseless: bool = False,
) -> np.ndarray:
    """sqrt(Poisson(scale * expected)) as float32; chunk k draws from default_rng([*stream, k]).

    Pixels expecting fewer than _FAINT_COUNTS photons are sampled by exact Poisson splitting
    (`simulate.poisson_counts_split`). The result depends on `stream` only, not on
    `workers`. `noiseless` gives sqrt(scale * expected) instead.
    """
    out = np.empty(expected.shape, dtype=np.float32)

    def one(item: tuple[int, slice]) -> None:
        k, chunk = item
        if noiseless:
            out[chunk] = np.sqrt(expected[chunk].astype(np.float64) * scale)
        else:
            rng = np.random.default_rng([*stream, k])
            counts = simulate.poisson_counts_split(expected[chunk], scale, _FAINT_COUNTS, rng)
            np.sqrt(counts, out=out[chunk], dtype=np.float32)

    _run_chunks(one, list(_chunks(len(expected))), workers)
    return out


def _run_chunks(fn: Callable[[Any], None], items: list[Any], workers: int) -> None:
    if workers <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        list(pool.map(fn, items))


# ------------------------------------------------------------------------------------ writing


def _fixture_patches(
    obj: np.ndarray, y: np.ndarray, x: np.ndarray, rows: tuple[int, int]
) -> np.ndarray:
    """Seed-style Y: (n, 2N, 2N) object windows centred on each position, padded with 1.

    Only the split's own rows `rows` (inclusive) carry the object; every other pixel reads 1,
    so a 2N window never shows the other split's area.
    """
    width = 2 * FIXTURE_PROBE_PX
    half = width // 2
    own = np.ones_like(obj)
    own[rows[0] : rows[1] + 1] = obj[rows[0] : rows[1] + 1]
    padded = np.pad(own, half, constant_values=1 + 0j)
    top = np.rint(y).astype(int)
    left = np.rint(x).astype(int)
    return np.stack([padded[t : t + width, c : c + width] for t, c in zip(top, left, strict=True)])


def _write(
    root: Path,
    rel: Path,
    dataset: PtychoDataset,
    index: np.ndarray,
    options: SyntheticOptions,
    result: PrepResult,
) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if options.fixture:
        names = np.array([f"img_{i:04d}" for i in range(dataset.n_patterns)])
        save_dataset(
            path,
            dataset,
            compress=options.compress,
            compress_level=COMPRESS_LEVEL,
            stored_keys=("Y",),
            coord_dtype=np.float32,
            scan_index=False,
            extra={"filenames": names},
        )
    else:
        save_dataset(
            path,
            dataset,
            compress=options.compress,
            compress_level=COMPRESS_LEVEL,
            stored_keys=("Y",),
            scan_index=index,
        )
    meta = dataset.metadata
    result.files.append(
        WrittenFile(
            path=rel.as_posix(),
            sha256=file_sha256(path),
            bytes=path.stat().st_size,
            dose=meta["dose"],
            view=meta["view"],
            split=meta["split"],
            n_patterns=dataset.n_patterns,
        )
    )


def _design(options: SyntheticOptions, scene: Scene) -> dict[str, Any]:
    return {
        "mode": "fixture" if options.fixture else "preset",
        "preset": None if options.fixture else str(options.preset),
        "object_shape_px": list(scene.obj.shape),
        "object_source": str(options.object_npz) if options.object_npz else "procedural",
        "probe_px": int(scene.probe.shape[0]),
        "probe_source": str(options.probe_npz) if options.probe_npz else "focused_probe",
        "probe_diameter_px": scene.probe_diameter_px,
        "probe_diameter_definition": DIAMETER_DEFINITION,
        "scan": "fixture grid" if options.fixture else str(options.scan),
        "step_px": None if options.fixture else options.step_px,
        "jitter_px": None if options.fixture else options.jitter_px,
        "doses": list(options.doses),
        "overlap_fraction": {v: getattr(options, f"{v}_overlap") for v in VIEWS},
        "min_spacing_px": {
            v: scene.min_spacing_px(getattr(options, f"{v}_overlap")) for v in VIEWS
        },
        "min_positions": options.min_positions,
        "split": scene.split_record,
        "geometry": _geometry_record(options, scene),
        "counts_model": COUNTS_MODEL,
        "noiseless": options.noiseless,
        "chunk_patterns": CHUNK_PATTERNS,
    }


def _geometry_record(options: SyntheticOptions, scene: Scene) -> dict[str, Any]:
    """The physical geometry (what turns pixels into metres), as reconstruct reads it."""
    g = options.geometry
    return {
        **g.model_dump(),
        "wavelength_m": g.wavelength_m,
        "object_pixel_m": g.object_pixel_m(scene.probe.shape[0]),
        "definition": "object_pixel_m = wavelength_m x detector_distance_m / (N x "
        "detector_pixel_m) for N x N patterns; positions in metres are xcoords/ycoords x "
        "object_pixel_m",
    }


def _seed_record(options: SyntheticOptions) -> dict[str, Any]:
    return {
        "base": options.seed,
        **options.seeds(),
        "derivation": "an unset purpose seed i (object 0, scan 1, noise 2, selection 3) is "
        "SeedSequence([base, i]).generate_state(1)[0]",
        "noise_stream": NOISE_STREAM,
        "selection_stream": SELECTION_STREAM,
    }


def _metadata(
    options: SyntheticOptions,
    scene: Scene,
    dose: int,
    scale: float,
    view: str,
    split: str,
    mean_counts: float,
    kept: int,
) -> dict[str, Any]:
    overlap = None if view == "baseline" else getattr(options, f"{view}_overlap")
    candidates = len(scene.positions[split][0])
    return {
        "dose": dose,
        "intensity_scale": scale,
        "mean_expected_counts": mean_counts,
        "counts_model": COUNTS_MODEL,
        "noiseless": options.noiseless,
        "view": view,
        "split": split,
        "phase": "C" if view == "baseline" else "D",
        "overlap_fraction": overlap,
        "min_spacing_px": None if overlap is None else scene.min_spacing_px(overlap),
        "probe_diameter_px": scene.probe_diameter_px,
        "probe_diameter_definition": DIAMETER_DEFINITION,
        "split_geometry": scene.split_record,
        "geometry": _geometry_record(options, scene),
        "accepted": kept,
        "rejected": candidates - kept,
        "candidates": candidates,
        "seeds": _seed_record(options),
        "fixture": options.fixture,
        "fixture_note": "every view holds the split's 8 positions (no spacing selection)"
        if options.fixture
        else None,
        "flyrecon_version": __version__,
        "generator": "flyrecon prep-synthetic",
    }


PROCEDURAL_BYTES_PER_PIXEL = 64
"""Memory the procedural object takes per pixel while it is made (complex128 and temporaries)."""
SIMULATION_BYTES_PER_PIXEL = 16
"""Memory per pattern pixel while simulating: the expected intensities of both splits
(float32), one dose's counts and their amplitudes."""


def _check_memory(needed: float, what: str, options: SyntheticOptions) -> None:
    """Refuse a design whose simulation would not fit in this machine's memory."""
    where = options.object_npz or options.output_root
    advice = "; lower --object-px or raise --step-px"
    check_memory(needed, where, f"simulating {what}", advice=advice)


def prepare_study(options: SyntheticOptions, progress: Progress | None = None) -> PrepResult:
    """Simulate and write the phase C and phase D trees and study.json under the output root."""
    root = options.output_root
    problem = unwritable_dir_reason(root)
    if problem:
        raise InputError(root, f"output root {problem}")
    if options.object_npz is None and not options.fixture:
        _check_memory(options.object_px**2 * PROCEDURAL_BYTES_PER_PIXEL, "the object", options)
    scene = build_scene(options)
    identity = _study_identity(options, scene)
    _check_no_other_study(root, identity)
    seeds = options.seeds()
    result = PrepResult(
        output_root=root,
        phase_c_root=layout.StudyRoot(root).phase_c,
        phase_d_root=layout.StudyRoot(root).phase_d,
        study_json=layout.StudyRoot(root).study_json,
        doses=options.doses,
        probe_diameter_px=scene.probe_diameter_px,
    )
    for split in SPLITS:
        n = len(scene.positions[split][0])
        result.counts.append(ViewCount("baseline", split, n, n, None))
        for view in VIEWS:
            spacing = scene.min_spacing_px(getattr(options, f"{view}_overlap"))
            result.counts.append(ViewCount(view, split, len(scene.views[view, split]), n, spacing))

    total_steps = len(SPLITS) * (1 + len(options.doses))
    done = 0

    def step(description: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(description, done, total_steps)

    if progress is not None:
        progress("simulating", 0, total_steps)
    expected: dict[str, np.ndarray] = {}
    for split in SPLITS:
        y, x = scene.positions[split]
        expected[split] = expected_intensity(scene.obj, scene.probe, y, x, options.workers)
        step(f"far field ({split})")
    totals = {s: expected[s].sum(axis=(1, 2), dtype=np.float64) for s in SPLITS}
    mean_total = float(np.concatenate(list(totals.values())).mean())
    _check_brightest(max(float(e.max()) for e in expected.values()) / mean_total, options)
    root.mkdir(parents=True, exist_ok=True)

    for dose in options.doses:
        scale = dose / mean_total
        for s, split in enumerate(SPLITS):
            y, x = scene.positions[split]
            amplitude = sample_amplitude(
                expected[split],
                scale,
                (seeds["noise"], dose, s),
                options.workers,
                options.noiseless,
            )
            _write_split(options, scene, result, dose, scale, split, amplitude, totals[split])
            del amplitude
            step(f"dose {dose} ({split})")

    write_json(result.study_json, _study_record(options, scene, result, identity["content"]))
    return result


def _check_brightest(brightest_share: float, options: SyntheticOptions) -> None:
    """Refuse a dose whose brightest detector pixel `reconstruct` would refuse: it takes
    amplitudes up to `data.MAX_AMPLITUDE` (single precision). `brightest_share`: the brightest
    pixel's expected photons per photon of the mean pattern."""
    dose = max(options.doses)
    photons = brightest_share * dose
    if np.sqrt(photons + 6 * np.sqrt(photons)) > MAX_AMPLITUDE:  # the mean and 6 sigma
        below = MAX_AMPLITUDE**2 / brightest_share / 2
        raise InputError(
            None,
            f"at {dose:.3g} photons per pattern the brightest detector pixel expects "
            f"{photons:.3g} photons; flyrecon reconstructs at most {MAX_AMPLITUDE**2:.0e} per "
            f"pixel (single precision): choose a dose below {below:.1g}",
            "--dose",
        )


def _write_split(
    options: SyntheticOptions,
    scene: Scene,
    result: PrepResult,
    dose: int,
    scale: float,
    split: str,
    amplitude: np.ndarray,
    totals: np.ndarray,
) -> None:
    y, x = scene.positions[split]
    n = len(y)
    size = scene.probe.shape[0]
    subsets = {"baseline": np.arange(n), **{v: scene.views[v, split] for v in VIEWS}}
    split_rows = scene.split_record["window_rows"][split]
    for view, index in subsets.items():
        yy, xx = y[index], x[index]
        if options.fixture:
            patches = _fixture_patches(scene.obj, yy, xx, split_rows)
        else:
            patches = simulate.object_patches(scene.obj, yy, xx, size)
        meta = _metadata(
            options,
            scene,
            dose,
            scale,
            view,
            split,
            float(totals[index].mean() * scale),
            len(index),
        )
        dataset = PtychoDataset(
            diffraction=amplitude[index],
            object_guess=scene.obj,
            probe_guess=scene.probe,
            xcoords=xx,
            ycoords=yy,
            y_patches=patches,
            metadata=meta,
        )
        rel = layout.StudyRoot(Path(".")).input_path(dose, view, split)
        _write(result.output_root, rel, dataset, index, options, result)


def _study_identity(options: SyntheticOptions, scene: Scene) -> dict[str, Any]:
    """What makes a study's files what they are, as study.json records it: the design (doses
    as a set, sources by content, not by the path they were given as), seeds and contents."""
    identity = {
        "design": _comparable_design(_design(options, scene)),
        "seeds": _seed_record(options),
        "content": _content_record(scene),
    }
    return json.loads(json.dumps(identity, default=str))


def _comparable_design(design: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in design.items() if k not in ("object_source", "probe_source")}
    if isinstance(out.get("doses"), list):
        out["doses"] = sorted(out["doses"])
    return out


def _content_record(scene: Scene) -> dict[str, str]:
    return {
        "object_sha256": hashlib.sha256(np.ascontiguousarray(scene.obj).data).hexdigest(),
        "probe_sha256": hashlib.sha256(np.ascontiguousarray(scene.probe).data).hexdigest(),
    }


def _check_no_other_study(root: Path, identity: dict[str, Any]) -> None:
    """Refuse a root that holds another study: the two designs' files would mix (study-run
    finds doses by folder name). The same design, seeds and contents again rewrite the same
    files; what only one of the two records (an older flyrecon's study.json) is not compared."""
    study = layout.StudyRoot(root)
    if not any(p.exists() for p in (study.study_json, study.phase_c, study.phase_d)):
        return
    if not study.study_json.is_file():
        raise InputError(
            root,
            "holds an unfinished study (phase_c or phase_d without study.json): its design is "
            "unknown; remove it or choose a new --output-root",
        )
    try:
        recorded = json.loads(study.study_json.read_text(encoding="utf-8"))
        recorded = {**recorded, "design": _comparable_design(recorded["design"])}
        same = all(_agree(recorded.get(k), v) for k, v in identity.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        same = False
    if not same:
        raise InputError(
            root,
            "already holds another study (study.json, phase_c or phase_d): its files would mix "
            "with this design; choose a new --output-root or remove the old study first",
        )


def _agree(recorded: Any, current: Any) -> bool:
    """Whether two records agree on what both of them hold."""
    if recorded is None:
        return True
    if isinstance(recorded, dict) and isinstance(current, dict):
        return all(recorded[k] == current[k] for k in recorded.keys() & current.keys())
    return recorded == current


def _study_record(
    options: SyntheticOptions, scene: Scene, result: PrepResult, content: dict[str, str]
) -> dict[str, Any]:
    return {
        "generator": "flyrecon prep-synthetic",
        "flyrecon_version": __version__,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "phase_c_root": layout.PHASE_C,
        "phase_d_root": layout.PHASE_D,
        "design": _design(options, scene),
        "seeds": _seed_record(options),
        "content": content,
        "counts": [vars(c) for c in result.counts],
        "files": [vars(f) for f in result.files],
        "workers": options.workers,
    }
