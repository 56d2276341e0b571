"""The online service-rate estimate: it starts at the prior, corrects an optimistic profile
at saturation and a pessimistic one at low load, and scales every need."""

from __future__ import annotations

from dataclasses import replace

from tierra.core.autoscale import (
    DEFAULT_PARAMS,
    ScalerState,
    Signals,
    recommend,
    update_speed,
)
from tierra_testing.autoscale import (
    STEP,
    inputs,
    need_for,
    pytest_approx,
    steady,
)


def run_speed(true_speed: float, rate: float, replicas: int, steps: int = 40) -> float:
    """The estimate after ``steps`` scrapes of replicas ``true_speed`` times the profile's
    serving ``rate`` req/s of 1000 + 200 tokens, balanced (busy share ``rate x work / replicas``
    when below 1, every slot full at saturation)."""
    state = ScalerState()
    work = 0.375 / true_speed
    for i in range(steps):
        now = i * STEP
        served = min(rate, replicas / work)
        busy = served * work / replicas
        running = replicas * (32.0 if rate >= replicas / work else busy)
        given = inputs(
            desired_replicas=replicas,
            ready_replicas=replicas,
            signals=Signals(
                queue_depth=100.0 if rate > served else 0.0,
                running=running,
                arrival_rate=served,
                observed_at=now,
                prompt_tokens_rate=served * 1000,
                output_tokens_rate=served * 200,
                mean_running=running,
            ),
        )
        speed = update_speed(given, state, now)
        state = replace(state, speed=speed, speed_at=now, rates=((now, rate, replicas),))
    return state.speed


def test_the_estimate_starts_at_the_prior_and_stays_with_an_exact_profile() -> None:
    given = inputs(signals=steady(0.0, 2.0, 0.75))
    assert update_speed(given, ScalerState(), 0.0) == DEFAULT_PARAMS.speed_prior
    # with an exact profile, once it has seen the replicas at low load it settles at 1
    assert run_speed(1.0, 2.0, 4) == pytest_approx(1.0, 0.03)
    assert run_speed(1.0, 40.0, 4) == pytest_approx(1.0, 0.03)  # saturated


def test_an_optimistic_profile_is_corrected_at_saturation() -> None:
    # replicas 30 % slower than the spec says (0.77 x): saturation shows it
    assert run_speed(1 / 1.3, 40.0, 4) == pytest_approx(1 / 1.3, 0.03)


def test_a_pessimistic_profile_is_corrected_at_low_load() -> None:
    # replicas 30 % faster: alone on a replica, requests show it
    assert run_speed(1.3, 2.0, 4) == pytest_approx(1.3, 0.05)


def test_the_speed_scales_every_need_and_the_reason_says_it() -> None:
    state = ScalerState(speed=0.5, speed_at=0.0)
    rec = recommend(inputs(signals=steady(15.0, 20.0, 7.5)), state, 15.0)
    assert rec.needs["arrival"] == need_for(
        20.0, prefill_tokens_per_second=4000.0, decode_tokens_per_second=400.0
    )
    assert "0.50x the profile's speed" in rec.reason
