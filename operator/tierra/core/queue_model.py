"""Queue model of a pool of model-server replicas: a discrete-event simulator and closed forms.

One pure module shared by the load twin, the offline simulator and the recommender, so the
load the twin exports, the latency the simulator reports and the headroom the recommender plans
all come from the same assumptions.

The model
---------
A replica serves up to ``maxConcurrency`` requests at once; further requests wait in a FIFO
queue. A request needs ``prompt / prefillTokensPerSecond`` seconds of a replica for its prefill
followed by ``output / decodeTokensPerSecond`` seconds for its decode: its *work*, the time it
takes on a replica of its own.

Assumptions, stated once:

* **Sequential phases.** A request's prefill completes before its decode starts. Its first
  token is out when its prefill completes (``ttft = queue wait + prefill at its share``).
* **Replica-wide processor sharing.** A replica is one processor time-shared equally among the
  ``n`` requests it is running, whatever phase each is in: each progresses at ``1/n`` of the
  replica, i.e. a prefilling request gets ``prefill/n`` tokens/s and a decoding one
  ``decode/n``. Whenever the running set changes the shares change at once (event-driven).
  Consequences: two identical requests started together both take twice as long as one alone;
  a replica's throughput is ``1 / work`` requests/s whatever its concurrency.
* **No batching-efficiency curve.** Profiled throughputs are the replica's aggregate at any
  batch size; concurrency only divides them. This is conservative at small batches.
* **One FIFO queue per pool, ideal routing.** An arriving request goes at once to the ready,
  non-draining replica running the fewest requests (lowest id on ties) that has a free slot;
  when none has, it joins the pool's FIFO queue, and the next slot to free (or replica to become
  ready) takes the head of the queue. This is a perfectly balanced load balancer with work
  stealing; real per-replica queues can only do worse.
* **Startup.** A replica added at ``t`` is *starting* until ``t + startupSeconds``, then ready.
  Starting replicas serve nothing: requests wait for ready capacity.
* **Graceful scale-down.** A removed replica that is still starting is dropped; a removed idle
  replica is gone at once; a removed busy one stops taking requests (*draining*) and finishes
  its in-flight requests, then is gone. Starting replicas are removed first (newest first),
  then the ready ones running the fewest requests (newest first on ties), as a ReplicaSet
  deletes unready pods first.
* **Network.** The tier's round trip is added once to each request's latency and TTFT as the
  client sees them (``CompletedRequest.latency`` / ``.ttft``); the times recorded
  (``first_token_time``, ``finish_time``) are the server's, like a runtime's own histograms.

Simulation cost
---------------
Processor sharing is simulated with a per-replica *virtual time* ``V`` that advances at rate
``1/n``: a request started at ``V0`` finishes when ``V = V0 + work`` and emits its first token
when ``V = V0 + prefill work``. Rates change only at events, so each event costs a few heap
operations (O(log running)) instead of recomputing every request's remaining work, and one
arrival routes in O(replicas). ``V`` restarts at 0 when a replica goes idle, so a request
alone on a replica takes exactly its work.

Closed forms for the recommender
--------------------------------
The recommender sizes a pool with an M/M/c queue: each replica counts as ``k`` servers (its
planned concurrency), and a server's mean service time is a request's time on a replica running
``k`` requests, ``k * work`` (at ``k`` concurrent requests each gets ``1/k`` of the replica's
prefill and decode throughput). This over-states service time when a replica runs fewer than
``k`` requests, so it errs towards more replicas. Erlang C is computed with the Erlang B
recursion, which neither overflows nor needs factorials.
"""

from __future__ import annotations

import heapq
import math
from bisect import insort
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter

from tierra.api.inference_service import Variant

RequestId = int | str

_FINISH = 0
_READY = 1
"""Event kinds, in the order they run when simultaneous: slots free before replicas start."""


# --------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class ReplicaProfile:
    """What one replica of a variant can do, and how long it takes to start."""

    max_concurrency: int
    prefill_tokens_per_second: float
    decode_tokens_per_second: float
    startup_seconds: float = 0.0
    rtt_seconds: float = 0.0
    """Network round trip added to each request's latency and TTFT as the client sees them."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not (self.prefill_tokens_per_second > 0 and self.decode_tokens_per_second > 0):
            raise ValueError("throughputs must be positive")
        if self.startup_seconds < 0 or self.rtt_seconds < 0:
            raise ValueError("startup_seconds and rtt_seconds must not be negative")

    @classmethod
    def from_variant(cls, variant: Variant, rtt_seconds: float = 0.0) -> ReplicaProfile:
        capacity = variant.capacity
        return cls(
            max_concurrency=capacity.max_concurrency,
            prefill_tokens_per_second=capacity.prefill_tokens_per_second,
            decode_tokens_per_second=capacity.decode_tokens_per_second,
            startup_seconds=float(variant.startup_seconds),
            rtt_seconds=rtt_seconds,
        )

    def prefill_seconds(self, prompt_tokens: float) -> float:
        """Prefill time of a request alone on a replica."""
        return prompt_tokens / self.prefill_tokens_per_second

    def work_seconds(self, prompt_tokens: float, output_tokens: float) -> float:
        """Time a request takes alone on a replica: prefill then decode."""
        return solo_service_seconds(
            prompt_tokens,
            output_tokens,
            self.prefill_tokens_per_second,
            self.decode_tokens_per_second,
        )


@dataclass(frozen=True, slots=True)
class CompletedRequest:
    """A finished request; times are the server's (seconds on the pool's clock)."""

    request_id: RequestId
    arrival: float
    started: float
    first_token_time: float
    finish_time: float
    prompt_tokens: int
    output_tokens: int
    replica: int
    rtt: float = 0.0

    @property
    def queue_wait(self) -> float:
        return self.started - self.arrival

    @property
    def ttft(self) -> float:
        """Time to first token as the client sees it (server time plus the round trip)."""
        return self.first_token_time - self.arrival + self.rtt

    @property
    def latency(self) -> float:
        """End-to-end latency as the client sees it (server time plus the round trip)."""
        return self.finish_time - self.arrival + self.rtt


@dataclass(frozen=True)
class PoolState:
    """What a runtime's metrics would show at ``time``."""

    time: float
    waiting: int
    running: int
    ready_replicas: int
    starting_replicas: int
    draining_replicas: int


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica as its pod's metrics would show it."""

    replica: int
    ready: bool
    draining: bool
    running: int


# --------------------------------------------------------------------------------------------
# The discrete-event simulator


class _Job:
    __slots__ = (
        "arrival",
        "finish_tag",
        "first_token",
        "output",
        "prefill_tag",
        "prefill_work",
        "prompt",
        "request_id",
        "started",
        "work",
    )

    def __init__(
        self,
        request_id: RequestId,
        arrival: float,
        prompt: int,
        output: int,
        prefill_work: float,
        work: float,
    ) -> None:
        self.request_id = request_id
        self.arrival = arrival
        self.prompt = prompt
        self.output = output
        self.prefill_work = prefill_work
        self.work = work
        self.started = math.nan
        self.first_token = math.nan
        self.prefill_tag = 0.0
        self.finish_tag = 0.0


class _Replica:
    __slots__ = (
        "accepting",
        "clock",
        "finishing",
        "id",
        "n",
        "prefilling",
        "ready",
        "version",
        "vtime",
    )

    def __init__(self, replica_id: int) -> None:
        self.id = replica_id
        self.ready = False
        self.accepting = True
        self.n = 0
        self.vtime = 0.0
        """Work each running request has received since the replica last went busy."""
        self.clock = 0.0
        """Real time at which ``vtime`` was last brought up to date."""
        self.version = 0
        """Bumped whenever ``n`` changes, invalidating the scheduled finish event."""
        self.finishing: list[tuple[float, int, _Job]] = []
        self.prefilling: list[tuple[float, int, _Job]] = []


class ReplicaPool:
    """Replicas of one variant serving requests: deterministic, event-driven, pure.

    Time only moves forward: every call takes a time ``t`` no earlier than the last one.
    ``submit`` and ``set_replicas`` first run the pool up to ``t``; requests completed on the
    way are kept and returned by the next ``advance``.
    """

    def __init__(self, profile: ReplicaProfile, replicas: int = 0, now: float = 0.0) -> None:
        """A pool at ``now`` with ``replicas`` already ready (a fleet that is running)."""
        if replicas < 0:
            raise ValueError("replicas must not be negative")
        self.profile = profile
        self._now = now
        self._replicas: dict[int, _Replica] = {}
        self._serving: list[_Replica] = []
        """Ready, accepting replicas, ordered by id (the routing candidates)."""
        self._queue: deque[_Job] = deque()
        self._events: list[tuple[float, int, int, int, int]] = []
        """(time, kind, seq, replica id, replica version) min-heap; stale entries are skipped."""
        self._seq = 0
        self._next_id = 0
        self._running = 0
        self._done: list[CompletedRequest] = []
        self._replica_seconds = 0.0
        self._accounted_at = now
        self._running_seconds = 0.0
        self._running_at = now
        self._prompt_done = 0.0
        """Prompt tokens of the prefills completed (partial ones are added when observed)."""
        self._output_done = 0.0
        for _ in range(replicas):
            replica = self._new_replica()
            replica.ready = True
            replica.clock = now
            self._serving.append(replica)

    # ---- observation

    @property
    def now(self) -> float:
        return self._now

    @property
    def waiting(self) -> int:
        """Requests in the queue, not yet on a replica."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Requests on replicas (draining ones included)."""
        return self._running

    @property
    def ready_replicas(self) -> int:
        """Replicas that are ready and take requests."""
        return len(self._serving)

    @property
    def starting_replicas(self) -> int:
        return sum(1 for r in self._replicas.values() if not r.ready)

    @property
    def draining_replicas(self) -> int:
        return sum(1 for r in self._replicas.values() if not r.accepting)

    @property
    def desired_replicas(self) -> int:
        """Replicas asked for: ready and starting, draining ones excluded."""
        return sum(1 for r in self._replicas.values() if r.accepting)

    @property
    def provisioned_replicas(self) -> int:
        """Replicas holding accelerators: starting, ready and draining."""
        return len(self._replicas)

    @property
    def replica_seconds(self) -> float:
        """Integral of provisioned replicas over time up to ``now`` (for accelerator-hours)."""
        return self._replica_seconds

    @property
    def running_seconds(self) -> float:
        """Integral of the running requests over time up to ``now`` (for a mean running)."""
        return self._running_seconds

    def tokens_processed(self) -> tuple[float, float]:
        """(prompt, output) tokens processed up to ``now``, counted per iteration as vLLM's
        ``prompt_tokens_total`` / ``generation_tokens_total`` are: a request in its prefill
        has processed its share of its prompt so far, one decoding its share of its output,
        so the counters grow while requests run, not only when they complete."""
        prompt, output = self._prompt_done, self._output_done
        now = self._now
        for replica in self._replicas.values():
            if replica.n == 0:
                continue
            vtime = replica.vtime + (now - replica.clock) / replica.n
            for _, _, job in replica.finishing:
                progress = vtime - (job.finish_tag - job.work)
                decode = job.work - job.prefill_work
                if math.isnan(job.first_token):  # not yet in _prompt_done
                    done = progress / job.prefill_work if job.prefill_work > 0 else 1.0
                    prompt += job.prompt * min(1.0, max(0.0, done))
                if decode > 0 and progress > job.prefill_work:
                    output += job.output * min(1.0, (progress - job.prefill_work) / decode)
        return prompt, output

    def state(self) -> PoolState:
        return PoolState(
            time=self._now,
            waiting=self.waiting,
            running=self.running,
            ready_replicas=self.ready_replicas,
            starting_replicas=self.starting_replicas,
            draining_replicas=self.draining_replicas,
        )

    def replica_loads(self) -> list[ReplicaLoad]:
        """Each provisioned replica's load, by id."""
        return [
            ReplicaLoad(replica=r.id, ready=r.ready, draining=not r.accepting, running=r.n)
            for r in sorted(self._replicas.values(), key=attrgetter("id"))
        ]

    # ---- commands

    def submit(
        self, t: float, request_id: RequestId, prompt_tokens: int, output_tokens: int
    ) -> None:
        """A request arrives at ``t``."""
        if prompt_tokens < 0 or output_tokens < 0:
            raise ValueError("token counts must not be negative")
        self._run(t)
        profile = self.profile
        job = _Job(
            request_id,
            t,
            prompt_tokens,
            output_tokens,
            profile.prefill_seconds(prompt_tokens),
            profile.work_seconds(prompt_tokens, output_tokens),
        )
        if not self._queue and self._serving:
            replica = min(self._serving, key=_running_count)
            if replica.n < profile.max_concurrency:
                self._progress(replica, t)
                self._start(replica, job, t)
                self._schedule(replica)
                return
        self._queue.append(job)

    def run_to(self, t: float) -> None:
        """Run the pool up to ``t`` (no earlier than ``now``), keeping what completes for the
        next ``advance``: to observe its state at ``t``."""
        self._run(max(t, self._now))

    def advance(self, t: float) -> list[CompletedRequest]:
        """Run the pool up to ``t``; the requests completed since the last ``advance``."""
        self._run(t)
        done, self._done = self._done, []
        return done

    def run_until_idle(self) -> list[CompletedRequest]:
        """Run until no event is left (all requests that can finish have); ``now`` becomes the
        time of the last event. Requests waiting with no replica ready or starting stay."""
        while self._events:
            self._run(max(self._now, self._events[0][0]))
        return self.advance(self._now)

    def set_replicas(self, t: float, replicas: int) -> None:
        """Ask for ``replicas`` (ready + starting) from ``t`` on."""
        if replicas < 0:
            raise ValueError("replicas must not be negative")
        self._run(t)
        active = [r for r in self._replicas.values() if r.accepting]
        if replicas > len(active):
            self._account(t)
            ready_at = t + self.profile.startup_seconds
            for _ in range(replicas - len(active)):
                replica = self._new_replica()
                self._push(ready_at, _READY, replica)
            self._run(t)  # replicas with no startup delay are ready at once
        elif replicas < len(active):
            for replica in sorted(active, key=_removal_order)[: len(active) - replicas]:
                self._remove(replica, t)

    # ---- internals

    def _new_replica(self) -> _Replica:
        replica = _Replica(self._next_id)
        self._next_id += 1
        self._replicas[replica.id] = replica
        return replica

    def _push(self, time: float, kind: int, replica: _Replica) -> None:
        self._seq += 1
        heapq.heappush(self._events, (time, kind, self._seq, replica.id, replica.version))

    def _integrate(self, t: float) -> None:
        self._running_seconds += self._running * (t - self._running_at)
        self._running_at = t

    def _account(self, t: float) -> None:
        self._replica_seconds += len(self._replicas) * (t - self._accounted_at)
        self._accounted_at = t

    def _run(self, t: float) -> None:
        if t < self._now:
            raise ValueError(f"time moves forward: {t} < {self._now}")
        events = self._events
        while events and events[0][0] <= t:
            time, kind, _, replica_id, version = heapq.heappop(events)
            replica = self._replicas.get(replica_id)
            if replica is None:
                continue
            if kind == _FINISH:
                if version == replica.version:
                    self._on_finish(replica, time)
            elif not replica.ready and replica.accepting:
                self._on_ready(replica, time)
        self._account(t)
        self._integrate(t)
        self._now = t

    def _progress(self, replica: _Replica, t: float, vtime: float | None = None) -> None:
        """Bring the replica's virtual time up to ``t`` (or to ``vtime``, reached at ``t``),
        recording the first tokens of the requests whose prefill completed on the way."""
        n = replica.n
        if n == 0:
            replica.clock = t
            return
        clock, before = replica.clock, replica.vtime
        after = before + (t - clock) / n if vtime is None else vtime
        prefilling = replica.prefilling
        while prefilling and prefilling[0][0] <= after:
            tag, _, job = heapq.heappop(prefilling)
            job.first_token = min(t, max(job.started, clock + (tag - before) * n))
            self._prompt_done += job.prompt
        replica.vtime = after
        replica.clock = t

    def _start(self, replica: _Replica, job: _Job, t: float) -> None:
        job.started = t
        job.prefill_tag = replica.vtime + job.prefill_work
        job.finish_tag = replica.vtime + job.work
        self._seq += 1
        heapq.heappush(replica.prefilling, (job.prefill_tag, self._seq, job))
        heapq.heappush(replica.finishing, (job.finish_tag, self._seq, job))
        if job.prefill_work <= 0:
            job.first_token = t  # no prompt: the first token is out at once
        self._integrate(t)
        replica.n += 1
        self._running += 1

    def _schedule(self, replica: _Replica) -> None:
        replica.version += 1
        if replica.n:
            tag = replica.finishing[0][0]
            finish = replica.clock + max(0.0, tag - replica.vtime) * replica.n
            self._push(finish, _FINISH, replica)

    def _fill(self, replica: _Replica, t: float) -> None:
        queue, limit = self._queue, self.profile.max_concurrency
        while queue and replica.n < limit:
            self._start(replica, queue.popleft(), t)

    def _on_finish(self, replica: _Replica, t: float) -> None:
        finishing = replica.finishing
        self._progress(replica, t, vtime=finishing[0][0])
        rtt = self.profile.rtt_seconds
        while finishing and finishing[0][0] <= replica.vtime:
            _, _, job = heapq.heappop(finishing)
            self._done.append(
                CompletedRequest(
                    request_id=job.request_id,
                    arrival=job.arrival,
                    started=job.started,
                    first_token_time=job.first_token,
                    finish_time=t,
                    prompt_tokens=job.prompt,
                    output_tokens=job.output,
                    replica=replica.id,
                    rtt=rtt,
                )
            )
            if math.isnan(job.first_token):  # prefill and finish in the same instant
                job.first_token = t
                self._prompt_done += job.prompt
            self._output_done += job.output
            self._integrate(t)
            replica.n -= 1
            self._running -= 1
        if replica.n == 0:
            replica.vtime = 0.0
        if replica.accepting:
            self._fill(replica, t)
        elif replica.n == 0:
            self._account(t)
            del self._replicas[replica.id]
            return
        self._schedule(replica)

    def _on_ready(self, replica: _Replica, t: float) -> None:
        replica.ready = True
        replica.clock = t
        insort(self._serving, replica, key=_replica_id)
        self._fill(replica, t)
        self._schedule(replica)

    def _remove(self, replica: _Replica, t: float) -> None:
        if replica.ready:
            self._serving.remove(replica)
        if replica.n == 0:
            self._account(t)
            del self._replicas[replica.id]
        else:
            replica.accepting = False


_running_count: Callable[[_Replica], int] = attrgetter("n")
_replica_id: Callable[[_Replica], int] = attrgetter("id")


def _removal_order(replica: _Replica) -> tuple[bool, int, int]:
    """Starting replicas first, then the least loaded; newest first on ties."""
    return (replica.ready, replica.n, -replica.id)


def replay(pool: ReplicaPool, requests: Iterable[tuple[float, int, int]]) -> list[CompletedRequest]:
    """Submit (arrival, prompt tokens, output tokens) requests, ids 0.., in arrival order, then
    run until every request that can finish has."""
    for request_id, (arrival, prompt, output) in enumerate(requests):
        pool.submit(arrival, request_id, prompt, output)
    return pool.run_until_idle()


# --------------------------------------------------------------------------------------------
# Closed forms


def solo_service_seconds(
    prompt_tokens: float,
    output_tokens: float,
    prefill_tokens_per_second: float,
    decode_tokens_per_second: float,
) -> float:
    """Time a request takes alone on a replica: its prefill, then its decode."""
    return prompt_tokens / prefill_tokens_per_second + output_tokens / decode_tokens_per_second


def erlang_b(servers: int, offered_load: float) -> float:
    """Blocking probability of M/M/c/c with ``offered_load`` = arrival rate x service time."""
    if servers < 0 or offered_load < 0:
        raise ValueError("servers and offered_load must not be negative")
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    return blocking


def _erlang_c_from_b(servers: int, offered_load: float, blocking: float) -> float:
    if offered_load >= servers:
        return 1.0
    return servers * blocking / (servers - offered_load * (1.0 - blocking))


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in M/M/c (1 when the queue is unstable)."""
    if servers < 1:
        raise ValueError("servers must be at least 1")
    return _erlang_c_from_b(servers, offered_load, erlang_b(servers, offered_load))


def mmc_mean_wait(arrival_rate: float, mean_service_seconds: float, servers: int) -> float:
    """Mean queueing wait of M/M/c (inf when unstable)."""
    load = arrival_rate * mean_service_seconds
    if load >= servers:
        return math.inf
    return erlang_c(servers, load) * mean_service_seconds / (servers - load)


def _wait_quantile(p_wait: float, drain_rate: float, percentile: float) -> float:
    """Quantile of the M/M/c wait: P(W > t) = p_wait * exp(-drain_rate * t)."""
    if p_wait <= 1.0 - percentile:
        return 0.0
    return math.log(p_wait / (1.0 - percentile)) / drain_rate


def mmc_wait_percentile(
    arrival_rate: float, mean_service_seconds: float, servers: int, percentile: float = 0.95
) -> float:
    """The ``percentile`` of the M/M/c queueing wait (inf when unstable)."""
    _check_percentile(percentile)
    load = arrival_rate * mean_service_seconds
    if load >= servers:
        return math.inf
    drain_rate = (servers - load) / mean_service_seconds
    return _wait_quantile(erlang_c(servers, load), drain_rate, percentile)


def replicas_for_slo(
    arrival_rate: float,
    mean_service_seconds: float,
    concurrency_per_replica: int,
    target_wait_seconds: float,
    percentile: float = 0.95,
    limit: int | None = None,
) -> int:
    """Fewest replicas whose ``percentile`` queueing wait is within ``target_wait_seconds``.

    The pool is M/M/c with ``c = replicas * concurrency_per_replica`` servers, each serving a
    request in ``mean_service_seconds`` on average: the time a request takes on a replica
    running ``concurrency_per_replica`` requests (see the module docstring). 0 when nothing
    arrives. The search stops past ``limit``: it returns ``limit + 1`` when ``limit`` replicas
    are not enough, so a caller with a bound pays O(limit x concurrency) at most.
    Cost: O(servers of the answer), one Erlang B step per server.
    """
    _check_percentile(percentile)
    if not (math.isfinite(arrival_rate) and arrival_rate >= 0):
        raise ValueError("arrival_rate must be finite and not negative")
    if not (math.isfinite(mean_service_seconds) and mean_service_seconds > 0):
        raise ValueError("mean_service_seconds must be finite and positive")
    if concurrency_per_replica < 1:
        raise ValueError("concurrency_per_replica must be at least 1")
    if not target_wait_seconds >= 0:
        raise ValueError("target_wait_seconds must not be negative")
    if arrival_rate == 0:
        return 0
    load = arrival_rate * mean_service_seconds
    replicas = math.floor(load / concurrency_per_replica) + 1  # fewest with a stable queue
    if limit is not None and replicas > limit:
        return limit + 1
    blocking, servers = 1.0, 0
    while True:
        target_servers = replicas * concurrency_per_replica
        for k in range(servers + 1, target_servers + 1):
            blocking = load * blocking / (k + load * blocking)
        servers = target_servers
        if servers > load:
            p_wait = _erlang_c_from_b(servers, load, blocking)
            drain_rate = (servers - load) / mean_service_seconds
            if _wait_quantile(p_wait, drain_rate, percentile) <= target_wait_seconds:
                return replicas
        if limit is not None and replicas > limit:
            return replicas
        replicas += 1


def _check_percentile(percentile: float) -> None:
    if not 0 < percentile < 1:
        raise ValueError("percentile must be in (0, 1)")
