"""Invalid DATA-001 inputs, generated on the fly (no committed binaries).

Each case writes one bad file and names the problem its message must contain.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers import simulated_dataset

Arrays = dict[str, np.ndarray]


def valid_arrays() -> Arrays:
    data = simulated_dataset(object_px=64, step_px=8, seed=3)
    return {
        "diffraction": data.diffraction,
        "objectGuess": data.object_guess,
        "probeGuess": data.probe_guess,
        "xcoords": data.xcoords,
        "ycoords": data.ycoords,
    }


@dataclass(frozen=True)
class Case:
    name: str
    write: Callable[[Path], Path]
    expect: tuple[str, ...]
    """Fragments the one-line error must contain (besides the file name)."""


def _npz(mutate: Callable[[Arrays], Arrays]) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "bad.npz"
        np.savez(path, **mutate(valid_arrays()))
        return path

    return write


def _set(key: str, value: Callable[[Arrays], np.ndarray]) -> Callable[[Arrays], Arrays]:
    def mutate(a: Arrays) -> Arrays:
        a[key] = value(a)
        return a

    return mutate


def _one_pixel(a: Arrays) -> np.ndarray:
    probe = np.zeros_like(a["probeGuess"])
    probe[5, 7] = 1.0
    return probe


def _hot_pixel(a: Arrays) -> np.ndarray:
    """The probe with one pixel 1000x its brightest (an unmasked detector defect)."""
    return a["probeGuess"] + _one_pixel(a) * 1e3 * np.abs(a["probeGuess"]).max()


def _drop(key: str) -> Callable[[Arrays], Arrays]:
    def mutate(a: Arrays) -> Arrays:
        del a[key]
        return a

    return mutate


def _with_nan(key: str, value: float) -> Callable[[Arrays], Arrays]:
    def mutate(a: Arrays) -> Arrays:
        arr = a[key].copy()
        arr.flat[5] = value
        a[key] = arr
        return a

    return mutate


def _raw(content: bytes, name: str = "bad.npz") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content)
        return path

    return write


def _truncated(folder: Path) -> Path:
    good = folder / "good.npz"
    np.savez(good, **valid_arrays())
    path = folder / "bad.npz"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return path


def _directory(folder: Path) -> Path:
    path = folder / "bad.npz"
    path.mkdir()
    return path


def _fifo(folder: Path) -> Path:
    path = folder / "bad.npz"
    os.mkfifo(path)  # opening it would wait for a writer forever
    return path


def _symlink_loop(folder: Path) -> Path:
    path = folder / "bad.npz"
    path.symlink_to(folder / "loop.npz")
    (folder / "loop.npz").symlink_to(path)
    return path


PWNED = Path(__file__).with_name("PWNED")
"""Created if and only if unpickling a crafted file ran code."""


class _Boom:
    """Unpickling this would create a file: proof that code ran."""

    def __reduce__(self):
        return (Path.touch, (PWNED,))


def _pickled(key: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        arrays = valid_arrays()
        bomb = np.empty(1, dtype=object)
        bomb[0] = _Boom()
        arrays[key] = bomb
        path = folder / "bad.npz"
        np.savez(path, **arrays)
        return path

    return write


def _zip_not_npy(folder: Path) -> Path:
    path = folder / "bad.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("diffraction.npy", b"not an array")
    return path


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _members(replace: Callable[[Arrays], dict[str, bytes]]) -> Callable[[Path], Path]:
    """A zip of valid .npy members, with some members' bytes replaced."""

    def write(folder: Path) -> Path:
        arrays = valid_arrays()
        members = {k: _npy_bytes(v) for k, v in arrays.items()} | replace(arrays)
        path = folder / "bad.npz"
        with zipfile.ZipFile(path, "w") as zf:
            for key, content in members.items():
                zf.writestr(f"{key}.npy", content)
        return path

    return write


def _lying_header(a: Arrays) -> dict[str, bytes]:
    n = len(a["diffraction"])
    real = _npy_bytes(a["diffraction"])
    return {"diffraction": real.replace(f"({n}, ".encode(), f"({n * 10**6}, ".encode(), 1)}


def _zip_bytes(arrays: Arrays, deflate: str | None = None) -> tuple[bytearray, zipfile.ZipInfo]:
    """A zip of `arrays` as .npy members (`deflate` deflated, the rest stored) and the info of
    the `deflate` member (or the diffraction's)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for key, value in arrays.items():
            method = zipfile.ZIP_DEFLATED if key == deflate else zipfile.ZIP_STORED
            zf.writestr(f"{key}.npy", _npy_bytes(value), compress_type=method)
    data = bytearray(buffer.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(f"{deflate or 'diffraction'}.npy")
    return data, info


def _bad_deflate_stream(folder: Path) -> Path:
    """The diffraction deflated, its first block header made invalid (a zlib error)."""
    data, info = _zip_bytes(valid_arrays(), deflate="diffraction")
    data[info.header_offset + 30 + len(info.filename) + len(info.extra)] = 0xFF
    path = folder / "bad.npz"
    path.write_bytes(bytes(data))
    return path


def _unsupported_method(folder: Path) -> Path:
    """The diffraction's member claims Deflate64 (method 9), which Python cannot read."""
    data, info = _zip_bytes(valid_arrays())
    struct.pack_into("<H", data, info.header_offset + 8, 9)  # the local header
    entry = data.find(b"PK\x01\x02")
    while entry != -1:  # the central directory's entry
        name_length = struct.unpack_from("<H", data, entry + 28)[0]
        if data[entry + 46 : entry + 46 + name_length] == b"diffraction.npy":
            struct.pack_into("<H", data, entry + 10, 9)
        entry = data.find(b"PK\x01\x02", entry + 4)
    path = folder / "bad.npz"
    path.write_bytes(bytes(data))
    return path


CASES: list[Case] = [
    *[
        Case(f"missing-{k}", _npz(_drop(k)), ("missing required key", k))
        for k in ("diffraction", "objectGuess", "probeGuess", "xcoords", "ycoords")
    ],
    Case(
        "diffraction-2d",
        _npz(_set("diffraction", lambda a: a["diffraction"][0])),
        ("diffraction", "3-D"),
    ),
    Case(
        "probe-3d", _npz(_set("probeGuess", lambda a: a["probeGuess"][None])), ("probeGuess", "2-D")
    ),
    Case("coords-2d", _npz(_set("xcoords", lambda a: a["xcoords"][:, None])), ("xcoords", "1-D")),
    Case(
        "complex-diffraction",
        _npz(_set("diffraction", lambda a: a["diffraction"].astype(np.complex64))),
        ("diffraction", "real"),
    ),
    Case(
        "real-object",
        _npz(_set("objectGuess", lambda a: np.abs(a["objectGuess"]))),
        ("objectGuess", "complex"),
    ),
    Case(
        "real-probe",
        _npz(_set("probeGuess", lambda a: np.abs(a["probeGuess"]))),
        ("probeGuess", "complex"),
    ),
    Case(
        "string-coords",
        _npz(_set("ycoords", lambda a: a["ycoords"].astype(str))),
        ("ycoords", "real"),
    ),
    *[
        Case(f"{bad}-{k}", _npz(_with_nan(k, v)), (k, "NaN or Inf"))
        for k in ("diffraction", "objectGuess", "probeGuess", "xcoords", "ycoords")
        for bad, v in (("nan", np.nan), ("inf", np.inf))
    ],
    Case("negative-amplitude", _npz(_with_nan("diffraction", -1.0)), ("diffraction", "negative")),
    Case(
        "all-zero-diffraction",
        _npz(_set("diffraction", lambda a: np.zeros_like(a["diffraction"]))),
        ("diffraction", "zero"),
    ),
    Case(
        "length-mismatch",
        _npz(_set("xcoords", lambda a: a["xcoords"][:-1])),
        ("xcoords", "does not match"),
    ),
    Case(
        "one-position",
        _npz(
            lambda a: {
                k: (v[:1] if k in ("diffraction", "xcoords", "ycoords") else v)
                for k, v in a.items()
            }
        ),
        ("diffraction", "at least 2"),
    ),
    Case(
        "non-square",
        _npz(_set("diffraction", lambda a: a["diffraction"][:, :, :-2])),
        ("diffraction", "square"),
    ),
    Case(
        "probe-far-too-bright",
        _npz(_set("probeGuess", lambda a: a["probeGuess"] * np.float32(1e20))),
        ("probeGuess", "power", "rescale the probe"),
    ),
    Case(
        "probe-far-too-faint",
        _npz(_set("probeGuess", lambda a: a["probeGuess"] * np.float32(1e-20))),
        ("probeGuess", "power", "rescale the probe"),
    ),
    Case(
        "probe-one-pixel",
        _npz(_set("probeGuess", _one_pixel)),
        ("probeGuess", "sits in about 1.0 pixel:"),
    ),
    Case(
        "probe-hot-pixel",
        _npz(_set("probeGuess", _hot_pixel)),
        ("probeGuess", "sits in about 1.0 pixel:"),
    ),
    Case(
        "probe-shape",
        _npz(_set("probeGuess", lambda a: np.ones((16, 16), np.complex64))),
        ("probeGuess", "does not match"),
    ),
    Case(
        "positions-outside",
        _npz(_set("xcoords", lambda a: a["xcoords"] + 500)),
        ("xcoords", "outside the object"),
    ),
    Case(
        "degenerate-scan",
        _npz(
            lambda a: {**a, "xcoords": a["xcoords"] * 0 + 20.3, "ycoords": a["ycoords"] * 0 + 20.6}
        ),
        ("xcoords", "within 1 pixel"),
    ),
    Case("empty-file", _raw(b""), ("empty",)),
    Case("truncated-zip", _truncated, ("damaged zip archive", "truncated")),
    Case("not-npz", _raw(b"hello, I am a text file\n" * 10), ("not an NPZ",)),
    Case("zip-without-arrays", _zip_not_npy, ("missing required key",)),
    Case("directory", _directory, ("directory",)),
    Case("fifo", _fifo, ("not a regular file",)),
    Case("symlink-loop", _symlink_loop, ("symbolic link to nothing",)),
    Case("pickled-diffraction", _pickled("diffraction"), ("diffraction", "pickled")),
    Case("missing-file", lambda folder: folder / "absent.npz", ("not found",)),
    Case(
        "member-not-npy",
        _members(lambda a: {"diffraction": b"garbage, not an array"}),
        ("diffraction", "not .npy"),
    ),
    Case("header-declares-more", _members(_lying_header), ("diffraction", "damaged")),
    Case(
        "metadata-not-utf8",
        _npz(_set("metadata", lambda a: np.array(b'{"note": "\xff\xfe"}'))),
        ("metadata", "UTF-8"),
    ),
    Case(
        "metadata-nested-too-deep",
        _npz(_set("metadata", lambda a: np.array("[" * 100_000 + "]" * 100_000))),
        ("metadata", "nested"),
    ),
    Case(
        "amplitudes-overflow-float32",
        _npz(_set("diffraction", lambda a: a["diffraction"] * np.float32(1e19))),
        ("diffraction", "largest amplitude", "rescale"),
    ),
    Case(
        "amplitudes-vanish-in-float32",
        _npz(_set("diffraction", lambda a: a["diffraction"] * np.float32(1e-30))),
        ("diffraction", "largest amplitude", "rescale"),
    ),
    Case(
        "nan-in-truth",
        _npz(_set("Y", lambda a: np.full((len(a["xcoords"]), 4, 4), np.nan, np.complex64))),
        ("Y", "NaN"),
    ),
    Case(
        "timedelta-diffraction",
        _npz(_set("diffraction", lambda a: a["diffraction"].astype("m8[s]"))),
        ("diffraction", "expected real numbers"),
    ),
    Case(
        "non-square-Y",
        _npz(_set("Y", lambda a: np.ones((len(a["xcoords"]), 4, 6), np.complex64))),
        ("Y", "square"),
    ),
    Case("damaged-deflate-stream", _bad_deflate_stream, ("diffraction", "damaged")),
    Case("unsupported-compression", _unsupported_method, ("diffraction", "not supported")),
    Case(
        "metadata-integer-too-long",
        _npz(_set("metadata", lambda a: np.array('{"n": ' + "1" * 5000 + "}"))),
        ("metadata", "not valid JSON"),
    ),
    Case(
        "empty-object",
        _npz(lambda a: {**a, "objectGuess": np.ones((0, 64), np.complex64)}),
        ("objectGuess", "empty"),
    ),
    Case(
        "amplitudes-beyond-the-engine",  # finite in float32, NaN in pty-chi's step sizes
        _npz(_set("diffraction", lambda a: a["diffraction"] / a["diffraction"].max() * 1e8)),
        ("diffraction", "largest amplitude", "rescale"),
    ),
    Case(
        "float64-beyond-single-precision",
        _npz(_set("diffraction", lambda a: _with_value(a["diffraction"], 1e39))),
        ("diffraction", "beyond single precision"),
    ),
    Case(
        "patterns-too-small",
        _npz(
            lambda a: {
                **a,
                "diffraction": a["diffraction"][:, :4, :4],
                "probeGuess": a["probeGuess"][:4, :4],
            }
        ),
        ("diffraction", "at least 8 px"),
    ),
    Case(
        "metadata-lone-surrogate",
        _npz(_set("metadata", lambda a: np.array('{"view": "\\ud800"}'))),
        ("metadata", "surrogate"),
    ),
]


def _with_value(arr: np.ndarray, value: float) -> np.ndarray:
    out = arr.astype(np.float64)
    out.flat[0] = value
    return out
