"""The study's job matrix: pure planning, no I/O beyond listing folders and testing files.

Phase C holds `<phase_c_root>/dose_<int>/patched_<split>.npz` (the `baseline` view); phase D
holds `<phase_d_root>/dose_<int>/<view>/<view>_<split>.npz` (`dense`, `sparse`). Each job
writes into `<artifact_root>/dose_<int>/<view>/<split>/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flyrecon.options import Split, StudyOptions, View

DOSE_DIR = re.compile(r"^dose_(\d+)$")


@dataclass(frozen=True)
class Job:
    """One reconstruction of the study."""

    dose: int
    view: View
    split: Split
    input_npz: Path
    output_dir: Path

    @property
    def key(self) -> str:
        return f"dose_{self.dose}/{self.view}/{self.split}"

    @property
    def phase(self) -> str:
        return "C" if self.view == View.BASELINE else "D"


@dataclass(frozen=True)
class StudyPlan:
    """The full matrix and the jobs the filters keep."""

    all_jobs: tuple[Job, ...]
    selected: tuple[Job, ...]
    doses_found: tuple[int, ...]

    @property
    def filtered_out(self) -> int:
        return len(self.all_jobs) - len(self.selected)


def discover_doses(*roots: Path) -> tuple[int, ...]:
    """Doses named by `dose_<int>` folders in any of the roots, ascending."""
    found: set[int] = set()
    for root in roots:
        if root.is_dir():
            for child in root.iterdir():
                match = DOSE_DIR.match(child.name)
                if match and child.is_dir():
                    found.add(int(match.group(1)))
    return tuple(sorted(found))


def input_path(phase_c_root: Path, phase_d_root: Path, dose: int, view: View, split: Split) -> Path:
    """Where the input of one job lives."""
    if view == View.BASELINE:
        return phase_c_root / f"dose_{dose}" / f"patched_{split}.npz"
    return phase_d_root / f"dose_{dose}" / str(view) / f"{view}_{split}.npz"


def output_dir(artifact_root: Path, dose: int, view: View, split: Split) -> Path:
    """Where the outputs of one job go (always under the artifact root)."""
    return artifact_root / f"dose_{dose}" / str(view) / str(split)


def plan_study(options: StudyOptions) -> StudyPlan:
    """Build the dose x view x split matrix from the doses found, then apply the filters."""
    doses = discover_doses(options.phase_c_root, options.phase_d_root)
    jobs = tuple(
        Job(
            dose=dose,
            view=view,
            split=split,
            input_npz=input_path(options.phase_c_root, options.phase_d_root, dose, view, split),
            output_dir=output_dir(options.artifact_root, dose, view, split),
        )
        for dose in doses
        for view in View
        for split in Split
    )
    selected = tuple(
        job
        for job in jobs
        if (not options.doses or job.dose in options.doses)
        and (not options.views or job.view in options.views)
        and (not options.splits or job.split in options.splits)
    )
    return StudyPlan(all_jobs=jobs, selected=selected, doses_found=doses)
