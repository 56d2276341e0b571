"""A restart from what status kept: the count, the speed, the burst headroom (its bursts,
recent rates, levels, heavier mix, fan-out and the arrivals' scatter), the request size and
the scale-down window, held as a recommender that never restarted would."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierra.core.autoscale import (
    DEFAULT_PARAMS,
    ScalerParams,
    ScalerState,
    SignalNeed,
    burst_lookback,
    burst_swing,
    headroom_need,
    heavier_mix_peak,
    mix_weighted,
    mix_weights,
    rate_dispersion,
    recommend,
    restore_state,
    status_signals,
)
from tierra.core.autoscale.load import slide_max
from tierra_testing.autoscale import (
    STEP,
    TRUSTED,
    burst_history,
    clustered_rates,
    crowd_from_a_quiet_level,
    inputs,
    level_that_moved,
    mix_phase_history,
    modulated_history,
    need_for,
    pytest_approx,
    run_burst,
    steady,
)


def test_a_restart_restores_the_count_the_headroom_and_the_speed() -> None:
    """Run through a burst, restart with only what status keeps (the recommendation and the
    last scale decision with its state signals), and compare the next decisions with those
    of a recommender that never restarted."""
    state, current, last_up = ScalerState(), 4, 0.0
    for i in range(40):
        now = i * STEP
        rate = 20.0 if 300 <= now < 360 else 2.0
        rec = recommend(
            inputs(
                desired_replicas=current,
                ready_replicas=current,
                signals=steady(
                    now,
                    rate,
                    rate * 0.375,
                    prompt_tokens_rate=rate * 1000,
                    output_tokens_rate=rate * 200,
                    mean_running=rate * 0.375,
                ),
            ),
            state,
            now,
        )
        if rec.replicas > current:
            last_up = now
        state, current = rec.state, rec.replicas
    status = json.loads(json.dumps(status_signals(state, 60.0)))
    restored = restore_state(
        current, 40 * STEP, last_scale_at=last_up, scaled_up_by=current, signals=status
    )
    assert restored.speed == pytest_approx(state.speed, 1e-4)
    assert restored.rates == ()
    assert restored.restored_burst is not None
    assert restored.restored_burst[1::3] == burst_swing(state.rates, 60.0)  # (jump, peak)
    assert restored.restored_dispersion == pytest_approx(rate_dispersion(state.rates), 1e-4)
    for i in range(40, 48):
        now = i * STEP
        observed = inputs(
            desired_replicas=current, ready_replicas=current, signals=steady(now, 2.0, 0.75)
        )
        kept = recommend(observed, state, now)
        again = recommend(observed, restored, now)
        assert again.replicas >= kept.replicas  # a restart never scales down sooner
        assert again.needs.get("headroom") == kept.needs.get("headroom")
        state, restored = kept.state, again.state
    assert restored.restored_dispersion is not None  # (carried on until the next restart)
    assert ScalerState.from_dict(json.loads(json.dumps(restored.to_dict()))) == restored


# --------------------------------------------------------------------------------------------
# The burst headroom


def test_the_status_keeps_a_fading_burst_at_its_weight() -> None:
    """A restart holds a burst from beyond the lookback as it was being held: faded."""
    lookback = burst_lookback(60.0)
    now = 3600.0
    history = tuple(
        (t, 20.0 if now - 1.25 * lookback - 60 <= t < now - 1.25 * lookback else 2.0, 4)
        for t in (i * STEP for i in range(int(now / STEP) + 1))
    )
    kept = status_signals(ScalerState(rates=history), 60.0)
    assert 0.45 * 20.0 < kept["state.burstPeak"] < 0.55 * 20.0
    # (the burst's fall, a minute younger than its rise, weighs a little more)
    assert 0.45 * 18.0 < kept["state.burstRise"] < 0.6 * 18.0


def test_the_status_keeps_a_burst_between_two_decisions_on_a_short_start_up() -> None:
    """A 5 s start-up decided every 15 s: the 2 -> 20 req/s burst between two decisions is
    what a restart must hold again (no two samples lie within the start-up itself)."""
    kept = status_signals(ScalerState(rates=burst_history(1200.0)), 5.0)
    assert (kept["state.burstRise"], kept["state.burstPeak"]) == (18.0, 20.0)
    restored = restore_state(4, 1300.0, last_scale_at=1200.0, signals=kept, params=DEFAULT_PARAMS)
    history = ((1300.0, 2.0, 4),)
    need = headroom_need(
        inputs(startup_seconds=5.0), 2.0, history, restored=restored.restored_burst
    )
    assert need is not None and need.replicas == need_for(20.0)


@pytest.mark.parametrize("jump", [False, True])
def test_a_restart_holds_a_jump_and_a_modest_swing_as_before(jump: bool) -> None:
    """The status keeps the largest jump and the largest modest swing and share apart:
    restored, each is held as it was, also when the first samples after the restart come
    within a start-up of the last decision (as samples, the peak kept would have made a
    swing of its own with them; as one swing from the peak's level, the jump would have been
    taken for the level's modulation, and a fraction of it held)."""
    now, startup = 1800.0, 60.0
    history = modulated_history(jump)
    kept = json.loads(json.dumps(status_signals(ScalerState(rates=history), startup)))
    restored = restore_state(4, now + STEP, last_scale_at=now, signals=kept).restored_burst
    for rate in (4.0, 6.0):
        later = tuple((now + k * STEP, rate, 4) for k in range(1, 9))
        before = headroom_need(inputs(), rate, (*history, *later))
        after = headroom_need(inputs(), rate, later, restored=restored)
        assert before is not None and after is not None
        assert after.replicas == before.replicas, (rate, after.reason, before.reason)


def test_a_fall_that_spans_a_restart_is_held_as_before() -> None:
    """A ramp from 2 to 12 req/s over 20 minutes (no jump: each start-up rises by a modest
    share of its level), a restart at the top, and the load drops back to 2 req/s within the
    next start-up. Never restarted, that fall is a jump of 10 req/s, held whole; restarted,
    the steps of the highest and lowest rates of the last start-up kept in status pair with
    the samples after, and it is held as before (the burst summary alone saw no jump)."""
    now, startup = 1800.0, 300.0
    slow = inputs(startup_seconds=startup)

    def ramp(t: float) -> float:
        return 2.0 + 10.0 * min(1.0, max(0.0, (t - 600.0) / 1200.0))

    history = tuple((t, ramp(t), 4) for t in (i * STEP for i in range(121)))
    kept = json.loads(json.dumps(status_signals(ScalerState(rates=history), startup)))
    restored = restore_state(4, now + STEP, last_scale_at=now, signals=kept)
    # (the lowest rates of all after them, the third held until the latest of the rest)
    lows = ((1500.0, 9.5), (1515.0, 9.625), (1800.0, 9.75))
    assert restored.restored_edges == (*lows, (1800.0, 12.0))
    later = tuple((now + k * STEP, 2.0, 4) for k in range(1, 9))
    before = headroom_need(slow, 2.0, (*history, *later))
    after = headroom_need(
        slow, 2.0, later, restored=restored.restored_burst, edges=restored.restored_edges
    )
    forgot = headroom_need(slow, 2.0, later, restored=restored.restored_burst)
    assert before is not None and after is not None
    assert after.replicas == before.replicas == need_for(12.0, startup_seconds=startup)
    # (without the kept steps, at most the ramp's modest swing at its share of the rate now,
    # not the fall)
    assert forgot is None or forgot.replicas < after.replicas
    # (the kept rates go on to the next status while within a start-up of its latest sample)
    again = status_signals(replace(restored, rates=later[:2]), startup)
    assert (again["state.recentHigh"], again["state.recentHighAt"]) == (12.0, 1800.0)
    assert ScalerState.from_dict(json.loads(json.dumps(restored.to_dict()))) == restored


def test_a_fall_late_in_the_start_up_that_a_restart_splits_is_held_as_before() -> None:
    """On/off traffic at 4 req/s: 8.9 at 760 s, 8.4 still at 835 s, a restart at 900 s from
    the state kept at 880 s, and the load is off (0.3 req/s) from 905 s. By 920 s the 8.9 has
    left the 120 s start-up, and the fall from 8.4 is the one held: kept as a step of the
    highest rates (the highest of all after it), it pairs with the samples after the restart
    as it would have (the highest rate alone no longer does)."""
    startup = 120.0
    on = {760.0: 8.9, 835.0: 8.4}

    def rate(t: float) -> float:
        return on.get(t, 4.0) if t < 900 else 0.3

    history = tuple((t, rate(t), 8) for t in (625.0 + i * STEP for i in range(18)))
    assert history[-1][0] == 880.0
    kept = json.loads(json.dumps(status_signals(ScalerState(rates=history), startup)))
    assert (kept["state.recentHigh1"], kept["state.recentHigh1At"]) == (8.4, 835.0)
    restored = restore_state(8, 900.0, last_scale_at=600.0, signals=kept, signals_at=880.0)
    later = tuple((t, rate(t), 8) for t in (905.0 + i * STEP for i in range(2)))
    slow = inputs(startup_seconds=startup)
    before = headroom_need(slow, 0.3, (*history, *later))
    after = headroom_need(
        slow, 0.3, later, restored=restored.restored_burst, edges=restored.restored_edges
    )
    only_highest = tuple(e for e in restored.restored_edges if e != (835.0, 8.4))
    forgot = headroom_need(slow, 0.3, later, restored=restored.restored_burst, edges=only_highest)
    assert before is not None and after is not None and forgot is not None
    assert after.replicas == before.replicas == need_for(8.4, startup_seconds=startup)
    assert forgot.replicas == need_for(4.0, startup_seconds=startup) < after.replicas


def test_a_restart_keeps_only_believable_recent_rates() -> None:
    kept = {
        "state.recentHigh": 12.0,
        "state.recentHighAt": 1800.0,
        "state.recentLow": 9.5,
        "state.recentLowAt": 1500.0,
    }
    assert restore_state(4, 1815.0, signals=kept, signals_at=1800.0).restored_edges == (
        (1500.0, 9.5),
        (1800.0, 12.0),
    )
    for absurd in (
        {"state.recentHigh": -1.0},  # a negative rate
        {"state.recentHigh": math.inf},
        {"state.recentHighAt": 1900.0},  # after the state was kept
        {"state.recentHighAt": 1800.0 - 2 * 86_400},  # older than any burst history
    ):
        edges = restore_state(4, 1815.0, signals={**kept, **absurd}, signals_at=1800.0)
        assert edges.restored_edges == ((1500.0, 9.5),), absurd
    assert restore_state(4, 1815.0, signals=kept).restored_edges == ()  # no time: none


def test_a_restart_holds_the_burst_as_of_when_the_state_was_kept() -> None:
    """The state kept with a status 30 s before the restart, the last scale decision an hour
    before: the burst and the fan-out fade from when the state was kept, the scale-down
    window and the starting replicas count from the decision."""
    kept = {
        "state.burstRise": 18.0,
        "state.burstPeak": 20.0,
        "state.burstJump": 18.0,
        "state.burstSwing": 0.0,
        "state.burstShare": 0.0,
        "state.crowd": 40.0,
    }
    restored = restore_state(
        6, 7200.0, last_scale_at=3600.0, scaled_up_by=2, signals=kept, signals_at=7170.0
    )
    assert restored.restored_burst == (7170.0, 18.0, 0.0, 0.0, 20.0, 0.0)
    assert restored.crowds == ((7170.0, 40.0),)
    assert restored.last_change_at == 3600.0 and restored.starting == ((3600.0, 2),)
    # (without signals_at, the decision's time, as before)
    decided = restore_state(6, 7200.0, last_scale_at=3600.0, signals=kept)
    assert decided.restored_burst is not None and decided.restored_burst[0] == 3600.0
    # (a time after now is not believed)
    assert restore_state(6, 7200.0, signals=kept, signals_at=9000.0).restored_burst is None


def headroom_after_restart(
    kept: dict[str, float],
    now: float,
    startup: float,
    rate: float,
    since: tuple[tuple[float, float, int], ...],
) -> tuple[ScalerState, SignalNeed | None]:
    """(the state a restart a sample after ``now`` restores from what status ``kept``, the
    headroom on the samples ``since`` then at ``rate`` requests/s)."""
    restored = restore_state(4, now + STEP, last_scale_at=now, signals=kept, signals_at=now)
    need = headroom_need(
        inputs(startup_seconds=startup),
        rate,
        since,
        restored=restored.restored_burst,
        edges=restored.restored_edges,
    )
    return restored, need


def test_a_restart_holds_a_crowd_that_was_beyond_the_noise_of_its_own_level() -> None:
    """The crowd from a quiet level, within the noise of its peak: what the status keeps
    says it was beyond the noise of its own level, so the replicas after a restart hold it
    as the ones before did (a status written before that was kept holds none)."""
    startup, now = 30.0, 1800.0
    rates, rise = crowd_from_a_quiet_level(now)
    kept = status_signals(ScalerState(rates=rates), startup)
    assert kept["state.burstBeyond"] == pytest.approx(rise, abs=1e-3)
    since = ((now + STEP, 3.6, 4), (now + 2 * STEP, 3.6, 4))
    _, need = headroom_after_restart(kept, now, startup, 3.6, since)
    assert need is not None and need.replicas == need_for(3.6 + rise)
    without = {k: v for k, v in kept.items() if k != "state.burstBeyond"}
    older, older_need = headroom_after_restart(without, now, startup, 3.6, since)
    assert older.restored_burst is not None and older.restored_burst[5] == 0.0
    assert older_need is None


def test_a_restart_holds_a_level_that_moved_as_before() -> None:
    """The level that moved within the noise of its samples: what the status keeps holds it
    after a restart as before, not the noise of the few samples since (no larger)."""
    startup, now = 300.0, 3600.0
    rates = level_that_moved(now)
    kept = status_signals(ScalerState(rates=rates), startup)
    assert kept["state.burstBeyond"] == pytest.approx(3.0, abs=1e-3)
    since = tuple((now + k * STEP, rate, 4) for k, rate in enumerate((4.6, 3.4, 4.4), 1))
    before = headroom_need(inputs(startup_seconds=startup), 4.0, (*rates, *since))
    _, after = headroom_after_restart(kept, now, startup, 4.0, since)
    assert before is not None and after is not None
    assert after.replicas == before.replicas == need_for(7.0, startup_seconds=startup)


def test_the_status_keeps_the_mix_weighted_burst_history() -> None:
    rates = tuple((t, 4.0, 2) for t in (0.0, 15.0, 30.0, 45.0))
    mixes = ((0.0, 3000.0, 100.0), *((t, 1000.0, 0.0) for t in (15.0, 30.0, 45.0)))
    state = ScalerState(rates=rates, mixes=mixes)
    kept = status_signals(state, 60.0, token_rates=(1000.0, 100.0))
    assert (kept["state.burstPeak"], kept["state.burstRise"]) == (16.0, 12.0)
    assert status_signals(state, 60.0)["state.burstPeak"] == 4.0  # (no replicas: no weight)
    huge = mix_weighted(rates, mix_weights(((0.0, 1e300, 0.0), (45.0, 1e-300, 0.0)), 1.0, 1.0))
    assert all(math.isfinite(r) for _, r, _ in huge)


def test_a_restart_holds_the_heavier_mix_s_rate_until_it_leaves_the_lookback() -> None:
    """The status keeps the rate a heavier mix came at and when; a restart holds it whole
    (the samples' mixes are not kept) until it is older than the lookback. A kept peak above
    the burst history's, or from after the status was written, is a status edit."""
    rates, mixes = mix_phase_history(1.6)
    chat = inputs(startup_seconds=120.0)
    tokens = (chat.prefill_tokens_per_second, chat.decode_tokens_per_second)
    kept = status_signals(ScalerState(rates=rates, mixes=mixes), 120.0, token_rates=tokens)
    weights = mix_weights(mixes, *tokens)
    peak = heavier_mix_peak(mix_weighted(rates, weights), weights)
    assert peak is not None
    assert (kept["state.mixPeakAt"], kept["state.mixPeak"]) == pytest.approx(peak, abs=1e-3)
    restored = restore_state(6, 1830.0, last_scale_at=1800.0, signals=kept)
    assert restored.restored_mix_peak == pytest.approx(peak, abs=1e-3)
    # kept again by the next status, with its own time (not the restart's)
    again = status_signals(replace(restored, rates=((1830.0, 4.0, 6),)), 120.0, token_rates=tokens)
    assert (again["state.mixPeakAt"], again["state.mixPeak"]) == pytest.approx(peak, abs=1e-3)
    for edit in ({"state.mixPeak": 1e9}, {"state.mixPeakAt": 1900.0}, {"state.mixPeakAt": None}):
        edited = {k: v for k, v in {**kept, **edit}.items() if v is not None}
        assert (
            restore_state(6, 1830.0, last_scale_at=1800.0, signals=edited).restored_mix_peak is None
        )
    # the recommender drops it once older than the 30-minute lookback
    state = restored
    for now in (1845.0, peak[0] + 1800.0 - 15.0, peak[0] + 1800.0 + 15.0):
        sample = steady(now, 4.0, 1.5, prompt_tokens_rate=4000.0, output_tokens_rate=800.0)
        state = recommend(
            replace(chat, signals=sample, desired_replicas=6, ready_replicas=6), state, now, TRUSTED
        ).state
        if now < peak[0] + 1800.0:
            assert state.restored_mix_peak is not None
    assert state.restored_mix_peak is None


def test_status_keeps_a_fan_out_not_a_burst_s_first_sample() -> None:
    """A restart restores the kept jump as a fan-out (no sample of it survives): the status
    keeps the jump of a fan-out, and not the first sample of a burst whose rate stayed up."""
    startup = inputs().startup_seconds
    sustained = run_burst(lambda now: 1.0, lasting=60.0)[885.0].state
    isolated = run_burst(lambda now: 1.0, lasting=15.0)[885.0].state
    assert sustained.crowds and isolated.crowds
    assert "state.crowd" not in status_signals(sustained, startup)
    assert status_signals(isolated, startup)["state.crowd"] == pytest.approx(120.0)


def test_a_restart_judges_ramps_at_the_scatter_status_kept() -> None:
    """Fan-outs of 30 at 4 req/s on a 600 s start-up, restarted every 150 s after the 30th
    minute with what status keeps: the restarted recommender's first samples, too few to read
    their own scatter, judge ramps at the kept one. A ramp held in at most 0.5 % of the
    decisions (measured 0.2 %; at Poisson's scatter, as before status kept it: 2.2 %)."""
    held = decisions = 0
    for seed in range(20):
        rates = clustered_rates(seed, 4.0, 30, 3600.0)
        for cut in range(120, len(rates) - 10, 10):
            kept = json.loads(json.dumps(status_signals(ScalerState(rates=rates[:cut]), 600.0)))
            restored = restore_state(4, rates[cut][0], signals=kept, signals_at=rates[cut - 1][0])
            assert restored.restored_dispersion == pytest.approx(
                rate_dispersion(rates[:cut]), rel=1e-3
            )
            for end in range(cut + 5, cut + 11):
                seen = rates[cut:end]
                need = headroom_need(
                    inputs(startup_seconds=600.0),
                    seen[-1][1],
                    seen,
                    TRUSTED,
                    dispersion=rate_dispersion(seen, fallback=restored.restored_dispersion or 1.0),
                )
                held += need is not None and "ramp" in need.reason
                decisions += 1
    assert held <= 0.005 * decisions, (held, decisions)


# --------------------------------------------------------------------------------------------
# The request size


def test_a_restart_goes_on_smoothing_the_request_size_it_kept() -> None:
    """A shifting mix's smoothed size survives a restart (its first minute alone is one
    phase); a kept size that is absurd or incomplete is dropped and measured again."""
    state = ScalerState(sizes=(3000.0, 150.0, 240.0, 1000.0))
    kept = json.loads(json.dumps(status_signals(state, 60.0)))
    assert restore_state(4, 1200.0, signals=kept).sizes == (3000.0, 150.0, 240.0, 1200.0)
    for absurd in ({"state.meanPromptTokens": -1.0}, {"state.meanOutputTokens": 1e12}):
        assert restore_state(4, 1200.0, signals={**kept, **absurd}).sizes is None
    incomplete = {k: v for k, v in kept.items() if k != "state.sizeRequests"}
    assert restore_state(4, 1200.0, signals=incomplete).sizes is None


# --------------------------------------------------------------------------------------------
# The scale-down window


NO_HEADROOM = ScalerParams(speed_prior=1.0, headroom_min_reaction_seconds=math.inf)
"""Without the burst headroom, which holds a fall's count through its lookback."""


def falling_load(restart_at: float | None, delay: float = 300.0, known: bool = True) -> list[int]:
    """The counts asked for every ``STEP`` (``NO_HEADROOM``) through 20 req/s for 600 s and
    2 req/s after, each count Ready at once; with ``restart_at``, restarted there from what
    status kept a step before (the recommendation, the last scale decision and the state),
    knowing the scale-down delay or not."""
    state, current, counts = ScalerState(), 4, []
    kept: tuple[dict[str, float], float] | None = None
    last_up: tuple[float, int] = (0.0, 0)
    for i in range(100):
        now = i * STEP
        if now == restart_at and kept is not None:
            signals, at = kept
            state = restore_state(
                state.last_replicas,
                now,
                last_scale_at=last_up[0],
                scaled_up_by=last_up[1],
                signals=signals,
                signals_at=at,
                scale_down_delay=delay if known else None,
                params=NO_HEADROOM,
            )
        rate = 20.0 if now < 600 else 2.0
        rec = recommend(
            inputs(
                desired_replicas=current,
                ready_replicas=current,
                scale_down_delay_seconds=delay,
                signals=steady(now, rate, rate * 0.375),
            ),
            state,
            now,
            NO_HEADROOM,
        )
        if rec.replicas > current:
            last_up = (now, rec.replicas - current)
        state, current = rec.state, rec.replicas
        kept = (json.loads(json.dumps(status_signals(state, 60.0, NO_HEADROOM))), now)
        counts.append(current)
    return counts


@pytest.mark.parametrize("backlog_ago", [5.0, 60.0, 130.0])
def test_a_restart_waits_out_the_last_backlog_s_tail_as_before(backlog_ago: float) -> None:
    """A backlog the replicas drained without a scale-up leaves its waits in the p95 for two
    latency windows; the feedback waits them out. A restart in that tail waits them out too:
    without when the backlog was, it read the tail as replicas too few and doubled them."""
    state, current = ScalerState(), 5
    for i in range(40):
        now = i * STEP
        observed = inputs(desired_replicas=current, ready_replicas=current)
        rec = recommend(replace(observed, signals=steady(now, 8.0, 3.0)), state, now)
        state, current = rec.state, rec.replicas
    assert state.last_scale_up_at is None
    state = replace(state, backlog_at=now - backlog_ago)
    kept = json.loads(json.dumps(status_signals(state, 60.0)))
    later = now + STEP
    restored = restore_state(current, later, signals=kept, signals_at=now, scale_down_delay=300.0)
    assert restored.backlog_at == pytest_approx(now - backlog_ago, 1e-6)
    assert restored.backlog_at is not None and restored.backlog_at >= now - backlog_ago
    tail = steady(later, 8.0, 3.0, p95_latency_ms=inputs().latency_p95_ms * 3)
    observed = inputs(desired_replicas=current, ready_replicas=current, signals=tail)
    kept_count = recommend(observed, state, later).replicas
    assert recommend(observed, restored, later).replicas == kept_count
    waits = 2 * DEFAULT_PARAMS.latency_window_seconds
    assert (kept_count == current) == (later - (now - backlog_ago) < waits)
    forgotten = {k: v for k, v in kept.items() if k != "state.backlogAt"}
    before = restore_state(
        current, later, signals=forgotten, signals_at=now, scale_down_delay=300.0
    )
    assert recommend(observed, before, later).replicas > current


@pytest.mark.parametrize("kept_at", [2000.0, math.nan, -1e12])
def test_a_restart_sets_aside_a_backlog_kept_after_the_state_or_absurd(kept_at: float) -> None:
    kept = {**status_signals(ScalerState(), 60.0), "state.backlogAt": kept_at}
    restored = restore_state(5, 1300.0, signals=kept, signals_at=1200.0, scale_down_delay=300.0)
    assert restored.backlog_at is None


@pytest.mark.parametrize(("restart_at", "later"), [(600.0, 1), (750.0, 0), (885.0, 0)])
def test_a_restart_goes_on_with_the_scale_down_window_status_kept(
    restart_at: float, later: int
) -> None:
    """A fall that spans a restart scales down when the window would have let it: the
    window's steps are kept with the state, not started afresh (a failover does not hold
    the load's count a whole scale-down delay more). Only the time between the state kept
    and the restart is taken at the need last kept: restarted as the load falls, the 20
    req/s of the step before are held a step longer."""
    never = falling_load(None)
    down = never.index(min(never))
    assert down == (600 + 300) / STEP and never[down - 1] > never[down]
    held = [never[down - 1]] * later
    assert falling_load(restart_at) == never[:down] + held + never[down : len(never) - later]
    # (as before: a restart that does not know the delay waits a whole one from the restart)
    afresh = falling_load(restart_at, known=False)
    assert afresh.index(min(afresh)) == (restart_at + 300) / STEP + 1 >= down + later


def test_a_restart_from_a_window_as_old_as_the_delay_waits_a_whole_one() -> None:
    """Status kept longer ago than the scale-down delay (an operator down that long), or a
    restart that does not know the delay: the window starts at the restart, seeded with the
    recommended count, and the count is held a whole delay of fresh observations."""
    state = ScalerState(window=((1000.0, 12), (1100.0, 8), (1200.0, 3)), window_since=400.0)
    kept = json.loads(json.dumps(status_signals(state, 60.0)))
    fresh = restore_state(12, 1230.0, signals=kept, signals_at=1200.0, scale_down_delay=300.0)
    assert fresh.window == ((1000.0, 12), (1100.0, 8), (1230.0, 3))
    assert fresh.window_since == 400.0
    for old in (
        restore_state(12, 1500.0, signals=kept, signals_at=1200.0, scale_down_delay=300.0),
        restore_state(12, 1230.0, signals=kept, signals_at=1200.0),
    ):
        assert old.window == ((old.window_since, 12),)


@pytest.mark.parametrize(
    "edit",
    [
        {"state.window1Need": 14.0},  # (needs that rise: not a window's steps)
        {"state.window1At": 900.0},  # (a step before the one before it)
        {"state.window2At": 1300.0},  # (a step after the state was kept)
        {"state.window0At": 300.0},  # (before the window was observed)
        {"state.window1Need": 7.5},
        {"state.window0Need": -1.0},
        {"state.window0Need": math.inf},
        {"state.windowSince": math.nan},
    ],
)
def test_a_restart_starts_the_window_afresh_from_absurd_steps(edit: dict[str, float]) -> None:
    state = ScalerState(window=((1000.0, 12), (1100.0, 8), (1200.0, 3)), window_since=400.0)
    kept = {**status_signals(state, 60.0), **edit}
    restored = restore_state(12, 1230.0, signals=kept, signals_at=1200.0, scale_down_delay=300.0)
    assert restored.window == ((1230.0, 12),) and restored.window_since == 1230.0


def window_max(window: tuple[tuple[float, int], ...], at: float, delay: float) -> int:
    """What the window holds at ``at``: its highest need of the last ``delay`` seconds."""
    return max((need for t, need in window if t >= at - delay), default=0)


@given(
    steps=st.lists(st.tuples(st.floats(1.0, 60.0), st.integers(1, 20)), min_size=1, max_size=12),
    gap=st.floats(0.0, 299.0),
)
def test_a_restored_window_never_holds_a_need_for_less_time(
    steps: list[tuple[float, int]], gap: float
) -> None:
    """Whatever the window's steps (kept as at most three, the rest merged into the last),
    the window a restart restores holds at every later moment at least what the window
    that never restarted would have (its need at the restart carried over the gap)."""
    delay, window, at = 300.0, (), 1000.0
    for wait, need in steps:
        at += wait
        window = slide_max(window, at, need, since=at - delay)
    state = ScalerState(window=window, window_since=900.0)
    kept = json.loads(json.dumps(status_signals(state, 60.0)))
    now = at + gap
    restored = restore_state(None, now, signals=kept, signals_at=at, scale_down_delay=delay)
    carried = slide_max(window, now, window[-1][1])
    for later in (now + i * 7.5 for i in range(45)):
        assert window_max(restored.window, later, delay) >= window_max(carried, later, delay)
    assert restored.window[0][1] == window[0][1]
