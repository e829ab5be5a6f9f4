"""When a blind reconstruction has converged, and how the default engine gets there sooner.

No pty-chi here (the engine module drives it); the tensor work is plain torch, imported by the
caller's code path only.

- `StopRule`: the automatic stop's decisions on per-epoch numbers (pure, scripted in tests).
- `SmoothChange`: the low-pass part of an epoch's change of the object (phase and
  log-amplitude, mean and plane removed, on the illuminated region).
- `DriftMonitor`: how consistently and how far the object still moves: the straightness of
  the path its smooth changes trace over a window of epochs, and the window's net movement
  relative to the whole path travelled.
- `ObjectMomentum`: Nesterov extrapolation of the object between epochs, with adaptive
  restart, stronger while the drift is steady, paused where a run that never drifted steadily
  starts to wander.
- `IterateWindow`: the last iterates; a converged run returns their average.

Why these (measured in docs/performance.md): LSQML's updates are local, so slowly varying
object errors shrink over hundreds of epochs while the fit to the data hardly changes;
extrapolating along the epoch-to-epoch change removes them several times faster. Once the
slow drift is gone, the object only jitters around its optimum (random minibatches, Poisson
noise): successive changes cancel, the path over a window stops being straight, and averaging
the window's iterates removes much of the jitter. A path that moves the object by little
against the way it has come, straight or not, has converged too.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

WINDOW_EPOCHS = 8
"""Epochs over which the drift's straightness is judged and whose iterates are averaged."""
STRAIGHTNESS_CONVERGED = 0.2
"""Converged when |sum of the window's low-pass changes| / sum of their sizes falls below this:
a steady drift gives about 1, a random walk 1/sqrt(8) = 0.35, independent jitter about an
optimum 1/8, LSQML's correlated jitter 0.15-0.25. 0.3 stopped while a slow drift was still
under the jitter (plain LSQML gained 0.01-0.05 SSIM later); 0.2 met both quality targets in
34 instead of 29 of 63 benchmark cells for 18 % more epochs (docs/performance.md)."""
SETTLED_MOVEMENT = 0.01
"""Converged also when the window's net low-pass movement is below this fraction of the path
the object's low-pass part has travelled since `FIRST_COUNTED_EPOCH`: what is left moves the
object by less than 1 % of the way it has come (a relative tolerance). Dense scans at high
dose wander on for 30-70 epochs after their steady drift with straightness 0.2-0.8 while
their quality changes by 0.001-0.003 phase SSIM; one slowed below 1 % while its path was
still 0.83 straight, and 18 more epochs moved its phase SSIM by 0.001. A run that refines the
half-resolution start counts that stage's path too: the object came that way, and counted
from the refinement alone (a short path from a close start) the tolerance held scans at
0.4-0.55 diameters for 35-151 epochs of a wander that moved phase SSIM by 0.001-0.012
(docs/performance.md)."""
FIRST_COUNTED_EPOCH = 3
"""Changes before this epoch are not judged: LSQML's first epoch only rescales the probe and
its second makes the first, large step away from the flat start."""
NOISE_FLOOR_MARGIN = 0.95
"""The noise floor ends a run once the fit is clearly below it: fit <= 0.95 x floor. At 1.0
the rule fired too early where the fit hovers at the floor while the object still improves
(dense scans at high dose); a fit that keeps falling below the floor is fitting noise."""
MIN_EPOCHS_BEFORE_STOP = 2
"""The noise floor never ends a run before this epoch (the object is untouched before)."""
LOWPASS_SIGMA_PER_DIAMETER = 0.5
"""The low-pass Gaussian's sigma, as a fraction of the probe diameter (90 % power disc)."""
MOMENTUM_MAX = 0.7
"""The largest Nesterov extrapolation factor while the object's drift is not steady; it grows
as (k - 1) / (k + 2) after a restart. 0.9 throughout was faster on some objects but overshot
on others (quality peaked, then fell); 0.7 held on every object measured
(docs/performance.md)."""
MOMENTUM_MAX_STEADY = 0.9
"""The largest extrapolation factor while the drift is steady (`STEADY_DRIFT`): dense scans
whose slow modes move one way for a hundred epochs and more (no restart in any of them at
0.7). The objects that overshot at 0.9 throughout peak early and never drift that straight;
0.95 brought restarts and more epochs (docs/performance.md)."""
STEADY_DRIFT = 0.8
"""A window's straightness at or above this marks a steady drift (a random walk gives 0.35,
the early-peaking objects 0.5-0.65); 0.9 left half the gain on the table (hubble/text 1e4
dense: 93 epochs at 0.9, 56 at 0.8, both at plain LSQML's best)."""
MOMENTUM_PAUSE_BELOW = 0.5
"""In a run whose drift has never been steady, no extrapolation after an epoch whose window
straightness is below this: the object has no long smooth error to undo, and what it does
once its path wanders (a random walk gives 0.35) is fit noise, which extrapolation speeds up
(those objects lost 0.01-0.03 phase SSIM to it). A run that has drifted steadily keeps its
momentum: its slow tail goes on under the jitter, and pausing there lost up to 0.04
(docs/performance.md)."""


class StopKind(StrEnum):
    """Why a run ended."""

    NOISE_FLOOR = "noise floor"
    """The model fits the data to within their Poisson noise: more epochs would fit noise."""
    CONVERGED = "converged"
    """The object no longer drifts, only jitters: the window's iterates are averaged."""
    CAP = "max epochs"
    """`max_epochs` reached before either rule fired (a safety net)."""
    FIXED = "fixed epochs"
    """`num_epochs` asked for exactly this many epochs."""


@dataclass(frozen=True)
class StopDecision:
    kind: StopKind
    epoch: int
    reason: str
    """One line for logs and result.json."""
    crossing: float | None = None
    """Noise floor: where between the previous iterate (0) and this one (1) the fit met the
    floor, by linear interpolation of fit / floor; None when unknown."""
    average: bool = False
    """Return the average of the last `WINDOW_EPOCHS` iterates (or of all, if fewer)."""


@dataclass
class StopRule:
    """The automatic stop's decisions, from numbers measured after each epoch.

    `noise floor`: stop at the first epoch (>= MIN_EPOCHS_BEFORE_STOP) whose fit is at most
    NOISE_FLOOR_MARGIN x the noise floor (the discrepancy principle, with a margin).
    `converged`: stop when the drift monitor's straightness over the last window is below
    STRAIGHTNESS_CONVERGED, or when the window's relative movement is below SETTLED_MOVEMENT
    (neither while the window holds a momentum restart: the engine passes no straightness).
    Otherwise at the cap. A converged stop returns the window's average; a noise-floor stop
    returns it after more than `average_at_floor_after` epochs, the crossing before.
    """

    max_epochs: int
    use_noise_floor: bool = True
    average_at_floor_after: int | None = WINDOW_EPOCHS
    """A noise-floor stop after more than this many epochs returns the average of the last
    WINDOW_EPOCHS iterates; None: always the crossing. The default waits until the window no
    longer holds the first iterate (the start, only rescaled: a flat start averaged in
    flattens the object). The run that refines the half-resolution start (`flyrecon.coarse`)
    averages from its first epoch (0): it meets the floor after 2-9 epochs, each adding
    detail and noise to a smooth start, and their average keeps what they agree on (on 42
    sparse views the complex error fell in 36, both quality targets met in 30 against 25).
    The half-resolution stage keeps the crossing: its averaged object, low-passed, started
    the refinement too smooth (docs/performance.md)."""
    straightness_converged: float = STRAIGHTNESS_CONVERGED
    settled_movement: float = SETTLED_MOVEMENT
    _last_ratio: float | None = field(default=None, init=False, repr=False)

    def decide(
        self,
        epoch: int,
        fit: float | None,
        floor: float | None,
        straightness: float | None,
        movement: float | None = None,
    ) -> StopDecision | None:
        """The decision after `epoch` (1-based), or None to go on. `movement`: the window's
        net low-pass movement relative to the path travelled (`DriftMonitor`)."""
        ratio = fit / floor if fit is not None and floor is not None and floor > 0 else None
        last, self._last_ratio = self._last_ratio, ratio
        if (
            self.use_noise_floor
            and ratio is not None
            and epoch >= MIN_EPOCHS_BEFORE_STOP
            and ratio <= NOISE_FLOOR_MARGIN
        ):
            why = (
                f"fell below the Poisson noise floor at epoch {epoch} (amplitude error "
                f"{fit:.4g} <= {NOISE_FLOOR_MARGIN} x {floor:.4g}): more epochs would fit the "
                "noise; "
            )
            after = self.average_at_floor_after
            if after is not None and epoch > after:
                n = min(epoch, WINDOW_EPOCHS)
                return StopDecision(
                    StopKind.NOISE_FLOOR,
                    epoch,
                    why + f"returned the average of the last {n} iterates",
                    average=True,
                )
            crossing = None
            if last is not None and last > NOISE_FLOOR_MARGIN:
                crossing = (last - NOISE_FLOOR_MARGIN) / (last - ratio)
            return StopDecision(
                StopKind.NOISE_FLOOR,
                epoch,
                why + "returned the object where the fit crossed that line",
                crossing,
            )
        if straightness is not None and straightness < self.straightness_converged:
            return StopDecision(
                StopKind.CONVERGED,
                epoch,
                f"converged at epoch {epoch}: over the last {WINDOW_EPOCHS} epochs the object "
                f"only jittered (path straightness {straightness:.2f} < "
                f"{self.straightness_converged}); returned the average of those iterates",
                average=True,
            )
        if straightness is not None and movement is not None and movement < self.settled_movement:
            return StopDecision(
                StopKind.CONVERGED,
                epoch,
                f"converged at epoch {epoch}: the last {WINDOW_EPOCHS} epochs moved the object's "
                f"smooth part by {100 * movement:.2g} % of the way it has come (< "
                f"{100 * self.settled_movement:.2g} %, straightness {straightness:.2f}); "
                "returned the average of those iterates",
                average=True,
            )
        if epoch >= self.max_epochs:
            return StopDecision(
                StopKind.CAP,
                epoch,
                f"max_epochs ({self.max_epochs}) reached before the noise floor or convergence",
            )
        return None


@dataclass
class ConvergenceTrace:
    """What the automatic stop watched, one value per epoch (NaN where not measured)."""

    fit: list[float] = field(default_factory=list)
    noise_floor: list[float] = field(default_factory=list)
    straightness: list[float] = field(default_factory=list)
    drift: list[float] = field(default_factory=list)
    momentum: list[float] = field(default_factory=list)
    movement: list[float] = field(default_factory=list)

    def append(self, **values: float | None) -> None:
        for name in ("fit", "noise_floor", "straightness", "drift", "momentum", "movement"):
            value = values.get(name)
            getattr(self, name).append(math.nan if value is None else float(value))

    def arrays(self) -> dict[str, np.ndarray]:
        """`<name>_history` float64 arrays (for the result NPZ)."""
        return {f"{k}_history": np.asarray(v, dtype=np.float64) for k, v in vars(self).items()}


def fast_fft_length(n: int) -> int:
    """The smallest length >= n with no prime factor above 7: torch's CPU FFTs of such lengths
    are 2-3x faster than of a length with a large prime factor (194 = 2 x 97: 0.28 ms against
    0.12 ms at 196 for a 2-D transform of 194 x 338). scipy.fft.next_fast_len does this, but
    importing scipy.fft costs a run 0.14 s."""
    length = max(n, 1)
    while True:
        rest = length
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return length
        length += 1


class SmoothChange:
    """The slowly varying part of the change between two iterates.

    The change from `a` to `b` is log(b / a) (log-amplitude + i phase), weighted by the
    illuminated region, with its weighted mean and plane removed (a global phase or scale and
    a phase ramp are ambiguities, not progress), low-passed by a normalised Gaussian
    convolution (sigma `sigma_px`). It is zero where nothing is illuminated.
    """

    def __init__(self, weight: Any, sigma_px: float) -> None:
        import torch

        w = weight.to(torch.float32)
        rows, cols = w.shape
        pad = math.ceil(3 * sigma_px)
        self.shape = (rows, cols)
        self.pad_shape = (fast_fft_length(rows + 2 * pad), fast_fft_length(cols + 2 * pad))
        fy = torch.fft.fftfreq(self.pad_shape[0], device=w.device)[:, None]
        fx = torch.fft.fftfreq(self.pad_shape[1], device=w.device)[None, :]
        self.gauss = torch.exp(-2 * (math.pi * sigma_px) ** 2 * (fy**2 + fx**2))
        self.weight = w
        self.total = w.sum()
        norm = self._blur(w)
        self.inverse_norm = torch.where(norm > 1e-3, 1.0 / norm.clamp(min=1e-3), 0.0)
        y = torch.arange(rows, device=w.device, dtype=torch.float32)[:, None].expand(rows, cols)
        x = torch.arange(cols, device=w.device, dtype=torch.float32)[None, :].expand(rows, cols)
        cy, cx = (w * y).sum() / self.total, (w * x).sum() / self.total
        self.basis = torch.stack([torch.ones_like(w), y - cy, x - cx])  # (3, rows, cols)
        gram = torch.einsum("ihw,jhw,hw->ij", self.basis, self.basis, w)
        self.gram_inv = torch.linalg.inv(gram.double()).float()

    def _blur(self, image: Any) -> Any:
        import torch

        spectrum = torch.fft.fft2(image, s=self.pad_shape)
        blurred = torch.fft.ifft2(spectrum * self.gauss)
        rows, cols = self.shape
        out = blurred[:rows, :cols]
        return out if image.is_complex() else out.real

    def __call__(self, a: Any, b: Any) -> Any:
        """The low-pass change from `a` to `b` (complex 2-D tensors), complex."""
        import torch

        with torch.no_grad():
            tiny = 1e-12
            amp = torch.log((b.abs() + tiny) / (a.abs() + tiny))
            change = torch.complex(amp, torch.angle(b * a.conj()))
            basis = self.basis.to(change.dtype)
            coef = self.gram_inv.to(change.dtype) @ torch.einsum(
                "ihw,hw->i", basis, self.weight * change
            )
            change = change - torch.einsum("i,ihw->hw", coef, basis)
            return self._blur(self.weight * change) * self.inverse_norm

    def size(self, change: Any) -> float:
        """The weighted root-mean-square of a change."""
        import torch

        with torch.no_grad():
            return float(torch.sqrt((self.weight * change.abs() ** 2).sum() / self.total))

    def inner(self, a: Any, b: Any) -> float:
        """The weighted real inner product of two changes."""
        import torch

        with torch.no_grad():
            return float(torch.real((self.weight * a.conj() * b).sum()))


@dataclass(frozen=True)
class Drift:
    """One epoch's reading of the `DriftMonitor`."""

    size: float
    """The size of this epoch's smooth change."""
    straightness: float | None = None
    """|sum of the window's changes| / sum of their sizes; None until the window is full."""
    movement: float | None = None
    """|sum of the window's changes| / the sizes summed over every epoch so far (the path
    travelled); None until the window is full."""


class DriftMonitor:
    """How consistently and how far the object still moves: the straightness of the path its
    smooth changes (`SmoothChange`) trace over the last `window` epochs,
    |sum of the changes| / sum of |change|, and that net movement relative to the whole path
    travelled (this run's, and `travelled` given for what came before it)."""

    def __init__(
        self, smooth: SmoothChange, window: int = WINDOW_EPOCHS, travelled: float = 0.0
    ) -> None:
        self.smooth = smooth
        self.window = window
        self.changes: deque[Any] = deque(maxlen=window)
        self.sizes: deque[float] = deque(maxlen=window)
        self.travelled = travelled
        """The sizes of every change so far, summed, on top of `travelled` given: the path
        of an earlier stage that brought the object here (the half-resolution start's)."""

    def update(self, change: Any) -> Drift:
        """Record one epoch's smooth change and read the drift."""
        import torch

        size = self.smooth.size(change)
        self.changes.append(change)
        self.sizes.append(size)
        self.travelled += size
        if len(self.changes) < self.window:
            return Drift(size)
        with torch.no_grad():
            net = self.smooth.size(torch.stack(list(self.changes)).sum(0))
        path = sum(self.sizes)
        return Drift(
            size,
            net / path if path > 0 else 0.0,
            net / self.travelled if self.travelled > 0 else 0.0,
        )


class ObjectMomentum:
    """Nesterov extrapolation of the object between epochs, with adaptive restart.

    y_k = x_k + beta_k (x_k - x_{k-1}), where x_k is what the engine's epoch made of y_{k-1};
    beta_k = min(cap, (j - 1) / (j + 2)), j counting epochs since the last restart; a
    restart (beta 0) happens when the engine's own step x_k - y_{k-1} points against the
    momentum x_k - x_{k-1} (O'Donoghue & Candes 2015). The cap is `beta_max`, or
    `beta_max_steady` after an epoch whose drift straightness is at least `STEADY_DRIFT`.
    Until the first such epoch (`was_steady`), beta is 0 after an epoch whose straightness is
    below `MOMENTUM_PAUSE_BELOW` (a pause, not a restart: j keeps counting).
    """

    def __init__(
        self, beta_max: float = MOMENTUM_MAX, beta_max_steady: float = MOMENTUM_MAX_STEADY
    ) -> None:
        self.beta_max = beta_max
        self.beta_max_steady = beta_max_steady
        self.x_prev: Any = None
        self.y_prev: Any = None
        self.j = 1
        self.was_steady = False
        """Whether any epoch so far had a steady drift (straightness >= STEADY_DRIFT)."""

    @property
    def since_restart(self) -> int:
        """Epochs since the last restart (counted from the first step)."""
        return self.j - 1

    def step(self, x: Any, straightness: float | None = None) -> tuple[Any, float]:
        """The point to continue from after iterate `x`, and the beta used (0: x itself).
        `straightness` is the drift's over the window ending at `x` (None: not known)."""
        import torch

        with torch.no_grad():
            if self.x_prev is None:
                self.x_prev, self.y_prev = x.clone(), x
                return x, 0.0
            momentum = x - self.x_prev
            engine_step = x - self.y_prev
            if float(torch.real(torch.vdot(engine_step.flatten(), momentum.flatten()))) < 0:
                self.j = 1
            else:
                self.j += 1
            steady = straightness is not None and straightness >= STEADY_DRIFT
            self.was_steady = self.was_steady or steady
            cap = self.beta_max_steady if steady else self.beta_max
            beta = min(cap, (self.j - 1) / (self.j + 2))
            wandering = straightness is not None and straightness < MOMENTUM_PAUSE_BELOW
            if wandering and not self.was_steady:
                beta = 0.0
            y = x + beta * momentum if beta > 0 else x
            self.x_prev, self.y_prev = x.clone(), y
        return y, beta


class IterateWindow:
    """The last `size` iterates (copies), for their average at a converged stop."""

    def __init__(self, size: int = WINDOW_EPOCHS) -> None:
        self.items: deque[Any] = deque(maxlen=size)

    def push(self, x: Any) -> None:
        self.items.append(x.clone())

    def average(self) -> Any:
        import torch

        return torch.stack(list(self.items)).mean(0)
