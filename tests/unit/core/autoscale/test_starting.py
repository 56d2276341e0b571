"""The replicas still starting: when the arrivals that asked for them have fallen back, and
which of them a ramp's forecast asked for."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from tierra.core.autoscale import DEFAULT_PARAMS, ScalerState, SignalNeed
from tierra.core.autoscale.starting import fell_back, forecast_asks

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
