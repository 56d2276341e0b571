"""A load step on the fleet, in miniature: the closed loop of ``benchmarks/autoscale.py``
(Prometheus' scrapes and queries, the recommender, the replicas' start-up) on the queue model
alone, pure and seeded, so its timing can be unit-tested."""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, replace

from tierra.core.autoscale import (
    DEFAULT_PARAMS,
    ScalerParams,
    ScalerState,
    ScalingInputs,
    Signals,
    recommend,
)
from tierra.core.queue_model import ReplicaPool, ReplicaProfile
from tierra.lab.simulation import nearest_rank


@dataclass(frozen=True)
class StepResponse:
    """What ``step_response`` saw: the replicas asked for after a load step and when, as
    ``benchmarks/autoscale.py`` times them on the fleet."""

    before: int
    """Replicas asked for just before the step."""
    first: int
    """The first decision's count after the step (``before`` when none rose)."""
    settled: int
    """The highest count asked for within ``follow`` seconds of the step."""
    decision_seconds: float | None
    """Step -> first rise (None: none)."""
    settled_seconds: float | None
    """Step -> the last rise (when the settled count was asked for)."""
    recovery_seconds: float | None
    """Step -> the p95 latency of what completes in trailing 5 s windows is within the SLO
    for the rest of ``follow`` (None: never)."""
    peak_before: int
    """The most replicas asked for before the step (a start-up transient shows here)."""

    @property
    def first_share(self) -> float:
        return self.first / self.settled if self.settled else 1.0


def step_response(
    template: ScalingInputs,
    *,
    before_rate: float,
    after_rate: float,
    prompt_tokens: int,
    output_tokens: int,
    seed: int = 0,
    scrape_seconds: float = 2.0,
    decide_seconds: float = 0.5,
    ready_lag_seconds: float = 1.0,
    settle_seconds: float = 20.0,
    follow_seconds: float = 20.0,
    params: ScalerParams = DEFAULT_PARAMS,
) -> StepResponse:
    """The closed loop of ``benchmarks/autoscale.py`` without the fleet: a new service at
    ``template``'s bounds, SLO and capacity (one replica ready, serving at once) gets Poisson
    arrivals of one request size at ``before_rate`` for ``settle_seconds``, then at
    ``after_rate``. The replicas are a ``ReplicaPool`` at the spec's profile (the twin's
    model); Prometheus scrapes the vLLM series every ``scrape_seconds`` (at a seeded phase,
    the step at a seeded time within a scrape interval) and answers the presets' queries as
    it would: gauges at the last scrape, ``rate()`` over 1 m with its extrapolation (so a
    young series under-reports), ``irate`` over the last two scrapes, the mean running over
    the scrapes of the minute, the p95 of the last minute's completions and the scrape time.
    The recommender decides every ``decide_seconds``; a new count's pods turn Ready
    ``ready_lag_seconds`` later and, as in the twin, serve ``startupSeconds`` after that.
    Pure and deterministic for a seed."""
    rng = random.Random(seed)
    window = params.rate_window_seconds
    profile = ReplicaProfile(
        max_concurrency=template.max_concurrency,
        prefill_tokens_per_second=template.prefill_tokens_per_second,
        decode_tokens_per_second=template.decode_tokens_per_second,
        startup_seconds=template.startup_seconds,
    )
    pool = ReplicaPool(profile, replicas=1, now=0.0)
    step_at = settle_seconds + rng.uniform(0.0, scrape_seconds)
    end = step_at + follow_seconds
    next_scrape = rng.uniform(0.0, scrape_seconds)
    next_decision = rng.uniform(0.0, decide_seconds)
    next_arrival = rng.expovariate(before_rate) if before_rate > 0 else math.inf
    scrapes: list[tuple[float, int, int, int, float, float]] = []
    """(time, waiting, running, completions, prompt tokens, output tokens) per scrape."""
    finished: list[tuple[float, float]] = []
    """(finish time, latency) of every completion."""
    state = ScalerState()
    desired, ready = 1, 1
    pending: list[tuple[float, int]] = []
    changes: list[tuple[float, int, int]] = []
    request = 0

    def rate(now: float, column: int) -> float | None:
        times = [x[0] for x in scrapes]
        kept = scrapes[bisect.bisect_left(times, now - window) :]
        if len(kept) < 2:
            return None
        first, last = kept[0], kept[-1]
        span = last[0] - first[0]
        step = span / (len(kept) - 1)
        covered = span
        for gap in (first[0] - (now - window), now - last[0]):
            covered += gap if gap < 1.1 * step else step / 2
        return (last[column] - first[column]) / span * covered / window

    while True:
        t = min(next_arrival, next_scrape, next_decision, pending[0][0] if pending else math.inf)
        if t > end:
            break
        for done in pool.advance(t):
            finished.append((done.finish_time, done.latency))
        if t == next_arrival:
            request += 1
            pool.submit(t, request, prompt_tokens, output_tokens)
            load = before_rate if t < step_at else after_rate
            next_arrival = t + rng.expovariate(load) if load > 0 else math.inf
            if t < step_at <= next_arrival and after_rate > 0:
                next_arrival = step_at + rng.expovariate(after_rate)
        elif pending and t == pending[0][0]:
            ready = pending.pop(0)[1]
            pool.set_replicas(t, ready)
        elif t == next_scrape:
            pool.run_to(t)
            prompt, output = pool.tokens_processed()
            scrapes.append((t, pool.waiting, pool.running, len(finished), prompt, output))
            next_scrape += scrape_seconds
        else:
            next_decision += decide_seconds
            if not scrapes:
                continue
            last = scrapes[-1]
            minute = [x for x in scrapes if x[0] >= t - window]
            recent = sorted(latency for at, latency in finished if at > t - window)
            completions, prompt_rate, output_rate = rate(t, 3), rate(t, 4), rate(t, 5)
            previous = scrapes[-2] if len(scrapes) > 1 else None
            signals = Signals(
                queue_depth=float(last[1]),
                running=float(last[2]),
                arrival_rate=completions,
                p95_latency_ms=nearest_rank(recent, 0.95) * 1000 if recent else None,
                observed_at=t,
                prompt_tokens_rate=prompt_rate,
                output_tokens_rate=output_rate,
                mean_running=sum(x[2] for x in minute) / len(minute),
                recent_completion_rate=None
                if previous is None
                else (last[3] - previous[3]) / (last[0] - previous[0]),
                scraped_at=last[0],
            )
            sizes = (
                (prompt_rate / completions, output_rate / completions)
                if completions and prompt_rate is not None and output_rate is not None
                else (None, None)
            )
            rec = recommend(
                replace(
                    template,
                    desired_replicas=desired,
                    ready_replicas=ready,
                    signals=signals,
                    mean_prompt_tokens=sizes[0],
                    mean_output_tokens=sizes[1],
                ),
                state,
                t,
                params,
            )
            state = rec.state
            if rec.replicas != desired:
                changes.append((t, desired, rec.replicas))
                desired = rec.replicas
                pending.append((t + ready_lag_seconds, desired))
                pending.sort()
    before = [c for c in changes if c[0] < step_at]
    ups = [c for c in changes if c[0] >= step_at and c[2] > c[1]]
    count = before[-1][2] if before else 1
    peak = max([1, *(c[2] for c in before)])
    late = None
    at = step_at
    slo = template.latency_p95_ms / 1000.0
    while at <= end:
        recent = sorted(latency for done, latency in finished if at - 5.0 < done <= at)
        if recent and nearest_rank(recent, 0.95) > slo:
            late = at
        at += 1.0
    return StepResponse(
        before=count,
        first=ups[0][2] if ups else count,
        settled=max([count, *(c[2] for c in ups)]),
        decision_seconds=ups[0][0] - step_at if ups else None,
        settled_seconds=ups[-1][0] - step_at if ups else None,
        recovery_seconds=None
        if late is not None and late > end - 5.0
        else (late or step_at) - step_at,
        peak_before=peak,
    )
