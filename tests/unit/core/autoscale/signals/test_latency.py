"""The latency feedback's verdict on a tested scale-up (properties over an M/M/c service):
queueing more replicas can remove is never given up, a goal under the requests' own time is
given up once tested."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tierra.core.autoscale import (
    DEFAULT_PARAMS,
    LatencyProbe,
    ScalerState,
    Signals,
    Unhelped,
)
from tierra.core.autoscale.signals import latency
from tierra.core.queue_model import mmc_wait_percentile
from tierra_testing.autoscale import (
    inputs,
)


def judged_after_growth(
    replicas: int, growth: float, service: float, load: float, floor: float, goal: float
) -> tuple[float, tuple[Unhelped, ...]]:
    """(the p95's ratio at the probe, the verdicts) of ``tested_feedback`` on an M/M/c
    service: a p95 of ``floor`` seconds of the requests' own time plus the M/M/c p95 wait,
    at ``replicas`` and then at ``growth`` times as many (per request arriving), each sample
    long settled."""
    rate = load * replicas / service
    grown = math.ceil(replicas * growth)

    def ratio(servers: int) -> float:
        return (floor + mmc_wait_percentile(rate, service, servers)) / goal

    probe = LatencyProbe(0.0, replicas, ratio(replicas), "p95 TTFT", rate)
    now = 10_000.0
    sample = inputs(
        desired_replicas=grown,
        ready_replicas=grown,
        ttft_p95_ms=goal * 1000.0,
        signals=Signals(
            arrival_rate=rate, ttft_p95_ms=ratio(grown) * goal * 1000.0, observed_at=now
        ),
    )
    assert sample.signals is not None
    state = ScalerState(latency_probe=probe)
    _, verdicts = latency.tested_feedback(sample, sample.signals, state, now, DEFAULT_PARAMS)
    return probe.ratio, verdicts


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.integers(1, 40),
    growth=st.floats(1.5, 4.0),
    service=st.floats(0.05, 3.0),
    load=st.floats(0.3, 0.99),
    floor=st.floats(0.01, 5.0),
    share=st.floats(0.0, 0.99),
)
def test_queueing_a_count_can_remove_is_never_given_up(
    replicas: int, growth: float, service: float, load: float, floor: float, share: float
) -> None:
    """Whatever the replicas, load and growth: a goal over only by M/M/c queueing (between the
    requests' own time and the p95, ``share`` of the wait above the former) is never given
    up -- the model's p95 wait falls faster than the replicas per request grow, which is the
    bound the verdict rests on. (Measured p95s are noisy; the verdict waits for 1.5x the
    replicas so that the noise's share of what they removed stays small.)"""
    wait = mmc_wait_percentile(load * replicas / service, service, replicas)
    assume(wait > 0.01 * floor)
    before, verdicts = judged_after_growth(
        replicas, growth, service, load, floor, floor + share * wait
    )
    assert before > 1
    assert verdicts == (), verdicts


@settings(max_examples=100, deadline=None)
@given(
    replicas=st.integers(1, 40),
    growth=st.floats(1.5, 4.0),
    service=st.floats(0.05, 3.0),
    load=st.floats(0.001, 0.05),
    over=st.floats(1.05, 4.0),
)
def test_a_goal_under_the_requests_own_time_is_given_up_once_tested(
    replicas: int, growth: float, service: float, load: float, over: float
) -> None:
    """No queueing at the p95 (a load of 5 % or less: fewer than 5 % wait at all), the
    requests' own time ``over`` times the goal: the replicas added remove nothing, and the
    goal is given up at the first test."""
    floor = 1.0
    _, verdicts = judged_after_growth(replicas, growth, service, load, floor, floor / over)
    assert [v.goal for v in verdicts] == ["p95 TTFT"]
    assert verdicts[0].floor == pytest.approx(over, rel=0.05)
