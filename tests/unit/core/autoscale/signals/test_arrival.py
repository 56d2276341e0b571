"""The arrival signal: the arrivals now (the completions plus the growth of what is in the
system), and a deadband as wide as the arrival estimate's noise."""

from __future__ import annotations

import math

import pytest

from tierra.core.autoscale import (
    DEFAULT_PARAMS,
    ScalerState,
    Signals,
    arrival_need,
    deadband,
    recommend,
)
from tierra_testing.autoscale import (
    TRUSTED,
    inputs,
    need_for,
    steady,
)


def test_arrivals_now_are_completions_plus_growth_even_when_nothing_waits() -> None:
    """Processor sharing: an overload piles onto the replicas (running) before anything waits.
    The completions between the last scrapes plus the growth of what is in the system are the
    arrivals, at once; the minute's completion rate still shows the old load."""
    first = recommend(inputs(signals=steady(0.0, 4.0, 6.0)), ScalerState(), 0.0, TRUSTED)
    burst = Signals(0.0, 126.0, 4.5, observed_at=15.0, recent_completion_rate=10.0)
    rec = recommend(inputs(signals=burst), first.state, 15.0, TRUSTED)
    assert rec.state.backlog_growth == 8.0  # (126 - 6) / 15
    assert rec.needs["arrival"] == need_for(18.0) > need_for(4.5)
    # a lull (less in the system, fewer completions) never goes below the minute's average
    lull = Signals(0.0, 30.0, 9.0, observed_at=30.0, recent_completion_rate=2.0)
    after = recommend(inputs(signals=lull), rec.state, 30.0, TRUSTED)
    assert after.needs["arrival"] == need_for(9.0)


def test_the_deadband_widens_to_the_arrival_estimates_noise() -> None:
    tolerance = DEFAULT_PARAMS.tolerance
    for rate in (None, -1.0, math.nan, 1000.0):
        assert deadband(rate) == tolerance
    # (no arrivals at all: as wide as just above zero, so more load never narrows it)
    assert deadband(0.0) == deadband(1e-6) == 0.5
    # one standard error of the arrivals of a rate sample (15 s) when larger than 10 %
    assert deadband(1.0) == pytest.approx(1 / math.sqrt(15.0))
    assert deadband(4.0) == pytest.approx(1 / math.sqrt(60.0))
    assert deadband(0.01) == 0.5  # (a rate of a handful of arrivals: at most half)
    assert deadband(math.inf) == tolerance


def test_a_low_rate_within_its_noise_of_the_next_count_does_not_scale_up() -> None:
    """At 1 request/s a sample's rate is known to about 26 %: a rate just past the edge
    between two counts asks for the next one, but only a rate beyond its noise makes the
    count go up (``low``), and a count set there is kept until the load is that far below."""
    small = inputs(desired_replicas=1, ready_replicas=1, latency_p95_ms=1500.0)
    rates = [0.05 * i for i in range(1, 200)]
    edge = next(r for r in rates if (n := arrival_need(small, r)) is not None and n.replicas > 1)
    assert 0.2 < deadband(edge) < 0.3
    # 15 % past the edge: beyond a 10 % band, within the noise
    past = arrival_need(small, edge * 1.15)
    assert past is not None and past.replicas >= 2
    assert past.low == 1
    beyond = arrival_need(small, edge / (1 - deadband(edge)) * 1.1)
    assert beyond is not None and beyond.low >= 2
    # 15 % below it: a 2 is kept
    below = arrival_need(small, edge * 0.85)
    assert below is not None and below.replicas == 1 and below.high >= 2
