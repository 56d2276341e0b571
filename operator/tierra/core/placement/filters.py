"""Filters: each rules a candidate out with a human reason, or passes it; the first one a
candidate fails is the reason reported, once at the scope it applies to (tier, pool or
variant)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from tierra.api.common import Taint, Toleration
from tierra.api.inference_service import Placement, Variant
from tierra.api.tier import Pool, Tier
from tierra.core.accelerators import TPU_TOPOLOGY_LABEL, has_resource_name, resource_name
from tierra.core.placement.model import Candidate, traffic_weights, weighted_rtt_ms
from tierra.core.slo_reach import ServingProfile, misses

LATENCY_BUDGET_FRACTION = 0.5
"""Share of a latency goal the network round trip may take; the rest is left for serving.

A tier whose traffic-weighted RTT exceeds half of ``slo.latencyP95Ms`` (or half of
``slo.ttftP95Ms`` when set) cannot meet the goal once queueing and prefill are added.
"""


FilterScope = Literal["tier", "pool", "variant"]


@dataclass(frozen=True)
class CandidateFilter:
    """A named check; ``scope`` says what a rejection applies to (a whole tier, pool, or one
    variant on a pool), so rejections are reported once at that level."""

    name: str
    scope: FilterScope
    check: Callable[[Candidate], str | None]


def _missing_regions(placement: Placement, tier: Tier) -> list[str]:
    weights = traffic_weights(placement.user_regions)
    return sorted(r for r in weights if r not in tier.spec.latency_ms)


def level_allowed(c: Candidate) -> str | None:
    levels = c.service.spec.placement.levels
    if c.tier.spec.level in levels:
        return None
    return f"level {c.tier.spec.level} not in placement.levels [{', '.join(levels)}]"


def residency_satisfied(c: Candidate) -> str | None:
    required = c.service.spec.placement.residency
    if required is None or required in c.tier.spec.residency:
        return None
    return f"residency {required} required, tier has [{', '.join(c.tier.spec.residency)}]"


def tier_reachable(c: Candidate) -> str | None:
    if c.view.reachable or c.pinned:
        return None
    if c.current and not c.view.lost:
        return None  # not lost yet: one blip moves nothing
    return "tier lost" if c.view.lost else "tier unreachable"


def tier_not_deleting(c: Candidate) -> str | None:
    return "tier is being deleted" if c.view.deleting and not c.pinned else None


def tolerates(tolerations: Iterable[Toleration], taint: Taint) -> bool:
    """Whether a toleration matches the taint, by the rules of pod tolerations: an empty key
    with Exists matches every key; Exists ignores the value; an empty effect matches all."""
    for t in tolerations:
        if t.effect is not None and t.effect != taint.effect:
            continue
        if t.key is None:
            if t.operator == "Exists":
                return True
            continue
        if t.key != taint.key:
            continue
        if t.operator == "Exists" or (t.value or "") == (taint.value or ""):
            return True
    return False


def _describe_taint(taint: Taint) -> str:
    value = f"={taint.value}" if taint.value else ""
    return f"{taint.key}{value}:{taint.effect}"


def cordoned(c: Candidate) -> bool:
    """An untolerated NoSchedule taint: what runs there stays, but does not grow."""
    tolerations = c.service.spec.placement.tolerations
    return any(
        t.effect == "NoSchedule" and not tolerates(tolerations, t) for t in c.tier.spec.taints
    )


def taints_tolerated(c: Candidate) -> str | None:
    """NoExecute: nothing untolerated stays (drain); NoSchedule: nothing untolerated new
    comes (cordon), what runs there stays."""
    if c.pinned:
        return None
    tolerations = c.service.spec.placement.tolerations
    for taint in c.tier.spec.taints:
        if taint.effect == "NoSchedule" and c.current:
            continue
        if not tolerates(tolerations, taint):
            return f"taint {_describe_taint(taint)} not tolerated"
    return None


def latency_within_slo(c: Candidate) -> str | None:
    if c.pinned:
        return None
    placement, slo = c.service.spec.placement, c.service.spec.slo
    missing = _missing_regions(placement, c.tier)
    if missing:
        return f"no latency known from user region(s) {', '.join(missing)}"
    rtt = weighted_rtt_ms(placement.user_regions, c.tier.spec.latency_ms)
    share = f"{LATENCY_BUDGET_FRACTION:.0%}"
    if rtt > slo.latency_p95_ms * LATENCY_BUDGET_FRACTION:
        return f"weighted RTT {rtt:.0f} ms exceeds {share} of latencyP95 {slo.latency_p95_ms} ms"
    if slo.ttft_p95_ms is not None and rtt > slo.ttft_p95_ms * LATENCY_BUDGET_FRACTION:
        return f"weighted RTT {rtt:.0f} ms exceeds {share} of ttftP95 {slo.ttft_p95_ms} ms"
    return None


def pool_configured(c: Candidate) -> str | None:
    if has_resource_name(c.pool):
        return None
    return f"{c.pool.accelerator.type} pool sets no accelerator.resourceName"


def accelerator_mismatch(pool: Pool, variant: Variant) -> str | None:
    """Why the variant cannot run on the pool's accelerators, or None when it can."""
    want, have = variant.accelerator, pool.accelerator
    if want.type != have.type:
        return f"needs {want.type}, pool has {have.type}"
    if want.model is not None and (have.model or "").lower() != want.model.lower():
        return f"needs {want.type} {want.model}, pool has {have.model or 'an unnamed model'}"
    pool_topology = pool.node_selector.get(TPU_TOPOLOGY_LABEL)
    if want.topology and pool_topology and pool_topology != want.topology:
        return f"needs TPU topology {want.topology}, pool has {pool_topology}"
    return None


def accelerator_matches(c: Candidate) -> str | None:
    return accelerator_mismatch(c.pool, c.variant)


def _unit_name(pool: Pool) -> str:
    return resource_name(pool) if has_resource_name(pool) else pool.accelerator.type


def capacity_available(c: Candidate) -> str | None:
    """A replica needs all its units in one pool: 3 free GPUs do not fit a 4-GPU replica."""
    if c.pinned:
        return None
    observed = c.view.pools.get(c.pool.name)
    if observed is None:
        return "capacity not observed"
    if c.units <= c.free:
        return None
    return f"needs {c.units} {_unit_name(c.pool)} per replica, {c.free} free of {observed.capacity}"


REACH_MARGIN = 0.1
"""A variant new to a service must serve its observed mean request within this much less than
the latency and TTFT goals; where it runs already, within the goals themselves. So a mean
size at the edge neither moves a service off a variant nor back onto it again and again."""


def request_within_reach(c: Candidate) -> str | None:
    """The observed mean request (``status.metrics``, smoothed by the autoscaler) alone on a
    replica of the variant, plus the tier's round trip, within the TTFT and latency goals:
    otherwise no replica count meets them there (see ``tierra.core.slo_reach``). Before the
    size is measured, every variant passes."""
    observed = c.service.status.metrics
    if c.pinned or observed is None:
        return None
    prompt, output = observed.mean_prompt_tokens, observed.mean_output_tokens
    if prompt is None or output is None:
        return None
    slo = c.service.spec.slo
    try:
        rtt = weighted_rtt_ms(c.service.spec.placement.user_regions, c.tier.spec.latency_ms)
    except KeyError:
        return None  # (the latency filter reports the missing region)
    profile = ServingProfile.of(c.variant, c.tier_name, rtt)
    share = 1.0 if c.current else 1.0 - REACH_MARGIN
    missed = misses(profile, prompt, output, slo.latency_p95_ms, slo.ttft_p95_ms, lambda _: share)
    return missed[0].describe(where=False) if missed else None


FILTERS: tuple[CandidateFilter, ...] = (
    CandidateFilter("level", "tier", level_allowed),
    CandidateFilter("residency", "tier", residency_satisfied),
    CandidateFilter("deleting", "tier", tier_not_deleting),
    CandidateFilter("reachable", "tier", tier_reachable),
    CandidateFilter("taints", "tier", taints_tolerated),
    CandidateFilter("latency", "tier", latency_within_slo),
    CandidateFilter("pool", "pool", pool_configured),
    CandidateFilter("accelerator", "variant", accelerator_matches),
    CandidateFilter("reach", "variant", request_within_reach),
    CandidateFilter("capacity", "variant", capacity_available),
)
"""In order: the first failing filter is the reason reported for a candidate."""

ENVIRONMENT_FILTERS = frozenset({"deleting", "reachable", "taints", "latency", "reach", "capacity"})
"""Filters that judge the tier's state rather than the service's spec: what they rule out is
a trigger to move (a lost or drained tier, full pools, RTT beyond the SLO, an observed mean
request the variant cannot serve within it); a pinned placement passes them."""


def first_failure(
    c: Candidate, memo: dict[tuple[str, ...], str | None] | None = None
) -> tuple[CandidateFilter, str] | None:
    """The first filter the candidate fails, and its reason.

    ``memo`` (optional, for one service) remembers tier- and pool-scoped results, which do
    not depend on the variant, so they run once per tier or pool rather than per candidate.
    """
    for candidate_filter in FILTERS:
        if memo is None or candidate_filter.scope == "variant":
            reason = candidate_filter.check(c)
        else:
            where = (c.tier_name,) if candidate_filter.scope == "tier" else c.pool_key
            memo_key = (candidate_filter.name, *where, str(c.current), str(c.pinned))
            if memo_key not in memo:
                memo[memo_key] = candidate_filter.check(c)
            reason = memo[memo_key]
        if reason is not None:
            return candidate_filter, reason
    return None
