"""Autoscaling recommendation: replicas for one placement group of a service, with a reason.

``recommend(inputs, state, now)`` is pure: the service's bounds and SLO, the chosen variant's
capacity, the observed replicas and metrics, and the state carried from the previous call go in;
a replica count, the reason for it, each signal's need and the next state come out. The clock
is injected (``now``, seconds); the state is plain data. The shell keeps it in memory; after a
restart ``restore_state`` rebuilds it from what status says (the recommendation, the last
scale decision and the ``status_signals`` written with it) and the observations that follow.

Signals (the recommendation is the max over them; the reason names the winner)
-----------------------------------------------------------------------------
* **queue**: ``ceil((waiting + running) / allowance)``; the allowance (``queue_allowance``) is
  what one replica holds within the SLO *for the observed request mix*: a replica completes a
  mean request every ``work`` seconds, so about ``latency budget / work`` requests (and
  ``maxConcurrency`` + ``TTFT budget / work`` for the TTFT), never more than ``maxConcurrency
  + maxQueuePerReplica``. Long prompts make it small. With the request size and arrival rate
  known, a backlog is work to drain, not a steady load, and a replica asked for now serves
  only ``startupSeconds`` later: the signal asks for the replicas that, from then on, serve
  the arrivals and drain within ``startupSeconds`` the backlog there will be by then (the
  excess now plus what piles up meanwhile on the replicas serving, and on the starting ones
  once they serve), and at least hold what is running at full concurrency. So the first
  decision after a step already asks for what drains the backlog its own start-up builds,
  and those while its replicas start ask for no more. A scale-up's replicas count as
  starting for ``startupSeconds`` (+ ``ready_lag_seconds``) after it, Ready or not (a pod
  can be Ready before its model server serves).
* **arrival**: the arrival rate against per-replica capacity through the M/M/c model of
  ``queue_model``, with the headroom the latency SLO needs rather than a fixed utilisation. The
  latency budget is ``latencyP95Ms`` minus the tier's RTT. Each replica is planned at ``k``
  concurrent requests, the most (up to ``maxConcurrency``) whose service time ``k x work``
  takes at most ``service_budget_fraction`` of the budget (and of the TTFT budget for the
  prefill); the rest of the budget is the p95 queueing wait allowed. This count is the
  *SLO-safe* count: scale-down never goes below it. It needs the mean prompt and output tokens;
  without them the signal is skipped.
* **headroom** (``headroom_need``): with a start-up of ``headroom_min_startup_seconds`` or
  more, a reactive scale-up is late for a burst that rises faster than replicas start. The
  recommender remembers its arrival-rate estimates of the last ``headroom_lookback_seconds``
  (or ``headroom_lookback_startups`` start-up times, when longer: ``burst_lookback``) and
  holds the arrival model's count for ``now + the largest rise seen within one start-up time``
  (at most the lookback's peak plus the deadband): the burstiness this service has shown, an
  upper envelope rather than a mean. The reason says how much was held and why.
* **latency** (feedback): when the observed p95 latency or TTFT exceeds its SLO by a ratio
  ``r``, at least ``ceil(ready x min(r, feedback_max_step))``. Below the SLO it asks for
  nothing. It corrects what the model misses (a profile that is optimistic, requests larger
  than the mean). The runtime's p95 is a windowed histogram that still shows an overload for a
  while after it is over, so feedback waits while replicas are starting, for
  ``startupSeconds`` and two latency windows after a scale-up (requests in flight when the new
  replicas become ready finish up to a window later, and stay in the histogram for another),
  and for two latency windows after a backlog (more waiting than the ready replicas' allowed
  queue, which the queue signal answers); it would otherwise compound a correction already
  made.

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
the rate now is ``pooled + 2 x (interval - pooled)``, said in the reason. So the first
sample after a step asks for the count the next one confirms. Without that rate, during a
backlog the completions are the ready replicas at saturation (one mean request per ``work``
each).

The request size
----------------
vLLM's token counters grow per iteration, so their ratio to the completions also counts the
requests in flight: ``request_sizes`` takes off what the running requests added over the rate
window (several times the size at a service's start, a quarter more in a load step), and
``smoothed_sizes`` weighs each sample by the completions it stands for (a lull's minute is a
handful of requests), and restarts from the window when its requests are heavier beyond the
sampling noise (``size_shifted``); a size standing for fewer than ``min_size_requests`` is
unknown.

The replicas' real speed
------------------------
``update_speed`` estimates online how fast replicas really serve, as a multiple of the profile,
from the per-iteration token rates, the mean running and the ready replicas (hard bounds on
the busy time; see its docstring). It starts at ``speed_prior`` (a profile is a guess: plan as
if it were 30 % optimistic until the replicas show otherwise) and every need above is computed
at ``profile x speed``; the reason says the speed when it is not the profile's. A series
younger than the rate window under-reports its rates (Prometheus divides by the whole window),
so the estimate waits for a window of observations.

Implausible samples
-------------------
NaN, infinite and negative values are missing; a mean token count above ``MAX_MEAN_TOKENS`` too.
A sample that implies more than ``absurd_factor`` times what ``maxReplicas`` can serve (or a
request that much larger than the last) is set aside, keeping the count, until the next sample
confirms it: one absurd sample never jumps to ``maxReplicas``, a real overload waits one sample.

Behaviour
---------
* **One-step scale-up** to the need, clamped to ``[minReplicas, maxReplicas]``.
* **Scale-down** only after ``scaleDownDelaySeconds`` of observed, sustained lower need: the
  target is the max need over that window (and so never below the current SLO-safe count). A
  gap in the metrics restarts the observation. Never while the observed p95 latency or TTFT
  is above the SLO (``over_slo``): the signals that find the count too high are wrong for now.
* **Deadband (hysteresis), in load space**, ``tolerance`` = 10 %: the count goes up only when
  the need at 90 % of the observed load exceeds it (a smaller excess is absorbed by the queue
  model's headroom), and comes down to the need at 110 % of the load (its max over the
  window), and then only by at least 10 % of the count (at least one replica). So a count is
  kept while the load moves within about +-10 % of what it was sized for, and a count set at
  the top of noisy load is not trimmed and re-grown. Latency feedback, an observed violation,
  is exempt. With fewer than ten replicas the band is at least one whole replica. For the
  signals sized by the arrival rate the band is at least the rate estimate's own Poisson noise
  (``deadband``: 26 % at 1 request/s), so a low, steady rate at the edge between two counts
  does not move the count up on one noisy sample and down after the delay, again and again.
* **Not-ready capacity**: needs are compared with the *desired* replicas (starting included),
  so load that starting replicas will absorb does not add more: the queue that builds up while
  they start does not raise the count (the arrival signal still answers a higher rate), and
  feedback scales from the *ready* replicas, the ones whose latency was observed, and only once
  none is starting.
* **Scale to zero** (``scaleToZero``): to 0 after ``scaleDownDelaySeconds`` with nothing
  waiting, running or arriving; at 0 and idle it stays at 0 (``minReplicas`` applies while
  active). Activation: any waiting, running or arriving request wakes it to at least
  ``max(1, minReplicas)`` at once. With no replicas there are no runtime series: at 0 desired
  replicas a missing value counts as 0, so the shell must fill at least one load signal (e.g.
  the gateway's arrival rate) for activation.
* **Missing or stale metrics** (no ``Signals``, no or stale ``observed_at``, or, with replicas
  asked for, none of waiting/running/arrival): hold the last good recommendation (or the
  current replicas if higher: never scale down on missing data), ``metrics_available`` False,
  mode ``hold``. Automatic decisions resume with the first fresh observation.
* **Manual**: ``spec.replicas`` (the scale subresource) wins, clamped only by the API's bounds;
  mode ``manual``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from tierra.api.inference_service import InferenceService, Variant
from tierra.core.placement import weighted_rtt_ms
from tierra.core.queue_model import replicas_for_slo, solo_service_seconds
from tierra.core.slo_reach import OutOfReach, ServingProfile, out_of_reach

Mode = Literal["auto", "manual", "hold"]
SIGNALS = ("queue", "arrival", "headroom", "latency")
"""Signal names, in the order that breaks ties for the reason."""

API_MAX_REPLICAS = 10000
"""``spec.replicas`` bound of the API schema."""

_EPS = 1e-9


# --------------------------------------------------------------------------------------------
# Inputs


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
    headroom_lookback_seconds: float = 1800.0
    """The shortest lookback of the burst headroom for the arrival rate's rises and its peak
    (``burst_lookback``)."""
    headroom_lookback_startups: float = 12.0
    """The burst headroom looks back at least this many start-up times: a burst no replica
    can start for in time misses for a start-up time, so the slower the start-up, the longer
    a burst seen is worth holding for."""
    heavier_mix_ratio: float = 1.5
    """A burst-history sample whose mean request takes this many times the work of the
    latest's (or more, both on the same replicas) counts at its mix's weight
    (``mix_weighted``): a heavy phase comes back as a burst of work at the same request rate,
    and smaller ratios are the size estimate's noise."""
    headroom_min_startup_seconds: float = 20.0
    """Below this start-up time a reactive scale-up is on time and no headroom is held."""
    ramp_samples: int = 5
    """Arrival-rate samples (one per ``rate_sample_seconds``) a ramp is fitted over
    (``ramp_ahead``): few enough to see a flash crowd's ramp within a minute, enough that a
    line through Poisson noise is told from a step."""
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
    """Window of one arrival-rate sample (a scrape interval: completions between scrapes)."""
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
) -> ScalingInputs:
    """Inputs from the typed spec; ``variant`` is a Variant or the name of one of the spec's."""
    spec = service.spec
    if isinstance(variant, str):
        named = [v for v in spec.variants if v.name == variant]
        if not named:
            raise KeyError(f"variant {variant!r} is not in spec.variants")
        variant = named[0]
    capacity = variant.capacity
    return ScalingInputs(
        min_replicas=spec.scaling.min_replicas,
        max_replicas=spec.scaling.max_replicas,
        scale_to_zero=spec.scaling.scale_to_zero,
        scale_down_delay_seconds=float(spec.scaling.scale_down_delay_seconds),
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


# --------------------------------------------------------------------------------------------
# State and output


@dataclass(frozen=True)
class ScalerState:
    """What the recommender carries from one call to the next (kept in status)."""

    last_replicas: int | None = None
    """The last recommendation made with metrics (or the manual count): what a hold keeps."""
    last_change_at: float | None = None
    last_scale_up_at: float | None = None
    starting: tuple[tuple[float, int], ...] = ()
    """(when asked, replicas) of each scale-up of the last ``startupSeconds`` (+
    ``ready_lag_seconds``), oldest first, less what scale-downs took back (newest first, as a
    ReplicaSet removes unready pods first): their replicas may be Ready before they serve, and
    each batch serves a start-up time after its own scale-up."""
    window: tuple[tuple[float, int], ...] = ()
    """Recent (time, need at 110 % of the load) samples within ``scaleDownDelaySeconds``,
    reduced to those that can still be the window's max (needs strictly decreasing), so its
    size is bounded by the number of distinct needs; ``window[0]`` is the window's max."""
    window_since: float | None = None
    """Start of the current unbroken run of observations (None after a gap or manual mode)."""
    idle_since: float | None = None
    """Since when nothing has been waiting, running or arriving."""
    metrics_missing_since: float | None = None
    backlog_at: float | None = None
    """Last time more was waiting than the ready replicas' allowed queue."""
    backlog_probe: tuple[float, float] | None = None
    """(time, waiting + running) of the last sample the growth is measured from (re-anchored
    every ``growth_min_seconds`` or more): how fast the system fills tells, during a backlog,
    the arrivals the completions rate does not yet show, from the very first backlogged
    sample."""
    backlog_growth: float | None = None
    """The backlog's last measured growth (requests/s, negative while it drains)."""
    segment: tuple[tuple[float, float, float], ...] = ()
    """(end, arrivals, span) of the last scrape intervals that agree with each other
    (``interval_rate``): their pooled rate is the arrivals now."""
    interval_rate: float | None = None
    """The arrivals now, as of the last scrape interval (kept until the next scrape)."""
    interval_rise: float = 0.0
    """The part of ``interval_rate`` extrapolated from a rise within the last interval."""
    sizes: tuple[float, float, float, float] | None = None
    """(mean prompt tokens, mean output tokens, completions they stand for, when): the
    smoothed request size (``smoothed_sizes``)."""
    running_seen: tuple[tuple[float, float], ...] = ()
    """(scrape time, requests running) over the last ``rate_window_seconds``, one per scrape:
    what was in flight at the start of the token counters' window (``request_sizes``)."""
    rates: tuple[tuple[float, float, int], ...] = ()
    """(time, arrival-rate estimate, serving replicas) of the samples of the last
    ``burst_lookback``: the burst headroom and the mean serving replicas of the
    rate window come from them."""
    mixes: tuple[tuple[float, float, float], ...] = ()
    """(time, mean prompt tokens, mean output tokens) of the burst history's samples whose
    request size was known (``mix_weighted``)."""
    crowds: tuple[tuple[float, float], ...] = ()
    """(time, requests) of the largest jumps of what is in the system between two samples
    that the running slots took in (no backlog) within ``burst_lookback``, reduced
    to those that can still be its max (decreasing): the largest crowd a fan-out brought at
    once."""
    speed: float = 1.0
    """Online estimate of the replicas' real service rate as a multiple of the profile
    (``speed_prior`` until ``speed_at`` is set)."""
    speed_at: float | None = None
    """When ``speed`` was last updated."""
    work: float | None = None
    """The mean request's work (seconds alone on a replica, at the profile) last believed."""
    suspect_at: float | None = None
    """When an implausible sample was set aside (the next one confirms or clears it)."""
    out_of_reach: tuple[OutOfReach, ...] | None = None
    """The goals a running variant cannot meet for the mean request (``out_of_reach``); None
    while the request size is unknown. Rebuilt from the first sample with a known size."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "lastReplicas": self.last_replicas,
            "lastChangeAt": self.last_change_at,
            "lastScaleUpAt": self.last_scale_up_at,
            "starting": [[t, n] for t, n in self.starting],
            "window": [[t, need] for t, need in self.window],
            "windowSince": self.window_since,
            "idleSince": self.idle_since,
            "metricsMissingSince": self.metrics_missing_since,
            "backlogAt": self.backlog_at,
            "backlogProbe": list(self.backlog_probe) if self.backlog_probe else None,
            "backlogGrowth": self.backlog_growth,
            "segment": [list(x) for x in self.segment],
            "runningSeen": [list(x) for x in self.running_seen],
            "sizes": list(self.sizes) if self.sizes else None,
            "intervalRate": self.interval_rate,
            "intervalRise": self.interval_rise,
            "rates": [[t, rate, ready] for t, rate, ready in self.rates],
            "mixes": [list(m) for m in self.mixes],
            "crowds": [[t, n] for t, n in self.crowds],
            "speed": self.speed,
            "speedAt": self.speed_at,
            "work": self.work,
            "suspectAt": self.suspect_at,
            "outOfReach": None
            if self.out_of_reach is None
            else [asdict(o) for o in self.out_of_reach],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ScalerState:
        """The state from ``to_dict``'s output; missing keys take their defaults."""
        data = data or {}

        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        last = data.get("lastReplicas")
        probe = data.get("backlogProbe")
        return cls(
            last_replicas=None if last is None else int(last),
            last_change_at=number("lastChangeAt"),
            last_scale_up_at=number("lastScaleUpAt"),
            starting=tuple((float(t), int(n)) for t, n in data.get("starting") or ()),
            window=tuple((float(t), int(need)) for t, need in data.get("window") or ()),
            window_since=number("windowSince"),
            idle_since=number("idleSince"),
            metrics_missing_since=number("metricsMissingSince"),
            backlog_at=number("backlogAt"),
            backlog_probe=(float(probe[0]), float(probe[1])) if probe else None,
            backlog_growth=number("backlogGrowth"),
            segment=tuple((float(t), float(n), float(d)) for t, n, d in data.get("segment") or ()),
            running_seen=tuple((float(t), float(n)) for t, n in data.get("runningSeen") or ()),
            sizes=_four(data.get("sizes")),
            interval_rate=number("intervalRate"),
            interval_rise=float(data.get("intervalRise") or 0.0),
            rates=tuple(
                (float(t), float(rate), int(ready)) for t, rate, ready in data.get("rates") or ()
            ),
            mixes=tuple((float(t), float(p), float(o)) for t, p, o in data.get("mixes") or ()),
            crowds=tuple((float(t), float(n)) for t, n in data.get("crowds") or ()),
            speed=float(data.get("speed") or 1.0),
            speed_at=number("speedAt"),
            work=number("work"),
            suspect_at=number("suspectAt"),
            out_of_reach=None
            if data.get("outOfReach") is None
            else tuple(OutOfReach(**o) for o in data["outOfReach"]),
        )


def _four(value: Any) -> tuple[float, float, float, float] | None:
    if not value or len(value) != 4:
        return None
    a, b, c, d = (float(x) for x in value)
    return a, b, c, d


STATE_SIGNALS = ("state.speed", "state.burstRise", "state.burstPeak", "state.crowd")
"""Keys under which ``status_signals`` writes what a restart needs into the last scale
decision's ``signals`` (``status.lastScale``)."""


def status_signals(
    state: ScalerState,
    startup_seconds: float,
    params: ScalerParams = DEFAULT_PARAMS,
    token_rates: tuple[float, float] | None = None,
) -> dict[str, float]:
    """What of the state the status keeps with each scale decision, for ``restore_state``:
    the service-rate estimate and the burst history (its largest rise within a start-up time
    and its peak; with the replicas' ``token_rates``, (prefill, decode) tokens per second, a
    heavier mix at its weight). The rest is rebuilt from observations."""
    out: dict[str, float] = {}
    if state.speed_at is not None:
        out["state.speed"] = round(state.speed, 4)
    if state.rates:
        weights = mix_weights(state.mixes, *token_rates, params) if token_rates else {}
        rise, peak = burst_swing(mix_weighted(state.rates, weights), startup_seconds)
        out["state.burstRise"] = round(rise, 4)
        out["state.burstPeak"] = round(peak, 4)
    if state.crowds:
        out["state.crowd"] = round(state.crowds[0][1], 4)
    return out


def restore_state(
    recommended: int | None,
    now: float,
    *,
    last_scale_at: float | None = None,
    scaled_up_by: int = 0,
    signals: Mapping[str, float] | None = None,
    params: ScalerParams = DEFAULT_PARAMS,
) -> ScalerState:
    """The state after a restart, from what status says (the recommendation, the last scale
    decision and its ``status_signals``).

    * the recommended count is what a hold keeps, and the scale-down window starts now, seeded
      with it: a restart never scales down before ``scaleDownDelaySeconds`` of fresh
      observations;
    * a recent scale-up still makes latency feedback wait for its replicas, which count as
      starting (``scaled_up_by`` of them) until a start-up time after it;
    * the service-rate estimate continues where it was;
    * the burst history is seeded with its rise and peak at the time of the last decision, so
      the headroom is held until that ages out of the lookback, as it would have been.
    Rebuilt from observations: the growth probe, idleness, the rate window's mean ready.
    """
    signals = signals or {}
    low, high = params.speed_bounds

    def value(key: str) -> float | None:
        got = signals.get(key)
        return float(got) if isinstance(got, (int, float)) and math.isfinite(got) else None

    speed = value("state.speed")
    rise, peak, crowd = value("state.burstRise"), value("state.burstPeak"), value("state.crowd")
    rates: tuple[tuple[float, float, int], ...] = ()
    at = last_scale_at if last_scale_at is not None and last_scale_at <= now else None
    if at is not None and rise is not None and peak is not None and peak >= rise >= 0:
        ready = recommended or 0
        rates = ((at - _EPS, peak - rise, ready), (at, peak, ready))
    crowds = ((at, crowd),) if at is not None and crowd is not None and crowd > 0 else ()
    return ScalerState(
        last_replicas=recommended,
        last_change_at=at,
        last_scale_up_at=at if scaled_up_by > 0 else None,
        starting=((at, scaled_up_by),) if at is not None and scaled_up_by > 0 else (),
        window=((now, recommended),) if recommended else (),
        window_since=now,
        rates=rates,
        crowds=crowds,
        speed=min(high, max(low, speed)) if speed is not None else 1.0,
        speed_at=now if speed is not None else None,
    )


@dataclass(frozen=True)
class Recommendation:
    """The replicas to run, why, and the state for the next call."""

    replicas: int
    reason: str
    mode: Mode
    metrics_available: bool
    state: ScalerState
    needs: Mapping[str, int] = field(default_factory=dict)
    """Each signal's need, for the signals that could be computed."""
    signal: str | None = None
    """The signal whose need won (None when none was computed)."""
    keeps: int | None = None
    """What this sample keeps against a scale-down: the largest of its signals' needs at the
    top of the deadband (``SignalNeed.high``). A scale-down goes to the largest of these over
    ``scaleDownDelaySeconds``. None when no signal was computed."""


# --------------------------------------------------------------------------------------------
# Signals


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


_HUGE = 1e15
"""Values are clamped below this before arithmetic, so that no sum or product overflows."""


def _ceil(x: float) -> int:
    """Ceiling that forgives float noise (40.000000001 requests is 40); NaN is 0, and
    anything huge is capped (a count is compared with maxReplicas anyway)."""
    if not x > 0:
        return 0
    return math.ceil(min(x, _HUGE) - _EPS)


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
    work = _mean_work(inputs)
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
) -> SignalNeed:
    """What is in the system over the per-replica allowance (``queue_allowance``: what keeps
    latency within the SLO for the observed request mix).

    With the arrival rate and request size known, a backlog is work to drain rather than a
    steady load, and a replica asked for now serves only ``startupSeconds`` later: the need is
    the replicas that, from then on, serve the arrivals and drain within ``startupSeconds``
    the backlog there will be by then -- the excess now (beyond the allowed queue and the
    allowance) plus what piles up meanwhile, at the rate the serving replicas fall short of
    the arrivals (each batch of ``starting`` replicas, ``(seconds until it serves, replicas)``,
    counted from when it serves) -- and at least what holds what is running at full
    concurrency. So the first decision after a step already asks for what drains the backlog
    its own start-up builds, and the decisions while replicas start, which see that backlog
    grow as foreseen, ask for no more.
    Without the rate, the plain count over the allowance; while replicas are starting it is
    held at the replicas already asked for (theirs to absorb). ``starting`` defaults to the
    desired replicas that are not ready, serving a start-up time from now.
    """
    allowance = queue_allowance(inputs)
    work = _mean_work(inputs)
    startup = max(inputs.startup_seconds, 0.0)
    horizon = max(startup, inputs.latency_p95_ms / 1000.0, 1.0)
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
    serving, since = serving_now, 0.0
    for serve_in, n in batches:
        stretches.append((serve_in - since, serving))
        serving, since = serving + n, serve_in
    stretches.append((startup - since, serving))
    still_starting = desired - serving_now

    def at(factor: float) -> int:
        w, r = waiting * factor, running * factor
        need = _ceil((w + r) / allowance)
        if arrival_rate is not None and work is not None:
            rate = arrival_rate * factor
            backlog = max(0.0, w - allowed, w + r - held)
            # the backlog when a replica asked now serves
            later = backlog + sum((rate - n / work) * span for span, n in stretches)
            drain = _ceil((rate + max(0.0, later) / horizon) * work)
            need = max(drain, _ceil(r / inputs.max_concurrency))
        return need

    band = deadband(arrival_rate, params)
    need, low, high = at(1.0), at(1 - band), at(1 + band)
    reason = (
        f"queue: {waiting:g} waiting + {running:g} running over {inputs.ready_replicas} ready, "
        f"{allowance:.3g} per replica within the SLO"
    )
    if arrival_rate is not None and work is not None:
        reason = (
            f"{reason}; with {arrival_rate:.3g} req/s arriving, what drains within "
            f"{horizon:g} s the backlog there will be when a replica asked now serves -> {need}"
        )
        return SignalNeed("queue", need, reason, low, high)
    reason = f"{reason} -> {need}"
    if still_starting > 0 and need > desired:
        reason = f"{reason}, held at {desired} while {still_starting} starting absorb the backlog"
        need, low, high = desired, min(low, desired), min(high, desired)
    return SignalNeed("queue", need, reason, low, high)


def _mean_work(inputs: ScalingInputs) -> float | None:
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


def planned_concurrency(
    inputs: ScalingInputs, params: ScalerParams = DEFAULT_PARAMS
) -> tuple[int, float, float] | None:
    """(k, work, target wait): the per-replica concurrency the arrival signal plans for, the
    mean request's time alone on a replica, and the p95 queueing wait the SLO leaves.

    None when the mean request size is unknown or empty.
    """
    work = _mean_work(inputs)
    if work is None or inputs.mean_prompt_tokens is None:
        return None
    prefill = inputs.mean_prompt_tokens / inputs.prefill_tokens_per_second
    rtt = inputs.rtt_ms / 1000.0
    fraction = params.service_budget_fraction
    budget = max(0.0, inputs.latency_p95_ms / 1000.0 - rtt)
    k = min(inputs.max_concurrency, math.floor(fraction * budget / work + _EPS))
    target = budget
    if inputs.ttft_p95_ms is not None:
        ttft_budget = max(0.0, inputs.ttft_p95_ms / 1000.0 - rtt)
        if prefill > 0:
            k = min(k, math.floor(fraction * ttft_budget / prefill + _EPS))
        k = max(1, k)
        target = min(budget - k * work, ttft_budget - k * prefill)
    else:
        k = max(1, k)
        target = budget - k * work
    return k, work, max(0.0, target)


def arrival_need(
    inputs: ScalingInputs, arrival_rate: float, params: ScalerParams = DEFAULT_PARAMS
) -> SignalNeed | None:
    plan = planned_concurrency(inputs, params)
    if plan is None:
        return None
    k, work, target = plan

    def replicas(rate: float) -> int:
        return replicas_for_slo(
            rate, k * work, k, target, params.percentile, limit=inputs.max_replicas
        )

    need = replicas(arrival_rate)
    band = deadband(arrival_rate, params)
    return SignalNeed(
        "arrival",
        need,
        f"arrival: {arrival_rate:.3g} req/s x {work:.3g} s/request, p{params.percentile * 100:g} "
        f"wait <= {target:.3g} s at {k} per replica -> {need}",
        replicas(arrival_rate * (1 - band)),
        replicas(arrival_rate * (1 + band)),
    )


def deadband(arrival_rate: float | None, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """The deadband's half-width, in load space, of the signals sized by the arrival rate:
    ``tolerance``, or the estimate's own Poisson noise when that is larger (one standard
    error, ``1 / sqrt(arrivals)`` over ``rate_sample_seconds``: 26 % at 1 request/s over
    15 s). At a low rate, a count at the edge between two needs would otherwise go up on one
    noisy sample and down after the delay, again and again. No arrivals at all is the
    noisiest estimate (the widest band, as just above zero: a band that narrowed as the rate
    fell to zero would scale up on less load than it keeps at a little more)."""
    if arrival_rate is None or not math.isfinite(arrival_rate) or arrival_rate < 0:
        return params.tolerance
    if arrival_rate == 0:
        return max(params.tolerance, 0.5)
    arrivals = min(arrival_rate, _HUGE) * params.rate_sample_seconds
    return max(params.tolerance, min(0.5, 1.0 / math.sqrt(arrivals)))


def burst_rise(rates: tuple[tuple[float, float, int], ...], lead: float) -> tuple[float, float]:
    """(largest rise, peak) of the arrival rate in ``rates``: the most it went up within
    ``lead`` seconds, and its highest value. O(len(rates)), a sliding-window minimum."""
    return _largest_change(rates, lead, falls=False)


def burst_swing(rates: tuple[tuple[float, float, int], ...], lead: float) -> tuple[float, float]:
    """(largest swing, peak) of the arrival rate in ``rates``: the most it went up *or down*
    within ``lead`` seconds, and its highest value. A burst's end is as much evidence of
    bursty traffic as its start: load that fell within a start-up time can come back as fast
    (a service whose first burst was under way before it was observed included)."""
    return _largest_change(rates, lead, falls=True)


def _largest_change(
    rates: tuple[tuple[float, float, int], ...], lead: float, falls: bool
) -> tuple[float, float]:
    lowest: deque[tuple[float, float]] = deque()  # (increasing rates: the window's minimum first)
    highest: deque[tuple[float, float]] = deque()  # (decreasing: its maximum first)
    change, peak = 0.0, 0.0
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
        change = max(change, rate - lowest[0][1])
        if falls:
            change = max(change, highest[0][1] - rate)
        peak = max(peak, rate)
    return change, peak


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
        t: min(r, _HUGE) for t, r in ratios if math.isfinite(r) and r >= params.heavier_mix_ratio
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
    return tuple((t, min(rate * weights.get(t, 1.0), _HUGE), serving) for t, rate, serving in rates)


def burst_lookback(startup: float, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """How far back (seconds) the burst headroom looks for rises and the peak on a start-up of
    ``startup`` seconds: ``headroom_lookback_seconds``, or ``headroom_lookback_startups``
    start-up times when that is longer."""
    return max(params.headroom_lookback_seconds, params.headroom_lookback_startups * startup)


def burst_noise(peak: float, startup: float, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """The largest rise or fall within ``startup`` seconds that Poisson noise alone shows
    somewhere in the headroom's lookback at a steady rate of ``peak`` (requests per second).

    A sample counts the arrivals of ``rate_sample_seconds``, so the difference of two samples
    of a steady rate has standard deviation ``sqrt(2 peak / rate_sample_seconds)``. The swing
    is the largest such difference, either way, over about ``2 x lookback / sample x startup
    / sample`` pairs, and the largest of ``n`` Gaussian draws stays below ``sqrt(2 ln n)``
    standard deviations (the extreme-value bound): a smaller swing is noise, not burstiness.
    """
    sample = params.rate_sample_seconds
    pairs = 2.0 * max(burst_lookback(startup, params) / sample, 1.0) * max(startup / sample, 1.0)
    z = math.sqrt(2.0 * math.log(max(pairs, math.e)))
    return z * math.sqrt(2.0 * max(peak, 0.0) / sample)


def ramp_ahead(
    rates: tuple[tuple[float, float, int], ...],
    at: float,
    params: ScalerParams = DEFAULT_PARAMS,
    samples: int | None = None,
) -> float:
    """The arrival rate at time ``at`` if the ramp of the samples goes on (0: no ramp).

    A weighted least-squares line through the last ``ramp_samples`` rates, one per
    ``rate_sample_seconds`` (each a Poisson count over that long: variance ``rate / sample``).
    It counts as a ramp when its slope is positive beyond ``change_z`` standard errors and the
    samples lie on it within their noise (chi-square within its mean + 3 standard deviations):
    a step, a spike or a fan-out fits no line and is the burst headroom's, and noise has no
    significant slope.
    """
    sample = params.rate_sample_seconds
    wanted = max(samples if samples is not None else params.ramp_samples, 3)
    picked: list[tuple[float, float]] = []
    for t, rate, _ in reversed(rates):
        if not picked or picked[-1][0] - t >= sample - _EPS:
            picked.append((t, min(max(rate, 0.0), _HUGE)))
        if len(picked) == wanted:
            break
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
    if slope * math.sqrt(spread) <= params.change_z:  # (slope / its standard error)
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
) -> SignalNeed | None:
    """Capacity held ahead of bursts a reactive scale-up would be late for.

    A replica asked for now serves ``startupSeconds`` later, so a burst that rises within
    that time is met only by what is already running. The headroom is the largest rise (or
    fall, ``burst_swing``) of the arrival rate within one start-up time seen over the last
    ``burst_lookback`` (the burstiness of this service's traffic, not a fixed
    margin): the arrival model is asked for ``current rate + that rise`` (none for a rise that
    Poisson noise alone would show somewhere in the lookback, ``burst_noise``: the queueing
    headroom covers it; a larger one is held whole), never more than the lookback's peak (plus
    the deadband), so a burst that came before is held for, and a smooth load holds little.
    None when the start-up is short enough for a reactive scale-up, or nothing rose.
    """
    if inputs.startup_seconds < params.headroom_min_startup_seconds or not rates:
        return None
    lookback_minutes = burst_lookback(inputs.startup_seconds, params) / 60
    plan = planned_concurrency(inputs, params)
    if plan is None:
        return None
    rise, peak = burst_swing(rates, inputs.startup_seconds)
    # (a burst is held whole: the next one's peak is no lower than the last's for being noisy)
    if rise <= burst_noise(peak, inputs.startup_seconds, params):
        rise = 0.0
    held = min(arrival_rate + rise, peak * (1 + params.tolerance))
    # A ramp (the latest start-up time rose by a modest share of the load) goes on rising:
    # its rise is held above the current rate even at the peak. A jump is a burst, held at
    # its peak.
    latest = tuple(r for r in rates if r[0] >= rates[-1][0] - inputs.startup_seconds)
    trend, _ = burst_rise(latest, inputs.startup_seconds)
    if 0 < trend <= 0.5 * arrival_rate:
        held = max(held, arrival_rate + trend)
    # A steep ramp under way (a flash crowd: the samples before this one on a rising line) is
    # held at where the line will be when a replica asked now serves. (This sample is left
    # out of the fit: more load now never means less held.)
    # A slow ramp shows its slope over a start-up time before it does over a minute (fitted
    # over as many samples as a start-up time holds, when that is more).
    ahead = rates[-1][0] + inputs.startup_seconds
    span = round(inputs.startup_seconds / params.rate_sample_seconds)
    fits = {params.ramp_samples, max(params.ramp_samples, span)}
    line, fitted = max((ramp_ahead(rates[:-1], ahead, params, n), n) for n in fits)
    ramping = line > held
    held = max(held, line)
    k, work, target = plan

    def replicas(rate: float) -> int:
        return replicas_for_slo(rate, k * work, k, target, params.percentile, inputs.max_replicas)

    # A fan-out brings dozens of requests within a second, which no rate sample shows; the
    # largest jump of what is in the system between two samples must clear within the SLO
    # on the replicas' allowance (``queue_allowance``), beside what the steady arrivals keep
    # in them (at least the rate times the mean request's time alone on a replica).
    steady = arrival_rate * work
    by_crowd = _ceil((crowd + steady) / queue_allowance(inputs)) if crowd > 0 else 0
    by_rate = replicas(held) if held > arrival_rate * (1 + params.tolerance) + _EPS else 0
    if max(by_rate, by_crowd) <= replicas(arrival_rate):
        return None
    mean = sum(r for _, r, _ in rates) / len(rates)
    if ramping:
        source = (
            f"where the arrivals' ramp of the last "
            f"{fitted * params.rate_sample_seconds:g} s will be at the end of the "
            f"{inputs.startup_seconds:g} s start-up"
        )
    else:
        source = (
            f"the largest rise or fall within the {inputs.startup_seconds:g} s start-up over the "
            f"last {lookback_minutes:g} min (peak {peak:.3g}, peak/mean "
            f"{peak / mean if mean > 0 else math.inf:.2g})"
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
    return SignalNeed("headroom", max(by_rate, by_crowd), why, low, max(by_rate, by_crowd))


def over_slo(
    inputs: ScalingInputs, signals: Signals, ignored: frozenset[str] = frozenset()
) -> tuple[float, str] | None:
    """(ratio, what) of the observed p95 latency or TTFT furthest above its SLO (None: all
    within it, or not observed), leaving out the ``ignored`` ones ("p95 latency", "p95
    TTFT")."""
    worst: tuple[float, str] | None = None
    for name, observed, goal in (
        ("p95 latency", signals.p95_latency_ms, inputs.latency_p95_ms),
        ("p95 TTFT", signals.ttft_p95_ms, inputs.ttft_p95_ms),
    ):
        if observed is None or goal is None or not goal > 0 or name in ignored:
            continue
        ratio = observed / goal
        if ratio > 1.0 and (worst is None or ratio > worst[0]):
            worst = (ratio, f"{name} {observed:.0f} ms > SLO {goal:.0f} ms (x{ratio:.2f})")
    return worst


def latency_need(
    inputs: ScalingInputs,
    signals: Signals,
    state: ScalerState,
    now: float,
    params: ScalerParams = DEFAULT_PARAMS,
    ignored: frozenset[str] = frozenset(),
) -> SignalNeed | None:
    """Feedback from observed p95 latency / TTFT above the SLO (None when within it); the
    ``ignored`` goals are out of reach of some running variant, and more replicas would not
    meet them (``out_of_reach``)."""
    worst = over_slo(inputs, signals, ignored)
    if worst is None:
        return None
    ratio, what = worst
    ready = inputs.ready_replicas
    # Requests in flight when new replicas become ready stay where they are and finish up to a
    # window later; their latency then stays in the runtime's histogram window for another.
    # The same holds for a backlog's tail.
    settle = inputs.startup_seconds + 2 * params.latency_window_seconds
    settling = state.last_scale_up_at is not None and now - state.last_scale_up_at < settle
    recent_backlog = state.backlog_at is not None and (
        now - state.backlog_at < 2 * params.latency_window_seconds
    )
    if ready <= 0 or ready < inputs.desired_replicas or settling or recent_backlog:
        return None
    need = _ceil(ready * min(ratio, params.feedback_max_step))
    return SignalNeed("latency", need, f"latency: {what} on {ready} ready -> {need}", need, need)


# --------------------------------------------------------------------------------------------
# The recommender


def _usable(value: float | None) -> float | None:
    """A value, or None when it is not one (a histogram quantile over no samples is NaN);
    finite values beyond ``_HUGE`` are capped there."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return min(value, _HUGE)


MAX_MEAN_TOKENS = 1e7
"""A mean request larger than this (no model's context is) is not a measurement."""


def _sanitised(signals: Signals) -> Signals:
    observed_at = signals.observed_at
    return Signals(
        queue_depth=_usable(signals.queue_depth),
        running=_usable(signals.running),
        arrival_rate=_usable(signals.arrival_rate),
        p95_latency_ms=_usable(signals.p95_latency_ms),
        ttft_p95_ms=_usable(signals.ttft_p95_ms),
        observed_at=observed_at if observed_at is not None and math.isfinite(observed_at) else None,
        prompt_tokens_rate=_usable(signals.prompt_tokens_rate),
        output_tokens_rate=_usable(signals.output_tokens_rate),
        mean_running=_usable(signals.mean_running),
        recent_completion_rate=_usable(signals.recent_completion_rate),
        scraped_at=signals.scraped_at
        if signals.scraped_at is not None and math.isfinite(signals.scraped_at)
        else None,
    )


def _tokens(value: float | None) -> float | None:
    """A mean token count, or None: a ratio of token and completion rates is +Inf or NaN in a
    window with tokens but no completion (vLLM counts tokens per iteration)."""
    usable = _usable(value)
    return usable if usable is not None and usable <= MAX_MEAN_TOKENS else None


def _sanitised_inputs(inputs: ScalingInputs) -> ScalingInputs:
    return replace(
        inputs,
        signals=None if inputs.signals is None else _sanitised(inputs.signals),
        mean_prompt_tokens=_tokens(inputs.mean_prompt_tokens),
        mean_output_tokens=_tokens(inputs.mean_output_tokens),
        rtt_ms=inputs.rtt_ms if math.isfinite(inputs.rtt_ms) and inputs.rtt_ms >= 0 else 0.0,
    )


def update_speed(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    params: ScalerParams = DEFAULT_PARAMS,
    serving: int | None = None,
) -> float:
    """The online estimate of the replicas' service rate, as a multiple of the profile.

    Per-iteration token rates say how much work the replicas did over the rate window, in
    replica-seconds at the profile's speed: ``B = prompt tokens/s / prefill + output tokens/s /
    decode``. A replica is busy while it runs at least one request; with ``n`` running per
    replica on average (over the same window) it was busy at most ``min(1, n)`` of the time
    (a hard fact), and at least ``n / maxConcurrency`` (a hard fact, tight when the slots are
    full) or, under steady arrivals, about ``n / (1 + n)`` (processor sharing's ``E[n] = rho /
    (1 - rho)``; balanced routing keeps replicas busier than that), so the real speed lies between
    ``B / (ready x min(1, n))`` and ``B / (ready x busy at least)``: the lower bound is close at
    low load (one request per replica rarely shares), the upper one under heavy sharing and
    at saturation, where an optimistic profile shows. The estimate starts at the profile and
    moves (in log space, with time constant ``speed_time_constant_seconds``) only when it falls
    outside them: so an exact profile stays put, and one that is 30 % off either way is
    corrected as soon as the load shows it -- optimistic ones at the first saturation.
    """
    signals = inputs.signals
    if state.speed_at is None:
        return params.speed_prior
    speed = state.speed if math.isfinite(state.speed) and state.speed > 0 else params.speed_prior
    if signals is None:
        return speed
    prompt, output, running = (
        signals.prompt_tokens_rate,
        signals.output_tokens_rate,
        signals.mean_running,
    )
    window = [ready for t, _, ready in state.rates if t > now - params.rate_window_seconds] + [
        inputs.ready_replicas if serving is None else serving
    ]
    ready = sum(window) / len(window)
    if prompt is None or output is None or running is None or ready <= 0 or running <= 0:
        return speed
    work = prompt / inputs.prefill_tokens_per_second + output / inputs.decode_tokens_per_second
    if work <= 0:
        return speed
    per_replica = running / ready
    low, high = params.speed_bounds
    # busy share of a replica: at most min(1, n); at least n / maxConcurrency, and about
    # n / (1 + n) when requests share replicas (processor sharing: E[n] = rho / (1 - rho))
    if not ready * per_replica > _EPS:
        return speed  # (nothing measurable ran)
    slowest = work / (ready * min(1.0, per_replica))
    busiest = per_replica / inputs.max_concurrency
    probe = state.backlog_probe
    in_system = (signals.queue_depth or 0.0) + (signals.running or 0.0)
    recent = [r for t, r, _ in state.rates if t > now - params.rate_window_seconds]
    steady = len(recent) >= 3 and max(recent) <= 1.5 * min(recent)
    if steady and (probe is None or in_system >= probe[1]):
        # (only under steady arrivals: over a window of fan-outs and lulls the mean running
        # says nothing of the busy time, and while a backlog drains replicas empty unevenly)
        busiest = max(busiest, per_replica / (1.0 + per_replica))
    fastest = work / (ready * min(1.0, busiest))
    sample = min(high, max(low, min(max(speed, slowest), fastest)))
    if sample == speed:
        return speed
    dt = min(max(0.0, now - state.speed_at), params.speed_time_constant_seconds)
    alpha = 1.0 - math.exp(-dt / params.speed_time_constant_seconds)
    moved = math.exp(math.log(speed) + alpha * (math.log(sample) - math.log(speed)))
    return min(high, max(low, moved))


def _implausible(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    work: float | None,
    params: ScalerParams,
) -> str | None:
    """Why this sample cannot be real (None when it can): it implies more than
    ``absurd_factor`` times what ``maxReplicas`` can serve, or a request that much larger than
    the last one believed. A real burst that large is believed one sample later."""
    signals = inputs.signals
    assert signals is not None
    factor = params.absurd_factor
    if work is not None and state.work is not None and work > factor * state.work:
        return f"the mean request's work jumped from {state.work:.3g} s to {work:.3g} s"
    known = work if work is not None else state.work
    top = max(1, inputs.max_replicas)
    if signals.running is not None and signals.running > factor * top * inputs.max_concurrency:
        return f"{signals.running:.3g} running is beyond {top} x {inputs.max_concurrency} slots"
    if signals.prompt_tokens_rate is not None or signals.output_tokens_rate is not None:
        busy = (signals.prompt_tokens_rate or 0.0) / inputs.prefill_tokens_per_second + (
            signals.output_tokens_rate or 0.0
        ) / inputs.decode_tokens_per_second
        if busy > factor * top * params.speed_bounds[1]:
            return f"token rates of {busy:.3g} replicas' work"
    if known is None:
        return None
    capacity = top / known  # requests/s maxReplicas serve
    rates = [
        ("arrival rate", signals.arrival_rate),
        ("completion rate", signals.recent_completion_rate),
    ]
    probe = state.backlog_probe
    if probe is not None and now - probe[0] >= params.growth_min_seconds:
        in_system = (signals.queue_depth or 0.0) + (signals.running or 0.0)
        rates.append(("growth", (in_system - probe[1]) / (now - probe[0])))
    elif signals.queue_depth is not None and state.last_replicas is not None:
        rates.append(("waiting", signals.queue_depth / max(1.0, inputs.startup_seconds)))
    for name, value in rates:
        if value is not None and value > factor * capacity:
            return f"{name} {value:.3g}/s > {factor:g} x the {capacity:.3g}/s {top} replicas serve"
    return None


def _missing_reason(inputs: ScalingInputs, now: float, params: ScalerParams) -> str | None:
    s = inputs.signals
    if s is None:
        return "no metrics"
    if s.observed_at is None:
        return "metrics carry no observation time"
    age = now - s.observed_at
    if age > params.staleness_seconds:
        return f"metrics stale: observed {age:.0f} s ago (> {params.staleness_seconds:g} s)"
    if inputs.desired_replicas > 0 and (
        s.queue_depth is None and s.running is None and s.arrival_rate is None
    ):
        return "metrics have no waiting, running or arrival data"
    return None


def _slide(
    window: tuple[tuple[float, int], ...], now: float, need: int, span: float
) -> tuple[tuple[float, int], ...]:
    """Add (now, need) to the monotone window and drop samples older than ``span``."""
    kept = [(t, n) for t, n in window if t >= now - span]
    while kept and kept[-1][1] <= need:
        kept.pop()
    kept.append((now, need))
    return tuple(kept)


def _slide_max(
    window: tuple[tuple[float, float], ...], now: float, value: float
) -> tuple[tuple[float, float], ...]:
    """Add (now, value) to a window kept decreasing (only what can still be its max)."""
    kept = list(window)
    while kept and kept[-1][1] <= value:
        kept.pop()
    kept.append((now, value))
    return tuple(kept)


def _manual(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    available: bool,
    params: ScalerParams = DEFAULT_PARAMS,
) -> Recommendation:
    manual = inputs.manual_replicas
    assert manual is not None
    replicas = min(max(manual, 0), API_MAX_REPLICAS)
    changed = replicas != inputs.desired_replicas
    return Recommendation(
        replicas=replicas,
        reason=f"manual: spec.replicas={manual} (set through the scale subresource) overrides "
        "the autoscaler",
        mode="manual",
        metrics_available=available,
        state=ScalerState(
            last_replicas=replicas,
            last_change_at=now if changed else state.last_change_at,
            last_scale_up_at=now if replicas > inputs.desired_replicas else state.last_scale_up_at,
            starting=_starting_after(inputs, state, now, replicas, params),
            metrics_missing_since=None if available else (state.metrics_missing_since or now),
            rates=state.rates,
            speed=state.speed,
            speed_at=state.speed_at,
            work=state.work,
            out_of_reach=state.out_of_reach,
        ),
    )


def _hold(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    why: str,
    params: ScalerParams = DEFAULT_PARAMS,
) -> Recommendation:
    current = inputs.desired_replicas
    last = state.last_replicas
    held = current if last is None else max(last, current)
    lower = 0 if inputs.scale_to_zero and held == 0 else _floor(inputs, active=True)
    replicas = min(max(held, lower), inputs.max_replicas)
    since = state.metrics_missing_since if state.metrics_missing_since is not None else now
    return Recommendation(
        replicas=replicas,
        # (no duration in the reason: it goes to status, which should not change by itself)
        reason=f"hold {replicas}: {why}; never scaling down on missing data",
        mode="hold",
        metrics_available=False,
        state=replace(
            state,
            last_change_at=now if replicas != current else state.last_change_at,
            last_scale_up_at=now if replicas > current else state.last_scale_up_at,
            starting=_starting_after(inputs, state, now, replicas, params),
            window=(),
            window_since=None,
            idle_since=None,
            metrics_missing_since=since,
            backlog_probe=None,
            backlog_growth=None,
            segment=(),
            interval_rate=None,
            interval_rise=0.0,
        ),
    )


def _out_of_reach(
    inputs: ScalingInputs, state: ScalerState, known: bool, params: ScalerParams
) -> tuple[OutOfReach, ...] | None:
    """The goals out of reach of a running variant for the (smoothed) mean request; the last
    verdict while the size is unknown or nothing runs."""
    prompt, output = inputs.mean_prompt_tokens, inputs.mean_output_tokens
    if not known or prompt is None or output is None or not inputs.serving:
        return state.out_of_reach
    return out_of_reach(
        inputs.serving,
        prompt,
        output,
        inputs.latency_p95_ms,
        inputs.ttft_p95_ms,
        state.out_of_reach or (),
        params.tolerance,
    )


def _running_seen(
    inputs: ScalingInputs, state: ScalerState, now: float, params: ScalerParams
) -> tuple[tuple[float, float], ...]:
    """``state.running_seen`` with this sample's running added when it is a new scrape."""
    signals = inputs.signals
    assert signals is not None
    at = signals.scraped_at if signals.scraped_at is not None else now
    at = min(at, now)
    seen = tuple(x for x in state.running_seen if at - params.rate_window_seconds <= x[0] <= at)
    if signals.running is not None and (not seen or at > seen[-1][0]):
        seen = (*seen, (at, signals.running))
    return seen


def request_sizes(
    inputs: ScalingInputs,
    seen: tuple[tuple[float, float], ...],
    params: ScalerParams = DEFAULT_PARAMS,
) -> ScalingInputs:
    """The mean prompt and output tokens of a request, corrected for the requests in flight.

    The mean sizes are the per-iteration token rates over the completion rate (the presets'
    ratio over ``rate_window_seconds``, ``W``). The token counters also count the requests
    still running, as far as each has got: under processor sharing they progress together,
    so about half of their tokens on average (a prompt is counted whole sooner when prefill is
    a small part of the work, but then it is a small part of the work too). So the tokens over
    the window are those of ``C + (R_end - R_start) / (2 W)`` requests for ``C`` completions
    per second, where ``R`` is what ran at either end of the window (its start is the oldest
    scrape seen within it). At a service's start or during a load step ``R`` grows, and the
    plain ratio makes the mean request up to several times its size; while a backlog drains
    it makes it smaller. The correction is bounded to a factor of 4 either way, and made only
    where the runtime's token counters are per iteration (its token rates are known: vLLM's);
    a runtime that counts a request's tokens when it completes (TGI) needs none."""
    signals = inputs.signals
    completions = signals.arrival_rate if signals is not None else None
    prompt, output = inputs.mean_prompt_tokens, inputs.mean_output_tokens
    per_iteration = signals is not None and signals.prompt_tokens_rate is not None
    if not per_iteration or not seen or not completions or prompt is None or output is None:
        return inputs
    # (with less than a window seen, the series may be younger than the window -- a new
    # service's counters start at zero with nothing in flight -- and what ran at the start of
    # what Prometheus has is taken as nothing; in a steady state ``R / W`` is small beside ``C``
    # and the correction negligible, so after a restart this costs little)
    young = seen[0][0] > seen[-1][0] - 0.9 * params.rate_window_seconds
    start, end = (0.0 if young else seen[0][1]), seen[-1][1]
    extra = (end - start) / params.rate_window_seconds

    def corrected(mean: float, share: float) -> float:
        counted = completions + share * extra
        if counted <= 0:
            return mean * 4.0
        return mean * min(4.0, max(0.25, completions / counted))

    return replace(
        inputs, mean_prompt_tokens=corrected(prompt, 0.5), mean_output_tokens=corrected(output, 0.5)
    )


def smoothed_sizes(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> tuple[ScalingInputs, tuple[float, float, float, float] | None, bool]:
    """The mean request size smoothed over ``size_time_constant_seconds``, each sample
    weighted by the completions it stands for (the completion rate times the time since the
    last; at least the window's completions not yet counted): in a lull a minute's ratio is
    that of a handful of requests, and sizing the burst headroom on it would swing with them;
    a busy minute outweighs it. The inputs with the smoothed sizes, the state to keep, and
    whether the sizes stand for ``min_size_requests`` completions or more: the arrival model
    and the burst headroom size replicas by them only then (the queue signal takes them as
    they are: it asks for more only where what is in the system shows it)."""
    prompt, output = inputs.mean_prompt_tokens, inputs.mean_output_tokens
    signals = inputs.signals
    rate = signals.arrival_rate if signals is not None else None
    before = state.sizes
    if prompt is None or output is None:
        if before is None:
            return inputs, None, False
        # A lull without completions measures nothing: the size measured before it still
        # stands (the burst headroom that holds replicas through the lull sizes by it).
        kept = replace(inputs, mean_prompt_tokens=before[0], mean_output_tokens=before[1])
        return kept, (before[0], before[1], before[2], now), before[2] >= params.min_size_requests
    tau = params.size_time_constant_seconds
    old = 0.0
    window = (rate or 0.0) * params.rate_window_seconds  # (the window's completions)
    if (
        before is None
        or not 0 <= now - before[3] <= params.staleness_seconds
        or size_shifted(inputs, before, window, params)
    ):
        mean_prompt, mean_output = prompt, output
        total = window
    else:
        dt = now - before[3]
        decay = math.exp(-dt / tau) if tau > 0 else 0.0
        old = before[2] * decay
        # (the sample stands for the completions since the last, and for at least those of
        # the window not counted yet: a series younger than the window under-reports its
        # rate, and ``rate x dt`` alone would count too few)
        count = max((rate or 0.0) * dt, window - old)
        total = old + count
        if total > _EPS and math.isfinite(total):
            mean_prompt = (before[0] * old + prompt * count) / total
            mean_output = (before[1] * old + output * count) / total
        else:
            mean_prompt, mean_output, total = prompt, output, count
    total = min(total, _HUGE)
    # (a mean over a handful of requests is no measurement: at a service's start the
    # in-flight requests' tokens can make it several times the size)
    known = total >= params.min_size_requests
    smoothed = replace(inputs, mean_prompt_tokens=mean_prompt, mean_output_tokens=mean_output)
    return smoothed, (mean_prompt, mean_output, total, now), known


def size_shifted(
    inputs: ScalingInputs,
    before: tuple[float, float, float, float],
    completions: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> bool:
    """Whether the window's mean request (``inputs``' sizes, over ``completions``) takes
    longer to serve than the smoothed one (``before``'s sizes) beyond what sampling noise
    explains: the mix got heavier (a client with long contexts came), and the smoothing,
    which otherwise takes minutes to follow, restarts from the window. A lighter mix is
    followed at the smoothing's pace, as a scale-down waits: a few light requests are no
    reason to shed the replicas the heavy ones need."""
    if completions < params.min_size_requests or before[2] < params.min_size_requests:
        return False
    now_work = _mean_work(inputs)
    then_work = _mean_work(
        replace(inputs, mean_prompt_tokens=before[0], mean_output_tokens=before[1])
    )
    if now_work is None or then_work is None:
        return False
    noise = params.change_z * params.size_cv / math.sqrt(min(completions, _HUGE))
    return math.log(now_work / then_work) > noise


def _starting_batches(
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


def _starting(inputs: ScalingInputs, state: ScalerState, now: float, params: ScalerParams) -> int:
    """Replicas still starting (``_starting_batches``)."""
    return sum(n for _, n in _starting_batches(inputs, state, now, params))


def _starting_after(
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


def _floor(inputs: ScalingInputs, active: bool) -> int:
    """The lower bound: ``minReplicas``, and at least 1 while requests are about or when the
    service cannot scale to zero (scale to zero itself is decided separately)."""
    floor = max(1, inputs.min_replicas) if active or not inputs.scale_to_zero else 0
    return min(max(floor, inputs.min_replicas), inputs.max_replicas)


def _implied_arrivals(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    waiting: float | None,
    running: float | None,
    arrival: float | None,
    params: ScalerParams,
) -> _Arrivals:
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
    work = _mean_work(inputs)
    recent = inputs.signals.recent_completion_rate if inputs.signals is not None else None
    segment, estimate, rise = state.segment, state.interval_rate, state.interval_rise
    if recent is not None and growth is not None:
        # Completions between the last scrapes (irate) plus the growth of what is in the
        # system: the arrivals of the last interval, exactly (conservation), whether the
        # overload shows as waiting or, under processor sharing, as running; pooled with the
        # intervals before it while they agree, extrapolated when it rose (``interval_rate``);
        # never below the window's average (a lull within a burst is not its end).
        if span is not None or estimate is None:
            estimate, segment, rise = interval_rate(
                segment, at, max(0.0, recent + growth), span or 0.0, params
            )
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
        segment, estimate, rise = (), None, 0.0
    else:
        segment, estimate, rise = (), None, 0.0
        if not backlogged:
            growth = None  # without the completions now, growth alone is noise
    return _Arrivals(arrival, growth, probe, segment, estimate, rise)


def interval_rate(
    segment: tuple[tuple[float, float, float], ...],
    at: float,
    rate: float,
    span: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> tuple[float, tuple[tuple[float, float, float], ...], float]:
    """(arrival rate now, the segment to carry, the rise extrapolated): the arrivals of the
    interval of ``span`` seconds ending at ``at`` (``rate`` per second), read against the
    *segment* of the intervals before it that agree with each other (``(end, arrivals,
    span)`` within ``rate_sample_seconds``).

    * It agrees with the segment's pooled rate (Poisson, variance-stabilised: ``2 (sqrt(count)
      - sqrt(expected))`` within ``change_z`` of the noise of both): the pooled rate, whose
      noise is that of ``rate_sample_seconds`` rather than one scrape interval's (a max over
      noisy samples would ratchet the count up).
    * It is above: the load rose *within* the interval, which thus shows only part of the
      rise. With the rise at an unknown time within it, its middle is the expected one (and
      exact for a ramp): the rate now is ``pooled + 2 x (rate - pooled)``. The segment
      restarts after it (the next interval is the first that shows the new load whole).
    * It is below: the segment restarts with it.
    """
    count = rate * span
    pool = tuple(s for s in segment if s[0] > at - params.rate_sample_seconds)
    if span <= 0:
        return rate, pool, 0.0
    if pool:
        total = sum(d for _, _, d in pool)
        base = sum(c for _, c, _ in pool) / total if total > 0 else rate
        # (Poisson, variance-stabilised, with the pooled rate's own noise -- a short pool is a
        # noisy base -- and one arrival more in the pool than seen: at a handful of arrivals
        # the transform is too eager, and a lull's empty pool is no base of zero)
        expected = (base * total + 1.0) / total * span
        z = 2.0 * (math.sqrt(count) - math.sqrt(expected)) / math.sqrt(1.0 + span / total)
        if z > params.change_z:
            now_rate = base + 2.0 * (rate - base)
            return now_rate, (), now_rate - rate
        if z >= -params.change_z:
            pool = (*pool, (at, count, span))
            total = sum(d for _, _, d in pool)
            return sum(c for _, c, _ in pool) / total, pool, 0.0
    return rate, ((at, count, span),), 0.0


@dataclass(frozen=True)
class _Arrivals:
    rate: float | None
    growth: float | None
    probe: tuple[float, float] | None
    segment: tuple[tuple[float, float, float], ...]
    estimate: float | None
    rise: float
    """How much of ``estimate`` is the extrapolated part of a rise within the last interval."""


@dataclass(frozen=True)
class _Observed:
    """What one sample says of the replicas and the requests (``_observe``)."""

    inputs: ScalingInputs
    """The inputs with the measured request size and the profile scaled by ``speed``."""
    sized: ScalingInputs
    """``inputs`` without a request size while it stands for a handful of requests."""
    running_seen: tuple[tuple[float, float], ...]
    serving: int
    """Ready replicas past their start-up."""
    speed: float
    profile_work: float | None
    sizes: tuple[float, float, float, float] | None
    unreachable: tuple[OutOfReach, ...] | None
    unmeetable: frozenset[str]
    """The goals a running variant misses at any count: feedback does not chase them."""


def _observe(
    inputs: ScalingInputs, state: ScalerState, now: float, params: ScalerParams
) -> _Observed | Recommendation:
    """The request size, the replicas' speed and the goals in reach, from one sample (a
    Recommendation instead when the sample is implausible and set aside)."""
    # The request size from per-iteration token counters, less what requests still in flight
    # added to them (a filling system over-counts, by far at a start).
    seen = _running_seen(inputs, state, now, params)
    inputs = request_sizes(inputs, seen, params)
    # The replicas' real speed, learnt online, scales the profile everything below uses.
    # (replicas serve once started: a scale-up's are counted from ``startupSeconds`` on)
    serving = max(
        0,
        min(inputs.ready_replicas, inputs.desired_replicas - _starting(inputs, state, now, params)),
    )
    # (a series younger than the rate window under-reports its rates: Prometheus divides the
    # increase by the whole window; so the speed waits for a full window of observations)
    since = state.window_since if state.window_since is not None else now
    speed = (
        update_speed(inputs, state, now, params, serving)
        if now - since >= params.rate_window_seconds or state.speed_at is None
        else state.speed
    )
    profile_work = _mean_work(inputs)
    why_not = _implausible(inputs, state, now, profile_work, params)
    if why_not is not None and state.suspect_at is None:
        held = min(max(inputs.desired_replicas, _floor(inputs, active=True)), inputs.max_replicas)
        return Recommendation(
            replicas=held,
            reason=f"keep {held}: an implausible sample is set aside until the next "
            f"confirms it ({why_not})",
            mode="auto",
            metrics_available=True,
            state=replace(state, suspect_at=now),
        )
    inputs, sizes, known = smoothed_sizes(inputs, state, now, params)
    unreachable = _out_of_reach(inputs, state, known, params)
    inputs = replace(
        inputs,
        prefill_tokens_per_second=inputs.prefill_tokens_per_second * speed,
        decode_tokens_per_second=inputs.decode_tokens_per_second * speed,
    )
    # (a size standing for a handful of requests sizes no replicas by the arrival model)
    sized = inputs if known else replace(inputs, mean_prompt_tokens=None, mean_output_tokens=None)
    return _Observed(
        inputs=inputs,
        sized=sized,
        running_seen=seen,
        serving=serving,
        speed=speed,
        profile_work=profile_work,
        sizes=sizes,
        unreachable=unreachable,
        unmeetable=frozenset(o.metric for o in unreachable or ()),
    )


@dataclass(frozen=True)
class _Load:
    """The requests now and the burst history (``_load``)."""

    waiting: float | None
    running: float | None
    arrival: float | None
    """Arrivals now (requests/s): the runtime's rate, or what conservation implies."""
    active: bool
    """Anything waiting, running or arriving."""
    backlogged: bool
    """More waiting than the ready replicas' allowed queue."""
    implied: _Arrivals
    rates: tuple[tuple[float, float, int], ...]
    crowds: tuple[tuple[float, float], ...]
    mixes: tuple[tuple[float, float, float], ...]


def _load(seen: _Observed, state: ScalerState, now: float, params: ScalerParams) -> _Load:
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
        arrival = min(arrival, _HUGE) if math.isfinite(arrival) else _HUGE
    lookback = max(burst_lookback(inputs.startup_seconds, params), inputs.scale_down_delay_seconds)
    rates = tuple(r for r in state.rates if r[0] > now - lookback)
    if arrival is not None:
        # (the burst history keeps what each interval measured: not the rise extrapolated
        # within the last one -- it sizes this decision, and the next interval shows the new
        # load whole -- nor the minute's average the rate now is never below, which smears a
        # burst's end over a minute, taken for a fall too slow to hold for on a short start-up)
        measured = arrival if implied.estimate is None else implied.estimate - implied.rise
        rates = (*rates, (now, measured, seen.serving))
    crowds = tuple(c for c in state.crowds if c[0] > now - lookback)
    mixes = tuple(m for m in state.mixes if m[0] > now - lookback)
    prompt, output = seen.sized.mean_prompt_tokens, seen.sized.mean_output_tokens
    if arrival is not None and prompt is not None and output is not None:
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
            crowds = _slide_max(crowds, now, min(jump, _HUGE))
    return _Load(waiting, running, arrival, active, backlogged, implied, rates, crowds, mixes)


def _signal_needs(
    seen: _Observed, load: _Load, state: ScalerState, now: float, params: ScalerParams
) -> list[SignalNeed]:
    """What each signal finds the load needs: the queue, the arrivals, the burst headroom and
    the latency feedback."""
    inputs = seen.inputs
    signals = inputs.signals
    assert signals is not None
    found: list[SignalNeed] = []
    if load.waiting is not None or load.running is not None:
        found.append(
            queue_need(
                inputs,
                load.waiting or 0.0,
                load.running or 0.0,
                load.arrival,
                params,
                _starting_batches(inputs, state, now, params),
            )
        )
    if load.arrival is not None:
        by_arrival = arrival_need(seen.sized, load.arrival, params)
        if by_arrival is not None:
            found.append(by_arrival)
        crowd = load.crowds[0][1] if load.crowds else 0.0
        sized = seen.sized
        weights = mix_weights(
            load.mixes, sized.prefill_tokens_per_second, sized.decode_tokens_per_second, params
        )
        history = mix_weighted(load.rates, weights)
        by_headroom = headroom_need(sized, load.arrival, history, params, crowd)
        if by_headroom is not None and weights:
            heaviest = max(weights.values())
            by_headroom = replace(
                by_headroom,
                reason=f"{by_headroom.reason} (past samples of a mix up to {heaviest:.2g}x "
                f"heavier than now's counted at its weight)",
            )
        if by_headroom is not None:
            found.append(by_headroom)
    # (feedback looks at backlogs before this sample only, so more load never means less)
    by_latency = latency_need(inputs, signals, state, now, params, seen.unmeetable)
    if by_latency is not None:
        found.append(by_latency)
    return found


def _why(winner: SignalNeed | None, seen: _Observed, load: _Load) -> str:
    """The winning signal's reason, with what the arrivals and the speed it used came from."""
    if winner is None:
        return "no usable signal"
    why = winner.reason
    growth, rise = load.implied.growth, load.implied.rise
    if growth is not None and winner.signal == "arrival":
        why = f"{why} (completions at saturation + the backlog's growth, {growth:+.3g} req/s)"
    if rise > 0 and winner.signal in ("arrival", "queue"):
        why = (
            f"{why} (the arrivals rose within the last scrape interval: +{rise:.3g} "
            "req/s extrapolated to now)"
        )
    if abs(seen.speed - 1.0) >= 0.05:
        why = f"{why}; replicas measured at {seen.speed:.2f}x the profile's speed"
    signals = seen.inputs.signals
    assert signals is not None
    unchased = over_slo(seen.inputs, signals)
    if unchased is not None and over_slo(seen.inputs, signals, seen.unmeetable) is None:
        where = ", ".join(dict.fromkeys(o.variant for o in seen.unreachable or ()))
        why = f"{why}; {unchased[1]} not chased: out of reach on {where} at any count"
    return why


def _count(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    params: ScalerParams,
    found: list[SignalNeed],
    load: _Load,
    why: str,
    over: tuple[float, str] | None,
    window: tuple[tuple[float, int], ...],
    idle_since: float | None,
) -> tuple[int, str]:
    """(replicas, why): the count the needs ask for, within the bounds. A scale-up beyond the
    deadband is at once; a scale-down waits for ``scaleDownDelaySeconds`` of observations, goes
    to the highest need of that window, and never while a goal the replicas can meet is
    missed (``over``)."""
    current = inputs.desired_replicas
    raw = max((n.replicas for n in found), default=current)
    floor = _floor(inputs, load.active)
    upper = inputs.max_replicas
    target = min(max(raw, floor), upper)
    delay = inputs.scale_down_delay_seconds
    window_since = state.window_since if state.window_since is not None else now
    replicas = current
    if (
        inputs.scale_to_zero
        and idle_since is not None
        and (current == 0 or now - idle_since >= delay)
    ):
        replicas = 0
        why = (
            "idle at zero" if current == 0 else f"idle for {now - idle_since:.0f} s: scale to zero"
        )
    elif current == 0 and load.active:
        replicas = max(target, 1)
        why = f"activation: {why}"
    elif target > current:
        if current == 0 or any(n.low > current for n in found):
            replicas = target
        else:
            band = max(params.tolerance, deadband(load.arrival, params))
            why = f"{why} (within the {band:.0%} deadband of {current}: keep)"
    elif target < current:
        lowest = min(max(window[0][1], floor), upper)
        observed = now - window_since
        if over is not None:
            # (a count that the other signals find too high while requests miss the SLO is
            # a model that is wrong for now: a new request mix, a slower replica)
            why = f"{why} (scale-down waits: {over[1]})"
        elif observed < delay:
            why = f"{why} (scale-down waits: metrics observed for {observed:.0f} of {delay:g} s)"
        elif lowest >= current:
            why = (
                f"{why} (scale-down waits: {window[0][1]} needed with {params.tolerance:.0%} "
                f"headroom within the last {delay:g} s)"
            )
        elif current - lowest < params.tolerance * current - _EPS:
            why = f"{why} (scale-down to {lowest} is within {params.tolerance:.0%}: keep)"
        else:
            replicas = lowest
            why = (
                f"{why}; {window[0][1]} needed with {params.tolerance:.0%} headroom over the "
                f"last {delay:g} s"
            )
    bounded = min(max(replicas, 0 if replicas == 0 and inputs.scale_to_zero else floor), upper)
    if bounded != replicas:
        why = f"{why} (bounds [{floor}, {upper}])"
        replicas = bounded
    return replicas, why


def recommend(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> Recommendation:
    """The replicas to run now, the reason, and the state to pass to the next call.

    Never raises on what the metrics say: NaN, infinite, negative and absurdly large values
    are missing or set aside for one sample (see ``_implausible``)."""
    inputs = _sanitised_inputs(inputs)
    if not math.isfinite(now):
        return _hold(inputs, state, state.last_change_at or 0.0, "the clock is not a number")
    missing = _missing_reason(inputs, now, params)
    if inputs.manual_replicas is not None:
        return _manual(inputs, state, now, available=missing is None, params=params)
    if missing is not None:
        return _hold(inputs, state, now, missing, params)
    seen = _observe(inputs, state, now, params)
    if isinstance(seen, Recommendation):
        return seen
    inputs, signals = seen.inputs, seen.inputs.signals
    assert signals is not None
    load = _load(seen, state, now, params)
    found = _signal_needs(seen, load, state, now, params)
    winner = max(found, key=lambda n: n.replicas) if found else None
    # (the goals over the SLO that the replicas can meet: what holds a scale-down)
    over = over_slo(inputs, signals, seen.unmeetable)
    current = inputs.desired_replicas
    keep = max((n.high for n in found), default=current)
    window = _slide(
        state.window, now, min(keep, inputs.max_replicas + 1), inputs.scale_down_delay_seconds
    )
    idle_since = (
        None if load.active else (state.idle_since if state.idle_since is not None else now)
    )
    replicas, why = _count(
        inputs, state, now, params, found, load, _why(winner, seen, load), over, window, idle_since
    )
    if replicas > current:
        reason = f"scale up {current} -> {replicas}: {why}"
    elif replicas < current:
        reason = f"scale down {current} -> {replicas}: {why}"
    else:
        reason = f"keep {current}: {why}"
    implied = load.implied
    return Recommendation(
        replicas=replicas,
        reason=reason,
        mode="auto",
        metrics_available=True,
        needs={n.signal: n.replicas for n in found},
        signal=winner.signal if winner is not None else None,
        keeps=keep if found else None,
        state=ScalerState(
            last_replicas=replicas,
            last_change_at=now if replicas != current else state.last_change_at,
            last_scale_up_at=now if replicas > current else state.last_scale_up_at,
            starting=_starting_after(inputs, state, now, replicas, params),
            window=window,
            window_since=state.window_since if state.window_since is not None else now,
            idle_since=idle_since,
            metrics_missing_since=None,
            backlog_at=now if load.backlogged else state.backlog_at,
            backlog_probe=implied.probe,
            backlog_growth=implied.growth,
            segment=implied.segment,
            running_seen=seen.running_seen,
            sizes=seen.sizes,
            interval_rate=implied.estimate,
            interval_rise=implied.rise,
            rates=load.rates,
            crowds=load.crowds,
            mixes=load.mixes,
            speed=seen.speed,
            speed_at=now,
            work=seen.profile_work if seen.profile_work is not None else state.work,
            suspect_at=None,
            out_of_reach=seen.unreachable,
        ),
    )


# --------------------------------------------------------------------------------------------
# A whole service: its placements and the metrics of every tier it runs in


@dataclass(frozen=True)
class TierSample:
    """One tier's (or one Prometheus's) sample of a service's metrics."""

    signals: Signals
    mean_prompt_tokens: float | None = None
    mean_output_tokens: float | None = None


@dataclass(frozen=True)
class ServiceSample:
    """A service's metrics over all its tiers: what the recommender reads."""

    signals: Signals
    mean_prompt_tokens: float | None
    mean_output_tokens: float | None


def _sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _min(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _max(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def combine_samples(samples: list[TierSample]) -> ServiceSample | None:
    """Samples of the same service from several tiers' Prometheus servers, as one.

    Queue depth, running requests, arrival, token and completion rates add up; the p95
    latencies are the worst
    tier's (a p95 of the union lies between the tiers' and the SLO must hold everywhere); the
    mean token counts are weighted by each tier's arrival rate; the observation time is the
    oldest, so a stale tier makes the whole sample stale.
    """
    if not samples:
        return None
    signals = [s.signals for s in samples]
    times = [s.observed_at for s in signals]

    def weighted(values: list[float | None]) -> float | None:
        pairs = [
            (v, s.arrival_rate or 0.0)
            for v, s in zip(values, signals, strict=True)
            if v is not None
        ]
        if not pairs:
            return None
        total = sum(w for _, w in pairs)
        if total <= 0:
            return sum(v for v, _ in pairs) / len(pairs)
        return sum(v * w for v, w in pairs) / total

    return ServiceSample(
        signals=Signals(
            queue_depth=_sum([s.queue_depth for s in signals]),
            running=_sum([s.running for s in signals]),
            arrival_rate=_sum([s.arrival_rate for s in signals]),
            p95_latency_ms=_max([s.p95_latency_ms for s in signals]),
            ttft_p95_ms=_max([s.ttft_p95_ms for s in signals]),
            observed_at=None if None in times else min(t for t in times if t is not None),
            prompt_tokens_rate=_sum([s.prompt_tokens_rate for s in signals]),
            output_tokens_rate=_sum([s.output_tokens_rate for s in signals]),
            mean_running=_sum([s.mean_running for s in signals]),
            recent_completion_rate=_sum([s.recent_completion_rate for s in signals]),
            scraped_at=_min([s.scraped_at for s in signals]),
        ),
        mean_prompt_tokens=weighted([s.mean_prompt_tokens for s in samples]),
        mean_output_tokens=weighted([s.mean_output_tokens for s in samples]),
    )


@dataclass(frozen=True)
class RunningPlacement:
    """Where a service runs now: ``replicas`` of ``variant`` in ``tier``."""

    tier: str
    variant: str
    replicas: int


def primary_variant(
    service: InferenceService, placements: list[RunningPlacement]
) -> tuple[Variant, str | None]:
    """The variant (and its tier) whose start-up time and round trip size the service: the one
    running the most replicas (its capacity is blended with the others', see
    ``blended_capacity``); with no placement (at zero, or not placed yet) the first allowed
    variant, with no tier.
    """
    by_name = {v.name: v for v in service.spec.variants}
    running = [p for p in placements if p.variant in by_name]
    if running:
        top = max(running, key=lambda p: p.replicas)
        return by_name[top.variant], top.tier
    allowed = service.spec.placement.allowed_variants
    named = [v for v in service.spec.variants if not allowed or v.name in allowed]
    return (named or service.spec.variants)[0], None


def blended_capacity(
    service: InferenceService, placements: list[RunningPlacement]
) -> tuple[int, float, float] | None:
    """(max concurrency, prefill and decode tokens/s) per replica of a service spread over
    variants of different speeds: the replica-weighted means of its placements' profiles, so
    the replicas serve together what the whole pool of them does (an edge replica at a
    tenth of a datacentre GPU's speed no longer makes every replica count as one). The next
    replica is planned as the mix's average, since placement may put it on either. None when
    the service runs one variant (or none)."""
    by_name = {v.name: v for v in service.spec.variants}
    weights: dict[str, int] = {}
    for p in placements:
        if p.variant in by_name and p.replicas > 0:
            weights[p.variant] = weights.get(p.variant, 0) + p.replicas
    if len(weights) < 2:
        return None
    total = sum(weights.values())

    def mean(figure: Callable[[Variant], float]) -> float:
        return sum(figure(by_name[name]) * n for name, n in weights.items()) / total

    return (
        max(1, math.floor(mean(lambda v: v.capacity.max_concurrency) + _EPS)),
        mean(lambda v: v.capacity.prefill_tokens_per_second),
        mean(lambda v: v.capacity.decode_tokens_per_second),
    )


def service_scaling_inputs(
    service: InferenceService,
    placements: list[RunningPlacement],
    tier_latency_ms: Mapping[str, Mapping[str, float]],
    *,
    ready_replicas: int,
    sample: ServiceSample | None,
) -> ScalingInputs:
    """The recommender's inputs for a whole service: the replicas over all its placements,
    at the capacity of their variants' mix (``blended_capacity``), with the start-up time of
    the primary variant and the round trip of its tier from the service's user regions taken
    off the latency budget."""
    variant, tier = primary_variant(service, placements)
    regions = service.spec.placement.user_regions

    def rtt_of(tier: str | None) -> float:
        if tier is None or tier not in tier_latency_ms:
            return 0.0
        try:
            return weighted_rtt_ms(regions, tier_latency_ms[tier])
        except KeyError:
            return 0.0

    by_name = {v.name: v for v in service.spec.variants}
    serving = tuple(
        ServingProfile.of(by_name[name], where, rtt_of(where))
        for name, where in dict.fromkeys(
            (p.variant, p.tier) for p in placements if p.replicas > 0 and p.variant in by_name
        )
    )
    inputs = scaling_inputs(
        service,
        variant,
        desired_replicas=sum(p.replicas for p in placements),
        ready_replicas=ready_replicas,
        signals=None if sample is None else sample.signals,
        mean_prompt_tokens=None if sample is None else sample.mean_prompt_tokens,
        mean_output_tokens=None if sample is None else sample.mean_output_tokens,
        rtt_ms=rtt_of(tier),
    )
    inputs = replace(inputs, serving=serving)
    blend = blended_capacity(service, placements)
    if blend is None:
        return inputs
    concurrency, prefill, decode = blend
    return replace(
        inputs,
        max_concurrency=concurrency,
        prefill_tokens_per_second=prefill,
        decode_tokens_per_second=decode,
    )
