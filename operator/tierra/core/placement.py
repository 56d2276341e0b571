"""Placement: where a service's replicas run, as filter -> score -> select, each step explainable.

Candidates are every (tier, pool, variant) of the service's allowed variants. Filters reject
candidates with a human reason (first failing filter wins); scorers rank the rest by the
service's objective (lower is better); selection hands out replicas greedily, spreading over
``placement.minTiers`` tiers and keeping the service where it already runs.

Capacity contract (no double-booking)
-------------------------------------
For a pool, ``PoolCapacity.allocated`` is what the cluster shows: units (accelerators, or cores
for cpu pools) requested by *scheduled* pods of every workload, this service's included.
``held[(tier, pool)]`` is what the operator's own bookkeeping has committed to *other* services
that ``allocated`` does not show yet (pods just applied or pending). The units this service may
use in a pool are then::

    free_for_service = capacity - allocated - held + own_scheduled_usage

where ``own_scheduled_usage`` credits the service's own scheduled replicas back to itself (see
``CurrentPlacement.scheduled``). Every decision reports ``held_delta`` (its new usage minus that
credit) so a caller placing several services in turn adds it to ``held``; ``plan_fleet`` does.

Selection and spread
--------------------
Replicas are whole: a replica needs all its units in one pool. With ``minTiers`` = 1 replicas
go greedily to the best candidate with room, then the next. With ``minTiers`` = M > 1, the
best candidate of each of the best min(M, desired) tiers first gets one replica, then each
further replica goes to the least-loaded of the tiers in use that has room (round-robin, so
the split is even); when they are all full, replicas spill to the best candidate anywhere,
whose tier joins the rotation. A tier runs a variant on one pool only, since the rendered
Deployment is named ``<service>-<variant>-<tier>``.

Stability
---------
Current placements that still pass every filter are kept: placement only grows them in place,
spills what does not fit to the next best candidates, and shrinks the worst first. Moving to a
better candidate is re-optimisation, which is migration's job, not placement's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from tierra.api.common import Objective, Taint, Toleration
from tierra.api.inference_service import InferenceService, Placement, Variant
from tierra.api.tier import Pool, Tier
from tierra.core.accelerators import (
    TPU_TOPOLOGY_LABEL,
    has_resource_name,
    nominal_kilowatts,
    resource_name,
    units_per_replica,
)
from tierra.core.slo_reach import ServingProfile, misses

PoolKey = tuple[str, str]
"""(tier, pool)."""
CandidateKey = tuple[str, str, str]
"""(tier, pool, variant)."""

LATENCY_BUDGET_FRACTION = 0.5
"""Share of a latency goal the network round trip may take; the rest is left for serving.

A tier whose traffic-weighted RTT exceeds half of ``slo.latencyP95Ms`` (or half of
``slo.ttftP95Ms`` when set) cannot meet the goal once queueing and prefill are added.
"""

UNKNOWN_CARBON_INTENSITY = 1000.0
"""gCO2e/kWh assumed for a tier that states none: a coal-heavy grid, so tiers that publish a
cleaner figure win under the carbon objective rather than unknown ones."""

EXPLAIN_TOP = 5
"""Feasible candidates listed by ``explain``."""
EXPLAIN_MAX_REJECTED = 10
"""Rejections listed by ``explain`` (all of them are in ``PlacementDecision.rejected``)."""


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class PoolCapacity:
    """Units (accelerators, or cores for cpu) of one pool, observed from Nodes and Pods."""

    tier: str
    pool: str
    capacity: int
    allocated: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.allocated)


@dataclass(frozen=True)
class TierView:
    """A tier with its observed state; a pool absent from ``pools`` has no observed capacity."""

    tier: Tier
    reachable: bool
    pools: Mapping[str, PoolCapacity] = field(default_factory=dict)
    deleting: bool = False
    """The Tier is being deleted: nothing may be placed or kept there."""
    lost: bool = False
    """Unreachable for longer than the tier-lost threshold: what runs there is replaced
    elsewhere. An unreachable tier that is not lost yet keeps its placements (one failed
    probe moves nothing) but takes no new ones."""
    unreachable_since: float | None = None
    """Clock time (seconds) since when the tier's cluster has been failing, if it is."""

    @property
    def name(self) -> str:
        return self.tier.metadata.name


def tier_view(tier: Tier, reachable: bool | None = None) -> TierView:
    """A view from ``tier.status``; reachable defaults to the Reachable condition being True."""
    if reachable is None:
        reachable = any(
            c.type == "Reachable" and c.status == "True" for c in tier.status.conditions
        )
    name = tier.metadata.name
    pools = {
        p.name: PoolCapacity(tier=name, pool=p.name, capacity=p.capacity, allocated=p.allocated)
        for p in tier.status.pools
    }
    return TierView(tier=tier, reachable=reachable, pools=pools)


@dataclass(frozen=True)
class CurrentPlacement:
    """Where the service runs now (from its status or its existing Deployments)."""

    tier: str
    pool: str
    variant: str
    replicas: int
    scheduled: int | None = None
    """Replicas whose pods are scheduled, i.e. counted in the pool's ``allocated``; None: all.

    Only scheduled replicas are credited back to the service as free, so replicas pending
    because the pool is full are not mistaken for capacity the service holds.
    """
    pending_since: float | None = None
    """Creation time (epoch seconds) of the oldest of its pods no node has taken yet; None:
    none is waiting (or not known)."""


# --------------------------------------------------------------------------------------------
# Candidates and filters


@dataclass(frozen=True)
class Candidate:
    """One way to run the service: a variant on a pool of a tier."""

    service: InferenceService
    view: TierView
    pool: Pool
    variant: Variant
    free: int
    """Units of the pool this service may use (see the module's capacity contract)."""
    current: bool = False
    """The service runs here now: a cordoned or briefly unreachable tier keeps it."""
    pinned: bool = False
    """Kept whatever the tier's state (reachability, taints, deletion, capacity, latency):
    under ``migration.policy: manual``, or when there is nowhere else to go."""

    @property
    def tier(self) -> Tier:
        return self.view.tier

    @property
    def tier_name(self) -> str:
        return self.view.name

    @property
    def key(self) -> CandidateKey:
        return (self.view.name, self.pool.name, self.variant.name)

    @property
    def pool_key(self) -> PoolKey:
        return (self.view.name, self.pool.name)

    @property
    def units(self) -> int:
        return units_per_replica(self.variant)

    @property
    def label(self) -> str:
        return "/".join(self.key)


FilterScope = Literal["tier", "pool", "variant"]


@dataclass(frozen=True)
class CandidateFilter:
    """A named check; ``scope`` says what a rejection applies to (a whole tier, pool, or one
    variant on a pool), so rejections are reported once at that level."""

    name: str
    scope: FilterScope
    check: Callable[[Candidate], str | None]


def traffic_weights(user_regions: Mapping[str, float]) -> dict[str, float]:
    """The user regions that carry traffic: weight-0 regions are ignored, unless every weight
    is 0, then all regions count equally."""
    return {r: w for r, w in user_regions.items() if w > 0} or dict.fromkeys(user_regions, 1.0)


def weighted_rtt_ms(user_regions: Mapping[str, float], latency_ms: Mapping[str, float]) -> float:
    """Traffic-weighted round trip from the user regions to a tier (0 with no user regions).

    Raises KeyError when the tier has no latency for a region that carries traffic.
    """
    weights = traffic_weights(user_regions)
    if not weights:
        return 0.0
    total = sum(weights.values())
    return sum(latency_ms[region] * w for region, w in sorted(weights.items())) / total


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


# --------------------------------------------------------------------------------------------
# Scorers (lower is better)


def replica_throughput(variant: Variant) -> float:
    """Useful work of one replica, in tokens/s: its profiled decode rate.

    Decode, not prefill, bounds what a replica serves: it is memory-bandwidth bound and an
    order of magnitude slower per token, and chat/agentic traffic spends most replica time
    generating. Prefill is compute bound and overlaps with decode in continuous batching.
    """
    return variant.capacity.decode_tokens_per_second


def accelerator_hours_per_mtok(variant: Variant) -> float:
    """Unit-hours (accelerators, or cores) one million decoded tokens take on the variant."""
    return units_per_replica(variant) / (replica_throughput(variant) * 3600.0) * 1e6


def cost_score(c: Candidate) -> float:
    """Price per million tokens: pool price x units per replica / replica throughput."""
    return c.pool.price_per_accelerator_hour * accelerator_hours_per_mtok(c.variant)


def latency_score(c: Candidate) -> float:
    """Traffic-weighted RTT in ms from the user regions (0 without user regions)."""
    try:
        return weighted_rtt_ms(c.service.spec.placement.user_regions, c.tier.spec.latency_ms)
    except KeyError:
        return math.inf


def carbon_score(c: Candidate) -> float:
    """gCO2e per million tokens: grid intensity x nominal unit power x unit-hours per Mtok."""
    intensity = c.tier.spec.carbon_intensity
    if intensity is None:
        intensity = UNKNOWN_CARBON_INTENSITY
    kw = nominal_kilowatts(c.pool.accelerator.type)
    return intensity * kw * accelerator_hours_per_mtok(c.variant)


SCORERS: Mapping[Objective, Callable[[Candidate], float]] = {
    "cost": cost_score,
    "latency": latency_score,
    "carbon": carbon_score,
}


def describe_score(objective: Objective, score: float) -> str:
    if objective == "cost":
        return f"{score:.3g}/Mtok"
    if objective == "latency":
        return f"{score:.0f} ms RTT"
    return f"{score:.3g} gCO2e/Mtok"


# --------------------------------------------------------------------------------------------
# Outputs


@dataclass(frozen=True)
class PlannedPlacement:
    """Replicas of one variant on one pool of one tier."""

    tier: str
    pool: str
    variant: str
    replicas: int
    reason: str
    accelerators_per_replica: int = 1

    @property
    def key(self) -> CandidateKey:
        return (self.tier, self.pool, self.variant)

    @property
    def pool_key(self) -> PoolKey:
        return (self.tier, self.pool)

    @property
    def accelerators(self) -> int:
        return self.replicas * self.accelerators_per_replica


@dataclass(frozen=True)
class Rejection:
    """A candidate (or, with variant None, a whole pool) filtered out, and why."""

    tier: str
    pool: str
    variant: str | None
    reason: str
    filter: str = ""
    """Name of the filter that failed (for a dropped placement: "" when it was not a filter,
    e.g. scaled down)."""

    def __str__(self) -> str:
        where = f"{self.tier}/{self.pool}" + (f"/{self.variant}" if self.variant else "")
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class ScoredCandidate:
    """A feasible candidate with its score under the service's objective."""

    tier: str
    pool: str
    variant: str
    score: float
    free: int

    @property
    def key(self) -> CandidateKey:
        return (self.tier, self.pool, self.variant)


@dataclass(frozen=True)
class PlacementDecision:
    """Where the service's replicas go, with everything needed to say why."""

    service: str
    objective: Objective
    desired: int
    min_tiers: int
    placements: tuple[PlannedPlacement, ...]
    rejected: tuple[Rejection, ...]
    ranked: tuple[ScoredCandidate, ...]
    """Feasible candidates, best first."""
    dropped: tuple[Rejection, ...]
    """Current placements not kept, and why."""
    satisfied: bool
    unplaced: int
    spread_ok: bool
    """Replicas use at least min(minTiers, desired) tiers (vacuously true when none placed)."""
    summary: str
    held_delta: Mapping[PoolKey, int] = field(default_factory=dict)
    """Per pool: units this decision uses minus the service's own usage already counted in
    ``allocated``; add it to ``held`` before placing the next service."""

    @property
    def placed(self) -> int:
        return sum(p.replicas for p in self.placements)

    @property
    def tiers(self) -> tuple[str, ...]:
        return tuple(sorted({p.tier for p in self.placements}))


# --------------------------------------------------------------------------------------------
# place()


@dataclass(frozen=True)
class _Ranked:
    candidate: Candidate
    score: float
    rank: int


@dataclass(frozen=True)
class _Evaluation:
    feasible: list[Candidate]
    rejected: dict[tuple[str, str, str | None], tuple[str, str]]  # key -> (filter, reason)
    mismatched: dict[CandidateKey, str]


def service_key(service: InferenceService) -> str:
    return f"{service.metadata.namespace or ''}/{service.metadata.name}"


def _allowed_variants(service: InferenceService) -> list[Variant]:
    allowed = service.spec.placement.allowed_variants
    return [v for v in service.spec.variants if not allowed or v.name in allowed]


def _own_credit(
    service: InferenceService, current: Iterable[CurrentPlacement]
) -> dict[PoolKey, int]:
    """Units of the service's scheduled replicas per pool (unknown variants: no credit)."""
    variants = {v.name: v for v in service.spec.variants}
    credit: dict[PoolKey, int] = {}
    for cp in current:
        variant = variants.get(cp.variant)
        if variant is None:
            continue
        scheduled = cp.replicas if cp.scheduled is None else min(cp.scheduled, cp.replicas)
        units = max(0, scheduled) * units_per_replica(variant)
        credit[(cp.tier, cp.pool)] = credit.get((cp.tier, cp.pool), 0) + units
    return credit


def _free_for_service(observed: PoolCapacity | None, held: int, credit: int) -> int:
    if observed is None:
        return 0
    return max(0, observed.capacity - observed.allocated - held + credit)


def _evaluate(
    service: InferenceService,
    views: Sequence[TierView],
    held: Mapping[PoolKey, int],
    credit: Mapping[PoolKey, int],
    current: Collection[CandidateKey] = (),
    pinned: Collection[CandidateKey] = (),
) -> _Evaluation:
    variants = _allowed_variants(service)
    feasible: list[Candidate] = []
    rejected: dict[tuple[str, str, str | None], tuple[str, str]] = {}
    mismatched: dict[CandidateKey, str] = {}
    memo: dict[tuple[str, ...], str | None] = {}
    for view in views:
        for pool in sorted(view.tier.spec.pools, key=lambda p: p.name):
            key = (view.name, pool.name)
            observed = view.pools.get(pool.name)
            free = _free_for_service(observed, held.get(key, 0), credit.get(key, 0))
            any_variant_fits_pool = False
            for variant in variants:
                key3 = (view.name, pool.name, variant.name)
                candidate = Candidate(
                    service, view, pool, variant, free, key3 in current, key3 in pinned
                )
                failure = first_failure(candidate, memo)
                if failure is None:
                    feasible.append(candidate)
                    any_variant_fits_pool = True
                    continue
                failed, reason = failure
                if failed.name == "accelerator":
                    mismatched[candidate.key] = reason
                    continue
                any_variant_fits_pool = True
                scope_variant = variant.name if failed.scope == "variant" else None
                rejected.setdefault((view.name, pool.name, scope_variant), (failed.name, reason))
            if not any_variant_fits_pool:
                have = pool.accelerator.type + (
                    f" {pool.accelerator.model}" if pool.accelerator.model else ""
                )
                why = "; ".join(
                    f"{v.name}: {mismatched[(view.name, pool.name, v.name)]}" for v in variants
                )
                rejected[(view.name, pool.name, None)] = (
                    "accelerator",
                    f"no variant runs on {have} ({why or 'no variant allowed'})",
                )
    return _Evaluation(feasible, rejected, mismatched)


def _rank(service: InferenceService, feasible: Sequence[Candidate]) -> list[_Ranked]:
    placement = service.spec.placement
    scorer = SCORERS[placement.objective]

    def order(item: tuple[Candidate, float]) -> tuple[float, int, str, str, str]:
        c, score = item
        return (score, placement.levels.index(c.tier.spec.level), *c.key)

    scored = sorted(((c, scorer(c)) for c in feasible), key=order)
    return [_Ranked(c, score, rank) for rank, (c, score) in enumerate(scored)]


class _Selection:
    """Replicas handed out so far and the units left per pool (local to one ``place`` call)."""

    def __init__(self, ranked: Sequence[_Ranked]) -> None:
        self.free: dict[PoolKey, int] = {r.candidate.pool_key: r.candidate.free for r in ranked}
        self.replicas: dict[CandidateKey, int] = {}
        self.roles: dict[CandidateKey, str] = {}

    def total(self) -> int:
        return sum(self.replicas.values())

    def tiers(self) -> set[str]:
        return {key[0] for key in self.replicas}

    def tier_replicas(self, tier: str) -> int:
        return sum(n for key, n in self.replicas.items() if key[0] == tier)

    def conflicts(self, c: Candidate) -> bool:
        """One pool per (tier, variant): both render to the same Deployment name."""
        return any(
            key[0] == c.tier_name and key[2] == c.variant.name and key[1] != c.pool.name
            for key in self.replicas
        )

    def room(self, r: _Ranked) -> int:
        """Replicas of this candidate that still fit."""
        c = r.candidate
        return 0 if self.conflicts(c) else self.free[c.pool_key] // c.units

    def add(self, r: _Ranked, role: str, n: int = 1) -> None:
        c = r.candidate
        self.replicas[c.key] = self.replicas.get(c.key, 0) + n
        self.free[c.pool_key] -= n * c.units
        self.roles.setdefault(c.key, role)

    def remove(self, r: _Ranked) -> None:
        c = r.candidate
        self.replicas[c.key] -= 1
        self.free[c.pool_key] += c.units
        if self.replicas[c.key] == 0:
            del self.replicas[c.key]


def _why_not_kept(
    key: CandidateKey,
    service: InferenceService,
    views: Mapping[str, TierView],
    evaluation: _Evaluation,
) -> tuple[str, str]:
    """(filter, reason) a current placement was ruled out by."""
    tier, pool, variant = key
    found = evaluation.rejected.get(key) or evaluation.rejected.get((tier, pool, None))
    if found:
        return found
    if tier not in views:
        return "tier", "tier no longer exists"
    if pool not in {p.name for p in views[tier].tier.spec.pools}:
        return "pool", "pool no longer in tier"
    if variant not in {v.name for v in service.spec.variants}:
        return "variant", "variant no longer in spec"
    if variant not in {v.name for v in _allowed_variants(service)}:
        return "variant", "variant not in placement.allowedVariants"
    return "accelerator", evaluation.mismatched.get(key, "not feasible")


def _current_replicas(current: Iterable[CurrentPlacement]) -> dict[CandidateKey, int]:
    replicas: dict[CandidateKey, int] = {}
    for cp in current:
        if cp.replicas > 0:
            key = (cp.tier, cp.pool, cp.variant)
            replicas[key] = replicas.get(key, 0) + cp.replicas
    return replicas


def _keep_current(
    selection: _Selection,
    by_key: Mapping[CandidateKey, _Ranked],
    current: Mapping[CandidateKey, int],
) -> dict[CandidateKey, tuple[str, str]]:
    """Seed the selection with the current placements that are still feasible, best first
    (trimmed to what fits); return why feasible ones could not be kept at all."""
    dropped: dict[CandidateKey, tuple[str, str]] = {}
    for r in sorted((by_key[k] for k in current if k in by_key), key=lambda r: r.rank):
        n = min(current[r.candidate.key], selection.room(r))
        if n > 0:
            selection.add(r, "kept", n)
        elif selection.conflicts(r.candidate):
            dropped[r.candidate.key] = ("", "one pool per tier and variant")
        else:
            dropped[r.candidate.key] = ("capacity", "pool has no room left")
    return dropped


def _seed_spread(selection: _Selection, ranked: Sequence[_Ranked], required_tiers: int) -> None:
    """Give one replica to the best candidate of each further tier until enough tiers are used."""
    for r in ranked:
        used = selection.tiers()
        if len(used) >= required_tiers:
            return
        if r.candidate.tier_name not in used and selection.room(r) > 0:
            selection.add(r, "best" if not used and r.rank == 0 else "spread")


def _shrink(
    selection: _Selection,
    by_key: Mapping[CandidateKey, _Ranked],
    desired: int,
    required_tiers: int,
    balance: bool,
) -> None:
    """Remove replicas until ``desired`` remain, never dropping below the required tiers while
    another replica can go instead. Balanced services shed from their fullest tier first;
    others from their worst-scoring placement."""

    def victim_order(key: CandidateKey) -> tuple[int, int]:
        fullest_tier_first = -selection.tier_replicas(key[0]) if balance else 0
        return (fullest_tier_first, -by_key[key].rank)

    while selection.total() > desired:
        spare_tiers = len(selection.tiers()) > required_tiers
        removable = [
            key for key in selection.replicas if spare_tiers or selection.tier_replicas(key[0]) > 1
        ]
        victim = min(removable or selection.replicas, key=victim_order)
        selection.remove(by_key[victim])


def _fill(
    selection: _Selection,
    ranked: Sequence[_Ranked],
    by_key: Mapping[CandidateKey, _Ranked],
    *,
    kept: set[CandidateKey],
    desired: int,
    balance: bool,
) -> None:
    """Hand out the remaining replicas.

    Preference order: kept placements (grow in place), then candidates by rank. A balanced
    service (minTiers > 1) gives each next replica to its least-loaded tier that has room, so
    replicas split evenly over the spread tiers; when they are all full, replicas spill to the
    best candidate with room anywhere, whose tier then joins the rotation.
    """
    preference = sorted(ranked, key=lambda r: (r.candidate.key not in kept, r.rank))

    def role_for(r: _Ranked) -> str:
        if r.rank == 0:
            return "best"
        if balance and r.candidate.tier_name in selection.tiers():
            return "spread"
        return "overflow"

    def tier_order(tier: str) -> tuple[int, int]:
        best = min(by_key[k].rank for k in selection.replicas if k[0] == tier)
        return (selection.tier_replicas(tier), best)

    while (missing := desired - selection.total()) > 0:
        choice: _Ranked | None = None
        n = 1
        if balance:
            for tier in sorted(selection.tiers(), key=tier_order):
                choice = next(
                    (
                        r
                        for r in preference
                        if r.candidate.tier_name == tier and selection.room(r) > 0
                    ),
                    None,
                )
                if choice is not None:
                    break
        if choice is None:
            choice = next((r for r in preference if selection.room(r) > 0), None)
            if choice is None:
                return
            if not balance:
                n = min(missing, selection.room(choice))
        selection.add(choice, role_for(choice), n)


_ROLE_TEXT = {
    "kept": "kept: current placement still feasible",
    "best": "best by {objective}",
    "spread": "spread over minTiers {min_tiers}",
    "overflow": "overflow: better candidates full",
}


def place(
    service: InferenceService,
    desired_replicas: int,
    tiers: Sequence[TierView],
    current: Sequence[CurrentPlacement] = (),
    held: Mapping[PoolKey, int] | None = None,
    pinned: Collection[CandidateKey] = frozenset(),
    keep: bool = True,
) -> PlacementDecision:
    """Decide where ``desired_replicas`` replicas of the service run.

    ``held`` carries units committed to other services that ``allocated`` does not show yet
    (see the module docstring). ``pinned`` current placements are kept whatever their tier's
    state (see ``ENVIRONMENT_FILTERS``). The result is a pure function of the arguments; the
    order of ``tiers`` and ``current`` does not matter. ``keep=False`` places from scratch
    (what runs now is only credited as capacity the service holds): the best placement, for
    comparison.
    """
    if desired_replicas < 0:
        raise ValueError(f"desired_replicas must be >= 0, got {desired_replicas}")
    placement = service.spec.placement
    views = sorted(tiers, key=lambda v: v.name)
    credit = _own_credit(service, current)
    current_replicas = _current_replicas(current)
    evaluation = _evaluate(service, views, held or {}, credit, current_replicas, pinned)
    ranked = _rank(service, evaluation.feasible)
    by_key = {r.candidate.key: r for r in ranked}

    balance = placement.min_tiers > 1
    required_tiers = min(placement.min_tiers, desired_replicas)
    selection = _Selection(ranked)
    dropped = _keep_current(selection, by_key, current_replicas) if keep else {}
    kept = set(selection.replicas)
    growable = [r for r in ranked if not (r.candidate.current and cordoned(r.candidate))]
    _seed_spread(selection, growable, required_tiers)
    _shrink(selection, by_key, desired_replicas, required_tiers, balance)
    _fill(selection, growable, by_key, kept=kept, desired=desired_replicas, balance=balance)

    views_by_name = {v.name: v for v in views}
    for key in current_replicas:
        if key not in by_key:
            dropped[key] = _why_not_kept(key, service, views_by_name, evaluation)
    shed = "scaled to zero" if desired_replicas == 0 else "scaled down"
    for key in kept - set(selection.replicas):
        dropped[key] = ("", shed)

    placements = tuple(
        _planned(by_key[key], n, selection.roles[key], service)
        for key, n in sorted(selection.replicas.items(), key=lambda kv: by_key[kv[0]].rank)
    )
    placed = sum(p.replicas for p in placements)
    unplaced = desired_replicas - placed
    # Nothing placed is an unplaced problem, not a spread one.
    spread_ok = placed == 0 or len({p.tier for p in placements}) >= required_tiers

    usage: dict[PoolKey, int] = {}
    for p in placements:
        usage[p.pool_key] = usage.get(p.pool_key, 0) + p.accelerators
    held_delta = {
        key: usage.get(key, 0) - credit.get(key, 0)
        for key in sorted(set(usage) | set(credit))
        if usage.get(key, 0) != credit.get(key, 0)
    }
    # Closest misses first: a candidate that failed a later filter got further. Pools no
    # variant can run on at all are not real candidates: they go last.
    stage = {f.name: index for index, f in enumerate(FILTERS)}
    stage["accelerator"] = -1
    rejected = tuple(
        Rejection(tier, pool, variant, reason, failed)
        for (tier, pool, variant), (failed, reason) in sorted(
            evaluation.rejected.items(),
            key=lambda kv: (-stage[kv[1][0]], kv[0][0], kv[0][1], kv[0][2] or ""),
        )
    )
    decision = PlacementDecision(
        service=service_key(service),
        objective=placement.objective,
        desired=desired_replicas,
        min_tiers=placement.min_tiers,
        placements=placements,
        rejected=rejected,
        ranked=tuple(
            ScoredCandidate(*r.candidate.key, score=r.score, free=r.candidate.free) for r in ranked
        ),
        dropped=tuple(
            Rejection(*key, reason=reason, filter=failed)
            for key, (failed, reason) in sorted(dropped.items())
        ),
        satisfied=unplaced == 0,
        unplaced=unplaced,
        spread_ok=spread_ok,
        summary="",
        held_delta=held_delta,
    )
    return _with_summary(decision)


def with_waiting(
    service: InferenceService, decision: PlacementDecision, key: CandidateKey, replicas: int
) -> PlacementDecision:
    """``decision`` with ``replicas`` more, of those it left unplaced, at ``key``: replicas
    whose pods no node there takes and no other candidate can take keep waiting where they
    are (dropped, they would be placed there again and wait again)."""
    variant = next((v for v in service.spec.variants if v.name == key[2]), None)
    replicas = min(replicas, decision.unplaced)
    if variant is None or replicas <= 0:
        return decision
    units = units_per_replica(variant)
    placements = list(decision.placements)
    found = next((i for i, p in enumerate(placements) if p.key == key), None)
    if found is None:
        placements.append(PlannedPlacement(*key, replicas, "waiting for a node", units))
    else:
        placements[found] = replace(
            placements[found], replicas=placements[found].replicas + replicas
        )
    held = dict(decision.held_delta)
    pool_key = (key[0], key[1])
    held[pool_key] = held.get(pool_key, 0) + replicas * units
    unplaced = decision.unplaced - replicas
    return _with_summary(
        replace(
            decision,
            placements=tuple(placements),
            unplaced=unplaced,
            satisfied=unplaced == 0,
            held_delta={k: v for k, v in held.items() if v},
        )
    )


def _planned(r: _Ranked, replicas: int, role: str, service: InferenceService) -> PlannedPlacement:
    placement = service.spec.placement
    text = _ROLE_TEXT[role].format(objective=placement.objective, min_tiers=placement.min_tiers)
    c = r.candidate
    return PlannedPlacement(
        *c.key,
        replicas=replicas,
        reason=f"{text}; {describe_score(placement.objective, r.score)}",
        accelerators_per_replica=c.units,
    )


def _with_summary(d: PlacementDecision) -> PlacementDecision:
    if d.desired == 0:
        summary = "scaled to zero"
    else:
        where = ", ".join(f"{'/'.join(p.key)} x{p.replicas}" for p in d.placements)
        summary = f"{d.placed}/{d.desired} replicas"
        summary += f" on {where} (objective {d.objective})" if where else " placed"
        if d.unplaced:
            why = "feasible pools full" if d.ranked else "no feasible candidate"
            summary += f"; {d.unplaced} unplaced: {why}"
            if d.rejected:
                summary += f" ({len(d.rejected)} rejected)"
        if not d.spread_ok:
            summary += f"; spread over {len(d.tiers)} tier(s), minTiers {d.min_tiers}"
    return replace(d, summary=summary)


def explain(decision: PlacementDecision) -> str:
    """A short multi-line account of the decision, for a person."""
    d = decision
    lines = [
        f"{d.service}: {d.placed}/{d.desired} replicas placed "
        f"(objective {d.objective}, minTiers {d.min_tiers})"
    ]
    if d.desired == 0:
        lines[0] += ": scaled to zero"
    if d.placements:
        lines.append("placed:")
        width = max(len("/".join(p.key)) for p in d.placements)
        lines += [f"  {'/'.join(p.key):<{width}}  x{p.replicas}  {p.reason}" for p in d.placements]
    if d.unplaced:
        why = "feasible pools full" if d.ranked else "no feasible candidate"
        lines.append(f"unplaced: {d.unplaced} ({why})")
    if not d.spread_ok:
        lines.append(f"spread short: {len(d.tiers)} tier(s) used, minTiers {d.min_tiers}")
    if d.ranked:
        lines.append("feasible, best first:")
        width = max(len("/".join(s.key)) for s in d.ranked[:EXPLAIN_TOP])
        lines += [
            f"  {i}. {'/'.join(s.key):<{width}}  "
            f"{describe_score(d.objective, s.score)}, {s.free} free"
            for i, s in enumerate(d.ranked[:EXPLAIN_TOP], start=1)
        ]
        if len(d.ranked) > EXPLAIN_TOP:
            lines.append(f"  ... and {len(d.ranked) - EXPLAIN_TOP} more")
    if d.rejected:
        lines.append("rejected:")
        lines += [f"  {r}" for r in d.rejected[:EXPLAIN_MAX_REJECTED]]
        if len(d.rejected) > EXPLAIN_MAX_REJECTED:
            lines.append(f"  ... and {len(d.rejected) - EXPLAIN_MAX_REJECTED} more")
    if d.dropped:
        lines.append("dropped from current placement:")
        lines += [f"  {r}" for r in d.dropped]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# plan_fleet()


@dataclass(frozen=True)
class FleetPlan:
    """Decisions for many services placed in turn on shared capacity."""

    decisions: Mapping[str, PlacementDecision]
    """By ``namespace/name``, in planning order."""
    held: Mapping[PoolKey, int]
    """Units committed beyond the observed ``allocated`` once every decision is applied."""


def plan_fleet(
    services: Sequence[tuple[InferenceService, int]],
    tiers: Sequence[TierView],
    current_by_service: Mapping[str, Sequence[CurrentPlacement]],
    held: Mapping[PoolKey, int] | None = None,
) -> FleetPlan:
    """Place services one after another, each seeing the capacity the earlier ones took.

    Order: services already placed first (they keep their capacity ahead of newcomers), then
    by namespace and name. ``current_by_service`` is keyed by ``namespace/name``; ``held``
    carries units committed outside this batch.
    """
    keys = [service_key(s) for s, _ in services]
    if len(set(keys)) != len(keys):
        raise ValueError("plan_fleet: duplicate services")

    def order(item: tuple[InferenceService, int]) -> tuple[bool, str, str]:
        service = item[0]
        placed = any(cp.replicas > 0 for cp in current_by_service.get(service_key(service), ()))
        return (not placed, service.metadata.namespace or "", service.metadata.name)

    ledger: dict[PoolKey, int] = dict(held or {})
    decisions: dict[str, PlacementDecision] = {}
    for service, desired in sorted(services, key=order):
        key = service_key(service)
        decision = place(service, desired, tiers, current_by_service.get(key, ()), ledger)
        for pool_key, delta in decision.held_delta.items():
            ledger[pool_key] = ledger.get(pool_key, 0) + delta
        decisions[key] = decision
    return FleetPlan(decisions=decisions, held={k: v for k, v in sorted(ledger.items()) if v})
