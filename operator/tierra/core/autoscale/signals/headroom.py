"""The burst headroom: capacity held ahead of bursts a reactive scale-up would be late for
(``headroom_need``), from the burstiness this service has shown (``burst_swing``,
``burst_noise``), a ramp under way (``ramp_ahead``), the largest fan-out seen, and a heavier
mix counted at its weight (``mix_weights``)."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from statistics import NormalDist

from tierra.core.queue_model import replicas_for_slo, solo_service_seconds

from ..model import (
    DEFAULT_PARAMS,
    EPS,
    HUGE,
    ScalerParams,
    ScalingInputs,
    SignalNeed,
    ceil_count,
    scrape_age,
)
from ..sample import Sample
from .arrival import deadband, planned_concurrency
from .queue import queue_allowance

CHI2_1_MEDIAN = 0.4549
"""The median of a chi-square variable with one degree of freedom."""
CLUSTERED_DISPERSION = 5.0
"""Arrivals whose samples scatter this many times Poisson's variance or more come in
clusters (``rate_dispersion``): a jump of what is in the system within one sample is a
fan-out there (``fan_out``). The suite's fan-out traffic scatters 11-50x, its other traces
1-4x over any ten minutes."""
LEVEL_MEANS_MIN_SAMPLES = 3
"""The shortest moving mean ``burst_summary`` reads, in ``rate_sample_seconds``: means of two
samples narrow the noise by only a factor of 1.4, and on the Azure conv trace at a 120 s
start-up their 30 s means held the trace's own modulation for 3 % more cost and no request
more within the SLO."""
DISPERSION_MIN_PAIRS = 10
"""Pairs of successive samples ``rate_dispersion`` needs before it reads the scatter (fewer:
Poisson's)."""


def burst_rise(rates: tuple[tuple[float, float, int], ...], lead: float) -> tuple[float, float]:
    """(largest rise, peak) of the arrival rate in ``rates``: the most it went up within
    ``lead`` seconds, and its highest value. O(len(rates)), a sliding-window minimum."""
    return _largest_change(rates, lead, falls=False)


def burst_swing(
    rates: tuple[tuple[float, float, int], ...],
    lead: float,
    weight: Callable[[float], float] | None = None,
) -> tuple[float, float]:
    """(largest swing, peak) of the arrival rate in ``rates``: the most it went up *or down*
    within ``lead`` seconds, and its highest value. A burst's end is as much evidence of
    bursty traffic as its start: load that fell within a start-up time can come back as fast
    (a service whose first burst was under way before it was observed included). With
    ``weight`` (time -> 0..1, ``burst_fade``), a swing or a peak ending at a sample counts
    at that sample's weight."""
    return _largest_change(rates, lead, falls=True, weight=weight)


def burst_fade(
    latest: float, startup: float, params: ScalerParams = DEFAULT_PARAMS
) -> Callable[[float], float]:
    """The weight of a burst-history sample taken at ``t`` when the latest is at ``latest``:
    1 within ``burst_lookback``, then falling linearly to 0 over ``headroom_fade_lookbacks``
    lookbacks more."""
    lookback = burst_lookback(startup, params)
    span = params.headroom_fade_lookbacks * lookback

    def weight(t: float) -> float:
        age = latest - t
        if age <= lookback:
            return 1.0
        return max(0.0, 1.0 - (age - lookback) / span) if span > 0 else 0.0

    return weight


def burst_memory(startup: float, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """How long a burst-history sample is kept: the lookback and its fade."""
    return burst_lookback(startup, params) * (1.0 + max(0.0, params.headroom_fade_lookbacks))


def _largest_change(
    rates: tuple[tuple[float, float, int], ...],
    lead: float,
    falls: bool,
    weight: Callable[[float], float] | None = None,
) -> tuple[float, float]:
    change, peak, *_ = _changes(rates, lead, falls, weight)
    return change, peak


def _changes(
    rates: tuple[tuple[float, float, int], ...],
    lead: float,
    falls: bool,
    weight: Callable[[float], float] | None = None,
    modest: float = 0.0,
    noise: Callable[[float, float], float] | None = None,
) -> tuple[float, float, float, float, float, float]:
    """(largest change, peak, largest change of those whose high end is more than ``1 +
    modest`` times their low end, largest change of the others, their largest ``high / low -
    1``, and the largest change beyond its ``noise(low, high)``), each at its sample's
    ``weight``."""
    lowest: deque[tuple[float, float]] = deque()  # (increasing rates: the window's minimum first)
    highest: deque[tuple[float, float]] = deque()  # (decreasing: its maximum first)
    change, peak, jump, swing, share_of, beyond = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for t, rate, _ in rates:
        for window in (lowest, highest):
            while window and window[0][0] < t - lead:
                window.popleft()
        while lowest and lowest[-1][1] >= rate:
            lowest.pop()
        lowest.append((t, rate))
        while highest and highest[-1][1] <= rate:
            highest.pop()
        highest.append((t, rate))
        share = 1.0 if weight is None else weight(t)
        pairs = [(lowest[0][1], rate)] + ([(rate, highest[0][1])] if falls else [])
        for low, high in pairs:
            moved = share * (high - low)
            change = max(change, moved)
            if noise is not None and high - low > noise(low, high):
                beyond = max(beyond, moved)
            if low > 0 and high <= (1 + modest) * low:
                swing = max(swing, moved)
                share_of = max(share_of, share * (high / low - 1))
            else:
                jump = max(jump, moved)
        peak = max(peak, share * rate)
    return change, peak, jump, swing, share_of, beyond


@dataclass(frozen=True)
class BurstSummary:
    """What the burst history shows within a lead, each swing and the peak at its weight."""

    rise: float
    """The largest swing, rise or fall (``burst_swing``)."""
    peak: float
    jump: float
    """The largest swing whose high end is more than ``1 + modest_swing`` times its low end:
    a burst, held whole wherever the rate is now."""
    swing: float
    """The largest of the other swings: the level's own modulation."""
    share: float
    """The largest ``high / low - 1`` of those: held as that share of the rate now."""
    beyond_noise: float = 0.0
    """The largest swing beyond the Poisson noise at its own level (``swing_noise``)."""
    means_of: float | None = None
    """The seconds each sample was averaged over (``level_means_per_lead``); None for the
    samples as taken."""

    def held(self, rate: float) -> float:
        """The rise held above ``rate``: the jump whole, a modest swing at its share of
        ``rate`` when that is less."""
        return max(self.jump, min(self.swing, self.share * rate))

    def beyond(self, lead: float, params: ScalerParams = DEFAULT_PARAMS) -> bool:
        """Whether a swing is beyond what Poisson noise shows: at the peak's level over the
        lookback (``burst_noise``), or at its own (``swing_noise``)."""
        return self.rise > burst_noise(self.peak, lead, params) or self.beyond_noise > 0


def burst_summary(
    rates: tuple[tuple[float, float, int], ...],
    lead: float,
    weight: Callable[[float], float],
    params: ScalerParams = DEFAULT_PARAMS,
    restored: tuple[float, float, float, float, float, float] | None = None,
    edges: tuple[tuple[float, float], ...] = (),
    dispersion: float = 1.0,
) -> BurstSummary:
    """The swings within ``lead`` and the peak of ``rates`` at their ``weight``, and of what a
    restart ``restored`` (``ScalerState.restored_burst``) at the weight of its time; the
    samples before it that a restart kept (``edges``) pair with the first ones after. Each
    swing is read against the noise of its own level at the arrivals' ``dispersion``
    (``swing_noise``). Where none is beyond it (``BurstSummary.beyond``), those of the moving
    means over ``level_means_per_lead`` of the lead instead, when that spans
    ``LEVEL_MEANS_MIN_SAMPLES`` rate samples or more: a level that moved for good by less
    than the noise of two samples."""
    first = rates[0][0] if rates else math.inf
    kept = tuple((t, rate, 0) for t, rate in sorted(edges) if t < first)
    spacing = _spacing(rates, params)
    # (the bound of the samples' pairs holds for the means': overlapping means of a steady
    # rate differ by less than independent ones)
    z = _swing_z(lead, params, spacing)

    def summary(
        history: tuple[tuple[float, float, int], ...],
        sample: float,
        scatter: float,
        means_of: float | None,
    ) -> BurstSummary:
        changes = _changes(
            history,
            lead,
            True,
            weight,
            params.modest_swing,
            lambda low, high: _swing_noise(z, low, high, sample, scatter),
        )
        return BurstSummary(*changes, means_of=means_of)

    found = summary(kept + rates, params.rate_sample_seconds, dispersion, None)
    count = math.floor(lead / (params.level_means_per_lead * spacing))
    shortest = LEVEL_MEANS_MIN_SAMPLES * params.rate_sample_seconds
    if count >= 2 and count * spacing >= shortest - EPS and not found.beyond(lead, params):
        means = moving_means(rates, count)
        # (traffic modulated minute to minute scatters more at the means' scale than at the
        # samples': read at the larger of the two)
        scatter = max(dispersion, means_dispersion(means, count, count * spacing))
        found = summary(means, count * spacing, scatter, count * spacing)
    if restored is None:
        return found
    at, old_jump, old_swing, old_share, old_peak, old_beyond = restored
    w = weight(at)
    return replace(
        found,
        rise=max(found.rise, w * old_jump, w * old_swing),
        peak=max(found.peak, w * old_peak),
        jump=max(found.jump, w * old_jump),
        swing=max(found.swing, w * old_swing),
        share=max(found.share, w * old_share),
        beyond_noise=max(found.beyond_noise, w * old_beyond),
    )


def means_dispersion(
    means: tuple[tuple[float, float, int], ...], count: int, window: float
) -> float:
    """How many times Poisson's variance the ``moving_means`` of ``count`` samples each,
    over ``window`` seconds, show between means that share no sample (``rate_dispersion``'s
    median read; 1 with fewer than ``DISPERSION_MIN_PAIRS`` such pairs)."""
    found = _dispersion([mean for _, mean, _ in means[::count]], window)
    return 1.0 if found is None else found


def _dispersion(rates: list[float], window: float) -> float | None:
    """How many times Poisson's variance successive ``rates``, each a count over ``window``
    seconds, show (at least 1); None with fewer than ``DISPERSION_MIN_PAIRS`` pairs."""
    ratios = [
        (newer - older) ** 2 / variance
        for older, newer in itertools.pairwise(rates)
        if (variance := (newer + older) / window) > 0
    ]
    if len(ratios) < DISPERSION_MIN_PAIRS:
        return None
    return max(1.0, statistics.median(ratios) / CHI2_1_MEDIAN)


def moving_means(
    rates: tuple[tuple[float, float, int], ...], count: int
) -> tuple[tuple[float, float, int], ...]:
    """Each sample of ``rates`` from the ``count``-th on, as the mean of it and the ``count - 1``
    before it."""
    means: list[tuple[float, float, int]] = []
    window: deque[float] = deque()
    total = 0.0
    for t, rate, serving in rates:
        window.append(rate)
        total += rate
        if len(window) > count:
            total -= window.popleft()
        if len(window) == count:
            means.append((t, max(total, 0.0) / count, serving))
    return tuple(means)


def mix_weights(
    mixes: tuple[tuple[float, float, float], ...],
    prefill_tokens_per_second: float,
    decode_tokens_per_second: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> dict[float, float]:
    """(time -> weight) of the samples whose mean request (``mixes``: (time, prompt, output
    tokens)) takes at least ``heavier_mix_ratio`` times the latest's work on the same
    replicas: the ratio. The work of both is at the same token rates, so a change of replicas
    (a migration to faster hardware) or of the speed estimate is no change of mix."""
    if not mixes:
        return {}

    def work(prompt: float, output: float) -> float:
        return solo_service_seconds(
            prompt, output, prefill_tokens_per_second, decode_tokens_per_second
        )

    latest = work(*mixes[-1][1:])
    if not (math.isfinite(latest) and latest > 0):
        return {}
    ratios = ((t, work(p, o) / latest) for t, p, o in mixes)
    return {
        t: min(r, HUGE) for t, r in ratios if math.isfinite(r) and r >= params.heavier_mix_ratio
    }


def mix_weighted(
    rates: tuple[tuple[float, float, int], ...], weights: Mapping[float, float]
) -> tuple[tuple[float, float, int], ...]:
    """The burst history in requests of the latest mix: a sample of a much heavier mix
    (``mix_weights``) counts at ``rate x its weight``, the others as they are. A heavier phase
    of a shifting mix needs as many more replicas as a burst of requests does, and the next
    one rises as fast; a request-rate history alone saw none of it."""
    if not weights:
        return rates
    return tuple((t, min(rate * weights.get(t, 1.0), HUGE), serving) for t, rate, serving in rates)


def heavier_mix_peak(
    history: tuple[tuple[float, float, int], ...],
    weights: Mapping[float, float],
    restored: tuple[float, float] | None = None,
) -> tuple[float, float] | None:
    """(time, rate) of the highest rate a sample of a heavier mix came at (``mix_weights``),
    in requests of the latest mix (``history`` is ``mix_weighted``): that phase come back;
    or ``restored``'s, what a restart kept of it, when higher. None without either."""
    peaks = [(t, rate) for t, rate, _ in history if t in weights]
    if restored is not None:
        peaks.append(restored)
    return max(peaks, key=lambda p: (p[1], p[0]), default=None)


def burst_lookback(startup: float, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """How far back (seconds) the burst headroom looks for rises and the peak on a start-up of
    ``startup`` seconds: ``headroom_lookback_seconds``, or ``headroom_lookback_startups``
    start-up times when that is longer."""
    return max(params.headroom_lookback_seconds, params.headroom_lookback_startups * startup)


def decision_interval(
    rates: tuple[tuple[float, float, int], ...], params: ScalerParams = DEFAULT_PARAMS
) -> float:
    """How often the recommender decides: the spacing of the latest two samples of the burst
    history (one rate sample before there are two)."""
    return rates[-1][0] - rates[-2][0] if len(rates) > 1 else params.rate_sample_seconds


def burst_lead(
    startup: float,
    rates: tuple[tuple[float, float, int], ...],
    params: ScalerParams = DEFAULT_PARAMS,
) -> float:
    """The time a rise of the arrivals must take for a scale-up to be on time for it: the
    start-up, or one decision interval when that is longer (a rise between two decisions is
    seen only at the second)."""
    return max(startup, decision_interval(rates, params))


def burst_noise(peak: float, startup: float, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """The largest rise or fall within ``startup`` seconds that Poisson noise alone shows
    somewhere in the headroom's lookback at a steady rate of ``peak`` (requests per second).

    A sample counts the arrivals of ``rate_sample_seconds``, so the difference of two samples
    of a steady rate has standard deviation ``sqrt(2 peak / rate_sample_seconds)``. The swing
    is the largest such difference, either way, over about ``2 x lookback / sample x startup
    / sample`` pairs, and the largest of ``n`` Gaussian draws stays below ``sqrt(2 ln n)``
    standard deviations (the extreme-value bound): a smaller swing is noise, not burstiness.
    """
    return _noise_z(startup, params) * math.sqrt(2.0 * max(peak, 0.0) / params.rate_sample_seconds)


def swing_noise(
    low: float,
    high: float,
    startup: float,
    params: ScalerParams = DEFAULT_PARAMS,
    dispersion: float = 1.0,
) -> float:
    """The largest swing between samples at ``low`` and ``high`` that Poisson noise alone
    shows in a steady lookback of the headroom no more often than ``change_z``'s one-sided
    tail probability, read at the level of that swing rather than at the lookback's peak
    (``burst_noise``): a crowd's rise from a quiet level is beyond the noise of that level
    well before it is beyond the noise of the crowd's peak. One arrival more at each end, as
    in the rise test: a few arrivals after an empty sample are no burst. At the arrivals'
    ``dispersion`` (``rate_dispersion``): clustered arrivals swing that much more."""
    return _swing_noise(
        _swing_z(startup, params), low, high, params.rate_sample_seconds, dispersion
    )


def _swing_noise(z: float, low: float, high: float, sample: float, dispersion: float) -> float:
    counts = max(low, 0.0) + max(high, 0.0) + 2.0 / sample
    return z * math.sqrt(max(dispersion, 1.0) * counts / sample)


def _swing_z(startup: float, params: ScalerParams, spacing: float | None = None) -> float:
    """``swing_noise``'s bound in standard deviations: every pair of the lookback is tested
    at its own level, so each is held to its share of ``change_z``'s tail probability (the
    extreme-value bound of ``burst_noise`` lets a steady lookback show a swing beyond the
    noise of its own level in up to one in ten). ``spacing``: the samples' (a decision
    more often than ``rate_sample_seconds`` holds as many more pairs)."""
    tail = NormalDist().cdf(-params.change_z) / _pairs(startup, params, spacing)
    return -NormalDist().inv_cdf(tail)


def _pairs(startup: float, params: ScalerParams, spacing: float | None = None) -> float:
    """About how many pairs of samples ``spacing`` seconds apart (``rate_sample_seconds``
    when None) within ``startup`` seconds the lookback holds."""
    sample = spacing or params.rate_sample_seconds
    return 2.0 * max(burst_lookback(startup, params) / sample, 1.0) * max(startup / sample, 1.0)


def _spacing(rates: tuple[tuple[float, float, int], ...], params: ScalerParams) -> float:
    """The burst history's mean spacing, at most ``rate_sample_seconds``."""
    if len(rates) < 2 or not rates[-1][0] > rates[0][0]:
        return params.rate_sample_seconds
    return min((rates[-1][0] - rates[0][0]) / (len(rates) - 1), params.rate_sample_seconds)


def _noise_z(startup: float, params: ScalerParams) -> float:
    """The extreme-value bound on the largest of the swings within ``startup`` seconds over
    the headroom's lookback, in standard deviations (``burst_noise``)."""
    return math.sqrt(2.0 * math.log(max(_pairs(startup, params), math.e)))


def spaced_samples(
    rates: tuple[tuple[float, float, int], ...], wanted: int, params: ScalerParams = DEFAULT_PARAMS
) -> list[tuple[float, float]]:
    """(time, rate) of up to ``wanted`` of the latest samples at least ``rate_sample_seconds``
    apart, newest first (the recommender may decide more often than that)."""
    picked: list[tuple[float, float]] = []
    for t, rate, _ in reversed(rates):
        if not picked or picked[-1][0] - t >= params.rate_sample_seconds - EPS:
            picked.append((t, min(max(rate, 0.0), HUGE)))
        if len(picked) == wanted:
            break
    return picked


def rate_dispersion(
    rates: tuple[tuple[float, float, int], ...],
    params: ScalerParams = DEFAULT_PARAMS,
    fallback: float = 1.0,
) -> float:
    """How many times Poisson's variance the arrival-rate samples show (at least 1).

    Fan-outs and sessions make arrivals come in clusters: their samples scatter far beyond
    Poisson counts, and five of them lie on a steep line more often than the ramp test's
    Poisson noise allows. Successive samples' squared differences over their Poisson variance
    are chi-square with one degree of freedom for Poisson arrivals, whose median is 0.455; the
    median (a step, a spike or a ramp moves few pairs far) over that is the dispersion. With
    fewer than ``DISPERSION_MIN_PAIRS`` pairs, ``fallback`` (Poisson's 1, or what a restart
    kept).
    """
    picked = spaced_samples(rates, len(rates), params)
    found = _dispersion([rate for _, rate in picked], params.rate_sample_seconds)
    return fallback if found is None else found


def ramp_ahead(
    rates: tuple[tuple[float, float, int], ...],
    at: float,
    params: ScalerParams = DEFAULT_PARAMS,
    samples: int | None = None,
    dispersion: float = 1.0,
) -> float:
    """The arrival rate at time ``at`` if the ramp of the samples goes on (0: no ramp).

    A weighted least-squares line through the last ``ramp_samples`` rates, one per
    ``rate_sample_seconds`` (each a Poisson count over that long: variance ``rate / sample``).
    It counts as a ramp when its slope is positive beyond ``change_z`` standard errors and the
    samples lie on it within their noise (chi-square within its mean + 3 standard deviations):
    a step, a spike or a fan-out fits no line and is the burst headroom's, and noise has no
    significant slope. The slope's standard error is at the traffic's ``dispersion``
    (``rate_dispersion``): clustered arrivals draw steep five-sample lines that Poisson's
    would not. The fit stays at Poisson's, the stricter test of a line for scattered samples.
    """
    sample = params.rate_sample_seconds
    wanted = max(samples if samples is not None else params.ramp_samples, 3)
    picked = spaced_samples(rates, wanted, params)
    n = len(picked)
    if n < wanted or not math.isfinite(at):
        return 0.0
    # (each sample weighted by the inverse of its variance: first at its own rate, then at
    # the first fit's -- a sample's own count understates its variance when it came out low,
    # and over many samples that alone takes a ramp for a misfit)
    expected = [rate for _, rate in picked]
    for _ in range(2):
        weights = [sample / max(rate, 1.0 / sample) for rate in expected]
        total = sum(weights)
        t_mean = sum(w * t for w, (t, _) in zip(weights, picked, strict=True)) / total
        r_mean = sum(w * r for w, (_, r) in zip(weights, picked, strict=True)) / total
        spread = sum(w * (t - t_mean) ** 2 for w, (t, _) in zip(weights, picked, strict=True))
        if not spread > 0:
            return 0.0
        slope = (
            sum(w * (t - t_mean) * (r - r_mean) for w, (t, r) in zip(weights, picked, strict=True))
            / spread
        )
        expected = [max(0.0, r_mean + slope * (t - t_mean)) for t, _ in picked]
    if slope * math.sqrt(spread / dispersion) <= params.change_z:  # (slope / its standard error)
        return 0.0
    misfit = sum(
        w * (r - r_mean - slope * (t - t_mean)) ** 2
        for w, (t, r) in zip(weights, picked, strict=True)
    )
    dof = n - 2
    if misfit > dof + 3.0 * math.sqrt(2.0 * dof):
        return 0.0
    return max(0.0, r_mean + slope * (at - t_mean))


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
    (``heavier_mix_peak``), held whole.
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
    # A steep ramp under way (a flash crowd: the latest samples on a rising line) is held at
    # where the line will be when a replica asked now serves. The line is fitted with this
    # sample, which completes a flash crowd's line a sample sooner, and without it (the
    # higher of the two: more load now never means less held, though it may fit no line).
    # A slow ramp shows its slope over a start-up time before it does over a minute (fitted
    # over as many samples as a start-up time holds, when that is more; over those there are
    # while the history is younger than a start-up, or a slow ramp in a service's first
    # start-up time would be seen only over a minute).
    ahead = rates[-1][0] + scrape_age(inputs, rates[-1][0], params) + inputs.startup_seconds
    span = round(inputs.startup_seconds / params.rate_sample_seconds)
    held_samples = len(spaced_samples(rates, span, params))
    fits = {params.ramp_samples, max(params.ramp_samples, held_samples)}
    line, fitted = max(
        (ramp_ahead(history, ahead, params, n, dispersion), n)
        for n in fits
        for history in (rates, rates[:-1])
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

    A jump of what is in the system within one sample (``crowds``, largest first) may be
    requests that came at once or a rate that filled the running slots over the sample: the
    counts cannot tell. Where arrivals come in clusters (``dispersion`` at least
    ``CLUSTERED_DISPERSION``; while unknown, infinite) it is a fan-out. Where they scatter
    like Poisson counts and the next sample's rate stayed at half the jump's sample's or
    more, it was the start of a burst: a rate, which the rise holds (held as a fan-out, a
    sustained burst's first sample on too few replicas held several times the count its
    rate needs for the whole lookback). A jump with nothing after it yet is a fan-out."""
    if dispersion >= CLUSTERED_DISPERSION:
        return (crowds[0][1] if crowds else 0.0), 0.0
    dismissed = 0.0
    for at, jump in crowds:
        during = next((r for t, r, _ in rates if math.isclose(t, at)), None)
        after = next((r for t, r, _ in rates if t >= at + params.rate_sample_seconds - EPS), None)
        if during is None or after is None or after < 0.5 * during:
            return jump, dismissed
        dismissed = max(dismissed, jump)
    return 0.0, dismissed


def from_sample(sample: Sample, params: ScalerParams = DEFAULT_PARAMS) -> SignalNeed | None:
    """``headroom_need`` on the burst history, in requests of the latest mix (``mix_weighted``),
    and the largest fan-out of the lookback; None without the arrivals now."""
    load, sized = sample.load, sample.seen.sized
    if load.arrival is None:
        return None
    weights = mix_weights(
        load.mixes, sized.prefill_tokens_per_second, sized.decode_tokens_per_second, params
    )
    history = mix_weighted(load.rates, weights)
    state = sample.state
    kept = state.restored_dispersion
    # (read once: unknown is clustered for a fan-out, Poisson's for a ramp)
    dispersion = rate_dispersion(history, params, math.inf if kept is None else kept)
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
        1.0 if math.isinf(dispersion) else dispersion,
        mix_peak[1] if mix_peak is not None else 0.0,
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
