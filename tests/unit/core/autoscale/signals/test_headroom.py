"""The burst headroom: the count a burst within the start-up needs, held through the quiet and
faded out after the lookback, a modest swing held at its share of the rate now, a heavier
mix held like a burst, and a fan-out the running slots took in told from a burst's rate."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierra.core.autoscale import (
    DEFAULT_PARAMS,
    ScalerParams,
    ScalerState,
    Signals,
    burst_fade,
    burst_lead,
    burst_lookback,
    burst_memory,
    burst_noise,
    burst_rise,
    burst_swing,
    deadband,
    decision_interval,
    fan_out,
    headroom_need,
    heavier_mix_peak,
    mix_weighted,
    mix_weights,
    queue_allowance,
    rate_dispersion,
    recommend,
)
from tierra.core.autoscale.signals.headroom import CLUSTERED_DISPERSION
from tierra_testing.autoscale import (
    STEP,
    TRUSTED,
    burst_history,
    closed_loop,
    clustered_rates,
    inputs,
    mix_phase_history,
    modulated_history,
    need_for,
    poisson_rates,
    run_burst,
    steady,
)
from tierra_testing.builders import service

# --------------------------------------------------------------------------------------------
# Bursts


def test_headroom_holds_what_a_burst_within_the_startup_time_needs() -> None:
    now = 1200.0
    need = headroom_need(inputs(), 2.0, burst_history(now))
    assert need is not None and need.signal == "headroom"
    # 2 now + the 18 req/s rise seen within the 60 s start-up (a burst: beyond what noise
    # shows at 20 req/s), held whole
    assert burst_noise(20.0, 60.0) < 18.0
    held = 2.0 + 18.0
    assert need.replicas == need_for(held) > need_for(2.0)
    assert f"{held:.3g} req/s held = 2 now + {held - 2:.3g}" in need.reason
    assert "60 s start-up" in need.reason and "peak/mean" in need.reason
    assert not need.forecast  # (the arrivals now and a burst seen: no line's forecast)
    # never more than the peak plus the deadband, however the rises add up
    bursting = headroom_need(inputs(), 20.0, burst_history(now))
    assert bursting is None or bursting.replicas <= need_for(22.0)


def test_the_headroom_s_deadband_is_the_arrival_estimate_s_noise() -> None:
    """The headroom is sized by the arrival rate, so its lower edge is as wide as the rate's
    noise, like the arrival signal's: at 1 req/s (26 %) after a burst to 8 req/s it asks
    for 4 but raises a count of 3 only once the held rate is beyond that noise."""
    now = 1200.0
    history = tuple(
        (t, 8.0 if now - 630 <= t < now - 570 else 1.0, 4)
        for t in (i * STEP for i in range(int(now / STEP) + 1))
    )
    need = headroom_need(inputs(), 1.0, history)
    assert need is not None and need.replicas == need_for(8.0) == 4
    assert need.low == need_for(8.0 * (1 - deadband(1.0))) == 3
    assert need_for(8.0 * (1 - DEFAULT_PARAMS.tolerance)) == 4  # (a 10 % band would raise it)


@pytest.mark.parametrize("seed", range(10))
def test_a_burst_beyond_the_noise_bound_is_held_whole(seed: int) -> None:
    """A steady load with one step of 1.5 times the noise bound within the lookback: the
    whole step is held (at the peak's deadband)."""
    rng = random.Random(seed)
    base, startup = rng.uniform(1.0, 20.0), rng.choice([30.0, 60.0, 120.0])
    step = 1.5 * burst_noise(base * 3, startup)
    rates = tuple(
        (t, r + (step if 600 <= t < 660 else 0.0), n)
        for t, r, n in poisson_rates(seed, base, DEFAULT_PARAMS.headroom_lookback_seconds)
    )
    rise, peak = burst_rise(rates, startup)
    assert rise > burst_noise(peak, startup)
    need = headroom_need(inputs(startup_seconds=startup), base, rates)
    assert need is not None and need.replicas > need_for(base * 1.1)


def test_no_headroom_for_a_smooth_load_or_a_scale_up_on_time() -> None:
    smooth = tuple((i * STEP, 5.0 + 0.01 * i, 4) for i in range(80))
    assert headroom_need(inputs(), 5.8, smooth) is None
    # a 5 s start-up decided every second: its replicas serve 8 s after a burst begins
    every_second = tuple((float(t), 20.0 if 570 <= t < 630 else 2.0, 4) for t in range(1201))
    assert decision_interval(every_second) == 1.0
    assert headroom_need(inputs(startup_seconds=5.0), 2.0, every_second) is None


@pytest.mark.parametrize("startup", [5.0, 15.0])
def test_a_short_start_up_decided_every_scrape_holds_a_burst(startup: float) -> None:
    """Decided every 15 s, a 5-15 s start-up serves 22-32 s after a burst begins: as late as
    a 20-30 s one decided at once. The burst seen (2 -> 20 req/s between two decisions, which
    no pair of samples within the start-up shows) is held."""
    history = burst_history(1200.0)
    assert decision_interval(history) == STEP and burst_lead(startup, history) == STEP
    need = headroom_need(inputs(startup_seconds=startup), 2.0, history)
    assert need is not None and need.replicas == need_for(20.0)
    assert "20 req/s held = 2 now + 18" in need.reason and "within the 15 s" in need.reason


def one_burst(now: float) -> tuple[Signals, dict[str, Any]]:
    """20 req/s from 300 to 360 s, 2 req/s otherwise."""
    rate = 20.0 if 300 <= now < 360 else 2.0
    return steady(now, rate, rate * 0.375), {}


def test_headroom_keeps_the_count_through_the_quiet_and_lets_go_after_the_lookback() -> None:
    """A service that has had a burst keeps the burst's count through quiet minutes (the next
    one would come faster than replicas start) and lets it go once it is older than the
    lookback."""
    params = replace(TRUSTED, headroom_lookback_seconds=900.0)
    run = closed_loop(one_burst, 2400, params)
    during = {t: rec.replicas for t, rec in run.items()}
    state = run[2385.0].state
    assert during[360.0] >= need_for(20.0)
    assert all(n >= need_for(18.0) for t, n in during.items() if 360 <= t <= 1100)
    assert during[2385.0] <= need_for(2.0 * 1.1) + 1  # released after the lookback
    assert "headroom" in str(
        recommend(
            inputs(
                desired_replicas=during[900.0],
                ready_replicas=during[900.0],
                signals=steady(900.0, 2.0, 0.75),
            ),
            replace(state, rates=burst_history(900.0)),
            900.0,
            params,
        ).reason
    )


@pytest.mark.parametrize("startup", [60.0, 300.0])
def test_a_slow_start_up_holds_a_burst_for_twelve_start_up_times(startup: float) -> None:
    """One burst of 20 req/s over 2 req/s. On a 60 s start-up it is held whole for the
    30-minute lookback; on a 300 s start-up, where a burst missed misses for five minutes, for
    twelve start-up times (an hour): a crowd that comes back 40 minutes later is still held
    for. Then it fades out over half a lookback more."""
    lookback = burst_lookback(startup)
    end = 360.0 + lookback * (1 + DEFAULT_PARAMS.headroom_fade_lookbacks)
    counts = {
        t: rec.replicas
        for t, rec in closed_loop(one_burst, end + 300, startup_seconds=startup).items()
    }
    held, quiet = need_for(18.0), need_for(2.0 * 1.1) + 1
    assert all(counts[t] >= held for t in counts if 1200 <= t <= 300 + lookback)
    if startup == 300.0:
        assert all(counts[t] >= held for t in counts if 2100 <= t <= 3600)
    fading = [counts[t] for t in sorted(counts) if 360 + lookback <= t <= end]
    assert fading == sorted(fading, reverse=True), "a fading burst never holds more later"
    assert quiet < fading[len(fading) // 2] < held
    assert all(counts[t] <= quiet for t in counts if t >= end + 60)


@pytest.mark.parametrize("memory", [900, 3600])
def test_a_service_s_burst_memory_is_the_lookback_it_holds_a_burst_for(memory: int) -> None:
    """``spec.scaling.burstMemorySeconds`` is the lookback outright, whatever the start-up:
    one burst is held whole for it (at 3600 s, past the 45 minutes after which the default
    has let it go), then fades out over half as long again."""
    assert TRUSTED.for_service(service()) == TRUSTED
    params = TRUSTED.for_service(service(scaling={"burstMemorySeconds": memory}))
    assert burst_lookback(60.0, params) == burst_lookback(300.0, params) == memory
    assert burst_memory(60.0, params) == 1.5 * memory
    end = 360.0 + 1.5 * memory
    counts = {t: rec.replicas for t, rec in closed_loop(one_burst, end + 300, params).items()}
    held, quiet = need_for(18.0), need_for(2.0 * 1.1) + 1
    assert all(counts[t] >= held for t in counts if 360 <= t <= 300 + memory)
    fading = [counts[t] for t in sorted(counts) if 360 + memory <= t <= end]
    assert fading == sorted(fading, reverse=True), "a fading burst never holds more later"
    assert quiet < fading[len(fading) // 2] < held
    assert all(counts[t] <= quiet for t in counts if t >= end + 60)


def test_a_burst_older_than_the_lookback_fades_out_instead_of_ending() -> None:
    """The weight of a burst-history sample: whole within the lookback, then falling linearly
    to nothing over half a lookback more; the headroom held for a burst shrinks with it and
    the reason says the history is fading."""
    lookback = burst_lookback(60.0)  # 30 minutes
    weight = burst_fade(10_000.0, 60.0)
    assert weight(10_000.0) == weight(10_000.0 - lookback) == 1.0
    assert weight(10_000.0 - 1.25 * lookback) == pytest.approx(0.5)
    assert weight(10_000.0 - 1.5 * lookback) == weight(0.0) == 0.0
    assert burst_memory(60.0) == 1.5 * lookback

    def held(age: float) -> int:
        """The headroom at 2 req/s for a 2 -> 20 req/s burst that ended ``age`` s ago."""
        now = 3600.0
        history = tuple(
            (t, 20.0 if now - age - 60 <= t < now - age else 2.0, 4)
            for t in (i * STEP for i in range(int(now / STEP) + 1))
            if t > now - burst_memory(60.0)
        )
        need = headroom_need(inputs(startup_seconds=60.0), 2.0, history)
        return 0 if need is None else need.replicas

    ages = [600.0, lookback - 120, lookback + 300, lookback + 600, 1.5 * lookback + 60]
    counts = [held(age) for age in ages]
    assert counts[0] == counts[1] == need_for(20.0)
    assert need_for(20.0) > counts[2] > counts[3] > 0
    assert counts[4] == 0
    now = 3600.0
    history = tuple(
        (t, 20.0 if 3600.0 - lookback - 360 <= t < 3600.0 - lookback - 300 else 2.0, 4)
        for t in (i * STEP for i in range(int(now / STEP) + 1))
        if t > now - burst_memory(60.0)
    )
    need = headroom_need(inputs(startup_seconds=60.0), 2.0, history)
    assert need is not None and "over the last 30 min, fading over the 15 before" in need.reason


def test_a_modest_swing_is_held_as_its_share_of_the_rate_now_and_a_jump_whole() -> None:
    """At 2 req/s after a midday whose minutes swung by 6 req/s around 12: the swing was 75 %
    of its level, so 75 % of the rate now is held (the quiet's own minutes swing that much),
    not 6 req/s; a jump from 0.5 to 6 req/s is a burst, held whole at any level."""
    startup = 60.0
    modest = modulated_history(jump=False)
    assert burst_swing(modest, startup)[0] == 6.0 > burst_noise(14.0, startup)
    need = headroom_need(inputs(), 4.0, modest)
    assert need is not None and need.replicas == need_for(4.0 * 1.75) < need_for(4.0 + 6.0)
    assert "a swing of up to 2.5x is the level's own, held as its 75% of the rate now" in (
        need.reason
    )
    whole = headroom_need(inputs(), 4.0, modest, params=replace(DEFAULT_PARAMS, modest_swing=0))
    assert whole is not None and whole.replicas == need_for(4.0 + 6.0)
    # (at the level it was seen at, the swing is held whole either way)
    at_level = headroom_need(inputs(), 8.0, modest)
    assert at_level is not None and at_level.replicas == need_for(14.0)
    jumped = headroom_need(inputs(), 4.0, modulated_history(jump=True))
    assert jumped is not None and jumped.replicas == need_for(4.0 + 5.5) > need.replicas


def test_a_busy_phase_s_abrupt_end_is_remembered_whole_on_a_short_start_up() -> None:
    """10 req/s, then 0.5 req/s from one scrape to the next, on a 30 s start-up. The rate now
    is never below the minute's average (a lull within a burst is not its end), but the
    burst history keeps what each interval measured: the fall within the start-up is the
    whole 9.5 req/s, and the next busy phase, as sudden, finds the replicas for it. (With
    the history floored like the rate now, the fall was smeared over a minute and measured
    as a third of it: the next phase found half the replicas it needed.)"""
    startup, fall = 30.0, 600.0

    def rate_at(t: float) -> float:
        return 10.0 if t < fall else 0.5

    def sample(now: float) -> tuple[Signals, dict[str, Any]]:
        minute = [rate_at(now - k * STEP) for k in range(4)]  # (what the runtime's 1m rate saw)
        observed = Signals(
            queue_depth=0.0,
            running=rate_at(now) * 0.375,
            arrival_rate=sum(minute) / len(minute),
            recent_completion_rate=rate_at(now),
            observed_at=now,
        )
        return observed, {}

    run = closed_loop(sample, 1500, current=4, startup_seconds=startup)
    quiet = [rec.replicas for t, rec in run.items() if fall + 300 <= t < 1500]
    assert min(quiet) >= need_for(0.5 + 9.5, startup_seconds=startup), quiet
    last = run[1485.0].reason
    assert "headroom" in last and "30 s start-up" in last


def test_a_lull_without_completions_keeps_the_burst_headroom() -> None:
    """Bursts, then minutes with no request at all: the runtime's token ratio is 0/0 (no
    request size), yet the size measured before still sizes the headroom, so the count of
    the bursts is held through the lull instead of dropping to the floor before the next."""

    def sample(now: float) -> tuple[Signals, dict[str, Any]]:
        rate = 20.0 if 300 <= now < 360 or 600 <= now < 660 else (2.0 if now < 900 else 0.0)
        sizes: dict[str, Any] = {}
        if now >= 960:  # the rate window holds no completion any more
            sizes = {"mean_prompt_tokens": None, "mean_output_tokens": None}
        return steady(now, rate, rate * 0.375), sizes

    run = closed_loop(sample, 1500)
    assert run[900.0].replicas >= need_for(18.0)
    assert all(rec.replicas >= need_for(18.0) for t, rec in run.items() if 900 <= t < 1500)
    assert "headroom" in run[1485.0].reason


# --------------------------------------------------------------------------------------------
# A heavier mix


def run_mix(params: ScalerParams) -> dict[float, tuple[int, int | None, str]]:
    """4 req/s throughout on a 120 s start-up; 1000-token prompts, 6000-token ones (2.7 times
    the work per request) from 600 to 900 s, then 1000 again: (time, (count, the headroom's
    need, reason))."""

    def sample(now: float) -> tuple[Signals, dict[str, Any]]:
        prompt = 6000.0 if 600 <= now < 900 else 1000.0
        observed = steady(
            now,
            4.0,
            4.0 * 0.375 * prompt / 1000,
            prompt_tokens_rate=4.0 * prompt,
            output_tokens_rate=4.0 * 200,
        )
        return observed, {"mean_prompt_tokens": prompt}

    run = closed_loop(sample, 1800, params, current=4, startup_seconds=120.0)
    return {t: (rec.replicas, rec.needs.get("headroom"), rec.reason) for t, rec in run.items()}


def test_a_heavier_phase_of_the_mix_is_held_for_like_a_burst() -> None:
    """The request rate never changes, but a phase of requests 2.7 times as heavy needs twice
    the replicas, and the next comes back as fast as a burst: the light phase after it holds
    for it as the headroom does for a burst of requests, and says so (once the smoothed size
    has come down). Without the mix's weight the light phase drops to the light mix's count."""
    heavy, light = need_for(4.0, mean_prompt_tokens=6000.0), need_for(4.0)
    assert heavy >= 2 * light
    run = run_mix(TRUSTED)
    after = [(n, need, why) for t, (n, need, why) in run.items() if 1300 <= t <= 1700]
    assert all(n >= heavy - 1 and need is not None and need >= heavy for n, need, _ in after)
    assert "heavier than now's counted at its weight" in after[-1][2]
    unweighted = run_mix(replace(TRUSTED, heavier_mix_ratio=math.inf))
    assert unweighted[1695.0][0] == light


def test_a_heavier_mix_is_held_whole_at_the_rate_it_came_at() -> None:
    """A phase of requests 1.6 times the work at the same 4 req/s rose 2.4 req/s in requests of
    now's mix: less than Poisson noise shows somewhere in 30 minutes at its 6.4 req/s peak, so
    the largest rise holds none of it. But a mix changes at once, and the phase comes back as
    it went: it is held whole, at the rate it came at, and the reason says so."""
    rates, mixes = mix_phase_history(1.6)
    chat = inputs(startup_seconds=120.0)
    weights = mix_weights(mixes, chat.prefill_tokens_per_second, chat.decode_tokens_per_second)
    history = mix_weighted(rates, weights)
    peak = heavier_mix_peak(history, weights)
    assert peak is not None and peak[1] == pytest.approx(6.4)
    assert burst_noise(6.4, 120.0) > 2.4
    assert headroom_need(chat, 4.0, history) is None
    held = headroom_need(chat, 4.0, history, mix_peak=peak[1])
    assert held is not None and held.replicas == need_for(6.4) > need_for(4.0)
    assert "6.4 req/s held = 4 now + 2.4, the rate a heavier mix of the last 30 min came at" in (
        held.reason
    )
    # a phase as heavy as the latest, or no heavier mix, holds nothing of the kind
    same, same_mixes = mix_phase_history(1.0)
    assert heavier_mix_peak(same, mix_weights(same_mixes, 1e3, 1e2)) is None
    assert headroom_need(chat, 4.0, rates, mix_peak=3.0) is None


def test_a_start_up_transient_s_request_size_is_no_heavier_mix() -> None:
    """A new service's first minutes: its series are young (the minute's rates count a
    fraction of a minute) and the token counters hold the requests in flight, so the mean
    request looks 1.7 times its size at first, and comes down to it over minutes (as the
    simulator's vLLM counters show it). The sizes of that first rate window never enter the
    burst history as a heavier mix: the steady 4 req/s keeps the light mix's count, not a
    headroom for a heavy phase that never was."""

    def sample(now: float) -> tuple[Signals, dict[str, Any]]:
        rate = 4.0 * min(1.0, (now + 15.0) / 60.0)
        prompt = 1000.0 * (1.0 + 0.7 * math.exp(-now / 60.0))
        observed = steady(now, rate, 1.5, recent_completion_rate=4.0)
        return observed, {"mean_prompt_tokens": prompt}

    run = closed_loop(sample, 1200, current=4, startup_seconds=120.0)
    state = run[1185.0].state
    assert state.mixes and min(t for t, _, _ in state.mixes) >= 60.0
    assert all(
        "heavier" not in rec.reason and rec.replicas == need_for(4.0)
        for t, rec in run.items()
        if t >= 600.0
    ), {t: rec.reason for t, rec in run.items() if t >= 600.0 and "heavier" in rec.reason}


# --------------------------------------------------------------------------------------------
# Fan-outs


def run_jump(
    waiting: float, running: float, before: tuple[float, float] | None = None
) -> list[tuple[float, int, str]]:
    """1 req/s on 4 replicas (128 running slots) for 15 minutes, and one sample at 300 s
    where ``waiting`` and ``running`` requests are in the system (and ``before``, (waiting,
    running), in the sample before it): (time, count, reason)."""
    state, current, out = ScalerState(), 4, []
    for i in range(int(900 / STEP)):
        now = i * STEP
        observed = steady(now, 1.0, 0.375)
        if now == 300.0:
            observed = replace(observed, queue_depth=waiting, running=running)
        if now == 300.0 - STEP and before is not None:
            observed = replace(observed, queue_depth=before[0], running=before[1])
        rec = recommend(
            inputs(min_replicas=4, desired_replicas=current, ready_replicas=current,
                   signals=observed),
            state,
            now,
            TRUSTED,
        )  # fmt: skip
        state, current = rec.state, rec.replicas
        out.append((now, current, rec.reason))
    return out


def test_a_fan_out_the_running_slots_took_in_is_held_for_the_next() -> None:
    """120 requests within one sample, all running (a fan-out): the next one may come at
    any moment, faster than replicas start, so the count that clears it within the SLO is
    held through the quiet minutes after it."""
    after = [(n, why) for t, n, why in run_jump(0.0, 120.375) if t >= 300.0]
    crowd_need = math.ceil(120 / queue_allowance(inputs()))
    assert all(n >= crowd_need for n, _ in after), after
    assert "120 more in the system within one sample (a fan-out)" in after[-1][1]


@pytest.mark.parametrize("rate", [0.0, 4.0, 12.0])
def test_a_fan_out_is_cleared_beside_what_the_steady_arrivals_keep_in_the_replicas(
    rate: float,
) -> None:
    """A fan-out lands on replicas that already serve the steady arrivals: its 100 requests
    and the rate times the mean request's time alone (0.375 s) must clear within the SLO on
    the replicas' allowance together (counted alone, it fell short whenever sessions
    overlapped)."""
    history = tuple((t, rate, 4) for t in range(0, 600, 15))
    need = headroom_need(inputs(), rate, history, TRUSTED, crowd=100.0)
    assert need is not None
    allowance = queue_allowance(inputs())
    assert need.replicas == math.ceil((100.0 + rate * 0.375) / allowance - 1e-9)
    assert "beside the" in need.reason


def test_a_backlog_s_growth_is_the_rate_s_headroom_not_a_fan_out() -> None:
    """The same jump with requests waiting (every slot busy) is the deficit of too few
    replicas for the rate, whatever the arrivals were: they are measured by conservation and
    the rate headroom holds them. Held as a crowd, it kept replicas for the whole lookback
    that the rate does not need (a first burst on too few replicas held 2x the count the
    later bursts needed, for 30 minutes)."""
    run = run_jump(200.0, 128.375)
    assert all("fan-out" not in why for _, _, why in run)
    held = [n for t, n, _ in run if t >= 600.0]
    assert "headroom" in run[-1][2]
    assert max(held) < math.ceil(328 / queue_allowance(inputs())), held
    assert min(held) >= need_for(20.0), held  # (the interval's 22.9 req/s, held)


def test_a_backlog_moved_into_running_slots_is_no_fan_out() -> None:
    """A jump of 120 with nothing waiting, after a sample with requests waiting: the backlog
    of too few replicas moved into the running slots of replicas that turned Ready, not a
    crowd that arrived at once. Held as one, it kept 32 replicas for 30 minutes after a first
    prefill-heavy burst whose later bursts needed 13 or fewer."""
    run = run_jump(0.0, 348.0, before=(100.0, 128.0))  # (4 replicas' slots full, then more)
    assert all("fan-out" not in why for _, _, why in run), run
    assert run[-1][1] < math.ceil(120 / queue_allowance(inputs())), run[-1]


def test_a_fan_out_onto_busy_replicas_is_still_a_crowd() -> None:
    """A fan-out of 120 onto replicas already holding more than the SLO allows, but with
    nothing waiting: agentic sessions overlap, and their fan-outs land on busy replicas. It
    is remembered (judged by what the sample before held, it was not, and agentic traffic
    with an optimistic profile lost 4 points within the SLO)."""
    busy = 4 * queue_allowance(inputs()) + 20.0  # (within the 4 x 32 running slots)
    after = [why for t, _, why in run_jump(0.0, busy + 120.0, before=(0.0, busy)) if t >= 300]
    assert "120 more in the system within one sample (a fan-out)" in after[0], after[0]


def test_a_sustained_burst_s_first_sample_is_its_rate_not_a_fan_out() -> None:
    """Poisson-like arrivals, then 9 req/s for a minute whose first sample filled the running
    slots: the jump was the burst's rate over the sample, and the rate stayed up after it.
    The rise holds it as a rate from the next sample on; held as a fan-out, it kept the count
    that clears 120 requests at once for the whole lookback (a prefill-heavy burst's first
    sample held 32 replicas for an hour where 16 served every later burst)."""
    run = run_burst(lambda now: 1.0, lasting=60.0)
    crowd_need = math.ceil(120 / queue_allowance(inputs()))
    assert run[300.0].replicas >= crowd_need  # (nothing after the jump yet: a fan-out)
    later = [rec for t, rec in run.items() if t >= 600.0]
    assert all(rec.replicas < crowd_need for rec in later), [r.replicas for r in later]
    assert all(rec.replicas >= need_for(9.0) for rec in later), [r.replicas for r in later]
    assert "held as the burst's rate, not as a fan-out" in later[-1].reason


def test_a_jump_in_clustered_arrivals_stays_a_fan_out() -> None:
    """The same minute at 9 req/s after arrivals that come 30 at once (agentic sessions):
    there the jump may be a fan-out whatever followed it, and its count is held."""
    history = clustered_rates(3, 4.0, 30, 300.0)
    assert rate_dispersion(history) >= CLUSTERED_DISPERSION
    clustered = {t: rate for t, rate, _ in history}
    run = run_burst(lambda now: clustered[now], lasting=60.0)
    crowd_need = math.ceil(120 / queue_allowance(inputs()))
    # (until the steady samples after it outnumber the clustered ones in the scatter)
    held = [rec.replicas for t, rec in run.items() if 300.0 <= t < 450.0]
    assert min(held) >= crowd_need, held


def _samples(*rates: tuple[float, float]) -> tuple[tuple[float, float, int], ...]:
    return tuple((t, r, 4) for t, r in rates)


@pytest.mark.parametrize(
    ("crowds", "rates", "dispersion", "expected"),
    [
        pytest.param(((300.0, 120.0),), _samples((300.0, 9.0), (315.0, 9.0)), 1.0, (0.0, 120.0),
                     id="poisson, the rate stayed up: a rate"),
        pytest.param(((300.0, 120.0),), _samples((300.0, 9.0), (315.0, 4.0)), 1.0, (120.0, 0.0),
                     id="poisson, the rate fell back: a fan-out"),
        pytest.param(((300.0, 120.0),), _samples((300.0, 9.0)), 1.0, (120.0, 0.0),
                     id="nothing after it yet: a fan-out"),
        pytest.param(((300.0, 120.0),), _samples((300.0, 9.0), (315.0, 9.0)), 20.0,
                     (120.0, 0.0), id="clustered arrivals: a fan-out"),
        pytest.param(((300.0, 120.0),), _samples((300.0, 9.0), (315.0, 9.0)), math.inf,
                     (120.0, 0.0), id="scatter unknown: a fan-out"),
        pytest.param(((100.0, 200.0), (300.0, 40.0)),
                     _samples((100.0, 14.0), (115.0, 13.0), (300.0, 3.0), (315.0, 1.0)), 1.0,
                     (40.0, 200.0), id="the largest was a rate: the next largest fan-out"),
        pytest.param(((7000.0, 40.0),), _samples((7200.0, 9.0), (7215.0, 9.0)), 1.0,
                     (40.0, 0.0), id="kept by a restart, no sample of it: a fan-out"),
        pytest.param((), _samples((300.0, 9.0)), 1.0, (0.0, 0.0), id="no jump"),
    ],
)  # fmt: skip
def test_fan_out_tells_a_crowd_from_a_burst_s_rate(
    crowds: tuple[tuple[float, float], ...],
    rates: tuple[tuple[float, float, int], ...],
    dispersion: float,
    expected: tuple[float, float],
) -> None:
    assert fan_out(crowds, rates, dispersion) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 500.0),  # running
            st.floats(0.0, 2000.0),  # waiting
            st.floats(0.0, 50.0),  # completions now
        ),
        min_size=2,
        max_size=30,
    )
)
def test_only_what_the_running_slots_took_in_becomes_a_crowd(
    samples: list[tuple[float, float, float]],
) -> None:
    """Every crowd the headroom remembers is the jump of a sample at which nothing waited
    beyond the ready replicas' allowed queue; a jump into a backlog never is one."""
    state, current = ScalerState(), 4
    taken_in: list[float] = []  # (the jumps of samples with no backlog)
    for i, (running, waiting, completing) in enumerate(samples):
        now = i * STEP
        observed = Signals(
            queue_depth=waiting,
            running=running,
            arrival_rate=completing,
            recent_completion_rate=completing,
            observed_at=now,
        )
        rec = recommend(
            inputs(desired_replicas=current, ready_replicas=current, signals=observed),
            state,
            now,
            TRUSTED,
        )
        allowed = current * (inputs().max_queue_per_replica or 0)
        before = state.backlog_probe  # (what the jump is measured from)
        if before is not None and waiting <= allowed and running + waiting > before[1]:
            taken_in.append(running + waiting - before[1])
        state, current = rec.state, rec.replicas
        for _, crowd in state.crowds:
            assert any(math.isclose(crowd, jump) for jump in taken_in), (crowd, taken_in)
