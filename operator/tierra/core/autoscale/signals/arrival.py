"""The arrival signal: the arrival rate against per-replica capacity through the M/M/c model,
with the headroom the latency SLO needs (``arrival_need``); the deadband of the signals sized
by the arrival rate (``deadband``)."""

from __future__ import annotations

import math

from tierra.core.queue_model import replicas_for_slo

from ..model import (
    DEFAULT_PARAMS,
    EPS,
    HUGE,
    ScalerParams,
    ScalingInputs,
    SignalNeed,
    mean_work,
)
from ..sample import Sample


def planned_concurrency(
    inputs: ScalingInputs, params: ScalerParams = DEFAULT_PARAMS
) -> tuple[int, float, float] | None:
    """(k, work, target wait): the per-replica concurrency the arrival signal plans for, the
    mean request's time alone on a replica, and the p95 queueing wait the SLO leaves.

    None when the mean request size is unknown or empty.
    """
    work = mean_work(inputs)
    if work is None or inputs.mean_prompt_tokens is None:
        return None
    prefill = inputs.mean_prompt_tokens / inputs.prefill_tokens_per_second
    rtt = inputs.rtt_ms / 1000.0
    fraction = params.service_budget_fraction
    budget = max(0.0, inputs.latency_p95_ms / 1000.0 - rtt)
    k = min(inputs.max_concurrency, math.floor(fraction * budget / work + EPS))
    target = budget
    if inputs.ttft_p95_ms is not None:
        ttft_budget = max(0.0, inputs.ttft_p95_ms / 1000.0 - rtt)
        if prefill > 0:
            k = min(k, math.floor(fraction * ttft_budget / prefill + EPS))
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
    arrivals = min(arrival_rate, HUGE) * params.rate_sample_seconds
    return max(params.tolerance, min(0.5, 1.0 / math.sqrt(arrivals)))


def from_sample(sample: Sample, params: ScalerParams = DEFAULT_PARAMS) -> SignalNeed | None:
    """``arrival_need`` at the arrivals now, for a request size that stands for enough
    requests; None without either."""
    if sample.load.arrival is None:
        return None
    return arrival_need(sample.seen.sized, sample.load.arrival, params)
