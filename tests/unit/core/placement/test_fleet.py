"""plan_fleet(): services placed in turn on shared capacity, never over-allocated."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierra.api.inference_service import InferenceService
from tierra.core.placement import (
    CurrentPlacement,
    TierView,
    plan_fleet,
)
from tierra_testing.builders import (
    applied,
    placed_replicas,
    service,
    tier,
    units_by_pool,
)
from tierra_testing.builders import tier_view as view
from tierra_testing.strategies import services, tier_views


def test_plan_fleet_threads_capacity_between_services() -> None:
    a, b = service("a"), service("b")
    plan = plan_fleet([(b, 6), (a, 6)], [view(tier())], {})
    assert list(plan.decisions) == ["team-a/a", "team-a/b"]
    assert placed_replicas(plan.decisions["team-a/a"]) == {("central", "h100", "h100"): 6}
    assert placed_replicas(plan.decisions["team-a/b"]) == {("central", "h100", "h100"): 2}
    assert plan.decisions["team-a/b"].unplaced == 4
    assert plan.held == {("central", "h100"): 8}


def test_plan_fleet_places_already_placed_services_first() -> None:
    newcomer, incumbent = service("a"), service("z")
    tiers = [view(tier(), {"h100": (8, 6)})]
    current = {"team-a/z": [CurrentPlacement("central", "h100", "h100", 6)]}
    plan = plan_fleet([(newcomer, 2), (incumbent, 8)], tiers, current)
    assert list(plan.decisions) == ["team-a/z", "team-a/a"]
    assert placed_replicas(plan.decisions["team-a/z"]) == {("central", "h100", "h100"): 8}
    assert plan.decisions["team-a/a"].unplaced == 2


def test_plan_fleet_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        plan_fleet([(service(), 1), (service(), 2)], [view(tier())], {})


@given(
    tiers=tier_views(),
    fleet=st.lists(st.tuples(services(), st.integers(0, 10)), min_size=1, max_size=4),
)
def test_plan_fleet_never_over_allocates_a_pool(
    tiers: list[TierView], fleet: list[tuple[InferenceService, int]]
) -> None:
    fleet = [
        (svc.model_copy(update={"metadata": svc.metadata.model_copy(update={"name": f"s{i}"})}), n)
        for i, (svc, n) in enumerate(fleet)
    ]
    plan = plan_fleet(fleet, tiers, {})
    used = units_by_pool(list(plan.decisions.values()))
    for tv in tiers:
        for p in tv.pools.values():
            assert used[(tv.name, p.pool)] <= p.free
    assert dict(plan.held) == {k: v for k, v in used.items() if v}
    for d in plan.decisions.values():
        assert d.placed + d.unplaced == d.desired
        assert all(p.replicas > 0 for p in d.placements)


@given(
    tiers=tier_views(),
    fleet=st.lists(st.tuples(services(), st.integers(0, 10), st.integers(0, 10)), max_size=4),
)
def test_replanning_a_placed_fleet_never_over_allocates(
    tiers: list[TierView], fleet: list[tuple[InferenceService, int, int]]
) -> None:
    named = [
        (
            svc.model_copy(update={"metadata": svc.metadata.model_copy(update={"name": f"s{i}"})}),
            before,
            after,
        )
        for i, (svc, before, after) in enumerate(fleet)
    ]
    first = plan_fleet([(svc, before) for svc, before, _ in named], tiers, {})
    current = {
        key: [CurrentPlacement(*p.key, p.replicas) for p in d.placements]
        for key, d in first.decisions.items()
    }
    second = plan_fleet(
        [(svc, after) for svc, _, after in named],
        applied(tiers, list(first.decisions.values())),
        current,
    )
    used = units_by_pool(list(second.decisions.values()))
    for tv in tiers:
        for p in tv.pools.values():
            assert used[(tv.name, p.pool)] <= p.free
