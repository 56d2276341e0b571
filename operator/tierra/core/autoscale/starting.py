"""The replicas still starting: each scale-up's batch serves a start-up time after it was asked
for, Ready or not (a pod can be Ready before its model server serves)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

from .model import ScalerParams, ScalingInputs, SignalNeed
from .state import ScalerState


def starting_batches(
    inputs: ScalingInputs, state: ScalerState, now: float, params: ScalerParams
) -> tuple[tuple[float, int], ...]:
    """(seconds until they serve, replicas) of the replicas still starting, soonest first.

    Each scale-up's replicas serve ``startupSeconds`` (+ ``ready_lag_seconds``) after it was
    asked for, as seen from the scrape's time (a scrape taken before they served shows their
    backlog): a pod can be Ready before its model server serves. Replicas not Ready beyond
    those serve a whole start-up from now at the latest. Never more than the desired count.
    """
    signals = inputs.signals
    at = signals.scraped_at if signals is not None and signals.scraped_at is not None else now
    lag = inputs.startup_seconds + params.ready_lag_seconds
    batches = [
        (max(0.0, asked + lag - now), n)
        for asked, n in state.starting
        if asked <= now and min(at, now) - asked < lag and n > 0
    ]
    unready = inputs.desired_replicas - inputs.ready_replicas - sum(n for _, n in batches)
    if unready > 0:
        batches.append((max(inputs.startup_seconds, 0.0), unready))
    kept: list[tuple[float, int]] = []
    room = max(inputs.desired_replicas, 0)
    for serve_in, n in sorted(batches):
        take = min(n, room)
        if take > 0:
            kept.append((serve_in, take))
            room -= take
    return tuple(kept)


def starting_count(
    inputs: ScalingInputs, state: ScalerState, now: float, params: ScalerParams
) -> int:
    """Replicas still starting (``starting_batches``)."""
    return sum(n for _, n in starting_batches(inputs, state, now, params))


def starting_after(
    inputs: ScalingInputs, state: ScalerState, now: float, replicas: int, params: ScalerParams
) -> tuple[tuple[float, int], ...]:
    """``state.starting`` once the count goes from the desired one to ``replicas``: a scale-up
    adds a batch; a scale-down takes from the newest batches first (a ReplicaSet removes
    unready pods first, the newest first); batches that serve by now are forgotten."""
    # (kept a staleness longer: a scrape from before they served still shows them starting)
    lag = inputs.startup_seconds + params.ready_lag_seconds + params.staleness_seconds
    kept = [(t, n) for t, n in state.starting if 0.0 <= now - t < lag and n > 0]
    current = inputs.desired_replicas
    if replicas > current:
        kept.append((now, replicas - current))
    drop = current - replicas
    while drop > 0 and kept:
        t, n = kept.pop()
        if n > drop:
            kept.append((t, n - drop))
        drop -= n
    return tuple(kept)


def cancelled_by(
    inputs: ScalingInputs, state: ScalerState, now: float, replicas: int, params: ScalerParams
) -> int:
    """Replicas still starting that going from the desired count to ``replicas`` removes
    before they serve (a ReplicaSet removes unready pods first): those of the scale-ups asked
    for within the last start-up time (+ the ready lag). Unready replicas beyond those (pods
    no node takes) are not counted."""
    lag = inputs.startup_seconds + params.ready_lag_seconds
    asked = sum(n for t, n in state.starting if 0.0 <= now - t < lag and n > 0)
    unready = max(inputs.desired_replicas - inputs.ready_replicas, 0)
    return max(min(inputs.desired_replicas - replicas, asked, unready), 0)


def rates_at_asks(
    state: ScalerState, rates: Iterable[tuple[float, float, int]]
) -> dict[float, float]:
    """Time -> arrivals then: the burst history's samples (``rates``), and the asks a restart
    kept (``asked_rates``) where the history, emptied by the restart, has none."""
    return {**dict(state.asked_rates), **{t: rate for t, rate, _ in rates}}


def still_asked_for(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    rates: tuple[tuple[float, float, int], ...],
    params: ScalerParams,
) -> int:
    """Replicas still starting whose load is still here: asked for within the last start-up
    time (+ the ready lag) at arrivals (the burst history's sample of that scale-up) that the
    latest sample has not fallen back from. Removing them would ask for them again a whole
    start-up later, whatever ``scaleDownDelaySeconds`` says.

    * Asked for by the arrivals then: kept until they fall back beyond noise (``fell_back``);
      a scale-up is asked for on the samples that Poisson noise put high.
    * Asked for by a ramp's forecast (``forecast_asks``): kept while the arrivals are no lower
      than then. A line that one sample no longer fits is not refuted until the arrivals fall
      back; but a line that noise drew is, at the first lower sample, before its start-up
      (which may be many times what the line was seen over) is paid for whole.

    Never more than the unready replicas."""
    if not rates or rates[-1][0] != now:
        return 0
    latest = rates[-1][1]
    lag = inputs.startup_seconds + params.ready_lag_seconds
    # (the history's samples within the last start-up time, not all of it)
    recent = itertools.takewhile(lambda sample: now - sample[0] < lag, reversed(rates))
    at_ask = rates_at_asks(state, recent)
    kept = sum(
        n
        for asked, n in state.starting
        if 0.0 <= now - asked < lag
        and n > 0
        and asked in at_ask
        and (
            at_ask[asked] <= latest
            if asked in state.forecast_asks
            else not fell_back(at_ask[asked], latest, params)
        )
    )
    return min(kept, max(inputs.desired_replicas - inputs.ready_replicas, 0))


def fell_back(then: float, now: float, params: ScalerParams) -> bool:
    """Whether arrivals of ``now`` per second are below ``then`` beyond the noise of two burst
    history samples (``rate_sample_seconds`` of Poisson arrivals each, variance-stabilised as
    ``interval_rate`` reads a change: ``2 (sqrt(then) - sqrt(now)) / sqrt(2)`` in counts,
    beyond ``change_z``). A scale-up is asked for on the samples that noise put high; the
    next one is lower more often than not, which is no sign that the load left."""
    span = params.rate_sample_seconds
    if not (math.isfinite(then) and math.isfinite(now)):
        return not now >= then
    counts = (max(then, 0.0) * span, max(now, 0.0) * span)
    return math.sqrt(2.0) * (math.sqrt(counts[0]) - math.sqrt(counts[1])) > params.change_z


def forecast_asks(
    state: ScalerState,
    starting: tuple[tuple[float, int], ...],
    now: float,
    scaled_up: bool,
    found: list[SignalNeed],
) -> tuple[float, ...]:
    """``state.forecast_asks`` for the batches still ``starting``, with this scale-up's when a
    ramp's forecast asked for more than any other signal did."""
    batches = {t for t, _ in starting}
    kept = tuple(t for t in state.forecast_asks if t in batches and t != now)
    forecast = max((n.replicas for n in found if n.forecast), default=0)
    others = max((n.replicas for n in found if not n.forecast), default=0)
    if scaled_up and now in batches and forecast > others:
        return (*kept, now)
    return kept
