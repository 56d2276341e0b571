"""The recommender's inputs and tuning, and one signal's answer."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tierra.api.inference_service import InferenceService, Variant
from tierra.core.queue_model import solo_service_seconds
from tierra.core.slo_reach import ServingProfile

from .schedule import scheduled_floor

API_MAX_REPLICAS = 10000
"""``spec.replicas`` bound of the API schema."""

EPS = 1e-9
"""Float noise forgiven in comparisons and ceilings."""


@dataclass(frozen=True)
class ScalerParams:
    """Tuning of the recommender (defaults suit a 15 s scrape interval)."""

    staleness_seconds: float = 45.0
    """Metrics older than this (three scrape intervals) are stale."""
    tolerance: float = 0.1
    """Deadband: scale up when the need at ``1 - tolerance`` of the load exceeds the count,
    scale down to the need at ``1 + tolerance`` of it, by at least this fraction of the count.
    The signals sized by the arrival rate widen it to the rate's noise (``deadband``)."""
    latency_window_seconds: float = 60.0
    """Window of the runtime's p95 histograms; feedback waits two of them out after a
    scale-up or a backlog."""
    feedback_max_step: float = 2.0
    """Feedback multiplies the ready replicas by at most this much per decision."""
    feedback_tested_step: float = 1.5
    """A latency scale-up to at least this many times the ready replicas tests whether
    replicas bring the goal closer (``tested_feedback``)."""
    service_budget_fraction: float = 0.5
    """Share of the latency budget the planned service time may take; the rest is queueing."""
    percentile: float = 0.95
    """Percentile of the queueing wait the arrival signal plans for."""
    growth_min_seconds: float = 2.0
    """A backlog's growth counts as arrivals once it has been measured over this long."""
    ready_lag_seconds: float = 2.0
    """A scale-up's replicas count as starting for ``startupSeconds`` plus this after it (the
    time to schedule them and for them to turn Ready)."""
    change_z: float = 3.0
    """A scrape interval's arrivals differ from the intervals before when their Poisson
    z-score (``2 (sqrt(count) - sqrt(expected))``) is beyond this."""
    rise_memory_seconds: float = 1800.0
    """Half-life of the record of whether the rises scrape intervals showed lasted into the
    next interval (``rise_trust``): the traffic's recent habit, as the burst history's."""
    headroom_lookback_seconds: float = 1800.0
    """The shortest lookback of the burst headroom for the arrival rate's rises and its peak
    (``burst_lookback``)."""
    headroom_lookback_startups: float = 12.0
    """The burst headroom looks back at least this many start-up times: a burst no replica
    can start for in time misses for a start-up time, so the slower the start-up, the longer
    a burst seen is worth holding for."""
    headroom_fade_lookbacks: float = 0.5
    """Past the lookback the burst history fades instead of ending: a sample older than
    ``burst_lookback`` counts at a weight falling linearly to zero over this many lookbacks
    more (``burst_fade``), so the headroom shrinks as a burst ages rather than dropping whole
    the moment the burst leaves the window (when the next one may be minutes away)."""
    heavier_mix_ratio: float = 1.5
    """A burst-history sample whose mean request takes this many times the work of the
    latest's (or more, both on the same replicas) counts at its mix's weight
    (``mix_weighted``): a heavy phase comes back as a burst of work at the same request rate,
    and smaller ratios are the size estimate's noise."""
    headroom_min_reaction_seconds: float = 20.0
    """When the replicas a scale-up asks for serve sooner than this after a burst begins (a
    decision interval, the start-up and the ready lag), the scale-up is on time and no
    headroom is held."""
    modest_swing: float = 1.5
    """A swing of the burst history whose high end is at most ``1 + modest_swing`` times its
    low end is the level's own modulation (minute-to-minute noise beyond Poisson's, which
    grows with the level) and is held as that share of the rate now when that is less than
    the swing itself; a larger one is a jump, held whole wherever the rate is now. Without
    it, a swing of +-30 % at a midday peak was held in full on the evening's quiet."""
    level_means_per_lead: float = 4.0
    """Where no swing of the burst history's samples is beyond their noise, the history is
    also read as moving means over this fraction of the lead (``burst_summary``), when that
    spans three rate samples or more (a start-up of 180 s or more): a level that moves for
    minutes by less than the noise of two samples shows beyond the noise of two means (a
    rise from 4 to 7 requests/s is 3.5 standard deviations of the noise of two 15 s
    samples, under the bound of a 300 s start-up's lookback, and 7.8 of two 75 s means'),
    and a 300 s start-up is as late for it as for a burst."""
    drain_seconds: float = 60.0
    """A backlog is drained within ``startupSeconds`` of when the replicas asked for serve,
    and within this long at most (``queue_need``): every request arriving meanwhile waits
    behind it, so a 300 s start-up's backlog drained over 300 s holds the latency over the
    SLO for minutes after the replicas serve."""
    ramp_samples: int = 5
    """Arrival-rate samples (one per ``rate_sample_seconds``) a ramp is fitted over
    (``ramp_ahead``): few enough to see a flash crowd's ramp within a minute, enough that a
    line through Poisson noise is told from a step."""
    ramp_believed_spans: float = 2.0
    """How far beyond the latest sample the queue foresees a ramp's arrivals on its line, in
    the spans it was fitted over (``ramp_held``'s ``as_far_as_seen``): a flash crowd's
    line seen over a minute goes on for a 120 s start-up, but taken ten minutes on, what
    it piles up asked for several times what the load came to."""
    speed_time_constant_seconds: float = 120.0
    """Time constant of the online service-rate estimate (a full-weight observation moves it
    ``1 - 1/e`` of the way in this long)."""
    speed_prior: float = 1 / 1.3
    """Where the service-rate estimate starts (and restarts): a profile is a guess, so plan as
    if it were 30 % optimistic until the replicas show their speed (upwards, at low load, within
    minutes)."""
    speed_bounds: tuple[float, float] = (0.25, 4.0)
    """The service-rate estimate stays within these multiples of the profile."""
    rate_sample_seconds: float = 15.0
    """Window of one arrival-rate sample (completions between scrapes plus the growth of what
    is in the system): a burst-history sample is the arrivals of the scrape intervals within
    it, and faster scrapes' intervals are pooled within it while they agree."""
    rate_window_seconds: float = 60.0
    """Window of the token and completion rates and of the mean running (the presets' 1m)."""
    size_time_constant_seconds: float = 300.0
    """Time constant of the mean request size's smoothing, weighted by the completions each
    sample stands for: a minute's ratio of a few requests in a lull is noise."""
    min_size_requests: float = 5.0
    """A mean request size stands for at least this many completions before the arrival
    model uses it (before, the queue signal sizes by the configured allowance)."""
    size_cv: float = 1.5
    """Coefficient of variation assumed for one request's work (prompt and output tokens
    vary widely, with heavy tails): the window's mean work over ``n`` completions is noise
    within ``change_z x size_cv / sqrt(n)`` (in log terms) above the smoothed one, a heavier
    mix beyond it (``size_shifted``)."""
    absurd_factor: float = 10.0
    """A sample that implies more than this many times what ``maxReplicas`` can serve (or a
    request size this many times the last one) is believed only when the next confirms it."""

    def for_scrapes(self, interval_seconds: float, window_seconds: float) -> ScalerParams:
        """These params for pods scraped every ``interval_seconds``, whose rate and latency
        windows are ``window_seconds`` (``metrics_presets.rate_window_seconds``): an
        arrival-rate sample is one scrape interval's, the rates and request sizes span the
        longer windows, the feedback waits out the longer p95 windows, and three scrape
        intervals pass before a sample, or the gap between two scrapes the backlog's growth is
        measured over, is stale. Never below these params' own: a 15 s scrape with 1 m
        windows, the defaults, changes nothing, and faster scrapes are pooled into samples of
        ``rate_sample_seconds`` as before."""
        return replace(
            self,
            staleness_seconds=max(self.staleness_seconds, 3 * interval_seconds),
            rate_sample_seconds=max(self.rate_sample_seconds, interval_seconds),
            rate_window_seconds=max(self.rate_window_seconds, window_seconds),
            latency_window_seconds=max(self.latency_window_seconds, window_seconds),
        )

    def for_service(self, service: InferenceService) -> ScalerParams:
        """These params for ``service``: its ``spec.scaling.burstMemorySeconds``, when set, is
        the burst headroom's lookback outright (the start-up rule of the default does not
        lengthen a lookback the user chose)."""
        memory = service.spec.scaling.burst_memory_seconds
        if memory is None:
            return self
        return replace(
            self, headroom_lookback_seconds=float(memory), headroom_lookback_startups=0.0
        )


DEFAULT_PARAMS = ScalerParams()


@dataclass(frozen=True)
class Signals:
    """One observation of the service's metrics; any value may be missing (None). NaN,
    infinite or negative values count as missing."""

    queue_depth: float | None = None
    """Requests waiting."""
    running: float | None = None
    """Requests being served."""
    arrival_rate: float | None = None
    """Requests per second."""
    p95_latency_ms: float | None = None
    ttft_p95_ms: float | None = None
    observed_at: float | None = None
    """Time of the sample, on the same clock as ``now``."""
    prompt_tokens_rate: float | None = None
    """Prompt tokens processed per second over the rate window, counted per iteration as vLLM
    does (so a window can hold tokens but no completion)."""
    output_tokens_rate: float | None = None
    """Generated tokens per second over the rate window, counted per iteration."""
    mean_running: float | None = None
    """Requests running, averaged over the rate window (the token rates' window)."""
    recent_completion_rate: float | None = None
    """Completions per second between the last two scrapes (``irate``): with the growth of
    what is in the system over about the same time, the arrival rate *now*, not a minute's
    average that lags a burst."""
    scraped_at: float | None = None
    """When the runtime's gauges were last scraped (same clock as ``now``): the growth of
    what is in the system is measured between scrapes, not between queries."""


@dataclass(frozen=True)
class ScalingInputs:
    """What the recommender needs of the spec, the chosen variant and the observed state."""

    min_replicas: int
    max_replicas: int
    latency_p95_ms: float
    max_concurrency: int
    prefill_tokens_per_second: float
    decode_tokens_per_second: float
    desired_replicas: int
    """Replicas asked for now (ready and starting)."""
    ready_replicas: int
    signals: Signals | None
    scale_to_zero: bool = False
    scale_down_delay_seconds: float = 120.0
    scale_to_zero_idle_seconds: float | None = None
    """``spec.scaling.scaleToZeroIdleSeconds`` when set (``idle_before_zero``)."""
    ttft_p95_ms: float | None = None
    max_queue_per_replica: int | None = None
    startup_seconds: float = 60.0
    mean_prompt_tokens: float | None = None
    mean_output_tokens: float | None = None
    rtt_ms: float = 0.0
    """Network round trip of the tier, taken off the latency budgets."""
    manual_replicas: int | None = None
    """``spec.replicas`` when set (manual mode)."""
    serving: tuple[ServingProfile, ...] = ()
    """Each variant running, in each tier, at its own profile: what ``out_of_reach`` checks
    the SLO against (the capacity above may be their blend)."""
    floor_reason: str | None = None
    """Why ``min_replicas`` is above the spec's, when a schedule holds it (``scheduled_floor``)."""


def scaling_inputs(
    service: InferenceService,
    variant: Variant | str,
    *,
    desired_replicas: int,
    ready_replicas: int,
    signals: Signals | None,
    mean_prompt_tokens: float | None = None,
    mean_output_tokens: float | None = None,
    rtt_ms: float = 0.0,
    now: float | None = None,
) -> ScalingInputs:
    """Inputs from the typed spec; ``variant`` is a Variant or the name of one of the spec's.

    At ``now`` (seconds since the epoch) an open schedule raises the floor (``minReplicas``)
    and keeps the service from scaling to zero; in manual mode schedules do nothing."""
    spec = service.spec
    if isinstance(variant, str):
        named = [v for v in spec.variants if v.name == variant]
        if not named:
            raise KeyError(f"variant {variant!r} is not in spec.variants")
        variant = named[0]
    capacity = variant.capacity
    scheduled = (
        scheduled_floor(spec.scaling.schedules, now, variant.startup_seconds)
        if now is not None and spec.replicas is None
        else None
    )
    floor = spec.scaling.min_replicas
    if scheduled is not None and scheduled.replicas > floor:
        floor = min(scheduled.replicas, spec.scaling.max_replicas)
    return ScalingInputs(
        min_replicas=floor,
        floor_reason=scheduled.reason if floor > spec.scaling.min_replicas and scheduled else None,
        max_replicas=spec.scaling.max_replicas,
        scale_to_zero=spec.scaling.scale_to_zero and scheduled is None,
        scale_down_delay_seconds=float(spec.scaling.scale_down_delay_seconds),
        scale_to_zero_idle_seconds=(
            None
            if spec.scaling.scale_to_zero_idle_seconds is None
            else float(spec.scaling.scale_to_zero_idle_seconds)
        ),
        latency_p95_ms=float(spec.slo.latency_p95_ms),
        ttft_p95_ms=None if spec.slo.ttft_p95_ms is None else float(spec.slo.ttft_p95_ms),
        max_queue_per_replica=spec.slo.max_queue_per_replica,
        max_concurrency=capacity.max_concurrency,
        prefill_tokens_per_second=capacity.prefill_tokens_per_second,
        decode_tokens_per_second=capacity.decode_tokens_per_second,
        startup_seconds=float(variant.startup_seconds),
        mean_prompt_tokens=mean_prompt_tokens,
        mean_output_tokens=mean_output_tokens,
        rtt_ms=rtt_ms,
        desired_replicas=desired_replicas,
        ready_replicas=ready_replicas,
        manual_replicas=spec.replicas,
        signals=signals,
    )


@dataclass(frozen=True)
class SignalNeed:
    """One signal's answer: the replicas it needs, why, and its needs at the edges of the
    deadband."""

    signal: str
    replicas: int
    reason: str
    low: int
    """The need at the bottom of the deadband (``1 - deadband`` times the load): scale-up
    happens when it exceeds the current replicas (the arrival model's headroom absorbs a
    smaller excess)."""
    high: int
    """The need at the top of the deadband (``1 + deadband`` times the load): what scale-down
    keeps."""
    forecast: bool = False
    """The need is where a ramp's line will be, not the arrivals now: replicas it asks for
    stay while they start only as long as the arrivals do not fall at all
    (``still_asked_for``)."""


HUGE = 1e15
"""Values are clamped below this before arithmetic, so that no sum or product overflows."""


def ceil_count(x: float) -> int:
    """Ceiling that forgives float noise (40.000000001 requests is 40); NaN is 0, and
    anything huge is capped (a count is compared with maxReplicas anyway)."""
    if not x > 0:
        return 0
    return math.ceil(min(x, HUGE) - EPS)


def mean_work(inputs: ScalingInputs) -> float | None:
    """Seconds the mean request takes alone on a replica (None when its size is unknown)."""
    if inputs.mean_prompt_tokens is None or inputs.mean_output_tokens is None:
        return None
    work = solo_service_seconds(
        inputs.mean_prompt_tokens,
        inputs.mean_output_tokens,
        inputs.prefill_tokens_per_second,
        inputs.decode_tokens_per_second,
    )
    return work if math.isfinite(work) and work > 0 else None


def scrape_age(inputs: ScalingInputs, now: float, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """Seconds since the runtime's gauges were scraped (0 when unknown), at most
    ``staleness_seconds``: Prometheus scrapes and the operator decides on timers of their
    own, so what a sample shows is up to a scrape interval old, and a backlog or a ramp it
    shows has gone on since."""
    signals = inputs.signals
    scraped = signals.scraped_at if signals is not None else None
    if scraped is None or not math.isfinite(scraped):
        return 0.0
    return min(max(0.0, now - scraped), params.staleness_seconds)


def idle_before_zero(inputs: ScalingInputs) -> float:
    """How long nothing waits, runs or arrives before a service scales to zero: the spec's
    ``scaleToZeroIdleSeconds``, else ``scaleDownDelaySeconds`` and at least a start-up time.
    A lull shorter than a start-up (a gap between bursts) is served at once by the replicas
    kept; gone to zero, its first request would wait the whole start-up."""
    if inputs.scale_to_zero_idle_seconds is not None:
        return inputs.scale_to_zero_idle_seconds
    return max(inputs.scale_down_delay_seconds, inputs.startup_seconds)


def replica_floor(inputs: ScalingInputs, active: bool) -> int:
    """The lower bound: ``minReplicas``, and at least 1 while requests are about or when the
    service cannot scale to zero (scale to zero itself is decided separately)."""
    floor = max(1, inputs.min_replicas) if active or not inputs.scale_to_zero else 0
    return min(max(floor, inputs.min_replicas), inputs.max_replicas)
