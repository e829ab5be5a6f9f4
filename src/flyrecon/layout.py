"""Where the study's files live: one home for every folder and file name flyrecon uses.

A *study root* is what `prep-synthetic` writes: `phase_c/` (the baseline view: every scan
position of a split), `phase_d/` (the dense and sparse overlap views) and `study.json`;
`study-run --study-root` puts its *artifact root* at `reconstructions/` there.

- inputs: `<phase_c_root>/dose_<int>/patched_<split>.npz`,
  `<phase_d_root>/dose_<int>/<view>/<view>_<split>.npz`;
- one job's outputs: `<artifact_root>/dose_<int>/<view>/<split>/` (see the job file names);
- the study's records and report at the artifact root (see the study file names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flyrecon.options import Split, View

PHASE_C = "phase_c"
PHASE_D = "phase_d"
RECONSTRUCTIONS = "reconstructions"
STUDY_JSON = "study.json"
DOSE_DIR = re.compile(r"^dose_(\d+)$")

# one job's files, in its output folder
RESULT_JSON = "result.json"
"""Written last: a job folder with a `succeeded` result.json is complete."""
RESULT_NPZ = "ptychi_reconstruction.npz"
FIGURE_PNG = "reconstruction.png"
METRICS_JSON = "metrics.json"
LOG_NAME = "reconstruct.log"
PRODUCT_H5 = "ptychodus_product.h5"
"""The result as a ptychodus 1.7 data product (`flyrecon.product`)."""
JOB_JSON = "job.json"
"""study-run's stamp of what made a job's outputs (input hash, settings): resume reads it."""
JOB_OUTPUTS = (RESULT_JSON, RESULT_NPZ, PRODUCT_H5, FIGURE_PNG, METRICS_JSON)

# the study's files, at the artifact root
MANIFEST_JSON = "reconstruction_manifest.json"
SKIP_JSON = "skip_summary.json"
SUMMARY_CSV = "study_summary.csv"
SUMMARY_MD = "study_summary.md"
METRICS_VS_DOSE_PNG = "metrics_vs_dose.png"
LOCK_NAME = ".flyrecon-study.lock"


def phase_grid_png(split: Split | str) -> str:
    """The phase-grid figure of one split."""
    return f"phase_grid_{split}.png"


def dose_dir(dose: int) -> str:
    """`dose_<int>`: the folder of one dose, in the inputs and the artifacts alike."""
    return f"dose_{int(dose)}"


def input_path(phase_c_root: Path, phase_d_root: Path, dose: int, view: View, split: Split) -> Path:
    """The input file of one dose, view and split."""
    view, split = View(view), Split(split)
    if view == View.BASELINE:
        return phase_c_root / dose_dir(dose) / f"patched_{split}.npz"
    return phase_d_root / dose_dir(dose) / str(view) / f"{view}_{split}.npz"


def output_dir(artifact_root: Path, dose: int, view: View, split: Split) -> Path:
    """The output folder of one job (always under the artifact root)."""
    return artifact_root / dose_dir(dose) / str(View(view)) / str(Split(split))


@dataclass(frozen=True)
class StudyRoot:
    """A prep-synthetic output folder and its parts."""

    root: Path

    @property
    def phase_c(self) -> Path:
        return self.root / PHASE_C

    @property
    def phase_d(self) -> Path:
        return self.root / PHASE_D

    @property
    def reconstructions(self) -> Path:
        return self.root / RECONSTRUCTIONS

    @property
    def study_json(self) -> Path:
        return self.root / STUDY_JSON

    def input_path(self, dose: int, view: View | str, split: Split | str) -> Path:
        return input_path(self.phase_c, self.phase_d, dose, View(view), Split(split))
