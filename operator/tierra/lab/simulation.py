"""Offline what-if simulation: replay a request trace against a service under scaling policies.

Pure: trace records, the service and the tiers go in; one ``RunResult`` per policy run comes
out. The service runs through the operator's own core, not a re-implementation:

* **Placement** (``core.placement.place``) chooses the tier, pool and variant. The simulation
  assumes every pool is big enough for ``maxReplicas`` of every variant (it has no cluster to
  observe: each pool gets ``maxReplicas x`` the largest variant's units of capacity, nothing
  allocated), so the choice is made on the filters and the objective alone. The simulator runs
  one placement group: a service whose placement spreads over several tiers or variants
  (``placement.minTiers`` > 1) is rejected with a clear error. The variant's capacity and the
  tier's traffic-weighted RTT define the ``ReplicaProfile``; cost is accelerator-hours (replica
  seconds, starting and draining ones included, x accelerators per replica / 3600) x the pool's
  ``pricePerAcceleratorHour``. Every scale change of the ``tierra`` policy is placed again,
  keeping the current placement, as the operator does.
* **Recommender** (``core.autoscale.recommend`` via ``scaling_inputs``) decides the ``tierra``
  policy's replicas every 15 s on what Prometheus would give: waiting and running gauges at
  the scrape, the arrival rate as completions over the last minute
  (``rate(request_success_total[1m])``), the p95 latency and TTFT of the requests completed in
  the last minute (server side, as the runtime's histograms), and the mean prompt and output
  tokens over the last minute (the per-iteration token counters' ratio to the completions,
  as the vLLM preset's ``rate(...[1m])`` ratio).
  Early in the trace the windows hold what has been seen so far. Prometheus scrapes
  ``PolicyContext.scrape_offset`` seconds into each interval, and every policy decides
  ``scrape_lag`` seconds after a scrape on what it showed (the replicas ready and asked for
  as of the decision): a trace's bursts fall anywhere between two scrapes, and a decision acts
  on metrics that old, as it does on a cluster.
* **Queue model** (``core.queue_model.ReplicaPool``): processor-sharing replicas with their
  startup delay; see that module for its assumptions.

Every run starts with a warm fleet: the adaptive policies begin with the replicas the
recommender's arrival signal sizes for the busiest of the trace's first five minutes (at the
trace's mean request size), ready at time 0: the trace is a cut from a running service.

A request is *within the SLO* when its client-side latency (RTT included) is at most
``slo.latencyP95Ms`` and, when ``slo.ttftP95Ms`` is set, its TTFT at most that.
Percentiles are nearest-rank over every request of the trace; a request that never
completes counts as outside the SLO with infinite latency.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tierra.api.inference_service import InferenceService, Variant
from tierra.api.tier import Pool, Tier
from tierra.core.accelerators import units_per_replica
from tierra.core.autoscale import (
    DEFAULT_PARAMS,
    ScalerParams,
    ScalerState,
    Signals,
    arrival_need,
    recommend,
    scaling_inputs,
)
from tierra.core.placement import (
    CurrentPlacement,
    PlacementDecision,
    PoolCapacity,
    TierView,
    place,
    weighted_rtt_ms,
)
from tierra.core.queue_model import CompletedRequest, ReplicaPool, ReplicaProfile
from tierra.core.slo_reach import ServingProfile
from tierra.lab.baselines import (
    HoldPolicy,
    HpaPolicy,
    KedaPolicy,
    Observation,
    OraclePolicy,
    Policy,
    PolicyContext,
    SharedNeeds,
    SloTarget,
    StaticPeakPolicy,
    StaticPolicy,
    TraceRequest,
)

__all__ = [
    "DEFAULT_SWEEP",
    "POLICY_NAMES",
    "JsonRow",
    "Observation",
    "Policy",
    "PolicyContext",
    "PolicySpec",
    "RunResult",
    "ServiceSetup",
    "SimulationError",
    "TierraPolicy",
    "TimelinePoint",
    "TraceRequest",
    "build_policies",
    "parse_policies",
    "run_policy",
    "scrape_timing",
    "settled_after",
    "setup_service",
    "simulate",
    "sized_for",
]

INTERVAL_SECONDS = 15.0
"""Scrape and decision period of every policy (Prometheus scrape, HPA sync)."""
OPERATOR_SAMPLE_SECONDS = 5.0
"""How often the operator samples a service's metrics (``--metrics-interval``'s default): it
acts on a scrape up to this long after it."""
RATE_WINDOW_SECONDS = 60.0
"""Window of the arrival rate, the latency histograms and the mean prompt / output tokens
(the presets' ``1m`` at 15 s scrapes; ``PolicyContext.rate_window`` sets another)."""
WARM_MINUTES = 5
"""The adaptive policies start sized for the busiest of the trace's first minutes: the trace
is a cut from a service that was running, whose first minute can be partial. A burst that
begins within them is partly known to every adaptive policy from the start (``policy_context``'s
``warm_minutes`` = 1 sizes the start on the first minute alone)."""
DEFAULT_SWEEP: tuple[float, ...] = (
    0.5, 0.75, 1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2, 2.25, 2.5, 2.75, 3, 3.5, 4,
    5, 6, 8, 12, 16, 32,
)  # fmt: skip
"""Per-replica concurrency targets the HPA and KEDA baselines are swept over: steps of 0.1
where attainment changes fastest, so the cheapest setting at an attainment is not an
artefact of the grid."""
HOLD_LOOKBACKS: tuple[float, ...] = (60, 120, 300, 600, 900, 1200, 1800, 2700, 3600)
"""Lookbacks (seconds) the hindsight hold policy is swept over."""
COLD_START_SECONDS = 300.0
"""The first minutes of a run, reported apart: a policy that learns from what it observes has
no history of the traffic yet (``RunResult.cold_start_misses``)."""
SETTLED_SECONDS = 600.0
"""From when a run also counts apart (``settled_after``): a policy that learns from what it
observes has seen ten minutes of the traffic, and the replicas it asked for then serve."""
SIMULATION_EPOCH = 1767571200.0
"""The wall-clock time of a simulation's second 0 (Monday 2026-01-05 00:00 UTC), at which the
schedules of a simulated service (``spec.scaling.schedules``) are read."""

POLICY_NAMES = ("tierra", "hpa", "keda", "static", "static-peak", "oracle", "hold")
BASELINES = ("static", "hpa", "keda")
"""The reactive and fixed baselines Tierra's cost is compared with at equal attainment."""

JsonRow = dict[str, Any]


class SimulationError(ValueError):
    """The service cannot be simulated as given (no placement, several placement groups...)."""


# --------------------------------------------------------------------------------------------
# Placement


@dataclass(frozen=True)
class ServiceSetup:
    """Where placement put the service, and what that makes one replica."""

    service: InferenceService
    tier: Tier
    pool: Pool
    variant: Variant
    rtt_ms: float
    profile: ReplicaProfile
    """What the spec says one replica does (what the recommender is told)."""
    views: tuple[TierView, ...]
    decision: PlacementDecision
    true_profile: ReplicaProfile | None = None
    """What a replica really does, when the spec's profile is off (None: the spec is exact)."""
    profile_error: float = 0.0
    """How far off the spec is: its throughputs are ``1 + profile_error`` times the real ones
    (+0.3: 30 % optimistic, -0.3: 30 % pessimistic)."""

    @property
    def served_profile(self) -> ReplicaProfile:
        """The profile the simulated replicas run at."""
        return self.true_profile or self.profile

    @property
    def name(self) -> str:
        return self.service.metadata.name

    @property
    def accelerators_per_replica(self) -> int:
        return units_per_replica(self.variant)

    @property
    def price_per_replica_hour(self) -> float:
        return self.pool.price_per_accelerator_hour * self.accelerators_per_replica

    @property
    def slo(self) -> SloTarget:
        slo = self.service.spec.slo
        return SloTarget(
            latency_seconds=slo.latency_p95_ms / 1000.0,
            ttft_seconds=None if slo.ttft_p95_ms is None else slo.ttft_p95_ms / 1000.0,
        )


def ample_views(service: InferenceService, tiers: Sequence[Tier]) -> tuple[TierView, ...]:
    """Reachable views of the tiers whose every pool holds ``maxReplicas`` of the service's
    largest variant, with nothing allocated."""
    units = max((units_per_replica(v) for v in service.spec.variants), default=1)
    capacity = max(1, service.spec.scaling.max_replicas) * units
    return tuple(
        TierView(
            tier=tier,
            reachable=True,
            pools={
                p.name: PoolCapacity(
                    tier=tier.metadata.name, pool=p.name, capacity=capacity, allocated=0
                )
                for p in tier.spec.pools
            },
        )
        for tier in tiers
    )


def setup_service(
    service: InferenceService, tiers: Sequence[Tier], profile_error: float = 0.0
) -> ServiceSetup:
    """Place the service (at ``maxReplicas``) and derive its replica profile; with
    ``profile_error`` the replicas really run at ``1 / (1 + profile_error)`` of the spec's
    prefill and decode throughputs (the spec is that far off)."""
    if not profile_error > -1.0:
        raise SimulationError("profile_error must be above -1 (the spec's throughput > 0)")
    views = ample_views(service, tiers)
    decision = place(service, max(1, service.spec.scaling.max_replicas), views)
    name = service.metadata.name
    if not decision.placements:
        reasons = "; ".join(f"{r.tier}/{r.pool}: {r.reason}" for r in decision.rejected[:5])
        raise SimulationError(f"{name}: no tier can run it ({reasons or 'no tiers'})")
    if len(decision.placements) > 1:
        where = ", ".join("/".join(p.key) for p in decision.placements)
        raise SimulationError(
            f"{name}: placement spreads it over {where}; the simulator runs one placement "
            "group (set placement.minTiers: 1 in the what-if copy)"
        )
    chosen = decision.placements[0]
    tier = next(v.tier for v in views if v.name == chosen.tier)
    pool = next(p for p in tier.spec.pools if p.name == chosen.pool)
    variant = next(v for v in service.spec.variants if v.name == chosen.variant)
    rtt_ms = weighted_rtt_ms(service.spec.placement.user_regions, tier.spec.latency_ms)
    profile = ReplicaProfile.from_variant(variant, rtt_seconds=rtt_ms / 1000.0)
    true_profile = None
    if profile_error:
        true_profile = replace(
            profile,
            prefill_tokens_per_second=profile.prefill_tokens_per_second / (1 + profile_error),
            decode_tokens_per_second=profile.decode_tokens_per_second / (1 + profile_error),
        )
    return ServiceSetup(
        service=service,
        tier=tier,
        pool=pool,
        variant=variant,
        rtt_ms=rtt_ms,
        profile=profile,
        views=views,
        decision=decision,
        true_profile=true_profile,
        profile_error=profile_error,
    )


def sized_for(setup: ServiceSetup, rate: float, prompt: float, output: float) -> int:
    """Replicas the recommender's arrival signal plans for ``rate`` requests/s of this size."""
    inputs = scaling_inputs(
        setup.service,
        setup.variant,
        desired_replicas=0,
        ready_replicas=0,
        signals=None,
        mean_prompt_tokens=prompt,
        mean_output_tokens=output,
        rtt_ms=setup.rtt_ms,
    )
    need = arrival_need(inputs, rate)
    scaling = setup.service.spec.scaling
    floor = max(1, scaling.min_replicas)
    return min(max(need.replicas if need else floor, floor), max(1, scaling.max_replicas))


def policy_context(
    setup: ServiceSetup,
    trace: Sequence[TraceRequest],
    interval: float = INTERVAL_SECONDS,
    warm_minutes: int = WARM_MINUTES,
) -> PolicyContext:
    """What the policies know up front: bounds, SLO, the warm start (sized for the busiest of
    the first ``warm_minutes``) and the peak sizing."""
    scaling = setup.service.spec.scaling
    ordered = sorted(trace, key=lambda r: r.arrival)
    mean_prompt = sum(r.prompt_tokens for r in ordered) / max(1, len(ordered))
    mean_output = sum(r.output_tokens for r in ordered) / max(1, len(ordered))
    counts = [0] * (math.floor(ordered[-1].arrival / RATE_WINDOW_SECONDS) + 1 if ordered else 1)
    for r in ordered:
        counts[int(r.arrival // RATE_WINDOW_SECONDS)] += 1
    first_rate = max(counts[: max(1, warm_minutes)]) / RATE_WINDOW_SECONDS
    warm = sized_for(setup, first_rate, mean_prompt, mean_output)
    peak_rate = max(counts) / RATE_WINDOW_SECONDS
    return PolicyContext(
        trace=ordered,
        profile=setup.served_profile,  # (only the clairvoyant oracle simulates with it)
        slo=setup.slo,
        min_replicas=scaling.min_replicas,
        max_replicas=scaling.max_replicas,
        scale_to_zero=scaling.scale_to_zero,
        interval=interval,
        warm_replicas=warm,
        peak_replicas=sized_for(setup, peak_rate, mean_prompt, mean_output),
    )


def scrape_timing(rng: random.Random, interval: float = INTERVAL_SECONDS) -> dict[str, float]:
    """A draw of ``PolicyContext``'s ``scrape_offset`` (uniform within the scrape interval: a
    trace's events fall anywhere between two scrapes) and ``scrape_lag`` (uniform within the
    operator's sampling interval), to 0.1 s. A benchmark that scrapes in step with a
    generator's round-numbered bursts sees each one whole in one scrape, which no cluster
    does."""
    offset = round(rng.uniform(0.0, interval), 1) % interval
    lag = round(rng.uniform(0.0, min(OPERATOR_SAMPLE_SECONDS, interval)), 1)
    return {"scrape_offset": offset, "scrape_lag": lag}


# --------------------------------------------------------------------------------------------
# The Tierra policy: the operator's recommender and placement


class TierraPolicy:
    """The operator's recommender (``core.autoscale.recommend``) on the observed signals, each
    scale change placed again through ``core.placement.place``."""

    name = "tierra"
    target = None

    def __init__(self, setup: ServiceSetup, params: ScalerParams = DEFAULT_PARAMS) -> None:
        self.setup = setup
        self.params = params.for_service(setup.service)
        """The recommender's tunables (an ablation changes one), with the service's own."""
        self.state = ScalerState()
        self.reasons: list[tuple[float, str]] = []
        """(time, reason) of every change, for explanations."""
        self.cancelled = 0
        """Replicas the scale-downs removed while still starting (``Recommendation.cancels``)."""

    def start(self, context: PolicyContext) -> int:
        self.state = ScalerState()
        self.reasons = []
        self.cancelled = 0
        return context.warm_replicas

    def decide(self, observation: Observation) -> int:
        setup = self.setup
        signals = Signals(
            queue_depth=observation.waiting,
            running=observation.running,
            arrival_rate=observation.arrival_rate,
            p95_latency_ms=observation.p95_latency_ms,
            ttft_p95_ms=observation.ttft_p95_ms,
            observed_at=observation.time,
            scraped_at=observation.scraped_at,
            prompt_tokens_rate=observation.prompt_tokens_rate,
            output_tokens_rate=observation.output_tokens_rate,
            mean_running=observation.mean_running,
            recent_completion_rate=observation.recent_completion_rate,
        )
        inputs = scaling_inputs(
            setup.service,
            setup.variant,
            desired_replicas=observation.desired_replicas,
            ready_replicas=observation.ready_replicas,
            signals=signals,
            mean_prompt_tokens=observation.mean_prompt_tokens,
            mean_output_tokens=observation.mean_output_tokens,
            rtt_ms=setup.rtt_ms,
            now=SIMULATION_EPOCH + observation.time,
        )
        # (the one variant it runs, checked for goals out of its reach, as the operator does)
        inputs = replace(
            inputs,
            serving=(ServingProfile.of(setup.variant, setup.tier.metadata.name, setup.rtt_ms),),
        )
        rec = recommend(inputs, self.state, observation.time, self.params)
        self.state = rec.state
        self.cancelled += rec.cancels
        replicas = rec.replicas
        if replicas != observation.desired_replicas:
            self.reasons.append((observation.time, rec.reason))
            if replicas > 0:
                replicas = self._placed(observation.desired_replicas, replicas)
        return replicas

    def _placed(self, current: int, replicas: int) -> int:
        """The replicas placement gives the chosen group (it keeps where the service runs)."""
        setup = self.setup
        here = CurrentPlacement(
            tier=setup.tier.metadata.name,
            pool=setup.pool.name,
            variant=setup.variant.name,
            replicas=current,
        )
        decision = place(setup.service, replicas, setup.views, (here,) if current else ())
        return sum(p.replicas for p in decision.placements if p.key == here_key(here))


def here_key(current: CurrentPlacement) -> tuple[str, str, str]:
    return (current.tier, current.pool, current.variant)


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    """One decision interval of a run, for plots."""

    time: float
    arrivals_per_second: float
    """Requests arriving in the interval ending at ``time``, per second."""
    desired_replicas: int
    ready_replicas: int
    p95_latency_ms: float | None
    """Client-side p95 latency of the requests completed in the last minute."""


@dataclass(frozen=True)
class RunResult:
    """One policy run over the trace."""

    policy: str
    target: float | None
    service: str
    placement: str
    requests: int
    completed: int
    within_slo: float
    p95_latency_ms: float
    p99_latency_ms: float
    ttft_p95_ms: float
    accelerator_hours: float
    cost: float
    scale_events: int
    mean_replicas: float
    peak_replicas: int
    slo_latency_ms: float
    slo_ttft_ms: float | None
    timeline: tuple[TimelinePoint, ...] = field(default=(), repr=False, compare=False)
    window: float | None = None
    """The baseline's scale-down window when it is not its default."""
    cold_start_misses: int = 0
    """Requests outside the SLO among those arriving in the first ``COLD_START_SECONDS``,
    before a policy that learns from what it observes has seen anything."""
    settled_from: float | None = None
    """The time from which ``settled_within_slo`` and ``settled_cost`` count (None: not
    asked for, or the trace ended before it)."""
    settled_within_slo: float | None = None
    """The share within the SLO of the requests arriving from ``settled_from`` on."""
    settled_cost: float | None = None
    """The cost of the replicas from ``settled_from`` on."""

    @property
    def label(self) -> str:
        label = self.policy if self.target is None else f"{self.policy}:{self.target:g}"
        return label if self.window is None else f"{label}/w{self.window:g}"

    def to_json(self) -> JsonRow:
        """The JSON object of the run (everything but the timeline)."""
        return {
            "policy": self.policy,
            "target": self.target,
            "window": self.window,
            "service": self.service,
            "placement": self.placement,
            "requests": self.requests,
            "completed": self.completed,
            "within_slo": round(self.within_slo, 6),
            "p95_latency_ms": _rounded(self.p95_latency_ms),
            "p99_latency_ms": _rounded(self.p99_latency_ms),
            "ttft_p95_ms": _rounded(self.ttft_p95_ms),
            "accelerator_hours": round(self.accelerator_hours, 4),
            "cost": round(self.cost, 4),
            "scale_events": self.scale_events,
            "mean_replicas": round(self.mean_replicas, 3),
            "peak_replicas": self.peak_replicas,
            "slo_latency_ms": self.slo_latency_ms,
            "slo_ttft_ms": self.slo_ttft_ms,
            "cold_start_misses": self.cold_start_misses,
        }


def _rounded(value: float) -> float | None:
    return round(value, 1) if math.isfinite(value) else None


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile of sorted values (NaN for none)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --------------------------------------------------------------------------------------------
# The run


class _Windows:
    """The sliding windows a Prometheus query over the runtime's metrics would see: the
    latencies of the requests completed in the last minute, and the counters (completions,
    prompt and generated tokens counted per iteration, running-seconds) sampled at every
    scrape, whose increases over a window are what ``rate()`` and ``avg_over_time`` give."""

    def __init__(self, window: float = RATE_WINDOW_SECONDS, sparse: bool = False) -> None:
        self.window = window
        """The rate and latency window (and the request sizes')."""
        self.sparse = sparse
        """The window holds fewer than two scrapes: every windowed value is missing."""
        self.recent: deque[CompletedRequest] = deque()
        self.samples: deque[tuple[float, int, float, float, float]] = deque()
        """(time, completions, prompt tokens, output tokens, running-seconds) per scrape."""
        self.completions = 0

    def add(self, done: Iterable[CompletedRequest]) -> None:
        for d in done:
            self.recent.append(d)
            self.completions += 1

    def _at(self, when: float) -> tuple[float, int, float, float, float]:
        """The oldest kept sample at or after ``when`` (the start of a window)."""
        for sample in self.samples:
            if sample[0] >= when - 1e-9:
                return sample
        return self.samples[-1]

    def observe(self, now: float, pool: ReplicaPool) -> tuple[Observation, float | None]:
        prompt, output = pool.tokens_processed()
        last = self.samples[-1] if self.samples else None
        self.samples.append((now, self.completions, prompt, output, pool.running_seconds))
        while self.samples and self.samples[0][0] < now - self.window - 1e-9:
            self.samples.popleft()
        while self.recent and self.recent[0].finish_time <= now - self.window:
            self.recent.popleft()
        minute = self._at(now - self.window)
        span = now - minute[0]
        if span <= 0:  # the first scrape: the counters' increase since the trace began
            minute, span = (0.0, 0, 0.0, 0.0, 0.0), now
        long = self._at(now - self.window)
        if long[0] >= now:
            long = (0.0, 0, 0.0, 0.0, 0.0)
        completed = self.completions - long[1]
        latency = sorted(d.finish_time - d.arrival for d in self.recent)
        ttft = sorted(d.first_token_time - d.arrival for d in self.recent)
        rtt = pool.profile.rtt_seconds
        observation = Observation(
            time=now,
            waiting=pool.waiting,
            running=pool.running,
            ready_replicas=pool.ready_replicas,
            desired_replicas=pool.desired_replicas,
            arrival_rate=(self.completions - minute[1]) / span if span > 0 else None,
            p95_latency_ms=nearest_rank(latency, 0.95) * 1000 if latency else None,
            ttft_p95_ms=nearest_rank(ttft, 0.95) * 1000 if ttft else None,
            # rate(prompt_tokens_total[1m]) / rate(request_success_total[1m]): with per-
            # iteration counters, +Inf or NaN in a window with tokens and no completion
            mean_prompt_tokens=_ratio(prompt - long[2], completed),
            mean_output_tokens=_ratio(output - long[3], completed),
            prompt_tokens_rate=(prompt - minute[2]) / span if span > 0 else None,
            output_tokens_rate=(output - minute[3]) / span if span > 0 else None,
            mean_running=(pool.running_seconds - minute[4]) / span if span > 0 else None,
            recent_completion_rate=(self.completions - last[1]) / (now - last[0])
            if last is not None and now > last[0]
            else None,
        )
        client_p95 = (nearest_rank(latency, 0.95) + rtt) * 1000 if latency else None
        if self.sparse:
            observation = replace(
                observation,
                arrival_rate=None,
                p95_latency_ms=None,
                ttft_p95_ms=None,
                mean_prompt_tokens=None,
                mean_output_tokens=None,
                prompt_tokens_rate=None,
                output_tokens_rate=None,
                mean_running=None,
                recent_completion_rate=None,
            )
        return observation, client_p95


def _ratio(numerator: float, denominator: float) -> float | None:
    """PromQL's division: x/0 is +Inf (or NaN for 0/0, which Prometheus reports as no
    value)."""
    if denominator > 0:
        return numerator / denominator
    return math.inf if numerator > 0 else None


def settled_after(setup: ServiceSetup) -> float:
    """When a run has settled: ``SETTLED_SECONDS``, or two start-ups when that is longer (the
    replicas a policy asks for on first seeing a burst serve a start-up later)."""
    return max(SETTLED_SECONDS, 2.0 * setup.profile.startup_seconds)


def run_policy(
    setup: ServiceSetup,
    context: PolicyContext,
    policy: Policy,
    keep_timeline: bool = True,
    settled: float | None = None,
) -> RunResult:
    """Replay ``context.trace`` with ``policy`` deciding every ``context.interval`` seconds,
    each time ``context.scrape_lag`` after a scrape (``context.scrape_offset`` into the
    interval); with ``settled`` (seconds), the share and cost from the first decision at or
    after it on are counted apart as well."""
    trace = context.trace
    settled_at: tuple[float, float] | None = None  # (time, replica-seconds then)
    initial = policy.start(context)
    pool = ReplicaPool(setup.served_profile, replicas=initial, now=0.0)
    windows = _Windows(context.rate_window, sparse=context.rate_window < 2 * context.interval)
    done: list[CompletedRequest] = []
    timeline: list[TimelinePoint] = []
    events = 0
    peak = initial
    end = trace[-1].arrival if trace else 0.0
    step = context.interval
    offset = min(max(context.scrape_offset, 0.0), step)
    lag = min(max(context.scrape_lag, 0.0), step)
    i, tick = 0, 0

    def serve_until(t: float) -> int:
        nonlocal i, done
        arrived = 0
        while i < len(trace) and trace[i].arrival <= t:
            r = trace[i]
            pool.submit(r.arrival, i, r.prompt_tokens, r.output_tokens)
            i += 1
            arrived += 1
        completed = pool.advance(t)
        done += completed
        windows.add(completed)
        return arrived

    while True:
        tick += 1
        # (the decision reads the scrape ``lag`` before it; what happens in between is in the
        # next scrape)
        scraped = offset + tick * step
        now = scraped + lag
        arrived = serve_until(scraped)
        observation, client_p95 = windows.observe(scraped, pool)
        if lag > 0:
            arrived += serve_until(now)
            observation = replace(
                observation,
                time=now,
                scraped_at=scraped,
                ready_replicas=pool.ready_replicas,
                desired_replicas=pool.desired_replicas,
            )
        if settled is not None and settled_at is None and now >= settled:
            settled_at = (now, pool.replica_seconds)
        replicas = max(0, policy.decide(observation))
        if replicas != pool.desired_replicas:
            pool.set_replicas(now, replicas)
            events += 1
            peak = max(peak, replicas)
        if keep_timeline:
            timeline.append(
                TimelinePoint(
                    time=now,
                    arrivals_per_second=arrived / step,
                    desired_replicas=pool.desired_replicas,
                    ready_replicas=pool.ready_replicas,
                    p95_latency_ms=client_p95,
                )
            )
        if now >= end and i >= len(trace) and pool.waiting + pool.running == 0:
            break
        if now > end + 3600.0:  # a policy that never serves what is left: stop, count misses
            break
    done += pool.run_until_idle()
    result = _result(setup, context, policy, done, pool, events, peak, tuple(timeline))
    return _settled(result, setup, context, done, pool, settled_at)


def _settled(
    result: RunResult,
    setup: ServiceSetup,
    context: PolicyContext,
    done: Sequence[CompletedRequest],
    pool: ReplicaPool,
    settled_at: tuple[float, float] | None,
) -> RunResult:
    """``result`` with the share and cost from ``settled_at`` on (as it is without one, or
    without a request after it)."""
    if settled_at is None:
        return result
    since, replica_seconds = settled_at
    requests = sum(1 for r in context.trace if r.arrival >= since)
    if requests == 0:
        return result
    # (a request never served is a miss too)
    within = sum(1 for d in done if d.arrival >= since and context.slo.met(d))
    hours = (pool.replica_seconds - replica_seconds) * setup.accelerators_per_replica / 3600.0
    return replace(
        result,
        settled_from=since,
        settled_within_slo=within / requests,
        settled_cost=hours * setup.pool.price_per_accelerator_hour,
    )


def _result(
    setup: ServiceSetup,
    context: PolicyContext,
    policy: Policy,
    done: Sequence[CompletedRequest],
    pool: ReplicaPool,
    events: int,
    peak: int,
    timeline: tuple[TimelinePoint, ...],
) -> RunResult:
    requests = len(context.trace)
    slo = context.slo
    missing = requests - len(done)
    latencies = sorted([d.latency for d in done] + [math.inf] * missing)
    ttfts = sorted([d.ttft for d in done] + [math.inf] * missing)
    within = sum(1 for d in done if slo.met(d))
    # (a request never served is a miss too)
    early_met = sum(1 for d in done if d.arrival < COLD_START_SECONDS and slo.met(d))
    early = sum(1 for r in context.trace if r.arrival < COLD_START_SECONDS)
    replica_seconds = pool.replica_seconds
    accelerator_hours = replica_seconds * setup.accelerators_per_replica / 3600.0
    duration = max(pool.now, 1e-9)
    return RunResult(
        policy=policy.name,
        target=policy.target,
        window=getattr(policy, "window", None),
        service=setup.name,
        placement="/".join(setup.decision.placements[0].key),
        requests=requests,
        completed=len(done),
        within_slo=within / requests if requests else 1.0,
        p95_latency_ms=nearest_rank(latencies, 0.95) * 1000,
        p99_latency_ms=nearest_rank(latencies, 0.99) * 1000,
        ttft_p95_ms=nearest_rank(ttfts, 0.95) * 1000,
        accelerator_hours=accelerator_hours,
        cost=accelerator_hours * setup.pool.price_per_accelerator_hour,
        scale_events=events,
        mean_replicas=replica_seconds / duration,
        peak_replicas=peak,
        slo_latency_ms=slo.latency_seconds * 1000,
        slo_ttft_ms=None if slo.ttft_seconds is None else slo.ttft_seconds * 1000,
        timeline=timeline,
        cold_start_misses=early - early_met,
    )


# --------------------------------------------------------------------------------------------
# Policies by name


@dataclass(frozen=True)
class PolicySpec:
    """A policy asked for on the command line: a name, and a setting for the swept baselines
    (None: the whole sweep): a per-replica target for hpa / keda, a replica count for static,
    an attainment for the oracle, a lookback in seconds for hold."""

    name: str
    target: float | None = None


def parse_policies(text: str) -> list[PolicySpec]:
    """``"tierra,hpa,keda:8,static:4,oracle:0.99"`` -> specs; ``hpa`` / ``keda`` / ``static``
    without a setting mean the sweep, ``oracle`` alone aims at full attainment."""
    specs: list[PolicySpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, value = item.partition(":")
        if name not in POLICY_NAMES:
            raise ValueError(f"unknown policy {name!r} (choose from {', '.join(POLICY_NAMES)})")
        target: float | None = None
        if value:
            if name not in ("hpa", "keda", "static", "oracle", "hold"):
                raise ValueError(f"policy {name!r} takes no target")
            try:
                target = float(value)
            except ValueError:
                raise ValueError(f"target of {name!r} must be a number, got {value!r}") from None
            if not target > 0:
                raise ValueError(f"target of {name!r} must be positive")
            if name == "oracle" and target > 1:
                raise ValueError("the oracle's attainment is a share in (0, 1]")
            if name == "static" and target != int(target):
                raise ValueError("static takes a whole number of replicas")
        specs.append(PolicySpec(name, target))
    if not specs:
        raise ValueError("no policy given")
    return specs


def build_policies(
    specs: Sequence[PolicySpec],
    setup: ServiceSetup,
    sweep: Sequence[float] = DEFAULT_SWEEP,
    windows: Sequence[float | None] = (None,),
) -> list[Policy]:
    """Fresh policy objects for the specs, the baselines expanded over ``sweep`` (targets),
    ``windows`` (HPA/KEDA scale-down windows, None for the default; ``"service"`` style
    callers pass the service's ``scaleDownDelaySeconds``) and ``1..maxReplicas`` (static)."""
    policies: list[Policy] = []
    top = max(1, setup.service.spec.scaling.max_replicas)
    for spec in specs:
        targets = [spec.target] if spec.target is not None else list(sweep)
        if spec.name == "tierra":
            policies.append(TierraPolicy(setup))
        elif spec.name in ("hpa", "keda"):
            for window in windows:
                down = {} if window is None else {"down_window": window}
                for t in targets:
                    policies.append(
                        HpaPolicy(t, **down) if spec.name == "hpa" else KedaPolicy(t, **down)
                    )
        elif spec.name == "static":
            counts = [int(spec.target)] if spec.target is not None else range(1, top + 1)
            policies += [StaticPolicy(n) for n in counts]
        elif spec.name == "static-peak":
            policies.append(StaticPeakPolicy())
        elif spec.name == "oracle":
            policies.append(OraclePolicy(attainment=spec.target or 1.0))
        elif spec.name == "hold":
            shared = SharedNeeds()
            lookbacks = [spec.target] if spec.target is not None else list(HOLD_LOOKBACKS)
            policies += [HoldPolicy(lookback, shared) for lookback in lookbacks]
        else:  # pragma: no cover - parse_policies rejects it
            raise ValueError(f"unknown policy {spec.name!r}")
    return policies


def simulate(
    service: InferenceService,
    tiers: Sequence[Tier],
    trace: Sequence[TraceRequest],
    specs: Sequence[PolicySpec],
    sweep: Sequence[float] = DEFAULT_SWEEP,
    keep_timeline: bool = True,
    profile_error: float = 0.0,
    windows: Sequence[float | None] = (None,),
    scrape_lag: float = 0.0,
) -> list[RunResult]:
    """Every policy run of the specs over the trace, in the order asked, each deciding
    ``scrape_lag`` seconds after every scrape (``PolicyContext.scrape_lag``)."""
    setup = setup_service(service, tiers, profile_error)
    context = replace(policy_context(setup, trace), scrape_lag=scrape_lag)
    return [
        run_policy(setup, context, policy, keep_timeline)
        for policy in build_policies(specs, setup, sweep, windows)
    ]


def cheapest_reaching(
    results: Iterable[RunResult], policy: str, attainment: float
) -> RunResult | None:
    """The cheapest run of ``policy`` whose share within the SLO is at least ``attainment``."""
    reaching = [r for r in results if r.policy == policy and r.within_slo >= attainment - 1e-12]
    return min(reaching, key=lambda r: (r.cost, r.label)) if reaching else None


def comparison(results: Sequence[RunResult]) -> Mapping[str, RunResult | None]:
    """Per baseline, the run to compare Tierra with: its cheapest setting reaching Tierra's
    attainment (None when no setting does, or Tierra did not run)."""
    tierra = next((r for r in results if r.policy == "tierra"), None)
    if tierra is None:
        return {}
    return {
        name: cheapest_reaching(results, name, tierra.within_slo)
        for name in BASELINES
        if any(r.policy == name for r in results)
    }
