"""The load twin's model (pure): load sources, simulated model-server pools, vLLM metrics.

The twin (:mod:`tierra.lab.twin`) stands in for the model servers of pods that kwok runs as
nothing. This module holds everything it decides; the twin only feeds it the cluster's
Deployments and InferenceServices and the clock, and serves what it computes.

* **Pools.** Each Deployment the operator wrote (``app.kubernetes.io/managed-by=tierra``) is one
  :class:`~tierra.core.queue_model.ReplicaPool` of the variant named in its
  ``tierra.dev/variant`` label, profiled from the owning InferenceService. Its replica count
  follows the Deployment's ``status.readyReplicas``. kwok marks a pod Ready almost at once, so
  the *pool* models the model server's start-up: a pod that turns Ready at ``t`` serves from
  ``t + startupSeconds`` (times ``startup_factor``; 0 serves at once). A pool that exists when
  the twin first sees it starts with its ready replicas already serving.
* **Load.** Per InferenceService, one source: Poisson arrivals at a rate with fixed token
  sizes (seeded, reproducible), or a replay of a request trace, optionally time-compressed.
* **Routing.** An arrival goes to the serving pool with the fewest requests (waiting and
  running) per serving replica, as a gateway balancing by outstanding requests does: pools of
  equal speed share in proportion to their replicas, and a slow one (an edge replica) is sent
  fewer. When none serves, arrivals are split by the replicas starting (smooth weighted round
  robin); when none is even starting, all go to the first
  pool and queue there. A service with no pool (scaled to zero) has its arrivals held by a
  *gateway*, as an activator in front of a scaled-to-zero service would, up to
  ``GATEWAY_CAPACITY`` (beyond that they are dropped, counted); the gateway exports
  ``tierra_gateway_requests_waiting`` per service, the signal that wakes it, and hands the held
  requests to the first pool that appears.
* **Metrics.** Per pool (one series set per Deployment, not per pod), vLLM's names and types,
  labelled like a ``kubernetes_sd`` scrape with ``labelmap`` of the pod labels would label them
  (``tierra.dev/tier`` -> ``tierra_dev_tier``), plus ``namespace``, ``pod`` (the Deployment's
  name), ``model_name`` and ``cluster``. Latencies are the server's (no network round trip),
  as vLLM measures them; token counters grow per iteration, as vLLM's do (a request in its
  prefill has counted its share of its prompt so far), and completions when a request ends.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from tierra.api.inference_service import InferenceService, Variant
from tierra.core.metrics_presets import prometheus_label_name
from tierra.core.queue_model import CompletedRequest, ReplicaPool, ReplicaProfile
from tierra.core.render import (
    LABEL_MANAGED_BY,
    LABEL_SERVICE,
    LABEL_SERVICE_NAMESPACE,
    LABEL_TIER,
    LABEL_VARIANT,
    MANAGED_BY,
)
from tierra.lab.simulation import nearest_rank

ServiceKey = tuple[str, str]
"""(namespace, name) of an InferenceService."""
PoolKey = tuple[str, str, str]
"""(cluster, namespace, name) of a Deployment."""

# vLLM's bucket bounds (seconds).
E2E_LATENCY_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip

RECENT_WINDOW_SECONDS = 60.0
"""Window of the recent latencies behind the p95 in :meth:`TwinModel.state`."""


# --------------------------------------------------------------------------------- arrivals


@dataclass(frozen=True, slots=True)
class Arrival:
    time: float
    prompt_tokens: int
    output_tokens: int


class LoadSource(Protocol):
    def arrivals_until(self, t: float) -> Iterator[Arrival]:
        """The arrivals after the previous call and at or before ``t``, in time order."""
        ...

    def describe(self) -> dict[str, Any]: ...


class PoissonLoad:
    """Poisson arrivals at ``rate`` per second from ``start``, each of fixed token sizes."""

    def __init__(
        self,
        rate: float,
        prompt_tokens: int,
        output_tokens: int,
        rng: random.Random,
        start: float = 0.0,
    ) -> None:
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError("rate must be finite and not negative")
        if prompt_tokens < 0 or output_tokens < 0:
            raise ValueError("token counts must not be negative")
        self.rate = rate
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self._rng = rng
        self._next = start + rng.expovariate(rate) if rate > 0 else math.inf

    def arrivals_until(self, t: float) -> Iterator[Arrival]:
        while self._next <= t:
            yield Arrival(self._next, self.prompt_tokens, self.output_tokens)
            self._next += self._rng.expovariate(self.rate)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "poisson",
            "rate": self.rate,
            "promptTokens": self.prompt_tokens,
            "outputTokens": self.output_tokens,
        }


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a trace: seconds since the trace's first request, and its tokens."""

    offset: float
    prompt_tokens: int
    output_tokens: int


def _timestamp(text: str) -> datetime:
    """``2023-11-16 18:15:46.6805900``: fractions beyond microseconds are cut."""
    head, dot, fraction = text.strip().partition(".")
    return datetime.fromisoformat(f"{head}.{fraction[:6]}" if dot else head)


def parse_trace(lines: Iterable[str]) -> list[TraceRequest]:
    """The Azure LLM inference trace CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``), sorted
    by time, offsets from the first request."""
    rows: list[tuple[datetime, int, int]] = []
    for number, line in enumerate(lines):
        if not line.strip() or (number == 0 and line.upper().startswith("TIMESTAMP")):
            continue
        stamp, context, generated = line.rsplit(",", 2)
        rows.append((_timestamp(stamp), int(context), int(generated)))
    if not rows:
        return []
    rows.sort(key=lambda row: row[0])
    first = rows[0][0]
    return [
        TraceRequest((stamp - first).total_seconds(), context, generated)
        for stamp, context, generated in rows
    ]


class TraceLoad:
    """A trace replayed from ``start``: its request at offset ``o`` (from ``skip`` seconds into
    the trace) arrives at ``start + (o - skip) / speed``; ``loop`` replays it again and again."""

    def __init__(
        self,
        requests: list[TraceRequest],
        speed: float = 1.0,
        start: float = 0.0,
        skip: float = 0.0,
        loop: bool = False,
    ) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.requests = [r for r in requests if r.offset >= skip]
        self.speed = speed
        self.start = start
        self.skip = skip
        self.loop = loop
        self._index = 0
        self._round = 0
        span = self.requests[-1].offset - skip if self.requests else 0.0
        # A looped trace repeats after its span plus the mean gap, so rounds do not collide.
        gap = span / max(len(self.requests) - 1, 1)
        self._period = span + gap
        self.sent = 0

    def _time(self, request: TraceRequest) -> float:
        return self.start + (self._round * self._period + request.offset - self.skip) / self.speed

    @property
    def finished(self) -> bool:
        return not self.requests or (not self.loop and self._index >= len(self.requests))

    def arrivals_until(self, t: float) -> Iterator[Arrival]:
        while not self.finished:
            request = self.requests[self._index]
            at = self._time(request)
            if at > t:
                return
            self._index += 1
            self.sent += 1
            if self._index == len(self.requests) and self.loop and self._period > 0:
                self._index = 0
                self._round += 1
            yield Arrival(at, request.prompt_tokens, request.output_tokens)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "trace",
            "requests": len(self.requests),
            "speed": self.speed,
            "skip": self.skip,
            "loop": self.loop,
            "sent": self.sent,
            "finished": self.finished,
        }


class WeightedRoundRobin:
    """Smooth weighted round robin: over any window, picks follow the weights closely."""

    def __init__(self) -> None:
        self._current: dict[PoolKey, float] = {}

    def pick(self, weights: Mapping[PoolKey, float]) -> PoolKey:
        total = sum(weights.values())
        if not weights or total <= 0:
            raise ValueError("weights must have a positive total")
        for key in list(self._current):
            if key not in weights:
                del self._current[key]
        best: PoolKey | None = None
        for key in sorted(weights):
            self._current[key] = self._current.get(key, 0.0) + weights[key]
            if best is None or self._current[key] > self._current[best]:
                best = key
        assert best is not None
        self._current[best] -= total
        return best


def _least_loaded(pools: Mapping[PoolKey, ReplicaPool], t: float) -> PoolKey | None:
    """The serving pool with the fewest requests (waiting and running) per serving replica at
    ``t``, as a gateway balancing by outstanding requests (Envoy's least-request) picks: a
    slow pool (an edge replica) keeps more requests and is sent fewer. None when no pool
    serves."""
    best: tuple[float, PoolKey] | None = None
    for key in sorted(pools):
        pool = pools[key]
        if pool.ready_replicas <= 0:
            continue
        pool.run_to(t)
        load = (pool.waiting + pool.running) / pool.ready_replicas
        if best is None or load < best[0]:
            best = (load, key)
    return None if best is None else best[1]


def routing_weights(pools: Mapping[PoolKey, ReplicaPool]) -> dict[PoolKey, float]:
    """Serving replicas; else replicas asked for (starting); else all to the first pool."""
    if not pools:
        return {}
    serving = {key: float(pool.ready_replicas) for key, pool in pools.items()}
    if any(serving.values()):
        return {key: w for key, w in serving.items() if w > 0}
    desired = {key: float(pool.desired_replicas) for key, pool in pools.items()}
    if any(desired.values()):
        return {key: w for key, w in desired.items() if w > 0}
    return {min(pools): 1.0}


# ---------------------------------------------------------------------------- deployments


@dataclass(frozen=True)
class DeploymentView:
    """What the twin needs of one tierra Deployment in a member cluster."""

    cluster: str
    namespace: str
    name: str
    service: ServiceKey
    variant: str
    tier: str
    pod_labels: Mapping[str, str]
    ready_replicas: int

    @property
    def key(self) -> PoolKey:
        return (self.cluster, self.namespace, self.name)


def deployment_view(cluster: str, obj: Mapping[str, Any]) -> DeploymentView | None:
    """The view of a Deployment object, or None when it is not a tierra model server."""
    meta = obj.get("metadata", {})
    labels: Mapping[str, str] = meta.get("labels") or {}
    template = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    pod_labels = dict(template or labels)  # the pods' labels; the Deployment's as a fallback
    if pod_labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        return None
    service = pod_labels.get(LABEL_SERVICE)
    variant = pod_labels.get(LABEL_VARIANT)
    if not service or not variant:
        return None
    namespace = meta.get("namespace", "")
    return DeploymentView(
        cluster=cluster,
        namespace=namespace,
        name=meta["name"],
        service=(pod_labels.get(LABEL_SERVICE_NAMESPACE) or namespace, service),
        variant=variant,
        tier=pod_labels.get(LABEL_TIER, ""),
        pod_labels=pod_labels,
        ready_replicas=int((obj.get("status") or {}).get("readyReplicas") or 0),
    )


def series_labels(view: DeploymentView, model_name: str) -> dict[str, str]:
    """The labels a pod's series get from ``labelmap`` of its pod labels, plus ``namespace``,
    ``pod`` (here the Deployment), ``model_name`` (vLLM's own) and ``cluster``."""
    labels = {prometheus_label_name(k): v for k, v in sorted(view.pod_labels.items())}
    labels.update(
        namespace=view.namespace, pod=view.name, model_name=model_name, cluster=view.cluster
    )
    return labels


# ------------------------------------------------------------------------------- the model


class Histogram:
    """A cumulative histogram like a Prometheus client's: bucket counts, sum, count."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._counts = [0] * len(bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self._counts[index] += 1
                break

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= bound), ending with (inf, count)."""
        out, running = [], 0
        for bound, count in zip(self.bounds, self._counts, strict=True):
            running += count
            out.append((bound, running))
        out.append((math.inf, self.count))
        return out


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 1), or None for no values."""
    ordered = sorted(values)
    return nearest_rank(ordered, q) if ordered else None


@dataclass
class PoolRecord:
    """One Deployment's simulated pool and the counters its metrics show."""

    view: DeploymentView
    profile: ReplicaProfile
    pool: ReplicaPool
    model_name: str
    labels: dict[str, str]
    success: int = 0
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_LATENCY_BUCKETS))
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    recent: deque[tuple[float, float, float]] = field(default_factory=deque)
    """(finish time, e2e latency, ttft) of the requests of the last ``RECENT_WINDOW_SECONDS``."""

    def record(self, done: CompletedRequest) -> None:
        latency = done.finish_time - done.arrival
        ttft = done.first_token_time - done.arrival
        self.success += 1
        self.e2e.observe(latency)
        self.ttft.observe(ttft)
        self.recent.append((done.finish_time, latency, ttft))

    def tokens(self) -> tuple[int, int]:
        """(prompt, generation) tokens processed so far, counted per iteration as vLLM does:
        they grow while requests run, so a window can hold tokens and no completion (the
        token ratios of the presets are then +Inf or NaN, as on a real server)."""
        prompt, output = self.pool.tokens_processed()
        return int(prompt), int(output)

    def prune(self, now: float) -> None:
        while self.recent and self.recent[0][0] < now - RECENT_WINDOW_SECONDS:
            self.recent.popleft()


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class HistogramSeries:
    labels: dict[str, str]
    buckets: list[tuple[float, int]]
    """Cumulative, ending with ``(inf, count)``."""
    sum: float


@dataclass(frozen=True)
class Family:
    """One metric family; ``name`` is the exposed name (counters with ``_total``)."""

    name: str
    kind: Literal["gauge", "counter", "histogram"]
    documentation: str
    series: list[Series] = field(default_factory=list)
    histograms: list[HistogramSeries] = field(default_factory=list)


def find_variant(service: InferenceService, name: str) -> Variant | None:
    return next((v for v in service.spec.variants if v.name == name), None)


GATEWAY_CAPACITY = 10_000
GATEWAY_METRIC = "tierra_gateway_requests_waiting"


class TwinModel:
    """All pools and load sources; driven by :meth:`sync` and :meth:`step` at growing times."""

    def __init__(self, seed: int = 0, startup_factor: float = 1.0) -> None:
        if startup_factor < 0:
            raise ValueError("startup_factor must not be negative")
        self.seed = seed
        self.startup_factor = startup_factor
        self.now = 0.0
        self.pools: dict[PoolKey, PoolRecord] = {}
        self.loads: dict[ServiceKey, LoadSource] = {}
        self.dropped: dict[ServiceKey, int] = {}
        self.held: dict[ServiceKey, list[Arrival]] = {}
        self._router: dict[ServiceKey, WeightedRoundRobin] = {}
        self._next_id = 0
        self._synced = False

    # ---- load

    def rng(self, service: ServiceKey) -> random.Random:
        """A generator seeded by the model's seed and the service, so runs repeat."""
        return random.Random(f"{self.seed}/{service[0]}/{service[1]}")

    def set_poisson(
        self, service: ServiceKey, rate: float, prompt_tokens: int, output_tokens: int
    ) -> PoissonLoad:
        """From now on, Poisson arrivals at ``rate`` (0 stops the load)."""
        source = PoissonLoad(rate, prompt_tokens, output_tokens, self.rng(service), self.now)
        self.loads[service] = source
        return source

    def set_trace(
        self,
        service: ServiceKey,
        requests: list[TraceRequest],
        speed: float = 1.0,
        skip: float = 0.0,
        loop: bool = False,
    ) -> TraceLoad:
        source = TraceLoad(requests, speed=speed, start=self.now, skip=skip, loop=loop)
        self.loads[service] = source
        return source

    def clear_load(self, service: ServiceKey) -> None:
        self.loads.pop(service, None)

    # ---- cluster state

    def _profile(self, variant: Variant) -> ReplicaProfile:
        profile = ReplicaProfile.from_variant(variant)
        if self.startup_factor == 1.0:
            return profile
        return ReplicaProfile(
            max_concurrency=profile.max_concurrency,
            prefill_tokens_per_second=profile.prefill_tokens_per_second,
            decode_tokens_per_second=profile.decode_tokens_per_second,
            startup_seconds=profile.startup_seconds * self.startup_factor,
        )

    def sync(
        self,
        now: float,
        deployments: Iterable[DeploymentView],
        services: Mapping[ServiceKey, InferenceService],
    ) -> None:
        """Match the pools to the cluster at ``now``: arrivals up to ``now`` go to the pools
        that existed before, then pools appear, follow their ready replicas, or disappear.
        A Deployment whose service or variant is unknown has no pool (yet). The replicas of
        the first sync serve at once (the fleet was running before the twin); replicas that
        turn Ready later serve after their variant's start-up."""
        self._arrive(now)
        wanted: dict[PoolKey, tuple[DeploymentView, InferenceService, Variant]] = {}
        for view in deployments:
            service = services.get(view.service)
            variant = find_variant(service, view.variant) if service is not None else None
            if service is not None and variant is not None:
                wanted[view.key] = (view, service, variant)
        for key in [k for k in self.pools if k not in wanted]:
            del self.pools[key]
        for key, (view, service, variant) in wanted.items():
            profile = self._profile(variant)
            model_name = service.spec.model.name
            record = self.pools.get(key)
            if record is None or record.profile != profile:
                # Pods already Ready when the twin starts (or re-profiles) serve at once;
                # later ones start up first.
                serving = view.ready_replicas if record is not None or not self._synced else 0
                pool = ReplicaPool(profile, replicas=serving, now=now)
                if serving != view.ready_replicas:
                    pool.set_replicas(now, view.ready_replicas)
                labels = series_labels(view, model_name)
                self.pools[key] = PoolRecord(view, profile, pool, model_name, labels)
                continue
            if record.view.pod_labels != view.pod_labels or record.model_name != model_name:
                record.labels = series_labels(view, model_name)
                record.model_name = model_name
            record.view = view
            if record.pool.desired_replicas != view.ready_replicas:
                record.pool.set_replicas(now, view.ready_replicas)
        self._synced = True
        self.now = now

    def step(self, now: float) -> None:
        """Arrivals up to ``now``, then every pool runs to ``now``."""
        self._arrive(now)
        for record in self.pools.values():
            for done in record.pool.advance(max(now, record.pool.now)):
                record.record(done)
            record.prune(now)
        self.now = max(self.now, now)

    def _arrive(self, now: float) -> None:
        by_service: dict[ServiceKey, dict[PoolKey, ReplicaPool]] = {}
        for key, record in self.pools.items():
            by_service.setdefault(record.view.service, {})[key] = record.pool
        for service, source in self.loads.items():
            pools = by_service.get(service, {})
            router = self._router.setdefault(service, WeightedRoundRobin())
            arrivals = list(source.arrivals_until(now))
            held = self.held.get(service)
            if pools and held:
                arrivals = held + arrivals  # the gateway hands over what it held
                del self.held[service]
            for arrival in arrivals:
                if not pools:
                    waiting = self.held.setdefault(service, [])
                    if len(waiting) < GATEWAY_CAPACITY:
                        waiting.append(arrival)
                    else:
                        self.dropped[service] = self.dropped.get(service, 0) + 1
                    continue
                pool = pools[
                    _least_loaded(pools, arrival.time) or router.pick(routing_weights(pools))
                ]
                self._next_id += 1
                pool.submit(
                    max(arrival.time, pool.now),
                    self._next_id,
                    arrival.prompt_tokens,
                    arrival.output_tokens,
                )

    # ---- observation

    def state(self) -> dict[str, Any]:
        """JSON-ready state of every pool and load source."""
        pools = []
        for (cluster, namespace, name), record in sorted(self.pools.items()):
            pool = record.pool
            latencies = [latency for _, latency, _ in record.recent]
            ttfts = [ttft for _, _, ttft in record.recent]
            pools.append(
                {
                    "cluster": cluster,
                    "namespace": namespace,
                    "deployment": name,
                    "service": f"{record.view.service[0]}/{record.view.service[1]}",
                    "tier": record.view.tier,
                    "variant": record.view.variant,
                    "waiting": pool.waiting,
                    "running": pool.running,
                    "ready": pool.ready_replicas,
                    "starting": pool.starting_replicas,
                    "draining": pool.draining_replicas,
                    "desired": pool.desired_replicas,
                    "kubernetesReady": record.view.ready_replicas,
                    "completed": record.success,
                    "p95LatencySeconds": percentile(latencies, 0.95),
                    "p95TtftSeconds": percentile(ttfts, 0.95),
                }
            )
        loads = {
            f"{namespace}/{name}": {
                **source.describe(),
                "dropped": self.dropped.get((namespace, name), 0),
                "held": len(self.held.get((namespace, name), [])),
            }
            for (namespace, name), source in sorted(self.loads.items())
        }
        return {"time": self.now, "pools": pools, "loads": loads}

    def families(self) -> list[Family]:
        """The vLLM metric families of every pool, in a stable order."""
        records = [self.pools[key] for key in sorted(self.pools)]
        waiting = Family("vllm:num_requests_waiting", "gauge", "Number of requests waiting.")
        running = Family("vllm:num_requests_running", "gauge", "Number of requests running.")
        success = Family(
            "vllm:request_success_total", "counter", "Count of successfully processed requests."
        )
        prompt = Family(
            "vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed."
        )
        generation = Family(
            "vllm:generation_tokens_total", "counter", "Number of generation tokens processed."
        )
        e2e = Family(
            "vllm:e2e_request_latency_seconds",
            "histogram",
            "Histogram of end to end request latency in seconds.",
        )
        ttft = Family(
            "vllm:time_to_first_token_seconds",
            "histogram",
            "Histogram of time to first token in seconds.",
        )
        for record in records:
            labels = record.labels
            waiting.series.append(Series(labels, float(record.pool.waiting)))
            running.series.append(Series(labels, float(record.pool.running)))
            success.series.append(Series(labels, float(record.success)))
            prompt_tokens, generation_tokens = record.tokens()
            prompt.series.append(Series(labels, float(prompt_tokens)))
            generation.series.append(Series(labels, float(generation_tokens)))
            e2e.histograms.append(HistogramSeries(labels, record.e2e.cumulative(), record.e2e.sum))
            ttft.histograms.append(
                HistogramSeries(labels, record.ttft.cumulative(), record.ttft.sum)
            )
        gateway = Family(
            GATEWAY_METRIC, "gauge", "Requests a gateway holds for a service with no replicas."
        )
        for namespace, name in sorted(self.loads):
            gateway.series.append(
                Series(
                    {
                        prometheus_label_name(LABEL_SERVICE_NAMESPACE): namespace,
                        prometheus_label_name(LABEL_SERVICE): name,
                    },
                    float(len(self.held.get((namespace, name), []))),
                )
            )
        return [waiting, running, success, prompt, generation, e2e, ttft, gateway]
