"""Score any reconstruction against a DATA-001 truth, with the study's metrics.

A reconstruction may be a flyrecon result (`ptychi_reconstruction.npz`: its canvas origin is
recorded), a ptychodus product (`.h5`: its frame follows from its object centre, pixel size
and probe positions), or any NPZ holding a complex object under `key` (a network's output,
say: its frame is unknown). It is placed on the truth's canvas by the recorded origin where
known, else by the integer offset that maximises its cross-correlation with the truth; the
metrics then register it to sub-pixel precision and remove the global phase and a phase ramp,
exactly as for flyrecon's own results.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flyrecon import layout
from flyrecon.data import PtychoDataset, load_dataset, read_array
from flyrecon.errors import FlyreconError, InputError, one_line
from flyrecon.geometry import Canvas, canvas_for
from flyrecon.scoring import Scored, score

OBJECT_KEYS = ("object", "objectGuess", "obj", "reconstruction")
"""Keys tried, in order, for the object of an NPZ when no `key` is given."""


@dataclass
class Reconstruction:
    """A reconstructed object and what is known of its frame."""

    object: np.ndarray
    origin_px: tuple[float, float] | None
    """objectGuess (row, col) of the object's pixel (0, 0); None when unknown."""
    source: str
    """How it was read (for the report)."""


@dataclass
class EvaluationResult:
    scored: Scored
    canvas: Canvas
    placed: np.ndarray
    """The reconstruction on the truth's canvas."""
    origin_px: tuple[int, int]
    placement: str
    """`recorded origin` or `cross-correlation`."""

    @property
    def metrics(self) -> dict:
        return self.scored.metrics


def load_reconstruction(path: Path, key: str | None = None) -> Reconstruction:
    """Read a reconstruction file (see the module's docstring); InputError when unusable."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "not found")
    if path.is_dir():
        for name in (layout.PRODUCT_H5, layout.RESULT_NPZ):
            if (path / name).is_file():
                return load_reconstruction(path / name, key)
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in (".npz", ".h5", ".hdf5"))
        if len(found) != 1:
            raise InputError(
                path, f"expected one reconstruction (.npz or .h5) in the folder, found {len(found)}"
            )
        return load_reconstruction(found[0], key)
    if not path.is_file():  # a FIFO or device would block or never end
        raise InputError(path, "not a regular file")
    if path.suffix.lower() in (".h5", ".hdf5"):
        from flyrecon.product import read_product

        try:  # its frame: metre 0 at objectGuess pixel 0 (flyrecon's)
            product = read_product(path)
            origin = tuple(float(v) for v in product.origin_px)
        except FlyreconError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
            raise InputError(path, f"not a readable ptychodus product ({one_line(exc)})") from None
        obj = _checked_object(np.asarray(product.object), path, "object")
        if not np.isfinite(origin).all():
            raise InputError(path, "its object's centre or pixel size is not finite")
        return Reconstruction(obj, (origin[0], origin[1]), "ptychodus product")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"not a readable NPZ, NPY or HDF5 file ({exc})") from None
    if isinstance(loaded, np.ndarray):  # a bare .npy array: the object, frame unknown
        return Reconstruction(_checked_object(loaded, path, None), None, "NPY array")
    with loaded as npz:
        keys = (key,) if key else OBJECT_KEYS
        found = next((k for k in keys if k in npz.files), None)
        if found is None:
            wanted = key or " or ".join(OBJECT_KEYS)
            raise InputError(path, f"no object array (looked for {wanted})", key)
        obj = read_array(npz, path, found)
        origin = None
        if "canvas_origin_px" in npz.files:
            o = read_array(npz, path, "canvas_origin_px").ravel()
            if o.size != 2 or o.dtype.kind not in "iuf" or not np.isfinite(o).all():
                raise InputError(path, "expected 2 finite numbers", "canvas_origin_px")
            origin = (float(o[0]), float(o[1]))
    obj = _checked_object(obj, path, found)
    kind = "flyrecon result" if origin is not None else f"NPZ key {found!r}"
    return Reconstruction(obj, origin, kind)


def _checked_object(obj: np.ndarray, path: Path, key: str | None) -> np.ndarray:
    """A 2-D, complex, finite, non-empty, not all-zero object (complex64), or InputError."""
    while obj.ndim > 2 and obj.shape[0] == 1:
        obj = obj[0]
    if obj.ndim != 2 or not np.iscomplexobj(obj):
        raise InputError(path, f"expected a 2-D complex object, got {obj.dtype} {obj.shape}", key)
    if obj.size == 0:
        raise InputError(path, f"the object is empty (shape {obj.shape})", key)
    if not np.isfinite(obj).all():
        raise InputError(path, "holds NaN or Inf", key)
    if not obj.any():
        raise InputError(path, "the object is zero everywhere", key)
    return obj.astype(np.complex64)


def _place(obj: np.ndarray, origin: tuple[int, int], canvas: Canvas) -> np.ndarray:
    """`obj` (whose pixel (0, 0) is objectGuess `origin`) on `canvas`; ones elsewhere."""
    out = np.ones(canvas.shape, dtype=np.complex64)
    dr, dc = origin[0] - canvas.origin_px[0], origin[1] - canvas.origin_px[1]
    r0, c0 = max(0, dr), max(0, dc)
    r1 = min(canvas.shape[0], dr + obj.shape[0])
    c1 = min(canvas.shape[1], dc + obj.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = obj[r0 - dr : r1 - dr, c0 - dc : c1 - dc]
    return out


def correlation_origin(obj: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """The objectGuess (row, col) of `obj`'s pixel (0, 0) that best matches `truth` (FFT
    cross-correlation of the mean-removed complex images, any overlap)."""
    a = obj.astype(np.complex128) - obj.mean()
    b = truth.astype(np.complex128) - truth.mean()
    shape = (a.shape[0] + b.shape[0], a.shape[1] + b.shape[1])
    corr = np.fft.ifft2(np.fft.fft2(b, shape) * np.conj(np.fft.fft2(a, shape)))
    r, c = np.unravel_index(np.argmax(np.abs(corr)), shape)
    r = r - shape[0] if r > b.shape[0] else r
    c = c - shape[1] if c > b.shape[1] else c
    return int(r), int(c)


def evaluate_reconstruction(truth: PtychoDataset, recon: Reconstruction) -> EvaluationResult:
    """Place `recon` on the canvas of `truth`'s scan and score it (InputError if impossible)."""
    canvas = canvas_for(truth.ycoords, truth.xcoords, truth.pattern_size)
    placement = "cross-correlation"
    origin: tuple[int, int] | None = None
    if recon.origin_px is not None:
        origin = (round(recon.origin_px[0]), round(recon.origin_px[1]))
        placement = "recorded origin"
    scored = None
    if origin is not None:
        placed = _place(recon.object, origin, canvas)
        scored = score(truth, canvas, placed)
        if scored is not None and not scored.evaluation.alignment.registered:
            scored = None  # the recorded frame is not the truth's: find it
    if scored is None:
        origin = correlation_origin(recon.object, truth.object_guess)
        placement = "cross-correlation"
        placed = _place(recon.object, origin, canvas)
        scored = score(truth, canvas, placed)
    if scored is None:
        raise InputError(None, "the reconstruction does not cover the truth's scanned region")
    return EvaluationResult(scored, canvas, placed, origin, placement)


def evaluate_files(truth_npz: Path, recon_path: Path, key: str | None = None) -> EvaluationResult:
    """`evaluate_reconstruction` on files."""
    return evaluate_reconstruction(load_dataset(truth_npz), load_reconstruction(recon_path, key))


def write_evaluation(out: Path, result: EvaluationResult, title: str) -> list[Path]:
    """metrics.json and the comparison figure (reconstruction.png) in `out`."""
    from flyrecon.atomic import write_json
    from flyrecon.figures import job_figure

    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out, f"cannot create the output directory ({exc.strerror})") from None
    scored = result.scored
    figure = job_figure(
        out / layout.FIGURE_PNG,
        scored.evaluation.aligned,
        scored.truth,
        scored.mask,
        None,
        [],
        scored.metrics.get("frc"),
        title,
    )
    return [write_json(out / layout.METRICS_JSON, scored.metrics), figure]
