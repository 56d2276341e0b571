"""The arrivals now and the burst history with this sample in it (``observe_load``).

Arrivals now
------------
The runtimes' completion rate over a minute lags a step and is capped by a saturated pool.
Arrivals are conserved: with the completions between the last two scrapes (``irate``) the
arrivals of that scrape interval are those plus the growth of what is in the system over it,
whether the overload shows as waiting or (processor sharing) as running. One interval's
count is noisy (a max over noisy samples ratchets a count up), and the interval in which a
step happens shows only part of it: ``interval_rate`` pools the intervals of the last
``rate_sample_seconds`` while they agree (Poisson), and when the last one rose beyond the
noise, the rise happened within it -- at its middle on average (exactly, for a ramp) -- so
the rate now is ``pooled + 2 x (interval - pooled)``, said in the reason; unless the
interval before showed a share of it, too little to tell from noise then: the step came
late in that one, and this one shows the new load whole (``_began_before``). So the first
sample after a step asks for the count the next one confirms. The next interval also says
whether the rise lasted; where recent rises did not (bursts shorter than a fast scrape
interval), the extrapolation is believed only as far as they did (``rise_trust``).
Without that rate, during a backlog the completions are the ready replicas at saturation
(one mean request per ``work`` each).

The burst history
-----------------
Each sample adds the arrivals of the scrape intervals within the last ``rate_sample_seconds``
(agreeing or not, without the extrapolated rise): the same 15 s whatever the scrape
interval, so a burst of a few seconds seen at 2 s scrapes is held as a 15 s scrape shows
it, not at the rate of one interval, which no span a start-up could serve ever had.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import NamedTuple, TypeVar

from .bursts import burst_lookback, burst_memory, rate_stayed_up
from .history import burst_history
from .model import DEFAULT_PARAMS, HUGE, ScalerParams, ScalingInputs, mean_work
from .sample import Arrivals, Load, Observed
from .state import ScalerState

_NORMAL = NormalDist()

Value = TypeVar("Value", int, float)


def slide_max(
    window: tuple[tuple[float, Value], ...], now: float, value: Value, since: float = -math.inf
) -> tuple[tuple[float, Value], ...]:
    """Add (now, value) to a window kept decreasing (only what can still be its max, so
    ``window[0]`` is its max), dropping the samples from before ``since``."""
    kept = [(t, v) for t, v in window if t >= since]
    while kept and kept[-1][1] <= value:
        kept.pop()
    kept.append((now, value))
    return tuple(kept)


def kept_crowds(
    crowds: tuple[tuple[float, float], ...],
    rates: tuple[tuple[float, float, int], ...],
    params: ScalerParams = DEFAULT_PARAMS,
) -> tuple[tuple[float, float], ...]:
    """The (time, jump) ``crowds`` that can still be the largest fan-out (``fan_out``) or the
    largest jump of all while they are in the lookback: a jump goes once a later one at least
    as large is known to be a fan-out (the rate fell back after it, ``rate_stayed_up``), or
    once it is itself known to be a rate's start and a later one is at least as large. A
    later larger jump not yet judged, or judged a rate, does not replace an earlier fan-out:
    where arrivals scatter like Poisson's the rate headroom holds it instead, and the fan-out
    may come again."""
    kept: list[tuple[float, float]] = []
    later_fan_out = later_any = -math.inf
    for at, jump in reversed(crowds):
        stayed_up = rate_stayed_up(at, rates, params)
        if not (jump <= later_fan_out or (stayed_up and jump <= later_any)):
            kept.append((at, jump))
        later_any = max(later_any, jump)
        if stayed_up is False:
            later_fan_out = max(later_fan_out, jump)
    return tuple(reversed(kept))


def _implied_arrivals(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    waiting: float | None,
    running: float | None,
    arrival: float | None,
    params: ScalerParams,
) -> Arrivals:
    """(arrival rate, backlog growth, probe, ...): arrivals are conserved, what arrives
    either completes or is still in the system. The runtimes export completions over a rate
    window, which lags a step and which a saturated pool caps; during a backlog the arrivals
    are the completions *now* (the ready replicas, all busy, each completing one request per
    ``work``) plus the growth of what is in the system since the last sample, so the first
    backlogged sample already asks for the count the load needs."""
    current = inputs.desired_replicas
    in_system = (waiting or 0.0) + (running or 0.0)
    backlogged = (waiting or 0.0) > current * (inputs.max_queue_per_replica or 0)
    probe = state.backlog_probe
    growth = state.backlog_growth
    # (the time of the data, when the runtime's scrape time is known: sampling more often than
    # Prometheus scrapes would otherwise see no growth, then two scrapes' worth at once; with
    # it, every new scrape is a new interval, whatever the scrape interval)
    scraped = inputs.signals.scraped_at if inputs.signals is not None else None
    at = scraped if scraped is not None and scraped <= now else now
    gap = params.growth_min_seconds if scraped is None else min(params.growth_min_seconds, 0.5)
    if probe is not None and not (0 <= at - probe[0] <= params.staleness_seconds):
        probe = None  # a gap or a clock jump: growth over it means nothing
    span = None
    if probe is None:
        probe, growth = (at, in_system), None
    elif at - probe[0] >= gap:
        span = at - probe[0]
        growth = (in_system - probe[1]) / span
        probe = (at, in_system)
    work = mean_work(inputs)
    recent = inputs.signals.recent_completion_rate if inputs.signals is not None else None
    segment, estimate, rise = state.segment, state.interval_rate, state.interval_rise
    intervals, pending, rises, trust = state.intervals, state.rise_pending, state.rises, 1.0
    if recent is not None and growth is not None:
        # Completions between the last scrapes (irate) plus the growth of what is in the
        # system: the arrivals of the last interval, exactly (conservation), whether the
        # overload shows as waiting or, under processor sharing, as running; pooled with the
        # intervals before it while they agree, extrapolated when it rose (``interval_rate``);
        # never below the window's average (a lull within a burst is not its end).
        if span is not None or estimate is None:
            arrived = max(0.0, recent + growth)
            if span is not None:
                rises = judge_rise(rises, pending, arrived, at, params)
                trust = rise_trust(rises, at, params)
            estimate, segment, rise, pending = interval_rate(
                segment, at, arrived, span or 0.0, params, trust
            )
            if span is not None:
                intervals = (*_within(intervals, at, span, params), (at, arrived * span, span))
        # (the runtime's window average counts completions, which run above the arrivals
        # while a backlog drains; the intervals' own arrivals over that window do not)
        measured = [r for t, r, _ in state.rates if t > at - params.rate_window_seconds]
        if arrival is not None and measured:
            arrival = min(arrival, sum(measured) / len(measured))
        arrival = max(arrival or 0.0, estimate)
    elif backlogged and work is not None and running:
        # With a queue every ready replica is busy and completes 1 / work requests/s, whatever
        # its concurrency (processor sharing); never below the rate the runtime reports.
        # (only the replicas ready through the interval the growth was measured over)
        ready = min([inputs.ready_replicas, *(r for _, _, r in state.rates[-1:])])
        completing = min(float(ready), running) / work
        arrival = max(arrival or 0.0, completing + (growth or 0.0))
        segment, estimate, rise, intervals, pending = (), None, 0.0, (), None
    else:
        segment, estimate, rise, intervals, pending = (), None, 0.0, (), None
        if not backlogged:
            growth = None  # without the completions now, growth alone is noise
    return Arrivals(
        arrival, growth, probe, segment, estimate, rise, intervals, pending, rises, trust
    )


def _within(
    intervals: tuple[tuple[float, float, float], ...], at: float, span: float, params: ScalerParams
) -> tuple[tuple[float, float, float], ...]:
    """The (end, arrivals, span) intervals that, with one of ``span`` seconds ending at
    ``at``, lie within the last ``rate_sample_seconds``."""
    # (those that end a quarter interval or more inside the window: whether one joins must
    # not turn on a scrape a few milliseconds early or late, and the window holds a whole or
    # a half number of the common scrape intervals, 1, 2, 5, 10, 15 or 30 s, so their ends
    # fall a quarter interval or more from that edge)
    return tuple(s for s in intervals if s[0] > at - params.rate_sample_seconds + 0.25 * span)


class IntervalRate(NamedTuple):
    """The arrivals now as of one scrape interval (``interval_rate``)."""

    rate: float
    segment: tuple[tuple[float, float, float], ...]
    """The intervals to read the next one against."""
    extrapolated: float
    """How much of ``rate`` is extrapolated from a rise within the interval."""
    lasted_above: float | None = None
    """With a rise: the rate the next interval must show for it to have lasted
    (``judge_rise``), half-way from the pooled rate to this interval's."""


def interval_rate(
    segment: tuple[tuple[float, float, float], ...],
    at: float,
    rate: float,
    span: float,
    params: ScalerParams = DEFAULT_PARAMS,
    trust: float = 1.0,
) -> IntervalRate:
    """(arrival rate now, the segment to carry, the rise extrapolated, ...): the arrivals of
    the interval of ``span`` seconds ending at ``at`` (``rate`` per second), read against the
    *segment* of the intervals before it that agree with each other (``(end, arrivals,
    span)`` within ``rate_sample_seconds``).

    * It agrees with the segment's pooled rate (Poisson, variance-stabilised: ``2 (sqrt(count)
      - sqrt(expected))`` within ``change_threshold`` of the noise of both): the pooled rate,
      whose noise is that of ``rate_sample_seconds`` rather than one scrape interval's (a max
      over noisy samples would ratchet the count up).
    * It is above: the load rose *within* the interval, which thus shows only part of the
      rise. With the rise at an unknown time within it, its middle is the expected one (and
      exact for a ramp): the rate now is ``pooled + 2 x (rate - pooled)``, weighed against
      ``rate`` itself by the probability that the rise began late in the interval before
      (``_began_before``), and by the ``trust`` that it goes on (``rise_trust``): a burst
      shorter than the interval is over already. The segment restarts after it (the next
      interval is the first that shows the new load whole).
    * It is above the intervals before the last pooled one, alone or with it: the rise
      began in that one, which showed too little of it to tell from noise; this one shows
      the new load whole, and the segment restarts with it.
    * It is below: the segment restarts with it.

    "Beyond the noise" is ``change_threshold``: held to a share of the false-alarm probability
    per ``rate_sample_seconds``, whatever the scrape interval.
    """
    count = rate * span
    pool = _within(segment, at, span, params)
    if span <= 0:
        return IntervalRate(rate, pool, 0.0)
    if not rate < math.inf:
        return IntervalRate(rate, (), 0.0)  # (an absurd sample: nothing to pool or extrapolate)
    if pool:
        z, base = _shift(pool, count, span)
        threshold = change_threshold(span, params)
        if z > threshold:
            # (twice the rise, or once as far as it began in the interval before or is not
            # believed to go on)
            beyond = trust * (1.0 - _began_before(pool, rate))
            now_rate = base + (1.0 + beyond) * (rate - base)
            # (the rise is beyond * (rate - base) >= 0, but not always after rounding)
            rise = max(0.0, now_rate - rate)
            return IntervalRate(now_rate, (), rise, base + 0.5 * (rate - base))
        if z >= -threshold:
            *rest, (_, shown, before) = pool
            if rest and (
                _shift(rest, count, span)[0] > threshold
                or _shift(rest, shown + count, before + span)[0]
                > change_threshold(before + span, params)
            ):
                # (a rise that began in the interval before, which showed too little of it to
                # tell from noise and raised the pool this one was read against: read against
                # the intervals before those two, this one or both are above; this one shows
                # the new load whole)
                return IntervalRate(rate, ((at, count, span),), 0.0)
            pool = (*pool, (at, count, span))
            pooled = sum(c for _, c, _ in pool) / sum(d for _, _, d in pool)
            if pooled < math.inf:  # (arrivals within a vanishing span pool to no rate)
                return IntervalRate(pooled, pool, 0.0)
    return IntervalRate(rate, ((at, count, span),), 0.0)


def _shift(
    pool: Sequence[tuple[float, float, float]], count: float, span: float
) -> tuple[float, float]:
    """(z, pooled rate): how far ``count`` arrivals in ``span`` seconds lie above the pooled
    intervals' rate, in standard deviations."""
    total = sum(d for _, _, d in pool)
    if not total > 0:
        return 0.0, count / span  # (an empty span: nothing to read a change against)
    base = sum(c for _, c, _ in pool) / total
    # (Poisson, variance-stabilised, with the pooled rate's own noise -- a short pool is a
    # noisy base -- and one arrival more in the pool than seen: at a handful of arrivals the
    # transform is too eager, and a lull's empty pool is no base of zero)
    expected = (base * total + 1.0) / total * span
    return 2.0 * (math.sqrt(count) - math.sqrt(expected)) / math.sqrt(1.0 + span / total), base


def change_threshold(span: float, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """The z-score beyond which an interval of ``span`` seconds differs from the intervals
    before it: ``change_z`` for an interval of ``rate_sample_seconds``. Shorter intervals are
    as many tests within that time, each held to its share of the false-alarm probability
    (Bonferroni), so a steady load shows a false rise as seldom per hour at 1 s scrapes as at
    slower ones: a false rise is extrapolated, and asks for several times the load."""
    tail = NormalDist().cdf(-params.change_z)
    share = min(1.0, max(span, 0.0) / params.rate_sample_seconds)
    return -NormalDist().inv_cdf(tail * share) if share > 0 else math.inf


def judge_rise(
    rises: tuple[float, float, float],
    lasted_above: float | None,
    rate: float,
    at: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> tuple[float, float, float]:
    """The record of past rises (lasted, faded, as of when) at ``at``, with the rise the last
    interval showed judged by this interval's ``rate``: it lasted if at least half of it is
    still there (``lasted_above``). Both counts halve every ``rise_memory_seconds``."""
    lasted, faded, since = rises
    decay = 0.5 ** (max(0.0, at - since) / params.rise_memory_seconds)
    lasted, faded = lasted * decay, faded * decay
    if lasted_above is not None:
        if rate >= lasted_above:
            lasted += 1.0
        else:
            faded += 1.0
    return lasted, faded, at


def rise_trust(
    rises: tuple[float, float, float], at: float, params: ScalerParams = DEFAULT_PARAMS
) -> float:
    """How far a rise within a scrape interval is believed to go on: the share of the recent
    rises that lasted into the next interval, counting one more that did. Whole with no
    record, so a step after a steady load is asked for in one decision; on traffic whose
    rises are bursts of a few seconds (fan-outs, at fast scrapes), the rise is taken as the
    interval shows it, not extrapolated to a load already gone."""
    lasted, faded, _ = judge_rise(rises, None, 0.0, at, params)
    return (lasted + 1.0) / (lasted + faded + 1.0)


def _began_before(pool: tuple[tuple[float, float, float], ...], rate: float) -> float:
    """The probability that a rise an interval shows (at ``rate``) began in the pooled interval
    before it, which then showed part of it, too little to tell from noise: a step late in an
    interval. This interval then shows the new load whole, and doubling its rise would ask for
    twice what it needs. Read against the intervals before those two: had the rise begun
    within this interval, the one before shows nothing beyond their noise; had it begun in the
    one before, that one shows a share of the rise (uniform in 0..1 for a step at a uniform
    time)."""
    if len(pool) < 2:
        return 0.0
    *rest, (_, count, span) = pool
    total = sum(d for _, _, d in rest)
    if total <= 0 or span <= 0:
        return 0.0
    base = sum(c for _, c, _ in rest) / total
    rise, shown = rate - base, count / span - base
    if not (0 < rise < math.inf and math.isfinite(shown)):
        return 0.0
    # (Poisson noise of the interval and of the base it is read against, one arrival more as
    # in ``interval_rate``: a lull is no base of zero; both densities in units of that noise,
    # whose variance overflows or vanishes for an absurd span)
    noise = math.sqrt((base * span + 1.0) * (1.0 + span / total)) / span
    if not 0 < noise < math.inf or not rise / noise > 0:
        return 0.0
    began_before = (_NORMAL.cdf((rise - shown) / noise) - _NORMAL.cdf(-shown / noise)) / (
        rise / noise
    )
    began_within = _NORMAL.pdf(shown / noise)
    if not began_before + began_within > 0:
        return 0.0
    return began_before / (began_before + began_within)


def observe_load(seen: Observed, state: ScalerState, now: float, params: ScalerParams) -> Load:
    """The arrivals now, and the burst history with this sample in it."""
    inputs = seen.inputs
    signals = inputs.signals
    assert signals is not None
    at_zero = inputs.desired_replicas == 0
    # (at zero replicas nothing is exported: nothing waits, runs or arrives)
    waiting = signals.queue_depth if signals.queue_depth is not None or not at_zero else 0.0
    running = signals.running if signals.running is not None or not at_zero else 0.0
    arrival = signals.arrival_rate if signals.arrival_rate is not None or not at_zero else 0.0
    active = any(v is not None and v > 0 for v in (waiting, running, arrival))
    implied = _implied_arrivals(inputs, state, now, waiting, running, arrival, params)
    arrival, probe = implied.rate, implied.probe
    if arrival is not None:
        arrival = min(arrival, HUGE) if math.isfinite(arrival) else HUGE
    lookback = max(burst_lookback(inputs.startup_seconds, params), inputs.scale_down_delay_seconds)
    memory = max(burst_memory(inputs.startup_seconds, params), lookback)
    rates = tuple(r for r in state.rates if r[0] > now - memory)
    if arrival is not None:
        # (the burst history keeps what each interval measured: not the rise extrapolated
        # within the last one -- it sizes this decision, and the next interval shows the new
        # load whole -- nor the minute's average the rate now is never below, which smears a
        # burst's end over a minute, taken for a fall too slow to hold for on a short start-up)
        measured = arrival if implied.estimate is None else implied.estimate - implied.rise
        if implied.intervals:
            # (the arrivals of the intervals within ``rate_sample_seconds``, agreeing or not:
            # at a 2 s scrape a burst of a few seconds is one interval's, and held as a
            # rate it never had over any span a start-up could serve)
            measured = sum(n for _, n, _ in implied.intervals) / sum(
                d for _, _, d in implied.intervals
            )
        rates = (*rates, (now, measured, seen.serving))
    crowds = tuple(c for c in state.crowds if c[0] > now - lookback)
    mixes = tuple(m for m in state.mixes if m[0] > now - lookback)
    prompt, output = seen.sized.mean_prompt_tokens, seen.sized.mean_output_tokens
    # (a size measured within the first rate window of observations is a start-up transient:
    # a young series' token counters hold the requests in flight; kept, it would count as a
    # heavier mix for the whole lookback)
    watched = (
        state.window_since is not None and now - state.window_since >= params.rate_window_seconds
    )
    if arrival is not None and prompt is not None and output is not None and watched:
        mixes = (*mixes, (now, prompt, output))
    before = state.backlog_probe
    backlogged = (waiting or 0.0) > inputs.ready_replicas * (inputs.max_queue_per_replica or 0)
    # (the probe was re-anchored at this sample. What the running slots took in is a crowd;
    # with requests waiting, now or at the sample the jump is measured from (a backlog that
    # moved into the slots of replicas turned Ready), the growth is the deficit of too few
    # replicas for the rate, which the conserved arrivals measure: the rate headroom's)
    if (
        before is not None
        and probe is not None
        and probe[0] > before[0]
        and not backlogged
        and (state.backlog_at is None or state.backlog_at < before[0])
    ):
        jump = probe[1] - before[1]
        if jump > 0:
            crowds = (*crowds, (now, min(jump, HUGE)))
    crowds = kept_crowds(crowds, rates, params)
    history = burst_history(seen.sized, rates, mixes, state.restored_dispersion, params)
    return Load(
        waiting, running, arrival, active, backlogged, implied, rates, crowds, mixes, history
    )
