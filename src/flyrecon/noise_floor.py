"""The amplitude error that Poisson noise alone leaves: the floor of a truth-free stop.

For counts Y ~ Poisson(lam), a model that predicts the true intensity lam exactly still has an
expected squared amplitude error `E[(sqrt(Y) - sqrt(lam))^2]` per pixel: about 1/4 for bright
pixels and about 2 lam for faint ones. A reconstruction whose error on the measured amplitudes
falls below the mean of that floor is fitting the noise (the discrepancy principle), so more
epochs cannot help. `amplitude_noise_floor` evaluates the floor from a precomputed table.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

LAM_MIN, LAM_MAX = 1e-6, 1e2
"""Table range. Below it the floor is 2 lam; above it 1/4 + 7 / (64 lam) (within 3e-5)."""
_POINTS_PER_DECADE = 64
_LOG_MIN = np.log(LAM_MIN)
_LOG_STEP = np.log(10.0) / _POINTS_PER_DECADE
_N_POINTS = 8 * _POINTS_PER_DECADE + 1  # 1e-6 .. 1e2


@lru_cache(maxsize=1)
def floor_table() -> np.ndarray:
    """The floor at lam = LAM_MIN * 10 ** (i / 64), i = 0 .. 512, summed over the pmf."""
    lams = np.exp(_LOG_MIN + _LOG_STEP * np.arange(_N_POINTS))
    k = np.arange(int(LAM_MAX + 12.0 * np.sqrt(LAM_MAX) + 30.0), dtype=np.float64)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(k[1:]))])
    pmf = np.exp(k * np.log(lams[:, None]) - lams[:, None] - log_factorial)  # (lams, k)
    return np.sum(pmf * (np.sqrt(k) - np.sqrt(lams[:, None])) ** 2, axis=1)


def amplitude_noise_floor(intensity: Any) -> Any:
    """`E[(sqrt(Y) - sqrt(lam))^2]`, Y ~ Poisson(lam), for each expected count `lam`.

    Takes a numpy array or a torch tensor (computed in torch, on the tensor's device): the
    table is on a uniform grid in log lam, so the lookup is arithmetic, not a search.
    """
    if isinstance(intensity, np.ndarray | np.generic | float | int):
        xp, lam = np, np.asarray(intensity, dtype=np.float64)
        table = floor_table()
    else:  # a torch tensor
        import torch

        xp, lam = torch, intensity
        table = torch.as_tensor(floor_table(), dtype=lam.dtype, device=lam.device)
    x = (xp.log(xp.clip(lam, LAM_MIN, LAM_MAX)) - _LOG_MIN) / _LOG_STEP
    cell = xp.clip(xp.floor(x), 0, _N_POINTS - 2)
    weight = x - cell
    if xp is np:
        index = cell.astype(np.intp)
        low, high = table[index], table[index + 1]
    else:  # torch.take: the same values as indexing, a third of its time on the CPU
        index = cell.long()
        low, high = xp.take(table, index), xp.take(table, index + 1)
    out = low * (1 - weight) + high * weight
    out = xp.where(lam < LAM_MIN, 2.0 * xp.clip(lam, 0.0, None), out)
    return xp.where(lam > LAM_MAX, 0.25 + 7.0 / (64.0 * xp.clip(lam, LAM_MAX, None)), out)
