"""Helpers of the autoscaling recommender's unit tests (``tests/unit/core/autoscale``): the
inputs and signals of four chat replicas, a closed loop of recommendations, and the burst
histories the signals read (bursts, levels that moved, heavier mixes, Poisson and clustered
arrivals).

The inputs are the builders' ``recommender_inputs`` on four replicas; a decision comes every
``STEP`` seconds, and each count asked for is Ready at once::

    closed_loop(lambda now: (steady(now, 4.0, 1.5), {}), 1800, startup_seconds=120.0)
    headroom_need(inputs(), 2.0, burst_history(1200.0))
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from tierra.core.autoscale import (
    Recommendation,
    ScalerParams,
    ScalerState,
    ScalingInputs,
    Signals,
    arrival_need,
    recommend,
)
from tierra_testing.builders import recommender_inputs

STEP = 15.0
"""Seconds between two decisions, and between two samples of the burst history."""

TRUSTED = ScalerParams(speed_prior=1.0)
"""The defaults, with a profile taken at its word (a speed prior of 1)."""


# --------------------------------------------------------------------------------------------
# The recommender's inputs, signals and a closed loop


def inputs(**changes: Any) -> ScalingInputs:
    """Four of the builders' chat replicas (1000-token prompts, 200-token answers: 0.375 s)."""
    return recommender_inputs(**{"desired_replicas": 4, "ready_replicas": 4, **changes})


def need_for(rate: float, **changes: Any) -> int:
    """The replicas the arrival signal asks for at ``rate`` req/s on ``inputs(**changes)``."""
    need = arrival_need(inputs(**changes), rate)
    assert need is not None
    return need.replicas


def steady(now: float, rate: float, running: float, **extra: Any) -> Signals:
    """What a runtime shows at a steady ``rate`` (completions now as over the minute)."""
    values: dict[str, Any] = {"recent_completion_rate": rate, **extra}
    return Signals(queue_depth=0.0, running=running, arrival_rate=rate, observed_at=now, **values)


def closed_loop(
    sample: Callable[[float], tuple[Signals, dict[str, Any]]],
    seconds: float,
    params: ScalerParams = TRUSTED,
    current: int = 2,
    **changes: Any,
) -> dict[float, Recommendation]:
    """A recommendation every ``STEP`` for ``seconds``, each count Ready at once:
    ``sample(now)`` gives that moment's signals and input changes (beside ``changes``)."""
    state, out = ScalerState(), {}
    for i in range(int(seconds / STEP)):
        now = i * STEP
        signals, extra = sample(now)
        rec = recommend(
            inputs(
                desired_replicas=current,
                ready_replicas=current,
                signals=signals,
                **{**changes, **extra},
            ),
            state,
            now,
            params,
        )
        state, current = rec.state, rec.replicas
        out[now] = rec
    return out


# --------------------------------------------------------------------------------------------
# Burst histories


def burst_history(now: float) -> tuple[tuple[float, float, int], ...]:
    """2 req/s, a burst to 20 req/s 10 minutes ago that rose within 15 s, then 2 req/s."""
    rates = []
    for i in range(int(now / STEP) + 1):
        t = i * STEP
        rates.append((t, 20.0 if now - 630 <= t < now - 570 else 2.0, 4))
    return tuple(rates)


def poisson_rates(
    seed: int, rate: float, seconds: float, sample: float = STEP
) -> tuple[tuple[float, float, int], ...]:
    """Arrival-rate samples of a steady Poisson load: each counts ``sample`` seconds."""
    rng = random.Random(seed)
    out = []
    for i in range(int(seconds / sample)):
        count, t = 0, rng.expovariate(rate)
        while t < sample:
            count, t = count + 1, t + rng.expovariate(rate)
        out.append((i * sample, count / sample, 4))
    return tuple(out)


def varying_poisson_rates(
    rng: random.Random, rate_at: Callable[[float], float], start: float, end: float
) -> tuple[tuple[float, float, int], ...]:
    """15 s samples of Poisson arrivals at ``rate_at(t)``: (time, rate, serving)."""
    out = []
    t = start
    while t <= end:
        mean = rate_at(t) * 15.0
        # (a normal approximation of the Poisson count, never negative)
        count = max(0.0, round(rng.gauss(mean, math.sqrt(max(mean, 1e-9)))))
        out.append((t, count / 15.0, 4))
        t += 15.0
    return tuple(out)


def clustered_rates(
    seed: int, rate: float, size: int, seconds: float
) -> tuple[tuple[float, float, int], ...]:
    """Arrival-rate samples of ``rate`` req/s that come ``size`` at once (agentic fan-outs:
    Poisson clusters, each sample's count ``size`` times a Poisson count)."""
    return tuple((t, r * size, n) for t, r, n in poisson_rates(seed, rate / size, seconds))


def crowd_from_a_quiet_level(now: float) -> tuple[tuple[tuple[float, float, int], ...], float]:
    """(samples until ``now``, the crowd's rise within 30 s): 1 req/s, a crowd that ramps to
    14 req/s in 90 s, stays 2 minutes and fades to 3.6 req/s over 10, then 5 minutes at 3.6."""
    crowd = [1.0 + 13.0 * k / 6 for k in range(7)] + [14.0] * 8
    fade = [14.0 - (14.0 - 3.6) * k / 40 for k in range(1, 41)]
    shape = [1.0] * (int(now / STEP) + 1 - len(crowd) - len(fade) - 20) + crowd + fade
    return tuple((i * STEP, r, 4) for i, r in enumerate(shape + [3.6] * 20)), 2 * 13.0 / 6


def level_that_moved(
    now: float, low: float = 4.0, high: float = 7.0, seed: int | None = None
) -> tuple[tuple[float, float, int], ...]:
    """Samples until ``now`` of a level at ``low`` req/s that moved to ``high`` for five
    minutes, 15 minutes before ``now`` (Poisson counts with a ``seed``, else the rates)."""

    def level(t: float) -> float:
        return high if now - 1200.0 <= t < now - 900.0 else low

    if seed is None:
        return tuple((t, level(t), 4) for t in (i * STEP for i in range(int(now / STEP) + 1)))
    rng = random.Random(seed)
    out = []
    for i in range(int(now / STEP) + 1):
        count, t = 0, rng.expovariate(level(i * STEP))
        while t < STEP:
            count, t = count + 1, t + rng.expovariate(level(i * STEP))
        out.append((i * STEP, count / STEP, 4))
    return tuple(out)


def mix_phase_history(
    weight: float, now: float = 1800.0
) -> tuple[tuple[tuple[float, float, int], ...], tuple[tuple[float, float, float], ...]]:
    """(rates, mixes): 4 req/s throughout, with requests ``weight`` times the work of the
    builders' (1000-token prompts, 200-token answers) from 20 to 10 minutes ago."""
    chat = inputs()
    decode_seconds = 200.0 / chat.decode_tokens_per_second
    heavy = (weight * 0.375 - decode_seconds) * chat.prefill_tokens_per_second
    times = [i * STEP for i in range(int(now / STEP) + 1)]
    rates = tuple((t, 4.0, 4) for t in times)
    mixes = tuple((t, heavy if now - 1200 <= t < now - 600 else 1000.0, 200.0) for t in times)
    return rates, mixes


def modulated_history(jump: bool) -> tuple[tuple[float, float, int], ...]:
    """Half an hour to 1800 s: 2 req/s, a ramp to a midday of 12 req/s (1 req/s more each
    minute) whose minutes swing from 8 to 14 within 15 s (1.75x: the level's own
    modulation), a ramp back down to 2; with ``jump``, a burst from 0.5 to 6 req/s (12x)
    in the first minutes."""

    def rate(t: float) -> float:
        if jump and 60 <= t < 180:
            return 0.5 if t < 120 else 6.0
        if 300 <= t < 900:
            return 2.0 + (t - 300) / 60
        if 900 <= t < 1140:
            return {960: 8.0, 1020: 14.0}.get(int(t // 60 * 60), 12.0)
        if 1140 <= t < 1740:
            return 12.0 - (t - 1140) / 60
        return 2.0

    return tuple((t, rate(t), 4) for t in (i * STEP for i in range(121)))


def run_burst(before: Callable[[float], float], lasting: float) -> dict[float, Recommendation]:
    """``before(now)`` req/s for 300 s; then 9 req/s for ``lasting`` seconds, which fill the
    running slots of 4 replicas (120 more running, nothing waiting) within the first sample;
    then 1 req/s until 900 s."""

    def sample(now: float) -> tuple[Signals, dict[str, Any]]:
        if now < 300.0:
            rate = before(now)
            return steady(now, rate, rate * 0.375), {}
        if now < 300.0 + lasting:
            return steady(now, 1.0 if now == 300.0 else 9.0, 120.375), {}
        return steady(now, 1.0, 0.375), {}

    return closed_loop(sample, 900, current=4)


def pytest_approx(expected: float, rel: float) -> Any:
    """``pytest.approx(expected, rel=rel)``."""
    import pytest

    return pytest.approx(expected, rel=rel)
