"""Console tables that fit 80 columns: one space between columns, short stop labels."""

from __future__ import annotations

from rich import box
from rich.table import Table

STOP_SHORT = {
    "noise floor": "floor",
    "converged": "converged",
    "max epochs": "cap",
    "fixed epochs": "fixed",
}
"""Stop kinds as the tables show them (study_summary.md explains them in full)."""

STOP_LEGEND = (
    "stop: floor = fit below the noise floor, converged = object stopped",
    "      drifting, cap = --max-epochs, fixed = --num-epochs",
    "ep: epochs; 4+6 = 4 at half resolution (a scan with little overlap), then 6",
)


def epochs_cell(epochs: int | None, half_resolution: int | None = None) -> str:
    """Epochs run as a table shows them: "6", or "4+6" after 4 at half resolution."""
    if epochs is None:
        return ""
    return f"{half_resolution}+{epochs}" if half_resolution else str(epochs)


def compact_table(title: str, columns: tuple[str, ...]) -> Table:
    """A table whose columns are separated by one space, never wrapped."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0))
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def short_stop(kind: str | None) -> str:
    """The table label of a stop kind ("" when the job has none)."""
    return STOP_SHORT.get(kind or "", kind or "")
