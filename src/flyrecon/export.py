"""Export an existing study's reconstructions as ptychodus products (`flyrecon export`)."""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flyrecon import __version__, layout
from flyrecon.data import load_dataset
from flyrecon.errors import FlyreconError
from flyrecon.options import PhysicalGeometry
from flyrecon.product import build_product, write_product
from flyrecon.records import JobStatus
from flyrecon.report import latest_records


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
            with np.load(result_npz, allow_pickle=False) as npz:
                obj, probe = npz["object"], npz["probe"]
                origin = tuple(int(v) for v in npz["canvas_origin_px"])
                losses = [float(v) for v in npz["loss_history"]]
                algorithm = str(npz["algorithm"])
                settings = json.loads(str(npz["flyrecon_settings_json"]))
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
            out.skipped.append(f"{rec.key}: cannot read {result_npz} ({exc})")
            continue
        try:  # the patterns the job used: --n-images kept the first N
            n_images = settings.get("n_images") if isinstance(settings, dict) else None
            dataset = load_dataset(rec.input_npz, n_images if isinstance(n_images, int) else None)
        except FlyreconError as exc:
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
        out.written.append(write_product(folder / layout.PRODUCT_H5, product))
    return out
