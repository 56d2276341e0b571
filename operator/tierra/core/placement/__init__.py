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

Modules
-------
``model`` (inputs, candidates, the decision) <- ``filters`` | ``scores`` <- ``selection``
(``place``, ``with_waiting``) <- ``explain`` | ``fleet`` (``plan_fleet``); an import-linter
contract keeps these layers. Everything public is importable from this package.
"""

from __future__ import annotations

from tierra.core.placement.explain import (
    EXPLAIN_MAX_REJECTED,
    EXPLAIN_TOP,
    explain,
)
from tierra.core.placement.filters import (
    ENVIRONMENT_FILTERS,
    FILTERS,
    LATENCY_BUDGET_FRACTION,
    REACH_MARGIN,
    CandidateFilter,
    FilterScope,
    accelerator_matches,
    accelerator_mismatch,
    capacity_available,
    cordoned,
    first_failure,
    latency_within_slo,
    level_allowed,
    pool_configured,
    request_within_reach,
    residency_satisfied,
    taints_tolerated,
    tier_not_deleting,
    tier_reachable,
    tolerates,
)
from tierra.core.placement.fleet import (
    FleetPlan,
    plan_fleet,
)
from tierra.core.placement.model import (
    Candidate,
    CandidateKey,
    CurrentPlacement,
    PlacementDecision,
    PlannedPlacement,
    PoolCapacity,
    PoolKey,
    Rejection,
    ScoredCandidate,
    TierView,
    service_key,
    tier_view,
    traffic_weights,
    weighted_rtt_ms,
)
from tierra.core.placement.scores import (
    SCORERS,
    UNKNOWN_CARBON_INTENSITY,
    accelerator_hours_per_mtok,
    carbon_score,
    cost_score,
    describe_score,
    latency_score,
    replica_throughput,
)
from tierra.core.placement.selection import (
    place,
    with_waiting,
)

__all__ = [
    "ENVIRONMENT_FILTERS",
    "EXPLAIN_MAX_REJECTED",
    "EXPLAIN_TOP",
    "FILTERS",
    "LATENCY_BUDGET_FRACTION",
    "REACH_MARGIN",
    "SCORERS",
    "UNKNOWN_CARBON_INTENSITY",
    "Candidate",
    "CandidateFilter",
    "CandidateKey",
    "CurrentPlacement",
    "FilterScope",
    "FleetPlan",
    "PlacementDecision",
    "PlannedPlacement",
    "PoolCapacity",
    "PoolKey",
    "Rejection",
    "ScoredCandidate",
    "TierView",
    "accelerator_hours_per_mtok",
    "accelerator_matches",
    "accelerator_mismatch",
    "capacity_available",
    "carbon_score",
    "cordoned",
    "cost_score",
    "describe_score",
    "explain",
    "first_failure",
    "latency_score",
    "latency_within_slo",
    "level_allowed",
    "place",
    "plan_fleet",
    "pool_configured",
    "replica_throughput",
    "request_within_reach",
    "residency_satisfied",
    "service_key",
    "taints_tolerated",
    "tier_not_deleting",
    "tier_reachable",
    "tier_view",
    "tolerates",
    "traffic_weights",
    "weighted_rtt_ms",
    "with_waiting",
]
