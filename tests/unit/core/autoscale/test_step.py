"""The recommender after a load step: the arrivals of a scrape interval read against the
intervals before it (pooled while they agree, a rise within the interval extrapolated), the
request size from per-iteration token counters (less the requests in flight, smoothed by the
completions it stands for), the backlog the start-up builds drained by the first decision
(foreseen at no less than the replicas complete), replicas that are Ready before they
serve, and the speed estimate waiting for a full window."""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tierra.core.autoscale import (
    DEFAULT_PARAMS,
    ScalerParams,
    ScalerState,
    ScalingInputs,
    Signals,
    interval_rate,
    judge_rise,
    queue_need,
    recommend,
    request_sizes,
    restore_state,
    rise_trust,
    scrape_age,
    size_shifted,
    smoothed_sizes,
    status_signals,
)
from tierra_testing.builders import step_benchmark_inputs

TRUSTED = ScalerParams(speed_prior=1.0, headroom_min_reaction_seconds=math.inf)


def inputs(**changes: Any) -> ScalingInputs:
    """A replica serves a 500-token prompt and a 100-token answer in 0.3125 s alone."""
    return step_benchmark_inputs(**{"desired_replicas": 2, "ready_replicas": 2, **changes})


WORK = 500 / 8000 + 100 / 400


# --------------------------------------------------------------------------------------------
# The arrivals of a scrape interval


def steady_segment(rate: float, until: float, span: float = 2.0) -> tuple[Any, ...]:
    """Seven intervals of ``span`` seconds at exactly ``rate`` ending at ``until``."""
    return tuple((until - i * span, rate * span, span) for i in reversed(range(7)))


def test_intervals_that_agree_are_pooled() -> None:
    segment = steady_segment(10.0, 12.0)
    # 24 arrivals in 2 s at 10/s (1.3 standard deviations): noise, pooled
    rate, kept, rise, *_ = interval_rate(segment, 14.0, 12.0, 2.0)
    assert rise == 0.0
    assert len(kept) == 8
    assert interval_rate(kept, 16.0, 10.0, 2.0)[1][0][0] == 2.0  # (15 s back: out of the pool)
    assert rate == sum(c for _, c, _ in kept) / sum(d for _, _, d in kept)
    assert 10.0 < rate < 12.0  # the pool's noise, not one interval's


def test_a_rise_within_the_interval_is_extrapolated_to_its_middle() -> None:
    """1 req/s, then 12 req/s from the middle of a 2 s scrape interval: it shows 6.5 req/s.
    The rise happened within it, on average at its middle: the rate now is about 12 (a
    little less: a step in the last tenths of a second of the interval before would have
    shown there too little to see, and this interval would show it whole)."""
    segment = steady_segment(1.0, 20.0)
    rate, kept, rise, *_ = interval_rate(segment, 22.0, 6.5, 2.0)
    assert 0.8 * 12.0 < rate < 1.0 + 2 * (6.5 - 1.0) == 12.0
    assert rise == rate - 6.5
    assert kept == ()  # the next interval is the first to show the new load whole
    whole, kept, rise, *_ = interval_rate(kept, 24.0, 12.0, 2.0)
    assert (whole, rise) == (12.0, 0.0)
    assert kept == ((24.0, 24.0, 2.0),)


def test_a_rise_the_interval_before_showed_in_part_is_not_doubled() -> None:
    """A step from 1 to 12 req/s 0.5 s before a scrape: that interval shows 3.75 req/s, too
    little to tell from noise at once, and is pooled; the next shows 12 whole. Doubling that
    rise would ask for 22 req/s; the interval before showed a share of it (2.9 standard
    deviations), so the rise began there and the rate now is (nearly) the interval's own."""
    pooled = interval_rate(steady_segment(1.0, 20.0), 22.0, 1.0 + 0.25 * 11.0, 2.0)
    assert pooled[2] == 0.0 and len(pooled[1]) == 8
    rate, kept, *_ = interval_rate(pooled[1], 24.0, 12.0, 2.0)
    assert 12.0 <= rate < 13.0
    assert kept == ()
    # the same interval after a pool that showed nothing is extrapolated (nearly) to its middle
    assert interval_rate(steady_segment(1.0, 22.0), 24.0, 12.0, 2.0)[0] > 20.0


@settings(max_examples=300, deadline=None)
@given(
    scrape=st.sampled_from([1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0]),
    jitter=st.floats(-0.2, 0.2),
    rate=st.floats(0.0, 50.0),
)
def test_which_intervals_are_pooled_does_not_turn_on_a_scrape_s_jitter(
    scrape: float, jitter: float, rate: float
) -> None:
    """A real Prometheus scrapes some milliseconds early or late: whether the intervals
    before join the pool (at 15 s scrapes, with a 15 s sample, never) must not turn on it."""
    params = DEFAULT_PARAMS.for_scrapes(scrape, 60.0)

    def read(late: float) -> tuple[float, int, float]:
        """The rate now, the pool's size and the rise, the intervals before ending ``late``."""
        before = tuple(
            (100.0 - k * scrape + late, 4.0 * scrape, scrape) for k in reversed(range(1, 20))
        )
        now_rate, kept, rise, *_ = interval_rate(before, 100.0, rate, scrape, params)
        return now_rate, len(kept), rise

    assert read(jitter) == pytest.approx(read(0.0), rel=1e-9)
    if scrape >= params.rate_sample_seconds:
        assert read(jitter)[1] <= 1


def test_a_drop_restarts_the_segment() -> None:
    rate, kept, rise, *_ = interval_rate(steady_segment(20.0, 20.0), 22.0, 2.0, 2.0)
    assert (rate, kept, rise) == (2.0, ((22.0, 4.0, 2.0),), 0.0)


def test_noise_at_low_counts_is_no_rise() -> None:
    """At 1 req/s, 5 arrivals in 2 s (P ~ 5 %) or a short, noisy pool are no step."""
    assert interval_rate(steady_segment(1.0, 20.0), 22.0, 2.5, 2.0)[2] == 0.0
    short = ((20.0, 1.0, 2.0),)
    assert interval_rate(short, 22.0, 3.0, 2.0)[2] == 0.0


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count (Knuth's product of uniforms; the means here are small)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count, product = count + 1, product * rng.random()
    return count


@pytest.mark.parametrize("scrape", [1.0, 2.0, 5.0])
@pytest.mark.parametrize("rate", [0.5, 2.0, 10.0, 30.0])
def test_a_steady_load_shows_a_false_rise_seldom_whatever_the_scrape_interval(
    rate: float, scrape: float
) -> None:
    """Six hours of Poisson arrivals at a steady rate, read one scrape interval at a time:
    every interval is a test, and each rise it finds is extrapolated (at 2 req/s and 1 s
    scrapes, 9 arrivals in a second asked for 15 req/s). Held to a share of the false-alarm
    probability per ``rate_sample_seconds``, there are about as few an hour at 1 s scrapes
    as at 5 s (with ``change_z`` for each interval: up to 4 an hour at 1 s). A burst (five
    times the rate, and 20 arrivals an interval more at least) beginning at a random moment
    is still asked for within the interval after it."""
    rng = random.Random(f"{rate}/{scrape}")
    params = DEFAULT_PARAMS.for_scrapes(scrape, 60.0)
    hours, segment, rises, at = 6.0, (), 0, 0.0
    for _ in range(int(hours * 3600 / scrape)):
        at += scrape
        shown = interval_rate(segment, at, poisson(rng, rate * scrape) / scrape, scrape, params)
        segment, rises = shown.segment, rises + (shown.extrapolated > 0)
    assert rises / hours <= 1.0, (rises, hours)
    burst = max(5.0 * rate, rate + 20.0 / scrape)
    late = rng.random()  # (the burst's moment within the next interval)
    arrivals = poisson(rng, rate * scrape * late) + poisson(rng, burst * scrape * (1 - late))
    shown = interval_rate(segment, at + scrape, arrivals / scrape, scrape, params)
    after = interval_rate(
        shown.segment, at + 2 * scrape, poisson(rng, burst * scrape) / scrape, scrape, params
    )
    assert max(shown.rate, after.rate) >= 0.7 * burst, (shown, after)


@settings(max_examples=300, deadline=None)
@given(
    pooled=st.lists(
        st.tuples(st.floats(0, 100), st.floats(0, 1e6, allow_subnormal=False), st.floats(0, 30)),
        max_size=8,
    ),
    rate=st.floats(0, 1e6),
    span=st.floats(0, 60),
    trust=st.floats(0, 1),
)
# (an interval before of a vanishing span: its noise's variance overflows, and arrivals within
# it pool to an infinite rate)
@example(pooled=[(86.0, 0.0, 1.0), (86.0, 1.0, 7.2e-213)], rate=12.0, span=3.0, trust=0.0)
@example(pooled=[(86.0, 2.0, 0.0)], rate=0.0, span=1.1e-308, trust=0.0)
def test_the_interval_rate_is_finite_and_never_below_what_was_seen(
    pooled: list[tuple[float, float, float]], rate: float, span: float, trust: float
) -> None:
    segment = tuple(sorted(pooled))
    now_rate, kept, rise, *_ = interval_rate(segment, 100.0, rate, span, trust=trust)
    assert math.isfinite(now_rate) and now_rate >= 0.0
    # (an absurd sample extrapolates nothing: no rise of inf - inf)
    unbounded = interval_rate(segment, 100.0, math.inf, span, trust=trust)
    assert not math.isnan(unbounded.rate) and unbounded.extrapolated == 0.0
    assert rise >= 0.0
    if rise > 0:
        assert now_rate >= rate  # extrapolated upwards only
    assert all(t > 100.0 - DEFAULT_PARAMS.rate_sample_seconds for t, _, _ in kept)


def extrapolated(reason: str) -> float:
    """The rise a decision's reason says was extrapolated within the last scrape interval."""
    found = re.search(r"within the last scrape interval: \+([0-9.]+) req/s extrapolated", reason)
    assert found is not None, reason
    return float(found[1])


def test_the_first_decision_after_a_step_asks_for_the_count_the_next_confirms() -> None:
    """Scrapes every 2 s; a step from 1 to 12 req/s half-way through an interval. The first
    sample that shows it asks for (nearly) what the sample after, the first to show the new
    load whole, needs."""
    state, replicas = ScalerState(), 2
    in_system = 0.3
    decisions = []
    for k in range(12):
        at = 2.0 * k
        arrivals = 1.0 if k <= 8 else (6.5 if k == 9 else 12.0)
        completions = arrivals if k <= 8 else 2 / WORK
        in_system += (arrivals - completions) * 2.0
        sample = Signals(
            queue_depth=max(0.0, in_system - 16),
            running=min(in_system, 16.0),
            arrival_rate=1.0,
            observed_at=at,
            recent_completion_rate=completions,
            scraped_at=at,
        )
        rec = recommend(
            inputs(desired_replicas=replicas, ready_replicas=2, signals=sample), state, at, TRUSTED
        )
        state = rec.state
        if k >= 9:
            decisions.append(rec)
        replicas = rec.replicas
    first, settled = decisions[0], max(r.replicas for r in decisions)
    assert first.replicas > 2
    assert first.replicas >= 0.9 * settled
    assert 4.4 < extrapolated(first.reason) <= 5.5  # (nearly to the interval's middle)


def scrape(at: float, waiting: float, running: float, completing: float, window: float) -> Signals:
    """A sample right after a scrape at ``at``: the gauges, the completions since the scrape
    before (``irate``) and the rate window's average completions."""
    return Signals(
        queue_depth=waiting,
        running=running,
        arrival_rate=window,
        observed_at=at,
        recent_completion_rate=completing,
        scraped_at=at,
    )


def decide(state: ScalerState, replicas: int, sample: Signals, params: ScalerParams) -> Any:
    """The decision on ``sample`` with ``replicas`` desired and ready."""
    assert sample.observed_at is not None
    at = sample.observed_at
    ready = {"desired_replicas": replicas, "ready_replicas": replicas}
    return recommend(inputs(**ready, signals=sample), state, at, params)


def test_an_extrapolated_rise_sizes_the_decision_but_not_the_burst_history() -> None:
    """A step from 1 to 12 req/s a quarter of the way into a 2 s interval shows as 9.25 req/s,
    extrapolated to 17.5 (the middle is the expected time). That sizes the first decision;
    the burst history keeps what was measured (over the last 15 s, as one 15 s scrape would),
    so the headroom holds the real peak of 12 for its lookback, not the extrapolation."""
    state, replicas = ScalerState(), 2
    in_system = 0.3
    params = replace(TRUSTED, headroom_min_reaction_seconds=0.0)
    first = None
    for k in range(18):
        at = 2.0 * k
        arrivals = 1.0 if k <= 8 else (9.25 if k == 9 else 12.0)
        completions = arrivals if k <= 8 else min(arrivals, replicas / WORK)
        in_system = max(0.3, in_system + (arrivals - completions) * 2.0)
        waiting, running = max(0.0, in_system - 8 * replicas), min(in_system, 8.0 * replicas)
        rec = decide(state, replicas, scrape(at, waiting, running, completions, 1.0), params)
        if k == 9:
            first = rec
        state, replicas = rec.state, rec.replicas
    assert first is not None and 6.6 < extrapolated(first.reason) <= 8.25
    peak = max(rate for _, rate, _ in state.rates)
    assert 11.0 <= peak <= 13.0, peak


def test_the_headroom_s_reason_says_its_rate_now_was_extrapolated() -> None:
    """At 2 s scrapes, 30 req/s for a minute, then 2 req/s for over four minutes: the
    headroom holds the burst. A rise to 16 req/s that half an interval shows (9 req/s) is
    extrapolated; the headroom, held above that rate now, wins, and its reason says how
    much of the rate now is extrapolated, as the arrival and queue signals' do."""
    params = replace(TRUSTED, headroom_min_reaction_seconds=0.0)
    state, replicas, in_system = ScalerState(), 4, 0.3
    rates = [2.0] * 31 + [30.0] * 30 + [2.0] * 140 + [9.0]
    for k, arrivals in enumerate(rates):
        completions = min(arrivals, replicas / WORK)
        in_system = max(0.3, in_system + (arrivals - completions) * 2.0)
        waiting, running = max(0.0, in_system - 8 * replicas), min(in_system, 8.0 * replicas)
        sample = scrape(2.0 * k, waiting, running, completions, 2.0)
        ready = {"desired_replicas": replicas, "ready_replicas": replicas}
        rec = recommend(
            inputs(**ready, max_replicas=30, startup_seconds=60.0, signals=sample),
            state,
            2.0 * k,
            params,
        )
        state, replicas = rec.state, rec.replicas
    assert rec.signal == "headroom", rec.reason
    assert rec.state.interval_rise > 0
    assert extrapolated(rec.reason) == pytest.approx(rec.state.interval_rise, abs=0.01)


def test_a_burst_of_one_short_interval_is_held_as_the_15_s_window_s_rate() -> None:
    """At 2 s scrapes, 5 req/s with one interval of 15 req/s (30 requests in 2 s): the burst
    history keeps the last 15 s's rate (6.25 req/s, as a 15 s scrape shows it), not
    the one interval's 15 req/s, which no span a replica's start-up could serve ever had."""
    state, replicas = ScalerState(), 4
    for k in range(20):
        at = 2.0 * k
        arrivals = 15.0 if k == 10 else 5.0
        state = decide(state, replicas, scrape(at, 0.0, 2.0, arrivals, 5.0), TRUSTED).state
    peak = max(rate for _, rate, _ in state.rates)
    # (the eight intervals that end within the last 15 s)
    assert peak == pytest.approx((5.0 * 14 + 15.0 * 2) / 16)


def test_a_rise_is_believed_as_far_as_recent_rises_lasted() -> None:
    """A rise lasted when the next interval keeps at least half of it. With no record a rise
    is believed whole; each that faded counts against the next, and the record halves every
    ``rise_memory_seconds``."""
    params = DEFAULT_PARAMS
    assert rise_trust((0.0, 0.0, 0.0), 100.0) == 1.0
    lasted = judge_rise((0.0, 0.0, 0.0), 8.0, 12.0, 100.0)
    assert lasted == (1.0, 0.0, 100.0)
    faded = judge_rise(judge_rise((0.0, 0.0, 0.0), 8.0, 5.0, 100.0), 8.0, 7.9, 102.0)
    assert faded == pytest.approx((0.0, 2.0, 102.0), rel=1e-3)
    assert rise_trust(faded, 102.0) == pytest.approx(1 / 3, rel=1e-3)
    assert rise_trust(faded, 102.0 + params.rise_memory_seconds) == pytest.approx(1 / 2, rel=1e-3)
    # (no rise to judge: the record only ages)
    assert judge_rise(faded, None, 0.0, 110.0)[:2] == pytest.approx((0.0, 2.0), rel=1e-2)
    assert rise_trust((3.0, 1.0, 0.0), 0.0) == pytest.approx(4 / 5)


def test_a_rise_not_believed_is_taken_as_the_interval_shows_it() -> None:
    """Believed not at all, the rise of 1 -> 6.5 req/s in a 2 s interval is the interval's
    6.5 req/s, not extrapolated; the next interval judges it against 3.75 req/s."""
    believed = interval_rate(steady_segment(1.0, 20.0), 22.0, 6.5, 2.0, trust=0.0)
    assert (believed.rate, believed.extrapolated, believed.segment) == (6.5, 0.0, ())
    assert believed.lasted_above == pytest.approx(3.75)
    half = interval_rate(steady_segment(1.0, 20.0), 22.0, 6.5, 2.0, trust=0.5)
    whole = interval_rate(steady_segment(1.0, 20.0), 22.0, 6.5, 2.0)
    assert half.extrapolated == pytest.approx(whole.extrapolated / 2)


def test_bursts_shorter_than_a_scrape_interval_are_extrapolated_less_each_time() -> None:
    """At 2 s scrapes, 5 req/s with a burst of one interval at 15 req/s every 20 s: the first
    is extrapolated whole (nearly +10 req/s, as a step would be), and each that is gone by the next
    interval counts against the next (1/2, 1/3, 1/4 of it), said in the reason. A step that
    lasts then counts for the ones after it; the record survives a restart of its state."""
    state, replicas = ScalerState(), 4
    rises, reasons = [], []
    for k in range(52):
        at = 2.0 * k
        arrivals = 15.0 if k in (10, 20, 30, 40) else (15.0 if k >= 50 else 5.0)
        rec = decide(state, replicas, scrape(at, 0.0, 2.0, arrivals, 5.0), TRUSTED)
        if k in (10, 20, 30, 40):
            rises.append(extrapolated(rec.reason))
            reasons.append(rec.reason)
        state = ScalerState.from_dict(rec.state.to_dict())
    assert 0.75 * 10.0 < rises[0] <= 10.0  # (shaded a little, as in the tests above)
    assert rises[1:] == pytest.approx([r * rises[0] for r in (1 / 2, 1 / 3, 1 / 4)], rel=0.05)
    assert "as far as recent rises lasted" not in reasons[0]
    assert "25% of it: as far as recent rises lasted" in reasons[3], reasons[3]
    lasted, faded, _ = state.rises
    assert lasted == pytest.approx(1.0, rel=0.05) and faded == pytest.approx(4.0, rel=0.05)
    # (status keeps the record with each decision; an operator restart fades it from then)
    kept = json.loads(json.dumps(status_signals(state, 60.0)))
    restored = restore_state(4, 1000.0, signals=kept, signals_at=100.0)
    assert restored.rises == (round(lasted, 4), round(faded, 4), 100.0)
    assert rise_trust(restored.rises, 100.0) == pytest.approx(rise_trust(state.rises, 100.0), 1e-3)
    for absurd in (-1.0, math.inf, 1e12):
        edited = restore_state(4, 1000.0, signals={**kept, "state.risesFaded": absurd})
        assert rise_trust(edited.rises, 1000.0) == 1.0


# --------------------------------------------------------------------------------------------
# The request size


def per_iteration(completions: float, **changes: Any) -> ScalingInputs:
    return inputs(
        signals=Signals(
            queue_depth=0.0,
            running=0.0,
            arrival_rate=completions,
            observed_at=60.0,
            prompt_tokens_rate=1.0,
            output_tokens_rate=1.0,
        ),
        **changes,
    )


def test_the_requests_in_flight_are_taken_off_the_token_ratio() -> None:
    """Per-iteration counters count the requests still running, about half of each: over a
    minute in which what runs grew from 10 to 130 at 4 completions/s, the plain ratio makes
    a request 1 + 120 / (2 x 60) / 4 = 1.25 times its size."""
    filling = request_sizes(
        per_iteration(4.0, mean_prompt_tokens=625.0, mean_output_tokens=125.0),
        ((0.0, 10.0), (60.0, 130.0)),
    )
    assert filling.mean_prompt_tokens == 500.0
    assert filling.mean_output_tokens == 100.0
    # draining: what ran shrank, so the ratio under-counts
    draining = request_sizes(
        per_iteration(4.0, mean_prompt_tokens=375.0, mean_output_tokens=75.0),
        ((0.0, 130.0), (60.0, 10.0)),
    )
    assert draining.mean_prompt_tokens == 500.0
    # a series younger than the window began with nothing counted: what runs now is the excess
    young = request_sizes(
        per_iteration(4.0, mean_prompt_tokens=625.0, mean_output_tokens=125.0),
        ((30.0, 100.0), (60.0, 120.0)),
    )
    assert young.mean_prompt_tokens == 500.0
    # a runtime that counts a request's tokens when it completes (TGI): no correction
    tgi = replace(filling, signals=replace(filling.signals, prompt_tokens_rate=None))
    tgi = replace(tgi, mean_prompt_tokens=625.0)
    assert request_sizes(tgi, ((0.0, 10.0), (60.0, 130.0))).mean_prompt_tokens == 625.0


def test_the_request_size_is_smoothed_by_the_completions_it_stands_for() -> None:
    busy = inputs(signals=Signals(arrival_rate=20.0, observed_at=0.0))
    sized, kept, known = smoothed_sizes(busy, ScalerState(), 0.0)
    assert (sized.mean_prompt_tokens, sized.mean_output_tokens, known) == (500.0, 100.0, True)
    assert kept is not None and kept[2] == 20.0 * 60
    # a lull's minute of 0.2 req/s with a ratio twice the size moves it by 0.2 %
    lull = inputs(
        signals=Signals(arrival_rate=0.2, observed_at=15.0),
        mean_prompt_tokens=1000.0,
        mean_output_tokens=200.0,
    )
    sized, kept, _ = smoothed_sizes(lull, replace(ScalerState(), sizes=kept), 15.0)
    assert 500.0 < (sized.mean_prompt_tokens or 0) < 502.0
    # a young series under-reports its rate (Prometheus divides by the whole window): the
    # sizes stand for at least the window's completions, so they are known after a few
    young = ScalerState(sizes=(500.0, 100.0, 0.1 * 60, 0.0))
    sized, kept, known = smoothed_sizes(
        inputs(signals=Signals(arrival_rate=0.2, observed_at=2.0)), young, 2.0
    )
    assert kept is not None and kept[2] >= 0.2 * 60
    assert sized.mean_prompt_tokens == 500.0 and known
    # a handful of completions is no size to plan replicas by (a new service's first
    # scrapes): the arrival model is skipped, the queue signal counts what is in the system
    few = inputs(signals=Signals(arrival_rate=0.05, observed_at=0.0), mean_prompt_tokens=3000.0)
    sized, kept, known = smoothed_sizes(few, ScalerState(), 0.0)
    assert not known
    assert kept is not None and kept[0] == 3000.0  # (kept, to be outweighed)
    rec = recommend(
        replace(few, signals=Signals(0.0, 1.0, 0.05, observed_at=0.0)), ScalerState(), 0.0, TRUSTED
    )
    assert "arrival" not in rec.needs and "queue" in rec.needs


def _window_of(rng: random.Random, scale: float, sigma: float, n: int) -> ScalingInputs:
    """The mean sizes of ``n`` requests whose sizes are ``scale`` times the service's (500 and
    100 tokens) times a lognormal factor (median 1)."""
    factor = sum(rng.lognormvariate(0.0, sigma) for _ in range(n)) / n
    return inputs(
        mean_prompt_tokens=500.0 * scale * factor, mean_output_tokens=100.0 * scale * factor
    )


def test_a_heavier_mix_restarts_the_size_smoothing_and_a_lighter_one_does_not() -> None:
    """5 req/s of 500-token prompts for ten minutes, then prompts four times as long (a client
    with long contexts): a minute later the size is the window's, not a 300 s smoothing's
    quarter of the way there. Back to short prompts, the smoothing follows at its own pace."""
    state = ScalerState()
    for t in range(0, 600, 15):
        sample = inputs(signals=Signals(arrival_rate=5.0, observed_at=float(t)))
        _, kept, _ = smoothed_sizes(sample, state, float(t))
        state = replace(state, sizes=kept)
    heavy = inputs(signals=Signals(arrival_rate=5.0, observed_at=660.0), mean_prompt_tokens=2000.0)
    assert size_shifted(heavy, state.sizes or (0.0, 0.0, 0.0, 0.0), 5.0 * 60)
    sized, kept, known = smoothed_sizes(heavy, state, 615.0)
    assert sized.mean_prompt_tokens == 2000.0 and known
    # on the old 300 s smoothing alone it would be about 800 tokens
    slow = smoothed_sizes(heavy, state, 615.0, replace(DEFAULT_PARAMS, size_cv=math.inf))[0]
    assert (slow.mean_prompt_tokens or 0) < 1000.0
    light = inputs(signals=Signals(arrival_rate=5.0, observed_at=630.0), mean_prompt_tokens=125.0)
    assert not size_shifted(light, kept or (0.0, 0.0, 0.0, 0.0), 5.0 * 60)
    assert (
        smoothed_sizes(light, replace(state, sizes=kept), 630.0)[0].mean_prompt_tokens or 0
    ) > 1500


def test_a_window_mean_of_a_steady_heavy_tailed_mix_is_no_shift() -> None:
    """Window means of lognormal request sizes (sigma 1: a coefficient of variation of 1.3)
    at 0.5-20 req/s against the mix's true mean: a restart in at most 0.5 % of the windows
    (a three-sigma test; a false one costs a few minutes of a larger size), and requests twice
    as heavy are seen from 2 req/s on."""
    rng = random.Random(7)
    sigma = 1.0
    mean = math.exp(sigma**2 / 2)
    before = (500.0 * mean, 100.0 * mean, 1000.0, 0.0)
    for rate in (0.5, 2.0, 5.0, 20.0):
        n = max(1, round(rate * 60))
        false_alarms = sum(
            size_shifted(_window_of(rng, 1.0, sigma, n), before, float(n)) for _ in range(2000)
        )
        assert false_alarms <= 10, (rate, false_alarms)
        if rate >= 2.0:
            seen = sum(
                size_shifted(_window_of(rng, 2.0, sigma, n), before, float(n)) for _ in range(200)
            )
            assert seen >= 0.9 * 200, (rate, seen)


def test_no_scale_down_while_requests_miss_the_slo() -> None:
    """Ten replicas that the arrival model finds too many (one request a second) keep their
    count while the observed p95 TTFT is above the SLO: the model is wrong for now (a mix it
    has not caught up with, replicas slower than it thinks); within the SLO they go."""
    # (scaled up 100 s ago: the latency feedback waits for the new replicas' requests)
    state = ScalerState(window_since=-600.0, last_scale_up_at=-100.0)
    quiet = inputs(
        desired_replicas=10,
        ready_replicas=10,
        ttft_p95_ms=2000.0,
        signals=Signals(0.0, 1.0, 1.0, ttft_p95_ms=2600.0, observed_at=0.0),
    )
    rec = recommend(quiet, state, 0.0, TRUSTED)
    assert rec.replicas == 10
    assert "scale-down waits: p95 TTFT 2600 ms > SLO 2000 ms" in rec.reason
    within = replace(quiet, signals=replace(quiet.signals, ttft_p95_ms=1500.0))
    assert recommend(within, state, 0.0, TRUSTED).replicas < 10


# --------------------------------------------------------------------------------------------
# The backlog a start-up builds


def test_the_first_decision_drains_the_backlog_its_own_startup_builds() -> None:
    """2 replicas serve 6.4 req/s; 12 arrive. A replica asked now serves in 5 s, by when 28
    more wait: the count serves the 12 and drains those within the next 5 s."""
    need = queue_need(inputs(), 0.0, 16.0, 12.0, TRUSTED, starting=())
    later = (16.0 - 2 * 2.0 / WORK) + (12.0 - 2 / WORK) * 5.0  # over 2 s of work, piled up
    assert need.replicas == math.ceil((12.0 + later / 5.0) * WORK)
    assert need.replicas > math.ceil(12.0 * WORK)
    assert "backlog there will be when a replica asked now serves" in need.reason


def test_the_backlog_is_foreseen_from_the_scrape_that_showed_it() -> None:
    """The gauges are 4 s old when read (the operator samples on a timer of its own): the
    backlog they show has grown for 4 s more, and a replica asked now serves 9 s after them."""
    fresh = queue_need(inputs(), 0.0, 16.0, 12.0, TRUSTED, starting=())
    aged = queue_need(inputs(), 0.0, 16.0, 12.0, TRUSTED, starting=(), age=4.0)
    later = (16.0 - 2 * 2.0 / WORK) + (12.0 - 2 / WORK) * 9.0
    assert aged.replicas == math.ceil((12.0 + later / 5.0) * WORK) > fresh.replicas


def test_a_scrape_s_age_runs_from_it_to_now_within_the_staleness() -> None:
    def age(scraped_at: float | None) -> float:
        seen = Signals(running=1.0, observed_at=100.0, scraped_at=scraped_at)
        return scrape_age(inputs(signals=seen), 100.0)

    assert age(96.0) == 4.0
    assert age(None) == age(math.nan) == 0.0
    assert age(104.0) == 0.0  # (a clock ahead of the operator's: no age)
    assert age(0.0) == DEFAULT_PARAMS.staleness_seconds


def test_while_replicas_start_no_more_is_asked_for_the_backlog_foreseen() -> None:
    """The decision after the first, 2 s later: the backlog grew as foreseen (the new
    replicas serve in 3 s), and what was asked for drains it: no more."""
    first = queue_need(inputs(), 0.0, 16.0, 12.0, TRUSTED, starting=())
    asked = first.replicas
    grown = 16.0 + (12.0 - 2 / WORK) * 2.0
    waiting = max(0.0, grown - 16.0)
    again = queue_need(
        inputs(desired_replicas=asked, ready_replicas=asked),
        waiting,
        min(grown, 16.0),
        12.0,
        TRUSTED,
        starting=((3.0, asked - 2),),
    )
    assert again.replicas <= asked
    assert again.low <= asked


def test_a_long_start_up_s_backlog_drains_within_a_minute() -> None:
    """A 300 s start-up piles up 1,683 requests before a replica asked now serves. Drained
    over the start-up, everything arriving in the five minutes after would wait behind it:
    the count drains it within a minute, and never faster than the latency SLO."""
    slow = inputs(startup_seconds=300.0)
    later = (16.0 - 2 * 2.0 / WORK) + (12.0 - 2 / WORK) * 300.0

    def need(drain_seconds: float, given: ScalingInputs = slow) -> int:
        params = replace(TRUSTED, drain_seconds=drain_seconds)
        return queue_need(given, 0.0, 16.0, 12.0, params, starting=()).replicas

    assert need(60.0) == math.ceil((12.0 + later / 60.0) * WORK) == 13
    assert need(math.inf) == math.ceil((12.0 + later / 300.0) * WORK) == 6
    assert need(0.5) == math.ceil((12.0 + later / 2.0) * WORK)  # the 2 s SLO
    short = inputs(startup_seconds=30.0)
    assert need(60.0, short) == need(math.inf, short)


def test_what_piles_up_is_foreseen_at_no_less_than_the_replicas_complete() -> None:
    """3 replicas believed to serve 3.2 req/s each complete the 12 arriving with nothing
    waiting: they serve 4 each at least, so no backlog piles up over a 600 s start-up, and
    the count is what serves the arrivals. Completions below the belief change nothing."""
    slow = inputs(desired_replicas=3, ready_replicas=3, startup_seconds=600.0)

    def need(shown_rate: float | None) -> int:
        return queue_need(slow, 0.0, 4.0, 12.0, TRUSTED, (), shown_rate).replicas

    foreseen = (12.0 - 3 / WORK) * 600.0
    assert need(None) == math.ceil((12.0 + foreseen / 60.0) * WORK) == 12
    assert need(12.0 / 3) == math.ceil(12.0 * WORK) == 4
    assert need(2.0) == need(None)
    reason = queue_need(slow, 0.0, 4.0, 12.0, TRUSTED, (), 4.0).reason
    assert "piling up at the 4 req/s each replica has completed, not the 3.2" in reason
    assert "completed" not in queue_need(slow, 0.0, 4.0, 12.0, TRUSTED, (), 2.0).reason


def test_a_new_service_s_completions_refute_the_prior_s_backlog() -> None:
    """A new service whose profile says half the replicas' speed, planned at the prior (30 %
    slower still), 600 s start-up: at its first sample its 4 replicas complete 12 req/s with
    nothing waiting. At the believed speed a backlog of thousands would pile up before a
    replica asked now serves; the completions refute it: the count serves the arrivals at
    the believed speed, with no backlog to drain."""
    half = inputs(
        desired_replicas=4,
        ready_replicas=4,
        startup_seconds=600.0,
        prefill_tokens_per_second=4000.0,
        decode_tokens_per_second=200.0,
    )
    first = Signals(queue_depth=0.0, running=4.0, arrival_rate=12.0, observed_at=15.0)
    rec = recommend(replace(half, signals=first), ScalerState(), 15.0)
    believed = 2 * WORK / DEFAULT_PARAMS.speed_prior
    assert rec.needs["queue"] == math.ceil(12.0 * believed) == 10
    assert rec.replicas <= rec.needs["arrival"] + 1
    # 20 req/s after a scale-down from 8: the 24 completed since the last sample were 8's
    # (3 each), not 4's, and 4 fall short of the 20 arriving
    state = ScalerState(rates=((0.0, 24.0, 8),), window_since=0.0)
    busy = replace(first, arrival_rate=20.0, recent_completion_rate=24.0)
    after = recommend(replace(half, signals=busy), state, 15.0)
    assert after.needs["queue"] > math.ceil(20.0 * believed)


def test_replicas_ready_before_they_serve_count_as_starting() -> None:
    """Kubernetes may call a pod Ready before its model server serves (the load twin's pods
    serve ``startupSeconds`` after Ready): the scale-up's replicas count as starting until
    ``startupSeconds`` (+ the lag to Ready) after it, as seen from the scrape's time."""
    state = replace(ScalerState(), last_scale_up_at=100.0, starting=((100.0, 10),), speed_at=0.0)
    backlog = Signals(
        queue_depth=40.0,
        running=16.0,
        arrival_rate=6.0,
        observed_at=104.0,
        recent_completion_rate=6.4,
        scraped_at=103.0,
    )
    held = recommend(
        inputs(desired_replicas=12, ready_replicas=12, signals=backlog), state, 104.0, TRUSTED
    )
    assert held.replicas == 12
    assert held.needs["queue"] <= 12 + 1  # (what drains the backlog as foreseen)
    # a scale-up long enough ago: they serve, and the count is what the load needs
    later = recommend(
        inputs(desired_replicas=12, ready_replicas=12, signals=replace(backlog, scraped_at=103.0)),
        replace(state, last_scale_up_at=90.0, starting=((90.0, 10),)),
        104.0,
        TRUSTED,
    )
    assert later.needs["queue"] <= 12


def test_the_speed_waits_for_a_full_rate_window() -> None:
    """A series younger than the rate window under-reports its rates (Prometheus divides by
    the whole window): the estimate stays at the prior until a window was observed."""
    params = ScalerParams(headroom_min_reaction_seconds=math.inf)
    state = ScalerState()
    for k in range(40):
        at = 2.0 * k
        young = min(1.0, (at + 2.0) / 60.0)  # the share of the window the series covers
        sample = Signals(
            queue_depth=0.0,
            running=8.0,
            arrival_rate=8.0 * young,
            observed_at=at,
            prompt_tokens_rate=8.0 * young * 500,
            output_tokens_rate=8.0 * young * 100,
            mean_running=8.0,
            recent_completion_rate=8.0,
            scraped_at=at,
        )
        rec = recommend(inputs(signals=sample), state, at, params)
        state = rec.state
        if at < 60.0:
            assert state.speed == params.speed_prior, at


def test_each_scale_ups_replicas_serve_a_start_up_time_after_it() -> None:
    """2 replicas, then +3 at 100 s and +5 at 150 s (60 s start-up): at 170 s the first
    batch serves and the second does not. Counting both as starting until the last one's
    start-up ends took the work of 5 serving replicas for that of 2 (the speed estimate
    then read them as twice as fast as they are)."""
    state = replace(
        ScalerState(), last_scale_up_at=150.0, starting=((100.0, 3), (150.0, 5)), speed_at=0.0
    )

    def decided(scraped_at: float, now: float) -> ScalerState:
        sample = Signals(
            queue_depth=0.0,
            running=20.0,
            arrival_rate=8.0,
            observed_at=scraped_at,
            scraped_at=scraped_at,
        )
        observed = inputs(
            desired_replicas=10, ready_replicas=10, startup_seconds=60.0, signals=sample
        )
        return recommend(observed, state, now, TRUSTED).state

    # (the serving replicas the speed is measured over)
    assert decided(170.0, 170.0).rates[-1][2] == 5
    assert decided(170.0, 170.0).starting == ((100.0, 3), (150.0, 5))
    assert decided(170.0, 215.0).rates[-1][2] == 5  # (a scrape from before they served)
    assert decided(215.0, 215.0).rates[-1][2] == 10
    assert decided(215.0, 260.0).starting == ()  # (served long since: forgotten)


def test_a_scale_down_takes_back_the_newest_starting_replicas_first() -> None:
    state = replace(ScalerState(), last_scale_up_at=150.0, starting=((100.0, 3), (150.0, 5)))
    down = recommend(
        inputs(desired_replicas=10, ready_replicas=6, startup_seconds=60.0, manual_replicas=6),
        state,
        160.0,
        TRUSTED,
    )
    assert down.state.starting == ((100.0, 3), (150.0, 1))
    up = recommend(
        inputs(desired_replicas=6, ready_replicas=6, startup_seconds=60.0, manual_replicas=9),
        down.state,
        165.0,
        TRUSTED,
    )
    assert up.state.starting == ((100.0, 3), (150.0, 1), (165.0, 3))


def test_the_backlog_foreseen_counts_each_batch_from_when_it_serves() -> None:
    """2 replicas serve now, 3 more in 2 s and 5 more in 4 s (5 s start-up): the backlog
    grows at the rate each stretch's serving replicas fall short of the arrivals."""
    need = queue_need(
        inputs(desired_replicas=10, ready_replicas=10),
        30.0,
        16.0,
        20.0,
        TRUSTED,
        starting=((4.0, 5), (2.0, 3)),
    )
    backlog = max(30.0 - 10 * 4, 30.0 + 16.0 - 10 * (2000.0 / 1000.0 / WORK))
    later = backlog + (20.0 - 2 / WORK) * 2.0 + (20.0 - 5 / WORK) * 2.0 + (20.0 - 10 / WORK) * 1.0
    assert need.replicas == max(math.ceil((20.0 + max(0.0, later) / 5.0) * WORK), 2)


def test_the_arrival_reason_says_where_the_arrivals_came_from() -> None:
    """With completions between scrapes, the arrivals are those plus the growth of what is in
    the system, at any load: not "completions at saturation", as the reason said (that is
    the estimate without them, during a backlog)."""
    state = ScalerState()
    for k in range(12):
        in_system = 3.0 if k == 11 else 2.0  # (6 req/s, one more in the system at the last)
        sample = scrape(2.0 * k, 0.0, in_system, 6.0, 6.0)
        rec = decide(state, 3, sample, TRUSTED)
        state = rec.state
    assert rec.signal == "arrival", rec.reason
    assert "(completions between scrapes + the growth of what is in the system, +0.5 req/s)" in (
        rec.reason
    )
