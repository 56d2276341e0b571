"""Many services placed in turn on shared capacity, each seeing what the earlier ones took."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tierra.api.inference_service import InferenceService
from tierra.core.placement.model import (
    CurrentPlacement,
    PlacementDecision,
    PoolKey,
    TierView,
    service_key,
)
from tierra.core.placement.selection import place


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
