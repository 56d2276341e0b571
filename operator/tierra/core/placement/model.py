"""What placement reads and what it decides: pools, tiers and current placements in;
candidates out of them; placements, rejections and rankings as the decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tierra.api.common import Objective
from tierra.api.inference_service import InferenceService, Variant
from tierra.api.tier import Pool, Tier
from tierra.core.accelerators import units_per_replica

PoolKey = tuple[str, str]
"""(tier, pool)."""
CandidateKey = tuple[str, str, str]
"""(tier, pool, variant)."""


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


# --------------------------------------------------------------------------------------------
# Candidates


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


def service_key(service: InferenceService) -> str:
    return f"{service.metadata.namespace or ''}/{service.metadata.name}"
