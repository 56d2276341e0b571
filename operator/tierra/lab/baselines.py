"""The policies the simulator compares Tierra with, and the interface every policy implements.

A policy is a small object the simulator asks, every ``interval`` seconds, for the replicas to
run given an ``Observation`` (what a 15 s scrape of the runtime's metrics would show). It starts
with ``start(context)``, which returns the replicas that are ready when the trace begins (the
fleet is already running). The simulator, not the policy, owns the replica pool: a policy only
says a number.

The baselines follow the published algorithms of the systems they stand for, each on the same
metric, *per-replica concurrency* (requests running + waiting per replica):

* ``HpaPolicy``: the Kubernetes HorizontalPodAutoscaler (autoscaling/v2) on a Pods metric.
  Every 15 s: ``ratio = average metric over ready pods / target``; no change when
  ``|ratio - 1| <= 10 %``; otherwise ``desired = ceil(ratio x ready pods)``. When scaling up
  with pods that are not ready yet, those count as using 0 and the ratio is recomputed; if the
  recomputed ratio is within tolerance or points down, nothing changes. Behaviour defaults:
  scale-up is not stabilised and is limited to ``max(2 x current, current + 4)`` per 15 s;
  scale-down uses the max of the recommendations of the last 300 s (stabilisation window) and
  is limited to 100 % per 15 s. Bounds ``[max(1, minReplicas), maxReplicas]``.
* ``KedaPolicy``: a KEDA ScaledObject with a Prometheus trigger whose query is the service's
  total running + waiting, metric type AverageValue with ``threshold`` = the target per
  replica. KEDA polls every 30 s for activation: at 0 replicas a value above
  ``activationThreshold`` activates the service (1 replica, or ``minReplicaCount``); with
  ``minReplicaCount`` 0 the service goes back to 0 once the value has not been above the
  activation threshold for ``cooldownPeriod`` (300 s). Between 1 and N the HPA KEDA creates
  does the scaling: for an AverageValue External metric the usage ratio is ``value / (target x
  current)`` (same 10 % tolerance) and ``desired = ceil(value / target)``, with the HPA
  behaviour above. The HPA reads the metric on each of its 15 s syncs (KEDA's default, no
  metric caching).
* ``StaticPeakPolicy``: a constant fleet sized, as a capacity planner would, for the trace's
  busiest minute (its arrival rate and the trace's mean request) with the same M/M/c headroom
  the Tierra recommender plans with.
* ``OraclePolicy``: clairvoyant; see its docstring for how its schedule is computed and why
  it is the cost floor at full attainment.
* ``HoldPolicy``: causal, with perfect hindsight: it knows exactly what every past moment
  needed (the oracle's needs) but nothing of the future, and holds the largest need of the
  last ``lookback`` seconds. Swept over the lookback, it bounds what a reactive policy that
  holds a peak could do with a perfect measurement of the load.

Every policy runs on the variant and pool placement chose, so the comparison isolates the
scaling decisions.
"""

from __future__ import annotations

import copy
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from tierra.core.queue_model import CompletedRequest, ReplicaPool, ReplicaProfile

SYNC_SECONDS = 15.0
"""HPA sync period (``--horizontal-pod-autoscaler-sync-period`` default)."""
HPA_TOLERANCE = 0.1
"""HPA tolerance (``--horizontal-pod-autoscaler-tolerance`` default)."""
HPA_DOWN_STABILISATION_SECONDS = 300.0
"""Default ``behavior.scaleDown.stabilizationWindowSeconds``."""
KEDA_POLL_SECONDS = 30.0
"""KEDA ``pollingInterval`` default."""
KEDA_COOLDOWN_SECONDS = 300.0
"""KEDA ``cooldownPeriod`` default."""


# --------------------------------------------------------------------------------------------
# The interface


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a trace: arrival (seconds from the trace's start) and its token counts."""

    arrival: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Observation:
    """What the metrics show at ``time``: the runtime's gauges, 1-minute windows and counts."""

    time: float
    waiting: int
    running: int
    ready_replicas: int
    desired_replicas: int
    """Replicas asked for (ready and starting)."""
    arrival_rate: float | None
    """Completions per second over the last minute (``rate(request_success_total[1m])``)."""
    p95_latency_ms: float | None
    """Server-side p95 end-to-end latency of the requests completed in the last minute."""
    ttft_p95_ms: float | None
    mean_prompt_tokens: float | None
    """Mean of the requests completed recently (the runtime's token counters over a window)."""
    mean_output_tokens: float | None
    prompt_tokens_rate: float | None = None
    """Prompt tokens processed per second over the last minute, counted per iteration."""
    output_tokens_rate: float | None = None
    """Generated tokens per second over the last minute, counted per iteration."""
    mean_running: float | None = None
    """Requests running, averaged over the last minute."""
    recent_completion_rate: float | None = None
    """Completions per second since the previous scrape (``irate``)."""
    scraped_at: float | None = None
    """When the runtime was last scraped (None: at ``time``): the gauges, windows and p95s
    are as of then; the replicas ready and asked for as of ``time`` (the apiserver's)."""

    @property
    def concurrency(self) -> int:
        """Running + waiting: what the baselines' metric sums."""
        return self.waiting + self.running

    @property
    def starting_replicas(self) -> int:
        return max(0, self.desired_replicas - self.ready_replicas)


@dataclass(frozen=True)
class SloTarget:
    """The SLO a request is judged against, as the client sees it (RTT included)."""

    latency_seconds: float
    ttft_seconds: float | None = None

    def met(self, done: CompletedRequest) -> bool:
        if done.latency > self.latency_seconds:
            return False
        return self.ttft_seconds is None or done.ttft <= self.ttft_seconds

    def feasible(self, profile: ReplicaProfile, prompt_tokens: int, output_tokens: int) -> bool:
        """Whether the request can meet the SLO at all: alone on a ready replica."""
        latency = profile.work_seconds(prompt_tokens, output_tokens) + profile.rtt_seconds
        if latency > self.latency_seconds:
            return False
        ttft = profile.prefill_seconds(prompt_tokens) + profile.rtt_seconds
        return self.ttft_seconds is None or ttft <= self.ttft_seconds

    def reachable_share(self, profile: ReplicaProfile, requests: Sequence[TraceRequest]) -> float:
        """The share of ``requests`` that can meet the SLO at all (``feasible``): the most any
        policy reaches, however many replicas it runs (1 without requests)."""
        if not requests:
            return 1.0
        reachable = sum(self.feasible(profile, r.prompt_tokens, r.output_tokens) for r in requests)
        return reachable / len(requests)


@dataclass(frozen=True)
class PolicyContext:
    """What a policy may know before the trace starts."""

    trace: Sequence[TraceRequest]
    """The whole trace: only the oracle and static-peak look at it."""
    profile: ReplicaProfile
    slo: SloTarget
    min_replicas: int
    max_replicas: int
    scale_to_zero: bool
    interval: float
    """Seconds between decisions (the scrape and sync period)."""
    warm_replicas: int
    """Replicas running when the trace starts, for the adaptive policies."""
    peak_replicas: int
    """The replicas a planner would provision for the trace's busiest minute."""
    rate_window: float = 60.0
    """Window of the rates, request sizes and p95 latencies the policies observe (the
    presets' ``rate()`` window). One shorter than two scrapes (``interval``) holds fewer than
    two samples, and Prometheus answers nothing for it."""
    scrape_offset: float = 0.0
    """When Prometheus scrapes within each ``interval`` (seconds after its multiples, less
    than ``interval``): a trace's bursts begin anywhere between two scrapes, and the first
    scrape after one shows part of it."""
    scrape_lag: float = 0.0
    """Seconds from each scrape to the decision that reads it (less than ``interval``): the
    operator samples on a timer of its own, so what it acts on is that old."""


class Policy(Protocol):
    """A scaling policy: ``start`` once, then ``decide`` every ``context.interval`` seconds."""

    @property
    def name(self) -> str: ...

    @property
    def target(self) -> float | None:
        """The swept setting (per-replica concurrency target), None when not swept."""
        ...

    def start(self, context: PolicyContext) -> int:
        """The replicas ready when the trace starts."""
        ...

    def decide(self, observation: Observation) -> int:
        """The replicas to run from ``observation.time`` on."""
        ...


# --------------------------------------------------------------------------------------------
# HPA v2


@dataclass
class HpaBehaviour:
    """The HPA controller's recommendation history and rate limits (autoscaling/v2 defaults)."""

    min_replicas: int
    max_replicas: int
    down_window: float = HPA_DOWN_STABILISATION_SECONDS
    up_window: float = 0.0

    def __post_init__(self) -> None:
        self._history: deque[tuple[float, int]] = deque()

    def warm(self, now: float, replicas: int) -> None:
        """Start as an HPA that has recommended ``replicas`` for its whole window up to ``now``."""
        self._history.clear()
        self._history.append((now, replicas))

    def apply(self, now: float, current: int, proposal: int) -> int:
        """Stabilise ``proposal`` and limit the rate of change from ``current``."""
        self._history.append((now, proposal))
        horizon = max(self.down_window, self.up_window)
        while self._history and self._history[0][0] < now - horizon:
            self._history.popleft()
        down = max(n for t, n in self._history if t >= now - self.down_window)
        up = min(n for t, n in self._history if t >= now - self.up_window)
        desired = current
        if current < up:
            desired = up
        elif current > down:
            desired = down
        if desired > current:  # default scale-up policies: 100 % or 4 pods per 15 s, the max
            desired = min(desired, max(2 * current, current + 4))
        return min(max(desired, self.min_replicas), self.max_replicas)


def hpa_pods_proposal(
    current: int, ready: int, starting: int, total: float, target: float, tolerance: float
) -> int:
    """The HPA's raw recommendation for a Pods metric whose per-pod values sum to ``total``.

    The average is over ready pods; when that says scale up and pods are still starting, they
    count as using 0 and the ratio is recomputed (no change if it then is within tolerance or
    says scale down).
    """
    if ready <= 0:
        return current
    ratio = total / ready / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    if ratio > 1.0 and starting > 0:
        pods = ready + starting
        ratio = total / pods / target
        if ratio <= 1.0 + tolerance:
            return current
        return math.ceil(ratio * pods)
    return math.ceil(ratio * ready)


class HpaPolicy:
    """HPA v2 on per-replica concurrency (see the module docstring)."""

    name = "hpa"

    def __init__(
        self,
        target: float,
        tolerance: float = HPA_TOLERANCE,
        down_window: float = HPA_DOWN_STABILISATION_SECONDS,
    ) -> None:
        if target <= 0:
            raise ValueError("target must be positive")
        self._target = target
        self.tolerance = tolerance
        self.down_window = down_window
        """``behavior.scaleDown.stabilizationWindowSeconds`` (default 300 s; the simulator
        also runs it with the service's own scale-down delay, as a fair peer)."""
        self._behaviour = HpaBehaviour(1, 1)

    @property
    def window(self) -> float | None:
        """The scale-down window when it is not the default."""
        return None if self.down_window == HPA_DOWN_STABILISATION_SECONDS else self.down_window

    @property
    def target(self) -> float:
        return self._target

    def start(self, context: PolicyContext) -> int:
        low = max(1, context.min_replicas)
        self._behaviour = HpaBehaviour(low, max(low, context.max_replicas), self.down_window)
        replicas = min(max(context.warm_replicas, low), self._behaviour.max_replicas)
        self._behaviour.warm(0.0, replicas)
        return replicas

    def decide(self, observation: Observation) -> int:
        current = observation.desired_replicas
        proposal = hpa_pods_proposal(
            current,
            observation.ready_replicas,
            observation.starting_replicas,
            observation.concurrency,
            self._target,
            self.tolerance,
        )
        return self._behaviour.apply(observation.time, current, proposal)


# --------------------------------------------------------------------------------------------
# KEDA


class KedaPolicy:
    """A KEDA Prometheus trigger feeding an HPA (see the module docstring)."""

    name = "keda"

    def __init__(
        self,
        target: float,
        activation_threshold: float = 0.0,
        poll_seconds: float = KEDA_POLL_SECONDS,
        cooldown_seconds: float = KEDA_COOLDOWN_SECONDS,
        tolerance: float = HPA_TOLERANCE,
        down_window: float = HPA_DOWN_STABILISATION_SECONDS,
    ) -> None:
        if target <= 0:
            raise ValueError("target must be positive")
        self._target = target
        self.down_window = down_window
        """The scale-down stabilisation window of the HPA KEDA creates."""
        self.activation_threshold = activation_threshold
        self.poll_seconds = poll_seconds
        self.cooldown_seconds = cooldown_seconds
        self.tolerance = tolerance
        self._behaviour = HpaBehaviour(1, 1)
        self._min_count = 0
        self._next_poll = 0.0
        self._last_active: float | None = None

    @property
    def target(self) -> float:
        return self._target

    @property
    def window(self) -> float | None:
        return None if self.down_window == HPA_DOWN_STABILISATION_SECONDS else self.down_window

    def start(self, context: PolicyContext) -> int:
        self._min_count = (
            context.min_replicas if context.scale_to_zero else max(1, context.min_replicas)
        )
        top = max(1, context.max_replicas)
        self._behaviour = HpaBehaviour(max(1, self._min_count), top, self.down_window)
        self._next_poll = 0.0
        self._last_active = 0.0
        replicas = min(max(context.warm_replicas, self._min_count), top)
        self._behaviour.warm(0.0, replicas)
        return replicas

    def decide(self, observation: Observation) -> int:
        now, current = observation.time, observation.desired_replicas
        value = float(observation.concurrency)
        if now + 1e-9 >= self._next_poll:  # KEDA's own loop: activation and cooldown
            self._next_poll = now + self.poll_seconds
            if value > self.activation_threshold:
                self._last_active = now
            if current == 0:
                return max(1, self._min_count) if value > self.activation_threshold else 0
            if (
                self._min_count == 0
                and self._last_active is not None
                and now - self._last_active >= self.cooldown_seconds
            ):
                return 0
        if current == 0:  # the HPA is inactive at zero; only KEDA's poll wakes the service
            return 0
        ratio = value / (self._target * current)
        proposal = (
            current if abs(ratio - 1.0) <= self.tolerance else math.ceil(value / self._target)
        )
        return self._behaviour.apply(now, current, proposal)


# --------------------------------------------------------------------------------------------
# Static


class StaticPolicy:
    """A constant fleet of ``replicas`` (swept by the simulator: the cheapest count that
    reaches an attainment is the baseline a capacity planner with hindsight would pick)."""

    name = "static"
    window = None

    def __init__(self, replicas: int) -> None:
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        self._replicas = replicas

    @property
    def target(self) -> float:
        return float(self._replicas)

    def start(self, context: PolicyContext) -> int:
        return self._replicas

    def decide(self, observation: Observation) -> int:
        return self._replicas


# --------------------------------------------------------------------------------------------
# Static peak


class StaticPeakPolicy:
    """A constant fleet provisioned for the trace's busiest minute (``context.peak_replicas``)."""

    name = "static-peak"
    target = None
    window = None

    def __init__(self) -> None:
        self._replicas = 1

    def start(self, context: PolicyContext) -> int:
        self._replicas = context.peak_replicas
        return self._replicas

    def decide(self, observation: Observation) -> int:
        return self._replicas


# --------------------------------------------------------------------------------------------
# Oracle


class OraclePolicy:
    """Clairvoyant: knows every arrival and request size ahead, and orders replicas exactly
    ``startupSeconds`` before they are needed.

    Its schedule is computed in two steps before the trace starts.

    1. *Need per bin.* The trace is cut into bins of ``bin_seconds`` (the decision interval).
       Going forward through the bins on a copy of the pool whose replicas start instantly,
       each bin gets the fewest ready replicas (within the service's bounds) with which every
       request that arrives in the bin, and every request still in flight from before, meets
       the SLO when the pool is run to idle with that bin's and the next bin's arrivals (the
       next bin's load slows in-flight requests down under processor sharing). Requests that
       cannot meet the SLO even at ``maxReplicas`` (too large alone, or already late) are set
       aside so they do not drive the count to the maximum. Found by bisection (latency falls
       with more replicas).
    2. *Orders.* A replica must be asked for ``startupSeconds`` before the bin that needs it,
       and one freed for a gap shorter than ``startupSeconds`` is cheaper to keep than to
       restart, so at decision time ``t`` it asks for the max need over the bins from ``t`` to
       the time the next decision's replicas would be ready.

    Why it is the cost floor: in every bin it holds no more ready replicas than the bin needs
    for full attainment, and it pays startup only for capacity that is then used. It is
    greedy per bin (a policy that over-provisions earlier to drain a backlog could in principle
    save a replica later), so it is a floor up to that bin granularity, not a proof of
    optimality.
    """

    name = "oracle"
    window = None

    def __init__(self, bin_seconds: float | None = None, attainment: float = 1.0) -> None:
        if not 0 < attainment <= 1:
            raise ValueError("attainment must be in (0, 1]")
        self._bin = bin_seconds
        self.attainment = attainment
        """The share of requests within the SLO it aims at (1: every request that can be)."""
        self._needs: list[int] = []
        self._step = 15.0
        self._lead = 0.0
        self._floor = 0

    @property
    def target(self) -> float | None:
        """The attainment aimed at, when below full."""
        return None if self.attainment >= 1 else self.attainment

    @property
    def needs(self) -> Sequence[int]:
        """Ready replicas each bin needs (step 1)."""
        return tuple(self._needs)

    def start(self, context: PolicyContext) -> int:
        self._step = self._bin or context.interval
        self._lead = context.interval + context.profile.startup_seconds
        self._floor = 0 if context.scale_to_zero else max(1, context.min_replicas)
        self._needs = oracle_needs(context, self._step, self.attainment)
        return self._ordered(0.0)

    def decide(self, observation: Observation) -> int:
        return self._ordered(observation.time)

    def _ordered(self, now: float) -> int:
        first = int(now // self._step + 1e-9)
        last = math.ceil((now + self._lead) / self._step - 1e-9)
        window = self._needs[first:last]
        return max(window, default=self._floor)


def oracle_needs(context: PolicyContext, bin_seconds: float, attainment: float = 1.0) -> list[int]:
    """Step 1 of ``OraclePolicy``: the ready replicas each bin needs for ``attainment``.

    Below full attainment the oracle has a budget of misses, ``(1 - attainment)`` of the
    requests seen so far, and spends it greedily: each bin gets the fewest replicas whose
    misses among the bin's requests (and those still in flight) fit in what is left of it."""
    trace = sorted(context.trace, key=lambda r: r.arrival)
    if not trace:
        return []
    arrivals = [r.arrival for r in trace]
    profile = replace(context.profile, startup_seconds=0.0)
    floor = 0 if context.scale_to_zero else max(1, context.min_replicas)
    top = max(1, context.max_replicas)
    pool = ReplicaPool(profile, replicas=0, now=0.0)
    bins = math.floor(arrivals[-1] / bin_seconds) + 1
    needs: list[int] = []
    missed = 0
    for b in range(bins):
        start, end = b * bin_seconds, (b + 1) * bin_seconds
        lo, mid, hi = (bisect_left(arrivals, x) for x in (start, end, end + bin_seconds))
        current = range(lo, mid)

        submitted = range(lo, hi)
        busy = pool.running + pool.waiting > 0 or mid > lo
        low = max(floor, 1) if busy else floor
        need = top
        allowed = max(0, math.floor((1.0 - attainment) * mid + 1e-9) - missed)
        if low < top:
            required = _met(context.slo, trace, pool, start, top, submitted, mid)
            while low < need:
                half = (low + need) // 2
                met = _met(context.slo, trace, pool, start, half, submitted, mid)
                if len(required - met) <= allowed:
                    need = half
                else:
                    low = half + 1
            if allowed and need < top:
                met = _met(context.slo, trace, pool, start, need, submitted, mid)
                missed += sum(1 for i in required - met if i >= lo)
        needs.append(max(need, floor) if busy else floor)
        pool.set_replicas(start, needs[-1])
        for i in current:
            r = trace[i]
            pool.submit(r.arrival, i, r.prompt_tokens, r.output_tokens)
        pool.advance(end)
    return needs


class SharedNeeds:
    """``oracle_needs`` (full attainment) computed once per context and bin: the policies of
    a sweep over one trace share it (it simulates the whole trace per bin)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[int, float], tuple[PolicyContext, list[int]]] = {}

    def __call__(self, context: PolicyContext, bin_seconds: float) -> list[int]:
        key = (id(context), bin_seconds)
        found = self._memo.get(key)
        if found is None or found[0] is not context:
            found = (context, oracle_needs(context, bin_seconds))
            self._memo[key] = found
        return found[1]


class HoldPolicy:
    """Causal hindsight: at time ``t`` it asks for the largest need (``oracle_needs``: the
    ready replicas each bin needed for every request to meet the SLO) among the bins that
    ended within the last ``lookback`` seconds, and the warm start's count until it has seen
    that long. It cannot see a rise before it happens: what a bin needs is known once the bin
    is over, and a replica asked for then serves ``startupSeconds`` later. It measures need
    perfectly (the true speed, every request's size): the yardstick for a reactive policy
    that holds a peak over the same lookback. With the whole trace as lookback it is the
    fleet the busiest moment so far needed."""

    name = "hold"
    window = None

    def __init__(
        self,
        lookback: float,
        needs: Callable[[PolicyContext, float], Sequence[int]] = oracle_needs,
    ) -> None:
        """``needs(context, bin_seconds)``: the needs per bin (a sweep shares one memo)."""
        if not lookback > 0:
            raise ValueError("lookback must be positive")
        self._lookback = lookback
        self._needs_of = needs
        self._needs: tuple[int, ...] = ()
        self._step = 15.0
        self._warm = 1
        self._floor = 0

    @property
    def target(self) -> float:
        """The lookback, in seconds."""
        return self._lookback

    def start(self, context: PolicyContext) -> int:
        self._step = context.interval
        self._floor = 0 if context.scale_to_zero else max(1, context.min_replicas)
        self._warm = max(context.warm_replicas, self._floor)
        self._needs = tuple(self._needs_of(context, self._step))
        return self._warm

    def decide(self, observation: Observation) -> int:
        now = observation.time
        done = min(len(self._needs), int(now // self._step + 1e-9))
        first = max(0, math.ceil((now - self._lookback) / self._step - 1e-9))
        held = max(self._needs[first:done], default=self._floor)
        if now < self._lookback:
            held = max(held, self._warm)
        return max(held, self._floor)


def _met(
    slo: SloTarget,
    trace: Sequence[TraceRequest],
    pool: ReplicaPool,
    start: float,
    replicas: int,
    submitted: range,
    before: int,
) -> set[int]:
    """Indices below ``before`` that meet the SLO when a copy of ``pool`` runs ``replicas``
    from ``start`` with the ``submitted`` requests of the trace, to idle."""
    trial = copy.deepcopy(pool)
    trial.set_replicas(start, replicas)
    for i in submitted:
        r = trace[i]
        trial.submit(r.arrival, i, r.prompt_tokens, r.output_tokens)
    return {
        int(d.request_id)
        for d in trial.run_until_idle()
        if int(d.request_id) < before and slo.met(d)
    }
