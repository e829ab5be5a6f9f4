"""Export an existing study's reconstructions as ptychodus products (`flyrecon export`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from flyrecon import __version__, layout
from flyrecon.atomic import folder_lock
from flyrecon.data import load_dataset, open_npz, read_array
from flyrecon.errors import FlyreconError
from flyrecon.options import PhysicalGeometry
from flyrecon.product import build_product, write_product
from flyrecon.records import JobStatus
from flyrecon.report import latest_records

_RESULT_KEYS = (
    "object",
    "probe",
    "canvas_origin_px",
    "loss_history",
    "algorithm",
    "flyrecon_settings_json",
)
"""What a product is rebuilt from, besides the job's input."""


@dataclass
class ExportResult:
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """One line per job not exported, saying why."""


def export_study(artifact_root: Path, given: PhysicalGeometry | None = None) -> ExportResult:
    """Write `ptychodus_product.h5` into every succeeded job's folder from its result NPZ and
    its input (scan, counts, recorded geometry). Job folders follow from the artifact root and
    each record's dose, view and split, never from paths in the manifest."""
    from flyrecon.study.manifest import load_manifest

    out = ExportResult()
    for rec in latest_records(load_manifest(artifact_root).execution_results):
        folder = layout.output_dir(artifact_root, rec.dose, rec.view, rec.split)
        if rec.status not in (JobStatus.SUCCEEDED, JobStatus.RESUMED):
            out.skipped.append(f"{rec.key}: {rec.status}")
            continue
        result_npz = folder / layout.RESULT_NPZ
        try:
            with open_npz(result_npz) as npz:
                a = {k: read_array(npz, result_npz, k) for k in _RESULT_KEYS if k in npz.files}
            obj, probe = a["object"], a["probe"]
            origin = tuple(int(v) for v in a["canvas_origin_px"])
            losses = [float(v) for v in a["loss_history"]]
            algorithm = str(a["algorithm"])
            settings = json.loads(str(a["flyrecon_settings_json"]))
            n_images = settings.get("n_images") if isinstance(settings, dict) else None
            # the patterns the job used: --n-images kept the first N
            dataset = load_dataset(rec.input_npz, n_images if isinstance(n_images, int) else None)
        except (KeyError, ValueError, TypeError, FlyreconError) as exc:
            out.skipped.append(f"{rec.key}: {exc}")
            continue
        product = build_product(
            dataset,
            obj=obj,
            probe=probe,
            origin_px=origin,
            losses=losses,
            description=f"flyrecon {__version__} export: {algorithm}, {len(losses)} epochs of "
            f"{Path(rec.input_npz).name}",
            name=f"flyrecon {rec.key}",
            given=given,
        )
        try:
            with folder_lock(folder):  # not while a reconstruct rewrites the job
                out.written.append(write_product(folder / layout.PRODUCT_H5, product))
        except FlyreconError as exc:
            out.skipped.append(f"{rec.key}: {exc}")
    return out
