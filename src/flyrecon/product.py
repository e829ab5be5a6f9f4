"""ptychodus data products: a reconstruction where beamline users open it.

The layout is ptychodus 1.7's (`ptychodus.api.io.save_product` / `load_product`), written and
read with h5py (flyrecon does not import ptychodus). Root attributes: name, comments,
detector_object_distance_m, photon_energy_eV, probe_photon_count, exposure_time_s,
mass_attenuation_m2_per_kg, tomography_angle_deg, focus_object_distance_m, tilt_angle_deg,
far_field. Datasets: `object` (layers, H, W) with attributes center_x_m, center_y_m,
pixel_width_m, pixel_height_m; `object_layer_spacing_m`; `probe` (opr, modes, N, N) with its
pixel size; `probe_position_indexes`, `probe_position_x_m`, `probe_position_y_m`;
`loss_epochs`, `loss_values`.

Frames: flyrecon puts metre 0 at objectGuess pixel 0, so a probe centre at DATA-001
(xcoords, ycoords) is at (x, y) x pixel in metres. ptychodus maps object pixel j to
center + pixel x (j - (W - 1) / 2); canvas pixel j is objectGuess pixel j + origin, hence
center = (origin + (W - 1) / 2) x pixel, and positions map back to canvas pixels exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flyrecon.atomic import atomic_path
from flyrecon.data import PtychoDataset
from flyrecon.errors import InputError, one_line
from flyrecon.memory import check_memory
from flyrecon.options import PhysicalGeometry


@dataclass
class ProductData:
    """What a product holds, in flyrecon's terms."""

    name: str
    object: np.ndarray
    """(H, W) complex: the object on its canvas."""
    origin_px: tuple[float, float]
    """objectGuess (row, col) of object pixel (0, 0)."""
    pixel_m: float
    probe: np.ndarray
    """(N, N) complex."""
    ycoords: np.ndarray
    """Probe centres in objectGuess pixels (DATA-001's convention)."""
    xcoords: np.ndarray
    indexes: np.ndarray
    photon_energy_ev: float
    detector_distance_m: float
    losses: list[float] = field(default_factory=list)
    probe_photon_count: float = 0.0
    comments: str = ""


def recorded_geometry(metadata: dict[str, Any]) -> tuple[PhysicalGeometry | None, str | None]:
    """The geometry the input's metadata records (prep-synthetic writes one), and what is
    wrong with it when it is recorded but unusable (incomplete or out of range)."""
    recorded = metadata.get("geometry") if isinstance(metadata, dict) else None
    if recorded is None:
        return None, None
    try:
        fields = {k: recorded[k] for k in PhysicalGeometry.model_fields}
        return PhysicalGeometry(**fields), None
    except (KeyError, ValueError, TypeError) as exc:
        detail = f"no {exc}" if isinstance(exc, KeyError) else one_line(exc, 160)
        return None, f"geometry is incomplete or out of range ({detail})"


def resolve_geometry(
    metadata: dict[str, Any], given: PhysicalGeometry | None
) -> tuple[PhysicalGeometry, str]:
    """The physical geometry of a dataset and where it came from: its metadata's `geometry`
    (prep-synthetic records one), else `given` (the command line), else the defaults."""
    recorded, problem = recorded_geometry(metadata)
    if recorded is not None:
        return recorded, "recorded in the input's metadata"
    unusable = ""
    if problem:
        unusable = "; the input's metadata geometry is incomplete or out of range, not used"
    if given is not None:
        return given, "given on the command line" + unusable
    return PhysicalGeometry(), "flyrecon's defaults" + (unusable or " (the input records none)")


def build_product(
    dataset: PtychoDataset,
    *,
    obj: np.ndarray,
    probe: np.ndarray,
    origin_px: tuple[int, int],
    losses: list[float],
    description: str,
    name: str,
    given: PhysicalGeometry | None = None,
) -> ProductData:
    """A product of a reconstruction of `dataset` (its scan, counts and geometry)."""
    geometry, source = resolve_geometry(dataset.metadata, given)
    pixel = geometry.object_pixel_m(dataset.pattern_size)
    counts = float(np.mean(np.sum(dataset.diffraction.astype(np.float64) ** 2, axis=(1, 2))))
    comments = (
        f"{description}. Geometry {source}: photon energy {geometry.photon_energy_ev:g} eV, "
        f"detector distance {geometry.detector_distance_m:g} m, detector pixel "
        f"{geometry.detector_pixel_m:g} m, object pixel {pixel:.6g} m. Positions in metres "
        "are DATA-001 xcoords/ycoords times the object pixel."
    )
    return ProductData(
        name=name,
        object=obj,
        origin_px=(float(origin_px[0]), float(origin_px[1])),
        pixel_m=pixel,
        probe=probe,
        ycoords=dataset.ycoords,
        xcoords=dataset.xcoords,
        indexes=np.arange(dataset.n_patterns),
        photon_energy_ev=geometry.photon_energy_ev,
        detector_distance_m=geometry.detector_distance_m,
        losses=list(losses),
        probe_photon_count=counts,
        comments=comments,
    )


def write_product(path: Path, product: ProductData) -> Path:
    """Write `product` atomically as a ptychodus 1.7 HDF5 product."""
    import h5py

    rows, cols = product.object.shape
    px = product.pixel_m
    center_x = (product.origin_px[1] + (cols - 1) / 2) * px
    center_y = (product.origin_px[0] + (rows - 1) / 2) * px
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["name"] = product.name
        h5.attrs["comments"] = product.comments
        h5.attrs["detector_object_distance_m"] = product.detector_distance_m
        h5.attrs["photon_energy_eV"] = product.photon_energy_ev
        h5.attrs["probe_photon_count"] = product.probe_photon_count
        h5.attrs["exposure_time_s"] = 0.0
        h5.attrs["mass_attenuation_m2_per_kg"] = 0.0
        h5.attrs["tomography_angle_deg"] = 0.0
        h5.attrs["focus_object_distance_m"] = 0.0
        h5.attrs["tilt_angle_deg"] = 0.0
        h5.attrs["far_field"] = True
        h5.create_dataset("probe_position_indexes", data=np.asarray(product.indexes, np.int64))
        h5.create_dataset("probe_position_x_m", data=np.asarray(product.xcoords, float) * px)
        h5.create_dataset("probe_position_y_m", data=np.asarray(product.ycoords, float) * px)
        probe = h5.create_dataset("probe", data=product.probe.astype(np.complex64)[None, None])
        probe.attrs["pixel_width_m"] = px
        probe.attrs["pixel_height_m"] = px
        obj = h5.create_dataset("object", data=product.object.astype(np.complex64)[None])
        obj.attrs["center_x_m"] = center_x
        obj.attrs["center_y_m"] = center_y
        obj.attrs["pixel_width_m"] = px
        obj.attrs["pixel_height_m"] = px
        h5.create_dataset("object_layer_spacing_m", data=np.zeros(0))
        h5.create_dataset("loss_epochs", data=np.arange(1, len(product.losses) + 1))
        h5.create_dataset("loss_values", data=np.asarray(product.losses, float))
    return path


def _attr(h5: Any, name: str, path: Path) -> Any:
    try:
        return h5.attrs[name]
    except KeyError:
        raise InputError(path, "missing attribute", name) from None


def _check_loadable(dataset: Any, path: Path, key: str) -> None:
    """Refuse an empty dataset, or one larger than this machine's memory, before reading it."""
    if dataset.size == 0:
        raise InputError(path, f"is empty (shape {dataset.shape})", key)
    check_memory(dataset.size * dataset.dtype.itemsize, path, f"shape {dataset.shape}", key)


def read_product(path: Path) -> ProductData:
    """Read a ptychodus product (flyrecon's or another program's); InputError if unusable."""
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except FileNotFoundError:
        raise InputError(path, "not found") from None
    except OSError as exc:
        raise InputError(path, f"not an HDF5 file ({exc})") from None
    with h5:
        for key in ("object", "probe", "probe_position_x_m", "probe_position_y_m"):
            if not isinstance(h5.get(key), h5py.Dataset):
                raise InputError(path, "missing dataset", key)
            _check_loadable(h5[key], path, key)
        obj = np.asarray(h5["object"][()])
        if obj.ndim == 3:
            obj = obj[0]
        if obj.ndim != 2 or not np.iscomplexobj(obj):
            raise InputError(
                path, f"expected a complex (layers, H, W) array, got {obj.shape}", "object"
            )
        px = float(_attr(h5["object"], "pixel_width_m", path))
        if not px > 0:
            raise InputError(path, f"pixel size must be positive, got {px}", "object")
        rows, cols = obj.shape
        center_x = float(_attr(h5["object"], "center_x_m", path))
        center_y = float(_attr(h5["object"], "center_y_m", path))
        probe = np.asarray(h5["probe"][()])
        while probe.ndim > 2:
            probe = probe[0]
        x = np.asarray(h5["probe_position_x_m"][()], float) / px
        y = np.asarray(h5["probe_position_y_m"][()], float) / px
        indexes = h5.get("probe_position_indexes")
        losses = h5.get("loss_values")
        return ProductData(
            name=str(h5.attrs.get("name", path.stem)),
            object=obj.astype(np.complex64),
            origin_px=(center_y / px - (rows - 1) / 2, center_x / px - (cols - 1) / 2),
            pixel_m=px,
            probe=probe.astype(np.complex64),
            ycoords=y,
            xcoords=x,
            indexes=np.asarray(indexes[()]) if indexes is not None else np.arange(len(x)),
            photon_energy_ev=float(h5.attrs.get("photon_energy_eV", 0.0)),
            detector_distance_m=float(h5.attrs.get("detector_object_distance_m", 0.0)),
            losses=[float(v) for v in (losses[()] if losses is not None else [])],
            probe_photon_count=float(h5.attrs.get("probe_photon_count", 0.0)),
            comments=str(h5.attrs.get("comments", "")),
        )
