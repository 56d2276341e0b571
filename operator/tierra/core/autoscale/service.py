"""A whole service: its placements, the metrics of every tier it runs in, and the recommender's
inputs over all of them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from tierra.api.inference_service import InferenceService, Variant
from tierra.core.placement import weighted_rtt_ms
from tierra.core.slo_reach import ServingProfile

from .model import EPS, ScalingInputs, Signals, scaling_inputs


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
        max(1, math.floor(mean(lambda v: v.capacity.max_concurrency) + EPS)),
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
    now: float | None = None,
) -> ScalingInputs:
    """The recommender's inputs for a whole service: the replicas over all its placements,
    at the capacity of their variants' mix (``blended_capacity``), with the start-up time of
    the primary variant and the round trip of its tier from the service's user regions taken
    off the latency budget; at ``now``, the floor of an open schedule."""
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
        now=now,
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
