"""The replicas still starting: when the arrivals that asked for them have fallen back (also
across a restart), and which of them a ramp's forecast asked for."""

from __future__ import annotations

import json
import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from tierra.core.autoscale import (
    DEFAULT_PARAMS,
    ScalerState,
    SignalNeed,
    restore_state,
    status_signals,
)
from tierra.core.autoscale.starting import fell_back, forecast_asks, still_asked_for
from tierra_testing.builders import recommender_inputs

RATES = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


def test_a_fall_within_the_noise_of_two_samples_is_no_fall() -> None:
    # 15 s samples: 70 against 54 arrivals is noise, 150 against 75 is not
    assert not fell_back(4.67, 3.6, DEFAULT_PARAMS)
    assert fell_back(10.0, 5.0, DEFAULT_PARAMS)
    assert fell_back(3.0, 1.0, DEFAULT_PARAMS)
    assert not fell_back(0.0, 0.0, DEFAULT_PARAMS)


def test_the_noise_is_that_of_the_samples_span() -> None:
    """The same rates over longer samples (sized for 60 s scrapes) hold more arrivals each,
    so a smaller relative fall shows."""
    long = DEFAULT_PARAMS.for_scrapes(60.0, 60.0)
    assert long.rate_sample_seconds > DEFAULT_PARAMS.rate_sample_seconds
    assert not fell_back(6.0, 4.5, DEFAULT_PARAMS)
    assert fell_back(6.0, 4.5, long)


@given(RATES, RATES)
def test_no_rise_is_a_fall_and_a_lower_rate_falls_at_least_as_far(then: float, now: float) -> None:
    if now >= then:
        assert not fell_back(then, now, DEFAULT_PARAMS)
    if fell_back(then, now, DEFAULT_PARAMS):
        assert fell_back(then, now / 2, DEFAULT_PARAMS)
        assert fell_back(then * 2, now, DEFAULT_PARAMS)


@given(st.floats(), st.floats())
def test_any_float_gives_a_verdict(then: float, now: float) -> None:
    verdict = fell_back(then, now, DEFAULT_PARAMS)
    assert isinstance(verdict, bool)
    if math.isnan(now) or math.isnan(then):
        assert verdict  # (an unreadable sample does not keep replicas)


def _need(replicas: int, forecast: bool) -> SignalNeed:
    return SignalNeed(
        "headroom" if forecast else "arrival", replicas, "", replicas, replicas, forecast
    )


def test_a_scale_up_is_a_forecast_s_when_the_line_asked_for_more_than_any_other_signal() -> None:
    state = ScalerState(starting=((0.0, 3),), forecast_asks=(0.0,))
    batches = ((0.0, 3), (15.0, 5))
    assert forecast_asks(state, batches, 15.0, True, [_need(9, True), _need(4, False)]) == (
        0.0,
        15.0,
    )
    assert forecast_asks(state, batches, 15.0, True, [_need(9, True), _need(9, False)]) == (0.0,)
    assert forecast_asks(state, batches, 15.0, False, [_need(9, True)]) == (0.0,)
    # (a batch taken back or served takes its record with it)
    assert forecast_asks(state, ((15.0, 5),), 15.0, True, [_need(9, True)]) == (15.0,)
    assert forecast_asks(state, (), 15.0, False, []) == ()


def test_a_restart_keeps_the_replicas_starting_that_the_arrivals_still_ask_for() -> None:
    """Two replicas asked for at 4.67 req/s are still starting when the operator restarts.
    The burst history's sample of that ask is gone, but status kept its rate with the last
    scale-up: a sample after the restart within its noise (3.6 req/s) keeps them, as it
    would have without the restart; a fall beyond it (1.5 req/s) does not."""
    before = ScalerState(
        last_scale_up_at=1000.0,
        starting=((1000.0, 2),),
        rates=((985.0, 3.2, 4), (1000.0, 4.67, 4)),
    )
    kept = json.loads(json.dumps(status_signals(before, 60.0)))
    restored = restore_state(6, 1020.0, last_scale_at=1000.0, scaled_up_by=2, signals=kept)
    assert restored.starting == ((1000.0, 2),)
    assert restored.asked_rates == ((1000.0, 4.67),)
    starting = recommender_inputs(desired_replicas=6, ready_replicas=4)

    def kept_at(state: ScalerState, rate: float) -> int:
        return still_asked_for(starting, state, 1030.0, ((1030.0, rate, 4),), DEFAULT_PARAMS)

    assert kept_at(restored, 3.6) == 2
    assert kept_at(restored, 1.5) == 0
    assert kept_at(replace(restored, asked_rates=()), 3.6) == 0  # (what a restart forgot)
    # (a rate kept for another scale-up, or an absurd one, is not this one's)
    for edit in ({"state.askedAt": 940.0}, {"state.askedRate": -1.0}):
        other = restore_state(
            6, 1020.0, last_scale_at=1000.0, scaled_up_by=2, signals={**kept, **edit}
        )
        assert other.asked_rates == ()
