"""The study's job matrix: pure planning, no I/O beyond listing folders.

Three doses x three views (baseline, dense, sparse) x two splits, narrowed by the filters;
where each job's input lives and where its outputs go is `flyrecon.layout`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flyrecon import layout
from flyrecon.options import Split, StudyOptions, View


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
        return f"{layout.dose_dir(self.dose)}/{self.view}/{self.split}"

    @property
    def phase(self) -> str:
        """`C` for the baseline view, `D` for the overlap views."""
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
                match = layout.DOSE_DIR.match(child.name)
                if match and child.is_dir():
                    found.add(int(match.group(1)))
    return tuple(sorted(found))


def plan_study(options: StudyOptions) -> StudyPlan:
    """Build the dose x view x split matrix from the doses found, then apply the filters."""
    doses = discover_doses(options.phase_c_root, options.phase_d_root)
    jobs = tuple(
        Job(
            dose=dose,
            view=view,
            split=split,
            input_npz=layout.input_path(
                options.phase_c_root, options.phase_d_root, dose, view, split
            ),
            output_dir=layout.output_dir(options.artifact_root, dose, view, split),
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
