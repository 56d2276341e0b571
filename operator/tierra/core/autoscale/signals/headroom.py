"""The burst headroom: capacity held ahead of bursts a reactive scale-up would be late for
(``headroom_need``), from the burstiness this service has shown (the ``bursts`` module), a
ramp under way (``ramp``), the largest fan-out seen (``fan_out``), and a heavier mix counted
at its weight (``mixes``)."""

from __future__ import annotations

import math
from dataclasses import replace

from tierra.core.queue_model import replicas_for_slo

from ..bursts import (
    burst_fade,
    burst_lead,
    burst_lookback,
    burst_rise,
    burst_summary,
    decision_interval,
    rate_dispersion,
    rate_stayed_up,
)
from ..mixes import heavier_mix_peak
from ..model import (
    DEFAULT_PARAMS,
    EPS,
    ScalerParams,
    ScalingInputs,
    SignalNeed,
    ceil_count,
)
from ..ramp import RampFits, ramp_end, ramp_held
from ..sample import Sample
from .arrival import deadband, planned_concurrency
from .queue import queue_allowance

CLUSTERED_DISPERSION = 5.0
"""Arrivals whose samples scatter this many times Poisson's variance or more come in
clusters (``rate_dispersion``): a jump of what is in the system within one sample is a
fan-out there (``fan_out``). The suite's fan-out traffic scatters 11-50x, its other traces
1-4x over any ten minutes."""


def headroom_need(
    inputs: ScalingInputs,
    arrival_rate: float,
    rates: tuple[tuple[float, float, int], ...],
    params: ScalerParams = DEFAULT_PARAMS,
    crowd: float = 0.0,
    restored: tuple[float, float, float, float, float, float] | None = None,
    edges: tuple[tuple[float, float], ...] = (),
    dispersion: float | None = None,
    mix_peak: float = 0.0,
    ramps: RampFits | None = None,
) -> SignalNeed | None:
    """Capacity held ahead of bursts a reactive scale-up would be late for.

    A replica asked for now serves ``startupSeconds`` later, so a burst that rises within
    that time is met only by what is already running. The headroom is the largest rise (or
    fall, ``burst_swing``) of the arrival rate within one start-up time seen over the last
    ``burst_lookback`` (the burstiness of this service's traffic, not a fixed margin; older
    samples fade out over ``headroom_fade_lookbacks`` more, ``burst_fade``; a swing of a
    modest share of its level, ``modest_swing``, at that share of the rate now): the arrival
    model is asked for ``current rate + that rise`` (none for a rise that Poisson noise alone
    would show somewhere in the lookback, at the peak's level, ``burst_noise``, and at the
    level of each swing, ``swing_noise``, or, on a long start-up, of the moving means',
    ``level_means_per_lead``: the queueing headroom covers it; a larger one is
    held whole), never more than the lookback's peak (plus the deadband), so a
    burst that came before is held for, and a smooth load holds little.
    None when the start-up is short enough for a reactive scale-up, or nothing rose.
    ``dispersion``: the arrivals' scatter (``rate_dispersion``) when the caller has read it
    (with what a restart kept); None: read from ``rates``, at Poisson's until they show it.
    ``mix_peak``: the rate a heavier mix of the lookback came at, in requests of now's
    (``heavier_mix_peak``), held whole. ``ramps``: the ramp fits of ``rates`` at
    ``dispersion`` (``ramp_fits``) when the caller has them; None: fitted here.
    """
    if not rates:
        return None
    interval = decision_interval(rates, params)
    # (a burst is answered a decision, a start-up and the ready lag after it begins; a short
    # start-up decided seldom is as late for it as a long one)
    if interval + inputs.startup_seconds + params.ready_lag_seconds < (
        params.headroom_min_reaction_seconds
    ):
        return None
    lookback_minutes = burst_lookback(inputs.startup_seconds, params) / 60
    plan = planned_concurrency(inputs, params)
    if plan is None:
        return None
    lead = burst_lead(inputs.startup_seconds, rates, params)
    fade = burst_fade(rates[-1][0], inputs.startup_seconds, params)
    if dispersion is None:
        dispersion = rate_dispersion(rates, params)
    burst = burst_summary(rates, lead, fade, params, restored, edges, dispersion)
    peak = burst.peak
    # (a burst is held whole: the next one's peak is no lower than the last's for being noisy)
    rise, scaled = 0.0, ""
    if burst.beyond(lead, params):
        # (a modest swing is the level's modulation: at a lower level, a smaller one)
        rise = burst.held(arrival_rate)
        if burst.jump < rise < burst.swing:
            scaled = (
                f"; a swing of up to {1 + params.modest_swing:g}x is the level's own, held "
                f"as its {burst.share:.0%} of the rate now, not its {burst.swing:.3g} req/s"
            )
    held = min(arrival_rate + rise, peak * (1 + params.tolerance))
    # A ramp (the latest start-up time rose by a modest share of the load) goes on rising:
    # its rise is held above the current rate even at the peak. A jump is a burst, held at
    # its peak.
    latest = tuple(r for r in rates if r[0] >= rates[-1][0] - inputs.startup_seconds)
    trend, _ = burst_rise(latest, inputs.startup_seconds)
    if 0 < trend <= 0.5 * arrival_rate:
        held = max(held, arrival_rate + trend)
    # A ramp under way (a flash crowd, a morning's rise) is held at where its line will be
    # when a replica asked now serves (``ramp_held``).
    line, fitted = ramp_held(
        rates,
        ramp_end(inputs, rates, params),
        inputs.startup_seconds,
        params,
        dispersion,
        fits=ramps,
    )
    ramping = line > held
    held = max(held, line)
    # A heavier mix is held whole where it came: a mix changes at once, but the smoothed size
    # follows a lighter one over minutes, so the weighted history shows a heavy phase's end as
    # a slope, and its start as a rise the noise test can dismiss (a phase of 1.6x the work at
    # 4 requests/s rose 3.7 of now's requests/s, under the noise of 30 minutes at its peak).
    by_mix = mix_peak > held
    held = max(held, mix_peak)
    ramping = ramping and not by_mix
    k, work, target = plan

    def replicas(rate: float) -> int:
        return replicas_for_slo(rate, k * work, k, target, params.percentile, inputs.max_replicas)

    # A fan-out brings dozens of requests within a second, which no rate sample shows; the
    # largest jump of what is in the system between two samples must clear within the SLO
    # on the replicas' allowance (``queue_allowance``), beside what the steady arrivals keep
    # in them (at least the rate times the mean request's time alone on a replica).
    steady = arrival_rate * work
    by_crowd = ceil_count((crowd + steady) / queue_allowance(inputs)) if crowd > 0 else 0
    by_rate = replicas(held) if held > arrival_rate * (1 + params.tolerance) + EPS else 0
    if max(by_rate, by_crowd) <= replicas(arrival_rate):
        return None
    mean = sum(r for _, r, _ in rates) / len(rates)
    fade_minutes = lookback_minutes * params.headroom_fade_lookbacks
    faded = rates[0][0] < rates[-1][0] - lookback_minutes * 60
    fading = f", fading over the {fade_minutes:g} before" if faded and fade_minutes > 0 else ""
    if ramping:
        scatter = (
            f" (rising beyond the arrivals' scatter, {dispersion:.2g}x Poisson's)"
            if dispersion > 1.5
            else ""
        )
        source = (
            f"where the arrivals' ramp of the last "
            f"{fitted * params.rate_sample_seconds:g} s{scatter} will be at the end of the "
            f"{inputs.startup_seconds:g} s start-up"
        )
    elif by_mix:
        source = f"the rate a heavier mix of the last {lookback_minutes:g} min came at"
    else:
        means = f" of its {burst.means_of:g} s means" if burst.means_of is not None else ""
        source = (
            f"the largest rise or fall{means} within the {lead:g} s "
            f"{'start-up' if lead == inputs.startup_seconds else 'between decisions'} over the "
            f"last {lookback_minutes:g} min{fading} (peak {peak:.3g}, peak/mean "
            f"{peak / mean if mean > 0 else math.inf:.2g}){scaled}"
        )
    why = (
        f"headroom: {held:.3g} req/s held = {arrival_rate:.3g} now + "
        f"{held - arrival_rate:.3g}, {source} -> {by_rate}"
    )
    if by_crowd > by_rate:
        why = (
            f"headroom: {crowd:.0f} more in the system within one sample (a fan-out), the "
            f"largest of the last {lookback_minutes:g} min, beside the {steady:.2g} the "
            f"arrivals keep there, cleared within the SLO at {queue_allowance(inputs):.3g} per "
            f"replica -> {by_crowd}"
        )
    low = max(replicas(held * (1 - deadband(arrival_rate, params))) if by_rate else 0, by_crowd)
    need = max(by_rate, by_crowd)
    # (what a scale-down keeps is the need itself, not the need at the top of the deadband:
    # the held rate is already the rate now plus the largest rise the lookback saw)
    return SignalNeed("headroom", need, why, low, need, forecast=ramping and by_rate >= by_crowd)


def fan_out(
    crowds: tuple[tuple[float, float], ...],
    rates: tuple[tuple[float, float, int], ...],
    dispersion: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> tuple[float, float]:
    """(the largest fan-out of ``crowds``, the largest jump taken for a rate instead).

    A jump of what is in the system within one sample (``crowds``) may be
    requests that came at once or a rate that filled the running slots over the sample: the
    counts cannot tell. Where arrivals come in clusters (``dispersion`` at least
    ``CLUSTERED_DISPERSION``; while unknown, infinite) it is a fan-out. Where they scatter
    like Poisson counts and the next sample's rate stayed at half the jump's sample's or
    more (``rate_stayed_up``), it was the start of a burst: a rate, which the rise holds
    (held as a fan-out, a sustained burst's first sample on too few replicas held several
    times the count its rate needs for the whole lookback). A jump with nothing after it yet
    is a fan-out."""
    if dispersion >= CLUSTERED_DISPERSION:
        return max((jump for _, jump in crowds), default=0.0), 0.0
    dismissed = 0.0
    for at, jump in sorted(crowds, key=lambda crowd: crowd[1], reverse=True):
        if not rate_stayed_up(at, rates, params):
            return jump, dismissed
        dismissed = max(dismissed, jump)
    return 0.0, dismissed


def from_sample(sample: Sample, params: ScalerParams = DEFAULT_PARAMS) -> SignalNeed | None:
    """``headroom_need`` on the burst history, in requests of the latest mix (``mix_weighted``),
    and the largest fan-out of the lookback; None without the arrivals now."""
    load, sized = sample.load, sample.seen.sized
    if load.arrival is None:
        return None
    history, weights, dispersion = load.history.rates, load.history.weights, load.history.dispersion
    state = sample.state
    # (read once: unknown is clustered for a fan-out, Poisson's for a ramp)
    crowd, rate_like = fan_out(load.crowds, load.rates, dispersion, params)
    mix_peak = heavier_mix_peak(history, weights, state.restored_mix_peak)
    need = headroom_need(
        sized,
        load.arrival,
        history,
        params,
        crowd,
        state.restored_burst,
        state.restored_edges,
        load.history.scatter,
        mix_peak[1] if mix_peak is not None else 0.0,
        load.history.ramps,
    )
    if need is None:
        return need
    notes = []
    if rate_like > crowd:
        notes.append(
            f"a jump of {rate_like:.0f} in the system within one sample, with arrivals "
            f"scattered {dispersion:.2g}x Poisson's and the rate still up after it, is "
            f"held as the burst's rate, not as a fan-out"
        )
    if weights:
        notes.append(
            f"past samples of a mix up to {max(weights.values()):.2g}x heavier than now's "
            f"counted at its weight"
        )
    return replace(need, reason=f"{need.reason} ({'; '.join(notes)})") if notes else need
