"""The queue signal: what is in the system over what one replica holds within the SLO for the
observed request mix (``queue_allowance``); with the arrivals known, the replicas that drain
the backlog there will be when a replica asked now serves (``queue_need``)."""

from __future__ import annotations

import math

from ..history import ramp_to
from ..model import (
    DEFAULT_PARAMS,
    ScalerParams,
    ScalingInputs,
    SignalNeed,
    ceil_count,
    mean_work,
    scrape_age,
)
from ..sample import Sample
from ..starting import starting_batches
from .arrival import deadband


def queue_allowance(inputs: ScalingInputs) -> float:
    """Requests (running + waiting) one replica can hold within the SLO for the observed mix.

    A replica completes a mean request every ``work`` seconds whatever its concurrency
    (processor sharing), so the last of ``n`` requests in it is out after about ``n x work``:
    the latency budget allows ``budget / work``; the TTFT budget allows ``maxConcurrency``
    running plus ``ttft budget / work`` waiting. Long prompts make ``work`` long and the
    allowance small. Never more than ``maxConcurrency + maxQueuePerReplica`` (the configured
    bound), never less than one request.
    """
    configured = float(inputs.max_concurrency + (inputs.max_queue_per_replica or 0))
    work = mean_work(inputs)
    if work is None:
        return configured
    rtt = inputs.rtt_ms / 1000.0
    allowance = min(configured, max(0.0, inputs.latency_p95_ms / 1000.0 - rtt) / work)
    if inputs.ttft_p95_ms is not None:
        ttft_budget = max(0.0, inputs.ttft_p95_ms / 1000.0 - rtt)
        allowance = min(allowance, inputs.max_concurrency + ttft_budget / work)
    return max(1.0, allowance)


def queue_need(
    inputs: ScalingInputs,
    waiting: float,
    running: float,
    arrival_rate: float | None = None,
    params: ScalerParams = DEFAULT_PARAMS,
    starting: tuple[tuple[float, int], ...] | None = None,
    shown_rate: float | None = None,
    age: float = 0.0,
    ramp_to: float = 0.0,
) -> SignalNeed:
    """What is in the system over the per-replica allowance (``queue_allowance``: what keeps
    latency within the SLO for the observed request mix).

    With the arrival rate and request size known, a backlog is work to drain rather than a
    steady load, and a replica asked for now serves only ``startupSeconds`` later: the need is
    the replicas that, from then on, serve the arrivals and drain within ``startupSeconds``
    (``drain_seconds`` at most) the backlog there will be by then -- the excess now (beyond
    the allowed queue and the allowance) plus what piles up meanwhile, at the rate the
    serving replicas fall short of the arrivals (each batch of ``starting`` replicas,
    ``(seconds until it serves, replicas)``, counted from when it serves) -- and at least
    what holds what is running at full concurrency. So the first decision after a step
    already asks for what drains the backlog its own start-up builds, and the decisions while
    replicas start, which see that backlog grow as foreseen, ask for no more.
    Without the rate, the plain count over the allowance; while replicas are starting it is
    held at the replicas already asked for (theirs to absorb). ``starting`` defaults to the
    desired replicas that are not ready, serving a start-up time from now. ``shown_rate``:
    the completions per second one replica has shown it serves (``shown_rate``); what piles
    up is foreseen at no less per replica, whatever the profile and the speed estimate say.
    ``age``: seconds since the scrape the gauges are of (``scrape_age``): the pile-up is
    foreseen from then. ``ramp_to``: the rate a ramp under way will have reached when a
    replica asked now serves (``ramp_to``; 0: none): the arrivals meanwhile rise on its
    line, and the replicas asked for serve that rate and drain what piled up (foreseen at
    the rate now, a ramp that outran the replicas left a backlog the next ones, sized for
    the ramp's rate alone, took minutes to drain). What it asks for so is no forecast
    (``SignalNeed.forecast``): it stays while it starts until the arrivals fall back beyond
    noise, not at the first lower sample, which a slow morning ramp shows often (its
    replicas then went and the ramp outran them again).
    """
    allowance = queue_allowance(inputs)
    work = mean_work(inputs)
    startup = max(inputs.startup_seconds, 0.0)
    horizon = max(min(startup, params.drain_seconds), inputs.latency_p95_ms / 1000.0, 1.0)
    desired = inputs.desired_replicas
    allowed = desired * (inputs.max_queue_per_replica or 0)
    held = desired * allowance
    if starting is None:
        unready = max(0, desired - inputs.ready_replicas)
        starting = ((startup, unready),) if unready else ()
    batches = sorted((min(startup, max(0.0, s)), max(0, n)) for s, n in starting)
    serving_now = max(0, desired - sum(n for _, n in batches))
    # (the replicas serving over each stretch until a replica asked now serves)
    stretches: list[tuple[float, int]] = []
    # (from the scrape the gauges are of, ``age`` seconds ago: the backlog grew on since)
    serving, since = serving_now, -max(age, 0.0)
    for serve_in, n in batches:
        stretches.append((serve_in - since, serving))
        serving, since = serving + n, serve_in
    stretches.append((startup - since, serving))
    still_starting = desired - serving_now
    # (a replica's rate is never below what it has completed: the speed's prior plans for a
    # profile 30 % optimistic, and at a long start-up a backlog foreseen at that speed, which
    # the completions refute, would ask for several times the count the load needs)
    per_replica = max(1.0 / work, shown_rate or 0.0) if work is not None else 0.0

    foreseen = sum(span for span, _ in stretches)
    rising = arrival_rate is not None and ramp_to > arrival_rate and foreseen > 0

    def at(factor: float) -> int:
        w, r = waiting * factor, running * factor
        need = ceil_count((w + r) / allowance)
        if arrival_rate is not None and work is not None:
            rate = arrival_rate * factor
            final = ramp_to * factor if rising else rate
            backlog = max(0.0, w - allowed, w + r - held)
            # the backlog when a replica asked now serves, stretch by stretch
            later, since, rising_by = backlog, 0.0, (final - rate) / (foreseen or 1.0)
            for span, n in stretches:
                start = rate + rising_by * since - n * per_replica
                later = piled_up(later, start, start + rising_by * span, span)
                since += span
            drain = ceil_count((final + later / horizon) * work)
            need = max(drain, ceil_count(r / inputs.max_concurrency))
        return need

    band = deadband(arrival_rate, params)
    need, low, high = at(1.0), at(1 - band), at(1 + band)
    reason = (
        f"queue: {waiting:g} waiting + {running:g} running over {inputs.ready_replicas} ready, "
        f"{allowance:.3g} per replica within the SLO"
    )
    if arrival_rate is not None and work is not None:
        ramp = f", on a ramp to {ramp_to:.3g} by then" if rising else ""
        reason = (
            f"{reason}; with {arrival_rate:.3g} req/s arriving{ramp}, what drains within "
            f"{horizon:g} s the backlog there will be when a replica asked now serves -> {need}"
        )
        if per_replica > 1.0 / work:
            reason = (
                f"{reason} (piling up at the {per_replica:.3g} req/s each replica has "
                f"completed, not the {1.0 / work:.3g} its speed estimate says)"
            )
        return SignalNeed("queue", need, reason, low, high)
    reason = f"{reason} -> {need}"
    if still_starting > 0 and need > desired:
        reason = f"{reason}, held at {desired} while {still_starting} starting absorb the backlog"
        need, low, high = desired, min(low, desired), min(high, desired)
    return SignalNeed("queue", need, reason, low, high)


def piled_up(backlog: float, start: float, end: float, span: float) -> float:
    """The backlog after ``span`` seconds of a net inflow (arrivals less completions, req/s)
    going linearly from ``start`` to ``end`` >= ``start``, never below none: a stretch that
    drains it banks nothing for the later part a ramp outruns."""
    if start >= 0 or end <= 0:  # (one sign throughout)
        return max(0.0, backlog + (start + end) / 2 * span)
    turns = span * -start / (end - start)
    return max(0.0, backlog + start / 2 * turns) + end / 2 * (span - turns)


def from_sample(sample: Sample, params: ScalerParams = DEFAULT_PARAMS) -> SignalNeed | None:
    """``queue_need`` on what is waiting and running, with the arrivals now and the replicas
    still starting; None when neither is observed."""
    load, inputs = sample.load, sample.seen.inputs
    if load.waiting is None and load.running is None:
        return None
    return queue_need(
        inputs,
        load.waiting or 0.0,
        load.running or 0.0,
        load.arrival,
        params,
        starting_batches(inputs, sample.state, sample.now, params),
        shown_rate(sample, params),
        scrape_age(inputs, sample.now, params),
        ramp_to(load.history, sample.seen.sized, params) if load.arrival is not None else 0.0,
    )


def shown_rate(sample: Sample, params: ScalerParams = DEFAULT_PARAMS) -> float | None:
    """Completions per second one serving replica has shown it serves at least: the latest
    interval's (``irate``) or the rate window's, each over the most replicas serving in it
    (fewer would over-state each one's share); the higher of the two, since a young series'
    window rate under-reports, never over. None without completions or serving replicas."""
    signals = sample.seen.inputs.signals
    if signals is None:
        return None
    history = sample.state.rates
    latest = max([sample.seen.serving, *(n for *_, n in history[-1:])])
    window = max(
        [
            sample.seen.serving,
            *(n for t, _, n in history if t > sample.now - params.rate_window_seconds),
        ]
    )
    shown = [
        done / replicas
        for done, replicas in (
            (signals.recent_completion_rate, latest),
            (signals.arrival_rate, window),
        )
        if done is not None and math.isfinite(done) and done > 0 and replicas > 0
    ]
    return max(shown, default=None)
