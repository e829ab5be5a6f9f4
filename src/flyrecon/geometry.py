"""The reconstruction canvas: which object pixels pty-chi solves for, and how they map back.

pty-chi wants probe-centre positions relative to the centre of its object buffer. For an
even-sized buffer and DATA-001's convention (the probe centre is pixel N/2 of its window),
``position = pixel - size / 2`` is exact: with the true object and probe, noiseless data give
zero loss, and half a pixel either way does not (a test holds this). flyrecon sizes the
buffer (even in both axes) to cover every probe position plus half a probe and a margin, and
records the objectGuess pixel that canvas pixel (0, 0) corresponds to, so results compare
with the truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MARGIN_PX = 2
"""Extra pixels on each side, room for pty-chi's sub-pixel shifts."""


@dataclass(frozen=True)
class Canvas:
    """The object buffer pty-chi reconstructs on."""

    shape: tuple[int, int]
    """(rows, cols) of the buffer."""
    origin_px: tuple[int, int]
    """objectGuess (row, col) of canvas pixel (0, 0); may be negative."""

    def positions_px(self, ycoords: np.ndarray, xcoords: np.ndarray) -> np.ndarray:
        """(n, 2) [y, x] positions in pty-chi's convention: relative to the buffer centre."""
        rows, cols = self.shape
        y = ycoords - self.origin_px[0] - rows / 2
        x = xcoords - self.origin_px[1] - cols / 2
        return np.stack([y, x], axis=1)

    def crop_of(self, object_shape: tuple[int, int]) -> tuple[slice, slice, slice, slice]:
        """Slices (canvas rows, canvas cols, object rows, object cols) of their common area."""
        r0, c0 = self.origin_px
        rows, cols = self.shape
        or0, oc0 = max(r0, 0), max(c0, 0)
        or1, oc1 = min(r0 + rows, object_shape[0]), min(c0 + cols, object_shape[1])
        return (
            slice(or0 - r0, or1 - r0),
            slice(oc0 - c0, oc1 - c0),
            slice(or0, or1),
            slice(oc0, oc1),
        )


def canvas_for(ycoords: np.ndarray, xcoords: np.ndarray, probe_size: int) -> Canvas:
    """The smallest buffer covering every probe (centre +- half a probe) plus a margin."""
    half = probe_size / 2
    r0 = math.floor(float(ycoords.min()) - half) - MARGIN_PX
    c0 = math.floor(float(xcoords.min()) - half) - MARGIN_PX
    r1 = math.ceil(float(ycoords.max()) + half) + MARGIN_PX
    c1 = math.ceil(float(xcoords.max()) + half) + MARGIN_PX
    r1 += (r1 - r0) % 2  # pty-chi's buffer centre rounds: keep both sizes even
    c1 += (c1 - c0) % 2
    return Canvas(shape=(r1 - r0, c1 - c0), origin_px=(r0, c0))


def object_on_canvas(object_guess: np.ndarray, canvas: Canvas, fill: complex = 1.0) -> np.ndarray:
    """objectGuess resampled onto the canvas (area outside it set to `fill`)."""
    out = np.full(canvas.shape, fill, dtype=np.complex64)
    cr, cc, orr, oc = canvas.crop_of(object_guess.shape)
    out[cr, cc] = object_guess[orr, oc]
    return out
