"""The automatic stop's pieces on scripted inputs: the rule, the drift monitor, the momentum."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from flyrecon.convergence import (
    MOMENTUM_MAX,
    MOMENTUM_MAX_STEADY,
    MOMENTUM_PAUSE_BELOW,
    NOISE_FLOOR_MARGIN,
    SETTLED_MOVEMENT,
    STEADY_DRIFT,
    STRAIGHTNESS_CONVERGED,
    WINDOW_EPOCHS,
    ConvergenceTrace,
    DriftMonitor,
    IterateWindow,
    ObjectMomentum,
    SmoothChange,
    StopDecision,
    StopKind,
    StopRule,
    fast_fft_length,
)

# ------------------------------------------------------------------------------ the rule


def _decision(rule: StopRule, rows: list[tuple]) -> StopDecision | None:
    for epoch, (fit, floor, straight) in enumerate(rows, start=1):
        decision = rule.decide(epoch, fit, floor, straight)
        if decision is not None:
            return decision
    return None


def _first_stop(rule: StopRule, rows: list[tuple]) -> tuple[int, StopKind] | None:
    decision = _decision(rule, rows)
    return None if decision is None else (decision.epoch, decision.kind)


def test_the_rule_stops_at_a_plateau_not_before() -> None:
    # straightness falls as the drift dies out; the rule waits for the plateau's threshold
    t = STRAIGHTNESS_CONVERGED
    straight = [None] * 10 + [0.95, 0.9, 0.7, 0.5, t + 0.05, t + 0.01, t - 0.01, t - 0.1]
    rows = [(1.3, 1.0, s) for s in straight]
    assert _first_stop(StopRule(max_epochs=300), rows) == (17, StopKind.CONVERGED)
    # a threshold just above a value seen earlier would have stopped there: nothing before
    assert all(s is None or s >= STRAIGHTNESS_CONVERGED for s in straight[:16])


def test_the_rule_stops_at_the_first_epoch_clearly_below_the_noise_floor() -> None:
    # epoch 1 is below the floor but never ends a run (LSQML only rescales the probe there);
    # hovering at the floor (0.99) is not enough: the object may still improve
    rows = [(0.5, 1.0, None), (2.0, 1.0, None), (1.01, 1.0, None), (0.99, 1.0, None)]
    rows += [(0.96, 1.0, None), (0.93, 1.0, None)]
    rule = StopRule(max_epochs=300)
    stop = None
    for epoch, (fit, floor, straight) in enumerate(rows, start=1):
        stop = rule.decide(epoch, fit, floor, straight)
        if stop:
            break
    assert stop is not None and (stop.epoch, stop.kind) == (6, StopKind.NOISE_FLOOR)
    assert stop.crossing == pytest.approx((0.96 - NOISE_FLOOR_MARGIN) / (0.96 - 0.93))


def test_what_a_stop_returns_the_crossing_or_the_average() -> None:
    """A noise-floor stop returns the crossing within the first WINDOW_EPOCHS epochs and the
    window's average after them; from the first epoch in the run that refines the
    half-resolution start, never in that stage itself. A converged stop returns the
    average."""
    rows = [(2.0, 1.0, None), (1.2, 1.0, None), (0.96, 1.0, None), (0.9, 1.0, None)]
    plain = _decision(StopRule(max_epochs=300), rows)
    assert plain.kind == StopKind.NOISE_FLOOR and plain.epoch == 4
    assert not plain.average and plain.crossing is not None
    assert "where the fit crossed" in plain.reason
    refining = _decision(StopRule(max_epochs=300, average_at_floor_after=0), rows)
    assert refining.kind == StopKind.NOISE_FLOOR and refining.epoch == 4
    assert refining.average and refining.crossing is None
    assert "average of the last 4 iterates" in refining.reason
    # once the window no longer holds the start's first iterate, every run averages
    for n_before in (WINDOW_EPOCHS - 1, WINDOW_EPOCHS):
        late = [(1.2, 1.0, None)] * n_before + [(0.9, 1.0, None)]
        stop = _decision(StopRule(max_epochs=300), late)
        assert stop.epoch == n_before + 1
        assert stop.average == (stop.epoch > WINDOW_EPOCHS)
        assert (f"last {WINDOW_EPOCHS} iterates" in stop.reason) == stop.average
        never = _decision(StopRule(max_epochs=300, average_at_floor_after=None), late)
        assert not never.average and never.crossing is not None  # the half-resolution stage
    jitter = [(1.2, 1.0, None)] * 10 + [(1.2, 1.0, STRAIGHTNESS_CONVERGED / 2)]
    for rule in (StopRule(max_epochs=300), StopRule(max_epochs=300, average_at_floor_after=0)):
        converged = _decision(rule, jitter)
        assert converged.kind == StopKind.CONVERGED and converged.average
    settled = StopRule(max_epochs=300).decide(20, 1.2, 1.0, 0.5, SETTLED_MOVEMENT / 2)
    assert settled is not None and settled.kind == StopKind.CONVERGED and settled.average


def test_a_turn_to_overfitting_stops_the_run_at_the_turn() -> None:
    """The fit keeps falling past the noise floor when the model starts fitting noise: the
    rule ends the run at the crossing, not later."""
    fits = [3.0, 1.6, 1.2, 1.05, 0.99, 0.8, 0.7, 0.6]
    rows = [(f, 1.0, 0.9) for f in fits]
    assert _first_stop(StopRule(max_epochs=300), rows) == (6, StopKind.NOISE_FLOOR)


def test_a_path_that_no_longer_moves_the_object_far_is_converged() -> None:
    """After a steady drift the path may stay half straight, or even straight, for tens of
    epochs while it moves the object by little against the way it has come: the rule stops
    once the movement is below SETTLED_MOVEMENT, straight or not, and not while it is large."""
    small = SETTLED_MOVEMENT / 2
    steady = [(1.2, 1.0, STEADY_DRIFT + 0.1, m) for m in (8, 4, 2, 1.5)]
    wander = [(1.2, 1.0, 0.5, m) for m in (4, 2, 1.2)]
    for path, tail in ((steady, STEADY_DRIFT + 0.1), (steady + wander, 0.5)):
        rows = [(f, fl, st, m * SETTLED_MOVEMENT) for f, fl, st, m in path] + [
            (1.2, 1.0, tail, small)
        ]
        rule = StopRule(max_epochs=300)
        stop = None
        for epoch, (fit, floor, straight, movement) in enumerate(rows, start=1):
            stop = rule.decide(epoch, fit, floor, straight, movement)
            if stop is not None:
                break
        assert stop is not None and (stop.epoch, stop.kind) == (len(rows), StopKind.CONVERGED)
        assert "% of the way it has come" in stop.reason
    # without a straightness (a momentum restart in the window) the movement alone never stops
    assert StopRule(max_epochs=300).decide(20, 1.2, 1.0, None, small) is None


def test_the_monitor_measures_movement_against_the_path_travelled() -> None:
    """A drift whose steps shrink geometrically: the window's net movement relative to the
    whole path falls with the steps, while the path stays straight (no jitter)."""
    rng = np.random.default_rng(3)
    base = torch.exp(1j * _smooth_field(rng, 0.5)).to(torch.complex64)
    step = _smooth_field(rng)
    monitor = _monitor()
    previous, phase, readings = base, torch.zeros(SHAPE), []
    for k in range(40):
        phase = phase + 0.8**k * step
        current = base * torch.exp(1j * phase)
        readings.append(monitor.update(monitor.smooth(previous, current)))
        previous = current
    assert readings[WINDOW_EPOCHS - 2].movement is None
    full = readings[WINDOW_EPOCHS - 1]
    assert full.movement == pytest.approx(1.0, rel=1e-3)  # the window is the whole path
    last = readings[-1]
    assert last.straightness > 0.99
    # the last 8 steps' share of a geometric series: 0.8 ** 32 * (1 - 0.8 ** 8) / (1 - 0.8 ** 40)
    expected = 0.8**32 * (1 - 0.8**8) / (1 - 0.8**40)
    assert last.movement == pytest.approx(expected, rel=0.02)


def test_the_path_of_an_earlier_stage_counts_as_travelled() -> None:
    """A steady drift read alone and as the continuation of a stage whose path was three
    times this run's: the window's movement is a quarter of what it is alone."""
    rng = np.random.default_rng(4)
    base = torch.exp(1j * _smooth_field(rng, 0.5)).to(torch.complex64)
    step = _smooth_field(rng)
    objects = [base * torch.exp(1j * k * step) for k in range(WINDOW_EPOCHS + 1)]
    alone = _monitor()
    earlier = 3 * WINDOW_EPOCHS * alone.smooth.size(alone.smooth(objects[0], objects[1]))
    continued = DriftMonitor(_smooth(), travelled=earlier)
    for a, b in itertools.pairwise(objects):
        first, second = alone.update(alone.smooth(a, b)), continued.update(continued.smooth(a, b))
    assert first.movement == pytest.approx(1.0, rel=1e-3)
    assert second.movement == pytest.approx(0.25, rel=1e-3)
    assert second.straightness == pytest.approx(first.straightness)
    assert continued.travelled == pytest.approx(4 * alone.travelled, rel=1e-3)


def test_without_counts_only_convergence_and_the_cap_stop() -> None:
    rows = [(0.1, 1.0, None)] * 4
    rule = StopRule(max_epochs=4, use_noise_floor=False)
    assert _first_stop(rule, rows) == (4, StopKind.CAP)
    rows = [(0.1, 1.0, 0.9), (0.1, 1.0, 0.1)]
    assert _first_stop(StopRule(max_epochs=9, use_noise_floor=False), rows) == (
        2,
        StopKind.CONVERGED,
    )


def test_the_trace_keeps_one_value_per_epoch() -> None:
    trace = ConvergenceTrace()
    trace.append(fit=1.0, noise_floor=0.5)
    trace.append(straightness=0.2, drift=1e-3, momentum=0.5)
    arrays = trace.arrays()
    assert set(arrays) == {
        "fit_history",
        "noise_floor_history",
        "straightness_history",
        "drift_history",
        "momentum_history",
        "movement_history",
    }
    assert all(a.shape == (2,) for a in arrays.values())
    assert arrays["fit_history"][0] == 1.0 and math.isnan(arrays["fit_history"][1])


# ----------------------------------------------------------------------- the drift monitor

SHAPE = (96, 128)


def _smooth() -> SmoothChange:
    weight = torch.zeros(SHAPE)
    weight[16:80, 16:112] = 1.0
    return SmoothChange(weight, sigma_px=6.0)


def _monitor() -> DriftMonitor:
    return DriftMonitor(_smooth())


def _smooth_field(rng: np.random.Generator, scale: float = 0.02) -> torch.Tensor:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(SHAPE), 8)
    return torch.as_tensor(scale * field / field.std(), dtype=torch.float32)


def _run(monitor: DriftMonitor, objects: list[torch.Tensor]) -> list[float | None]:
    return [
        monitor.update(monitor.smooth(a, b)).straightness for a, b in itertools.pairwise(objects)
    ]


def test_a_steady_drift_is_straight_and_jitter_is_not() -> None:
    rng = np.random.default_rng(0)
    base = torch.exp(1j * _smooth_field(rng, 0.5)).to(torch.complex64)
    step = _smooth_field(rng)
    drifting = [base * torch.exp(1j * k * step) for k in range(WINDOW_EPOCHS + 1)]
    straight = _run(_monitor(), drifting)
    assert straight[:-1] == [None] * (WINDOW_EPOCHS - 1)
    assert straight[-1] > 0.95
    # independent jitter about a fixed point: each epoch's change undoes part of the last
    jitter = [base * torch.exp(1j * _smooth_field(rng)) for _ in range(WINDOW_EPOCHS + 1)]
    assert _run(_monitor(), jitter)[-1] < STRAIGHTNESS_CONVERGED


def test_global_phase_scale_and_ramp_changes_are_not_drift() -> None:
    rng = np.random.default_rng(1)
    base = torch.exp(1j * _smooth_field(rng, 0.5)).to(torch.complex64)
    y, x = torch.meshgrid(torch.arange(SHAPE[0]), torch.arange(SHAPE[1]), indexing="ij")
    monitor = _monitor()
    previous = base
    for k in range(1, WINDOW_EPOCHS + 1):
        current = base * (1 + 0.1 * k) * torch.exp(1j * (0.3 * k + 0.001 * k * (y + 2 * x)))
        reading = monitor.update(monitor.smooth(previous, current.to(torch.complex64)))
        assert reading.size < 1e-4
        previous = current.to(torch.complex64)


def test_a_drift_that_turns_into_jitter_is_caught_within_a_window() -> None:
    """Drift (with a little jitter) until epoch 20, then jitter about where it got to."""
    rng = np.random.default_rng(2)
    base = torch.exp(1j * _smooth_field(rng, 0.5)).to(torch.complex64)
    step = _smooth_field(rng)
    monitor = _monitor()
    rule = StopRule(max_epochs=300, use_noise_floor=False)
    turn = 20
    previous, stop = base, None
    for epoch in range(1, 60):
        phase = min(epoch, turn) * step + _smooth_field(rng, 0.004)
        current = base * torch.exp(1j * phase)
        reading = monitor.update(monitor.smooth(previous, current))
        previous = current
        decision = rule.decide(epoch, None, None, reading.straightness, reading.movement)
        if decision is not None:
            stop = decision.epoch
            break
    assert stop is not None and turn < stop <= turn + WINDOW_EPOCHS


# ------------------------------------------------------------------------------ momentum


def _quadratic_run(momentum: ObjectMomentum | None, steps: int) -> float:
    """A slow linear contraction (an ill-conditioned quadratic's gradient steps): the error
    left after `steps` epochs."""
    rates = torch.linspace(0.02, 0.5, 64)
    x = torch.ones(64, dtype=torch.complex64)
    point = x
    for _ in range(steps):
        x = point - rates * point  # one "epoch" of the engine from `point`
        point = x if momentum is None else momentum.step(x)[0]
    return float(x.abs().max())


def test_momentum_speeds_up_slow_convergence() -> None:
    plain = _quadratic_run(None, 40)
    accelerated = _quadratic_run(ObjectMomentum(0.9), 40)
    assert accelerated < 0.2 * plain  # measured: 0.072 against 0.446


def test_momentum_restarts_when_the_engine_turns_back() -> None:
    momentum = ObjectMomentum(0.9)
    _, beta = momentum.step(torch.zeros(4, dtype=torch.complex64))
    assert beta == 0.0
    betas = [momentum.step(torch.full((4,), float(k), dtype=torch.complex64))[1] for k in (1, 2, 3)]
    assert betas == [0.25, 0.4, 0.5]  # (j - 1) / (j + 2), j = 2, 3, 4
    # extrapolated to 3.5, the engine's step comes back to 3.2: it points against the
    # momentum (3 -> 3.2), so the momentum restarts: no extrapolation this time
    point, beta = momentum.step(torch.full((4,), 3.2, dtype=torch.complex64))
    assert beta == 0.0 and torch.allclose(point.real, torch.full((4,), 3.2))
    assert momentum.step(torch.full((4,), 3.3, dtype=torch.complex64))[1] == 0.25


def _betas(momentum: ObjectMomentum, straightness: float | None, steps: int) -> list[float]:
    """The betas of `steps` epochs that keep moving the same way."""
    momentum.step(torch.zeros(4, dtype=torch.complex64))
    return [
        momentum.step(torch.full((4,), float(k), dtype=torch.complex64), straightness)[1]
        for k in range(1, steps + 1)
    ]


def test_momentum_is_capped_lower_unless_the_drift_is_steady() -> None:
    for straightness in (None, 0.5, STEADY_DRIFT - 0.01):
        assert max(_betas(ObjectMomentum(), straightness, 40)) == MOMENTUM_MAX
    steady = _betas(ObjectMomentum(), STEADY_DRIFT, 40)
    assert max(steady) == MOMENTUM_MAX_STEADY > MOMENTUM_MAX
    # the same (j - 1) / (j + 2) ramp: only the cap differs
    assert steady[:6] == _betas(ObjectMomentum(), None, 6)


def test_momentum_pauses_while_a_never_steady_object_wanders() -> None:
    momentum = ObjectMomentum()
    wander = MOMENTUM_PAUSE_BELOW - 0.01
    assert _betas(momentum, wander, 10) == [0.0] * 10
    assert momentum.since_restart == 10  # a pause is not a restart
    # the path straightens: extrapolation resumes at the cap, not from a new ramp
    point, beta = momentum.step(torch.full((4,), 11.0, dtype=torch.complex64), 0.6)
    assert beta == MOMENTUM_MAX
    assert torch.allclose(point.real, torch.full((4,), 11.0 + MOMENTUM_MAX))
    # and pauses again when it wanders: the iterate itself is the next point
    point, beta = momentum.step(torch.full((4,), 12.0, dtype=torch.complex64), wander)
    assert beta == 0.0 and torch.equal(point.real, torch.full((4,), 12.0))


def test_momentum_keeps_going_through_the_wander_of_a_run_that_drifted_steadily() -> None:
    momentum = ObjectMomentum()
    _betas(momentum, STEADY_DRIFT, 10)
    assert momentum.was_steady
    wander = MOMENTUM_PAUSE_BELOW - 0.01
    betas = [
        momentum.step(torch.full((4,), float(k), dtype=torch.complex64), wander)[1]
        for k in range(11, 16)
    ]
    assert betas == [MOMENTUM_MAX] * 5
    # no straightness known (the window is not full yet): no pause either
    assert max(_betas(ObjectMomentum(), None, 10)) > 0


def test_momentum_counts_epochs_since_its_last_restart() -> None:
    momentum = ObjectMomentum()
    _betas(momentum, None, 5)
    assert momentum.since_restart == 5
    # extrapolated from 5 to 5.625, the engine comes back to 5.1: restart
    assert momentum.step(torch.full((4,), 5.1, dtype=torch.complex64))[1] == 0.0
    assert momentum.since_restart == 0
    momentum.step(torch.full((4,), 5.2, dtype=torch.complex64))
    assert momentum.since_restart == 1


def test_the_window_averages_its_last_iterates() -> None:
    window = IterateWindow(size=3)
    for k in range(5):
        window.push(torch.full((2,), float(k)))
    assert torch.equal(window.average(), torch.full((2,), 3.0))


def test_the_threshold_lies_below_a_random_walks_straightness() -> None:
    """A random walk of W steps has straightness about 1/sqrt(W): it must not count as
    converged (it is still moving), while independent jitter about an optimum (about 1/W)
    must."""
    assert 1 / WINDOW_EPOCHS < STRAIGHTNESS_CONVERGED < 1 / math.sqrt(WINDOW_EPOCHS)


def test_fast_fft_lengths_are_the_next_with_no_prime_factor_above_7() -> None:
    def smooth(n: int) -> bool:
        for p in (2, 3, 5, 7):
            while n % p == 0:
                n //= p
        return n == 1

    assert [fast_fft_length(n) for n in (0, 1, 64, 97, 194, 338)] == [1, 1, 64, 98, 196, 343]
    for n in range(1, 400):
        got = fast_fft_length(n)
        assert got >= n and smooth(got) and not any(smooth(m) for m in range(n, got))


@pytest.mark.parametrize("sigma", [2.0, 3.5, 6.0])
def test_the_low_pass_is_a_gaussian_blur_of_the_zero_padded_field(sigma: float) -> None:
    """The FFT size rounded up to a fast length still blurs without wrap-around."""
    from scipy.ndimage import gaussian_filter

    smooth = SmoothChange(torch.ones(SHAPE), sigma_px=sigma)
    assert all(p >= s + 6 * sigma for p, s in zip(smooth.pad_shape, SHAPE, strict=True))
    rng = np.random.default_rng(7)
    field = rng.standard_normal(SHAPE) + 1j * rng.standard_normal(SHAPE)
    ours = smooth._blur(torch.as_tensor(field, dtype=torch.complex64)).numpy()
    for part in (np.real, np.imag):
        expected = gaussian_filter(part(field), sigma, mode="constant", truncate=8.0)
        np.testing.assert_allclose(part(ours), expected, atol=2e-4 * np.abs(expected).max())
