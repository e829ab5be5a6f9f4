"""A reconstruction against the known truth, on the canvas it was made on.

The truth is objectGuess placed on the reconstruction's canvas; the scored region is the
illuminated part of the scan that lies inside objectGuess. Used by `reconstruct` (metrics.json),
the benchmarks and `flyrecon evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flyrecon.data import PtychoDataset
from flyrecon.geometry import Canvas, object_on_canvas

MIN_SCORED_PIXELS = 121
"""Fewer scored pixels than one 11 x 11 SSIM window give no metrics (a 4 x 4 objectGuess
under a 64 px probe is a placeholder, not a truth)."""


@dataclass
class Scored:
    """The truth on the canvas, the scored region and the evaluation against it."""

    truth: np.ndarray
    mask: np.ndarray
    evaluation: Any
    """`metrics.Evaluation`: the aligned reconstruction and the metrics."""

    @property
    def metrics(self) -> dict[str, Any]:
        return self.evaluation.metrics


def truth_region(dataset: PtychoDataset, canvas: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """objectGuess on the canvas (0 outside it) and the illuminated pixels inside it."""
    from flyrecon.metrics import illuminated_mask

    truth = object_on_canvas(dataset.object_guess, canvas, fill=0)
    mask = illuminated_mask(
        canvas.shape,
        dataset.ycoords - canvas.origin_px[0],
        dataset.xcoords - canvas.origin_px[1],
        dataset.probe_guess,
    )
    rows, cols, _, _ = canvas.crop_of(dataset.object_guess.shape)
    inside = np.zeros(canvas.shape, dtype=bool)
    inside[rows, cols] = True
    return truth, mask & inside


def score(dataset: PtychoDataset, canvas: Canvas, obj: np.ndarray) -> Scored | None:
    """`obj` (on `canvas`) against objectGuess; None when too few pixels can be scored or
    objectGuess is constant on them (all zero, all ones: a placeholder, not a truth)."""
    from flyrecon.metrics import evaluate

    truth, mask = truth_region(dataset, canvas)
    if mask.sum() < MIN_SCORED_PIXELS:
        return None
    values = truth[mask]
    if np.all(values == values[0]):  # all zero or all ones: a placeholder
        return None
    return Scored(truth=truth, mask=mask, evaluation=evaluate(obj, truth, mask))
