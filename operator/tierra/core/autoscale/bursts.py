"""The burst history's reading: how far back it looks (``burst_lookback``) and how long a
sample is kept (``burst_memory``), the largest swings of the arrival rate within a start-up
time (``burst_summary``), what Poisson noise alone would show of them (``burst_noise``,
``swing_noise``), how far the arrivals scatter beyond Poisson's (``rate_dispersion``), and
whether the rate stayed up after a jump of what is in the system (``rate_stayed_up``).

A history is ``(time, arrival rate, serving replicas)`` per decision, one rate sample per
``rate_sample_seconds`` or more often."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from statistics import NormalDist

from .model import DEFAULT_PARAMS, EPS, HUGE, ScalerParams

CHI2_1_MEDIAN = 0.4549
"""The median of a chi-square variable with one degree of freedom."""
LEVEL_MEANS_MIN_SAMPLES = 3
"""The shortest moving mean ``burst_summary`` reads, in ``rate_sample_seconds``: means of two
samples narrow the noise by only a factor of 1.4, too little to tell a level that moved from
traffic's own modulation at half a minute."""
DISPERSION_MIN_PAIRS = 10
"""Pairs of successive samples ``rate_dispersion`` needs before it reads the scatter (fewer:
Poisson's)."""


def burst_lookback(startup: float, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """How far back (seconds) the burst headroom looks for rises and the peak on a start-up of
    ``startup`` seconds: ``headroom_lookback_seconds``, or ``headroom_lookback_startups``
    start-up times when that is longer."""
    return max(params.headroom_lookback_seconds, params.headroom_lookback_startups * startup)


def burst_memory(startup: float, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """How long a burst-history sample is kept: the lookback and its fade."""
    return burst_lookback(startup, params) * (1.0 + max(0.0, params.headroom_fade_lookbacks))


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
            # (the noise only where it could raise ``beyond``: it is read for every pair)
            if noise is not None and moved > beyond and high - low > noise(low, high):
                beyond = moved
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


def means_dispersion(
    means: tuple[tuple[float, float, int], ...], count: int, window: float
) -> float:
    """How many times Poisson's variance the ``moving_means`` of ``count`` samples each,
    over ``window`` seconds, show between means that share no sample (``rate_dispersion``'s
    median read; 1 with fewer than ``DISPERSION_MIN_PAIRS`` such pairs)."""
    found = _dispersion([mean for _, mean, _ in means[::count]], window)
    return 1.0 if found is None else found


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


def rate_stayed_up(
    at: float, rates: tuple[tuple[float, float, int], ...], params: ScalerParams = DEFAULT_PARAMS
) -> bool | None:
    """Whether the arrival rate a ``rate_sample_seconds`` after the sample at ``at`` stayed
    at half that sample's or more (a jump there began a burst's rate), or fell back (False:
    requests that came at once, as they do where no sample at ``at`` is in ``rates``, kept by a
    restart). None until a sample that late is in ``rates``: the history that tells is final
    then, so the answer never changes after."""
    during = next((r for t, r, _ in rates if math.isclose(t, at)), None)
    if during is None:
        return False
    after = next((r for t, r, _ in rates if t >= at + params.rate_sample_seconds - EPS), None)
    if after is None:
        return None
    return after >= 0.5 * during
