"""The DATA-001 NPZ contract: the one place flyrecon reads and writes dataset files.

See docs/data-contract.md. Files are loaded with ``allow_pickle=False``; metadata travels as a
JSON string under the key ``metadata``. Every problem becomes an `InputError` naming the file,
the key and what is wrong.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from flyrecon.atomic import write_with
from flyrecon.errors import InputError
from flyrecon.memory import check_memory

REQUIRED_KEYS = ("diffraction", "objectGuess", "probeGuess", "xcoords", "ycoords")
METADATA_KEY = "metadata"
MIN_SCAN_SPAN_PX = 1.0
"""A scan whose positions all lie within this many pixels cannot be ptychography (no overlap
geometry to solve); coordinates normalised to [0, 1) instead of pixels look like this."""
MIN_AMPLITUDE, MAX_AMPLITUDE = 1e-5, 1e6
"""The largest amplitude must lie within these. pty-chi computes in single precision and its
step sizes multiply several intensities: measured on the fixture, every engine ran with the
brightest amplitude from 1e-6 to 1e7 and produced NaN at 1e-9 and 1e8; the bounds keep a
decade of margin. Raw photon counts (amplitudes up to about 3e4) lie well inside."""
MIN_PATTERN_PX = 8
"""The smallest pattern side: below it there is no diffraction pattern to speak of."""
DOUBT_SAMPLE = 32
"""Patterns `doubts_about` looks at (evenly spread): enough to judge units and layout."""


@dataclass(frozen=True)
class PtychoDataset:
    """A DATA-001 dataset in memory (amplitudes, not intensities)."""

    diffraction: np.ndarray
    """(n, N, N) float32 measured amplitude, DC at the centre."""
    object_guess: np.ndarray
    """(H, W) complex64 object; the ground truth for synthetic data."""
    probe_guess: np.ndarray
    """(N, N) complex64 probe."""
    xcoords: np.ndarray
    """(n,) float64 probe-centre column in objectGuess pixels."""
    ycoords: np.ndarray
    """(n,) float64 probe-centre row in objectGuess pixels."""
    y_patches: np.ndarray | None = None
    """Optional (n, K, K) complex64 ground-truth object patches."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata (JSON)."""
    total_patterns: int = 0
    """Patterns in the file (before any `n_images` selection)."""
    doubts: tuple[str, ...] = ()
    """What looks like a unit or layout slip but may be real (`doubts_about`): logged, shown."""

    @property
    def n_patterns(self) -> int:
        return int(self.diffraction.shape[0])

    @property
    def pattern_size(self) -> int:
        return int(self.diffraction.shape[-1])


def _fail(path: Path, problem: str, key: str | None = None) -> InputError:
    return InputError(path, problem, key)


ZIP_LOCAL_HEADER = b"PK\x03\x04"


def check_npz_file(path: Path) -> None:
    """Refuse (`InputError`) a path that cannot be an NPZ file, saying what it is instead."""
    if not path.exists():
        if path.is_symlink():
            raise _fail(path, "is a symbolic link to nothing (its target is missing, or it loops)")
        raise _fail(path, "not found")
    if path.is_dir():
        raise _fail(path, "is a directory, expected an .npz file")
    if not path.is_file():
        raise _fail(path, "is not a regular file (a pipe, socket or device), expected an .npz file")
    if not os.access(path, os.R_OK):
        raise _fail(path, "cannot be read (permission denied)")
    if path.stat().st_size == 0:
        raise _fail(path, "file is empty")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            starts_as_zip = fh.read(len(ZIP_LOCAL_HEADER)) == ZIP_LOCAL_HEADER
        if starts_as_zip:
            raise _fail(path, "is a damaged zip archive (truncated: its directory is missing)")
        raise _fail(path, "not an NPZ archive (not a zip file)")


def npz_problem(path: Path) -> str | None:
    """What makes `path` unusable as a DATA-001 file, from its zip directory alone (no array
    is read: a quick look for `study-run --dry-run`), or None."""
    try:
        check_npz_file(path)
        with zipfile.ZipFile(path) as archive:
            names = {name.removesuffix(".npy") for name in archive.namelist()}
    except InputError as exc:
        return exc.problem
    except (OSError, zipfile.BadZipFile) as exc:
        return f"not a readable NPZ archive ({exc})"
    missing = [key for key in REQUIRED_KEYS if key not in names]
    return f"{missing[0]}: missing required key" if missing else None


def open_npz(path: Path) -> Any:
    """An open NPZ archive (`np.load`, no pickles); `InputError` for anything that is not one."""
    check_npz_file(path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _fail(path, f"not a readable NPZ archive ({exc})") from None


def _check_declared_size(npz: Any, path: Path, key: str) -> None:
    """Refuse a member whose .npy header declares more data than the member holds or than
    this machine's memory (it would otherwise allocate that much before failing), or that is
    not .npy data at all."""
    try:
        info = npz.zip.getinfo(f"{key}.npy")
        with npz.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            reader = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = reader(member, max_header_size=100_000)
    except KeyError:
        return  # not stored under <key>.npy: numpy's own loader decides
    except (zipfile.BadZipFile, zlib.error) as exc:
        raise _fail(path, f"cannot be read, the archive is damaged ({exc})", key) from None
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(path, f"is not .npy array data ({exc})", key) from None
    except NotImplementedError as exc:  # a zip compression method Python cannot read
        raise _fail(path, f"cannot be read ({exc})", key) from None
    if dtype.hasobject:
        return  # refused as pickled when read
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if declared > info.file_size:
        raise _fail(
            path,
            f"header declares shape {tuple(shape)} ({declared:,} bytes) but the archive "
            f"holds {info.file_size:,} bytes: the file is damaged",
            key,
        )
    check_memory(declared, path, f"shape {tuple(shape)}", key)


def read_array(npz: Any, path: Path, key: str) -> np.ndarray:
    """Member `key` of an open NPZ as a numeric array; `InputError` naming the file and key
    for a damaged, oversized, pickled or non-array member."""
    _check_declared_size(npz, path, key)
    try:
        arr = npz[key]
    except MemoryError:
        raise _fail(path, "is too large to load into memory", key) from None
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise _fail(path, "holds a pickled object array; refusing to load it", key) from None
        raise _fail(path, f"cannot be read ({exc})", key) from None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise _fail(path, f"cannot be read, the archive is damaged ({exc})", key) from None
    except NotImplementedError as exc:  # a zip compression method Python cannot read
        raise _fail(path, f"cannot be read ({exc})", key) from None
    if not isinstance(arr, np.ndarray):
        raise _fail(path, "is not .npy array data", key)
    if arr.dtype.hasobject:
        raise _fail(path, "holds Python objects, expected numbers", key)
    return arr


def _check_ndim(arr: np.ndarray, path: Path, key: str, ndim: int) -> None:
    if arr.ndim != ndim:
        raise _fail(path, f"expected {ndim}-D array, got shape {arr.shape}", key)


def _as_real(arr: np.ndarray, path: Path, key: str, dtype: type) -> np.ndarray:
    if np.iscomplexobj(arr):
        raise _fail(path, f"expected real numbers, got {arr.dtype}", key)
    if arr.dtype.kind not in "iuf":  # numpy counts timedelta64 as an integer type
        raise _fail(path, f"expected real numbers, got dtype {arr.dtype}", key)
    if np.dtype(dtype) == np.float32:
        _check_fits_single(arr, path, key)
    return arr.astype(dtype, copy=False)


def _as_complex(arr: np.ndarray, path: Path, key: str) -> np.ndarray:
    if not np.iscomplexobj(arr):
        raise _fail(path, f"expected complex numbers, got {arr.dtype}", key)
    _check_fits_single(arr.real, path, key)
    _check_fits_single(arr.imag, path, key)
    return arr.astype(np.complex64, copy=False)


def _check_fits_single(arr: np.ndarray, path: Path, key: str) -> None:
    """Refuse finite values beyond single precision (the cast would turn them into Inf);
    NaN and Inf are left to `_check_finite`. No copy of the array is made."""
    if arr.dtype.kind != "f" or arr.dtype.itemsize <= 4 or arr.size == 0:
        return
    largest = max(abs(float(arr.max())), abs(float(arr.min())))
    if math.isfinite(largest) and largest > float(np.finfo(np.float32).max):
        raise _fail(path, f"holds {largest:.3g}, beyond single precision; rescale it", key)


def _check_finite(arr: np.ndarray, path: Path, key: str) -> None:
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise _fail(path, f"holds {bad} NaN or Inf value(s)", key)


def _read_metadata(npz: Any, path: Path) -> dict[str, Any]:
    if METADATA_KEY not in npz.files:
        return {}
    raw = read_array(npz, path, METADATA_KEY)
    if raw.dtype.kind not in "US" or raw.size != 1:
        raise _fail(path, "expected a JSON string", METADATA_KEY)
    text = raw.item()
    try:
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        meta = json.loads(text)
    except UnicodeDecodeError:
        raise _fail(path, "is not UTF-8 text", METADATA_KEY) from None
    except json.JSONDecodeError as exc:
        raise _fail(path, f"is not valid JSON ({exc.msg})", METADATA_KEY) from None
    except RecursionError:
        raise _fail(path, "is JSON nested too deeply to read", METADATA_KEY) from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise _fail(path, f"is not valid JSON ({exc})", METADATA_KEY) from None
    if not isinstance(meta, dict):
        raise _fail(path, "expected a JSON object", METADATA_KEY)
    try:
        json.dumps(meta, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a JSON escape of a lone surrogate: no text can hold it
        problem = "holds an escaped lone surrogate, not Unicode text"
        raise _fail(path, problem, METADATA_KEY) from None
    return meta


def _check_span(coords: dict[str, np.ndarray], path: Path, chosen: str = "") -> None:
    """Refuse positions that all lie within `MIN_SCAN_SPAN_PX` (not a scan)."""
    span_y = float(np.ptp(coords["ycoords"]))
    span_x = float(np.ptp(coords["xcoords"]))
    if max(span_x, span_y) < MIN_SCAN_SPAN_PX:
        raise _fail(
            path,
            f"all {len(coords['xcoords'])} positions{chosen} lie within {MIN_SCAN_SPAN_PX:g} "
            f"pixel (span {span_x:.2f} x {span_y:.2f} px): not a ptychographic scan; are they "
            "in objectGuess pixels?",
            "xcoords",
        )


MIN_PROBE_POWER, MAX_PROBE_POWER = 1e-20, 1e20
"""The probe's total power (sum of |probeGuess|^2) must lie within these: pty-chi computes in
single precision (largest 3.4e38), and products of the probe's power overflow or vanish
beyond them (a probe scaled by 1e20 or 1e-20 made the loss Inf or NaN)."""
MIN_PROBE_PIXELS = 4.0
"""The least number of pixels the probe's power may effectively occupy (the participation
ratio (sum |P|^2)^2 / sum |P|^4): a probe in one pixel (a hot pixel, a delta) made NaN."""


def _check_probe_power(probe: np.ndarray, path: Path) -> None:
    intensity = np.abs(probe.astype(np.complex128)) ** 2
    power = float(intensity.sum())
    if not MIN_PROBE_POWER <= power <= MAX_PROBE_POWER:
        raise _fail(
            path,
            f"the probe's power (sum of |probe|^2) is {power:.3g}: it must lie within "
            f"[{MIN_PROBE_POWER:.0e}, {MAX_PROBE_POWER:.0e}] to be computed in single "
            "precision; rescale the probe",
            "probeGuess",
        )
    pixels = power**2 / float((intensity**2).sum())
    if pixels < MIN_PROBE_PIXELS:
        raise _fail(
            path,
            f"the probe's power sits in about {pixels:.1f} pixel{'s' * (pixels >= 1.5)}: a probe "
            "must light an area (a hot pixel, or a delta?)",
            "probeGuess",
        )


def load_dataset(path: Path | str, n_images: int | None = None) -> PtychoDataset:
    """Read and validate a DATA-001 NPZ; keep the first `n_images` patterns when given.

    Raises `InputError` (exit code 2) for every violation of the contract.
    """
    path = Path(path)
    with open_npz(path) as npz:
        missing = [k for k in REQUIRED_KEYS if k not in npz.files]
        if missing:
            raise _fail(path, "missing required key", missing[0])
        arrays = {k: read_array(npz, path, k) for k in REQUIRED_KEYS}
        y_patches = read_array(npz, path, "Y") if "Y" in npz.files else None
        metadata = _read_metadata(npz, path)

    diffraction = arrays["diffraction"]
    _check_ndim(diffraction, path, "diffraction", 3)
    diffraction = _as_real(diffraction, path, "diffraction", np.float32)
    n, rows, cols = diffraction.shape
    if rows != cols:
        raise _fail(path, f"patterns must be square, got {rows}x{cols}", "diffraction")
    if rows < MIN_PATTERN_PX:
        problem = f"patterns are {rows}x{cols}, at least {MIN_PATTERN_PX} px are needed"
        raise _fail(path, problem, "diffraction")
    if n < 2:
        raise _fail(path, f"needs at least 2 patterns, got {n}", "diffraction")
    _check_finite(diffraction, path, "diffraction")
    if (diffraction < 0).any():
        raise _fail(path, "holds negative amplitudes", "diffraction")
    if not diffraction.any():
        raise _fail(path, "all patterns are zero", "diffraction")
    brightest = float(diffraction.max())
    if not MIN_AMPLITUDE <= brightest <= MAX_AMPLITUDE:
        raise _fail(
            path,
            f"the largest amplitude is {brightest:.3g}: intensities (its square) must lie "
            f"within [{MIN_AMPLITUDE**2:.0e}, {MAX_AMPLITUDE**2:.0e}] to be computed in single "
            "precision; rescale the data",
            "diffraction",
        )

    probe = arrays["probeGuess"]
    _check_ndim(probe, path, "probeGuess", 2)
    probe = _as_complex(probe, path, "probeGuess")
    if probe.shape != (rows, cols):
        raise _fail(
            path, f"shape {probe.shape} does not match the patterns {(rows, cols)}", "probeGuess"
        )
    _check_finite(probe, path, "probeGuess")
    if not probe.any():
        raise _fail(path, "probe is zero everywhere", "probeGuess")
    _check_probe_power(probe, path)

    obj = arrays["objectGuess"]
    _check_ndim(obj, path, "objectGuess", 2)
    obj = _as_complex(obj, path, "objectGuess")
    if obj.size == 0:
        raise _fail(path, f"is empty (shape {obj.shape})", "objectGuess")
    _check_finite(obj, path, "objectGuess")

    coords = {}
    for key in ("xcoords", "ycoords"):
        arr = arrays[key]
        _check_ndim(arr, path, key, 1)
        arr = _as_real(arr, path, key, np.float64)
        if arr.shape[0] != n:
            raise _fail(path, f"length {arr.shape[0]} does not match {n} patterns", key)
        _check_finite(arr, path, key)
        coords[key] = arr
    height, width = obj.shape
    for key, limit in (("xcoords", width), ("ycoords", height)):
        arr = coords[key]
        if arr.min() < 0 or arr.max() > limit:
            raise _fail(
                path,
                f"positions [{arr.min():.1f}, {arr.max():.1f}] lie outside the object (0..{limit})",
                key,
            )

    _check_span(coords, path)

    if y_patches is not None:
        _check_ndim(y_patches, path, "Y", 3)
        y_patches = _as_complex(y_patches, path, "Y")
        if y_patches.shape[0] != n:
            raise _fail(path, f"length {y_patches.shape[0]} does not match {n} patterns", "Y")
        if y_patches.shape[1] != y_patches.shape[2]:
            raise _fail(path, f"patches must be square, got shape {y_patches.shape}", "Y")
        _check_finite(y_patches, path, "Y")

    if n_images is not None:
        if n_images > n:
            raise _fail(path, f"--n-images {n_images} asks for more than the {n} patterns held")
        diffraction = diffraction[:n_images]
        coords = {k: v[:n_images] for k, v in coords.items()}
        y_patches = None if y_patches is None else y_patches[:n_images]
        chosen = f" (the first {n_images}, --n-images)"
        if not diffraction.any():
            raise _fail(path, f"all patterns chosen{chosen} are zero", "diffraction")
        _check_span(coords, path, chosen)

    return PtychoDataset(
        diffraction=diffraction,
        object_guess=obj,
        probe_guess=probe,
        xcoords=coords["xcoords"],
        ycoords=coords["ycoords"],
        y_patches=y_patches,
        metadata=metadata,
        total_patterns=n,
        doubts=doubts_about(diffraction, path),
    )


def doubts_about(diffraction: np.ndarray, path: Path) -> tuple[str, ...]:
    """Slips a valid file may hide: photon counts stored instead of their square roots, and
    the zero frequency in the corners instead of the centre (not fftshifted). Judged on up to
    `DOUBT_SAMPLE` patterns, without copying the data."""
    doubts = []
    n, side = diffraction.shape[0], diffraction.shape[-1]
    sample = diffraction[np.linspace(0, n - 1, min(n, DOUBT_SAMPLE)).astype(int)]
    brightest = float(sample.max())
    if brightest >= 2 and np.array_equal(sample, np.round(sample)):
        doubts.append(
            f"{path}: diffraction: every value is a whole number (up to {brightest:.0f}): these "
            "look like photon counts; DATA-001 holds amplitudes, their square roots"
        )
    mean = sample.mean(axis=0, dtype=np.float64)
    mean = np.minimum(mean, np.percentile(mean, 99))  # hot or masked pixels do not decide
    q = side // 4
    centre = mean[q : side - q, q : side - q].sum()
    corners = sum(
        mean[r, c].sum()
        for r in (slice(0, q), slice(-q, None))
        for c in (slice(0, q), slice(-q, None))
    )
    if q and corners > centre:
        doubts.append(
            f"{path}: diffraction: the patterns are brighter in their corners than at their "
            f"centre, where DATA-001 puts the zero frequency; are they fftshifted?"
        )
    return tuple(doubts)


def save_dataset(
    path: Path | str,
    dataset: PtychoDataset,
    *,
    compress: bool = True,
    compress_level: int = 6,
    stored_keys: Collection[str] = (),
    coord_dtype: type = np.float64,
    scan_index: np.ndarray | bool = True,
    extra: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a DATA-001 NPZ atomically (metadata as a JSON string, no object arrays).

    `coord_dtype` is the dtype of xcoords/ycoords (float64; the seed fixture uses float32).
    `scan_index`: True writes 0..n-1, an array writes those indices, False writes none.
    `extra` adds arrays under other keys (e.g. `filenames`); object arrays are refused.
    With `compress`, members are deflated at `compress_level` except `stored_keys` (stored as
    they are: complex ground truth barely compresses and costs the most time). The archive's
    timestamps are fixed, so the same arrays give the same bytes.
    """
    arrays: dict[str, np.ndarray] = {
        "diffraction": np.asarray(dataset.diffraction, dtype=np.float32),
        "objectGuess": np.asarray(dataset.object_guess, dtype=np.complex64),
        "probeGuess": np.asarray(dataset.probe_guess, dtype=np.complex64),
        "xcoords": np.asarray(dataset.xcoords, dtype=coord_dtype),
        "ycoords": np.asarray(dataset.ycoords, dtype=coord_dtype),
        METADATA_KEY: np.array(json.dumps(dataset.metadata, sort_keys=True)),
    }
    if scan_index is True:
        arrays["scan_index"] = np.arange(dataset.n_patterns, dtype=np.int64)
    elif scan_index is not False:
        arrays["scan_index"] = np.asarray(scan_index, dtype=np.int64)
    if dataset.y_patches is not None:
        arrays["Y"] = np.asarray(dataset.y_patches, dtype=np.complex64)
    for key, value in (extra or {}).items():
        if key in arrays:
            raise ValueError(f"extra array {key!r} would replace a DATA-001 key")
        value = np.asarray(value)
        if value.dtype.hasobject:
            raise ValueError(f"extra array {key!r} holds Python objects (no pickles)")
        arrays[key] = value
    deflated = set(arrays) - set(stored_keys) if compress else set()
    return write_with(Path(path), lambda fh: _write_npz(fh, arrays, deflated, compress_level))


def _write_npz(
    fh: IO[bytes], arrays: dict[str, np.ndarray], deflated: set[str], level: int
) -> None:
    """An NPZ (a zip of .npy members) with fixed timestamps; `deflated` members compressed."""
    with zipfile.ZipFile(fh, mode="w", allowZip64=True) as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            method = zipfile.ZIP_DEFLATED if key in deflated else zipfile.ZIP_STORED
            info.external_attr = 0o600 << 16
            archive.writestr(info, buffer.getbuffer(), compress_type=method, compresslevel=level)


def load_complex_array(path: Path | str, key: str) -> np.ndarray:
    """One finite, non-zero, 2-D complex array from an NPZ (e.g. a measured probe or object).

    Raises `InputError` naming the file and key for every problem.
    """
    path = Path(path)
    with open_npz(path) as npz:
        if key not in npz.files:
            raise _fail(path, "missing required key", key)
        arr = read_array(npz, path, key)
    _check_ndim(arr, path, key, 2)
    arr = _as_complex(arr, path, key)
    _check_finite(arr, path, key)
    if not arr.any():
        raise _fail(path, "is zero everywhere", key)
    return arr
