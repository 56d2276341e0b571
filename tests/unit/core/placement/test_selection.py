"""place(): selection, spread over minTiers, held capacity, stability, and its properties."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierra.api.inference_service import InferenceService
from tierra.core.placement import (
    CurrentPlacement,
    TierView,
    explain,
    place,
)
from tierra_testing.builders import (
    applied,
    cheap_and_dear,
    placed_replicas,
    pool,
    service,
    three_tiers,
    tier,
    variant,
)
from tierra_testing.builders import tier_view as view
from tierra_testing.strategies import services, tier_views


def test_places_on_best_and_overflows_in_score_order() -> None:
    tiers = [
        view(tier("central", pools=[pool(price=1.0)]), {"h100": 2}),
        view(tier("regional", "regional", pools=[pool(price=3.0)])),
    ]
    decision = place(service(), 5, tiers)
    assert placed_replicas(decision) == {
        ("central", "h100", "h100"): 2,
        ("regional", "h100", "h100"): 3,
    }
    assert decision.placements[0].reason.startswith("best by cost")
    assert decision.placements[1].reason.startswith("overflow: better candidates full")
    assert decision.satisfied
    assert decision.spread_ok


def test_summary_line() -> None:
    decision = place(service(), 3, cheap_and_dear())
    assert decision.summary == "3/3 replicas on central/h100/h100 x3 (objective cost)"


def test_unsatisfied_when_nothing_fits() -> None:
    decision = place(service(), 3, [view(tier(), {"h100": (8, 8)})])
    assert not decision.satisfied
    assert decision.unplaced == 3
    assert decision.placements == ()
    assert decision.summary == "0/3 replicas placed; 3 unplaced: no feasible candidate (1 rejected)"


def test_partially_placed_when_feasible_pools_fill() -> None:
    decision = place(service(), 5, [view(tier(), {"h100": 3})])
    assert decision.unplaced == 2
    assert "2 unplaced: feasible pools full" in decision.summary


def test_scale_to_zero() -> None:
    current = [CurrentPlacement("central", "h100", "h100", 2)]
    decision = place(service(), 0, cheap_and_dear(), current)
    assert decision.placements == ()
    assert decision.satisfied
    assert decision.spread_ok
    assert decision.summary == "scaled to zero"
    assert [str(r) for r in decision.dropped] == ["central/h100/h100: scaled to zero"]
    assert decision.held_delta == {("central", "h100"): -2}


def test_negative_desired_is_an_error() -> None:
    with pytest.raises(ValueError, match="desired_replicas"):
        place(service(), -1, cheap_and_dear())


def test_one_pool_per_tier_and_variant() -> None:
    # Both pools would render to the same Deployment <service>-<variant>-<tier>.
    t = tier(pools=[pool("h100-a", price=1.0), pool("h100-b", price=1.0)])
    decision = place(service(), 4, [view(t, {"h100-a": 2, "h100-b": 2})])
    assert placed_replicas(decision) == {("central", "h100-a", "h100"): 2}
    assert decision.unplaced == 2


def test_variants_share_their_pool_capacity() -> None:
    svc = service(variants=[variant("tp1", count=1, decode=1000), variant("tp2", count=2)])
    decision = place(svc, 5, [view(tier(), {"h100": 6})])
    # tp2: 2 GPUs at 2400 tok/s beats tp1 per token; 3 tp2 replicas use all 6 GPUs.
    assert placed_replicas(decision) == {("central", "h100", "tp2"): 3}
    assert decision.unplaced == 2


def test_min_tiers_spreads_evenly_over_the_best_tiers() -> None:
    svc = service(placement={"minTiers": 2})
    assert placed_replicas(place(svc, 4, three_tiers())) == {
        ("t1", "h100", "h100"): 2,
        ("t2", "h100", "h100"): 2,
    }
    decision = place(svc, 5, three_tiers())
    assert placed_replicas(decision) == {("t1", "h100", "h100"): 3, ("t2", "h100", "h100"): 2}
    assert decision.spread_ok
    assert decision.placements[1].reason.startswith("spread over minTiers 2")


def test_spread_fills_around_a_full_tier() -> None:
    svc = service(placement={"minTiers": 2})
    tiers = three_tiers()
    tiers[0] = view(tiers[0].tier, {"h100": 1})
    assert placed_replicas(place(svc, 4, tiers)) == {
        ("t1", "h100", "h100"): 1,
        ("t2", "h100", "h100"): 3,
    }


def test_spread_spills_to_a_third_tier_when_spread_tiers_are_full() -> None:
    svc = service(placement={"minTiers": 2})
    tiers = [view(t.tier, {"h100": 2}) for t in three_tiers()]
    assert placed_replicas(place(svc, 5, tiers)) == {
        ("t1", "h100", "h100"): 2,
        ("t2", "h100", "h100"): 2,
        ("t3", "h100", "h100"): 1,
    }


def test_spread_shortfall_is_flagged_not_unsatisfied() -> None:
    svc = service(placement={"minTiers": 3})
    decision = place(svc, 4, three_tiers()[:2])
    assert decision.satisfied
    assert not decision.spread_ok
    assert decision.summary.endswith("; spread over 2 tier(s), minTiers 3")
    assert "spread short: 2 tier(s) used, minTiers 3" in explain(decision)


def test_fewer_replicas_than_min_tiers_use_one_tier_each() -> None:
    svc = service(placement={"minTiers": 3})
    decision = place(svc, 2, three_tiers())
    assert placed_replicas(decision) == {("t1", "h100", "h100"): 1, ("t2", "h100", "h100"): 1}
    assert decision.spread_ok


def test_held_capacity_is_not_double_booked() -> None:
    decision = place(service(), 4, cheap_and_dear(), held={("central", "h100"): 6})
    assert placed_replicas(decision) == {
        ("central", "h100", "h100"): 2,
        ("regional", "h100", "h100"): 2,
    }
    assert decision.held_delta == {("central", "h100"): 2, ("regional", "h100"): 2}


def test_held_capacity_appears_in_rejection() -> None:
    decision = place(service(), 1, [view(tier())], held={("central", "h100"): 8})
    assert [str(r) for r in decision.rejected] == [
        "central/h100/h100: needs 1 nvidia.com/gpu per replica, 0 free of 8"
    ]


def test_current_placement_is_kept_when_a_cheaper_tier_appears() -> None:
    current = [CurrentPlacement("regional", "h100", "h100", 2)]
    decision = place(service(), 2, cheap_and_dear(), current)
    assert placed_replicas(decision) == {("regional", "h100", "h100"): 2}
    assert decision.placements[0].reason.startswith("kept: current placement still feasible")
    assert decision.held_delta == {}


def test_own_usage_counts_as_available_to_the_service() -> None:
    tiers = [view(tier("regional", "regional"), {"h100": (2, 2)})]
    current = [CurrentPlacement("regional", "h100", "h100", 2)]
    decision = place(service(), 2, tiers, current)
    assert placed_replicas(decision) == {("regional", "h100", "h100"): 2}
    assert decision.ranked[0].free == 2


def test_pending_replicas_are_not_credited() -> None:
    # The pool is full with someone else's pods; ours never got scheduled.
    tiers = cheap_and_dear()
    tiers[1] = view(tiers[1].tier, {"h100": (2, 2)})
    current = [CurrentPlacement("regional", "h100", "h100", 2, scheduled=0)]
    decision = place(service(), 2, tiers, current)
    assert placed_replicas(decision) == {("central", "h100", "h100"): 2}
    assert [str(r) for r in decision.dropped] == [
        "regional/h100/h100: needs 1 nvidia.com/gpu per replica, 0 free of 2"
    ]


def test_grows_in_place() -> None:
    current = [CurrentPlacement("regional", "h100", "h100", 2)]
    tiers = cheap_and_dear()
    tiers[1] = view(tiers[1].tier, {"h100": (8, 2)})
    assert placed_replicas(place(service(), 4, tiers, current)) == {("regional", "h100", "h100"): 4}


def test_spills_to_the_best_candidate_when_full() -> None:
    current = [CurrentPlacement("regional", "h100", "h100", 2)]
    tiers = cheap_and_dear()
    tiers[1] = view(tiers[1].tier, {"h100": (3, 2)})
    decision = place(service(), 4, tiers, current)
    assert placed_replicas(decision) == {
        ("regional", "h100", "h100"): 3,
        ("central", "h100", "h100"): 1,
    }
    assert decision.held_delta == {("central", "h100"): 1, ("regional", "h100"): 1}


def test_shrinks_the_worst_placement_first() -> None:
    current = [
        CurrentPlacement("central", "h100", "h100", 2),
        CurrentPlacement("regional", "h100", "h100", 2),
    ]
    assert placed_replicas(place(service(), 3, cheap_and_dear(), current)) == {
        ("central", "h100", "h100"): 2,
        ("regional", "h100", "h100"): 1,
    }
    decision = place(service(), 2, cheap_and_dear(), current)
    assert placed_replicas(decision) == {("central", "h100", "h100"): 2}
    assert [str(r) for r in decision.dropped] == ["regional/h100/h100: scaled down"]


def test_balanced_service_shrinks_its_fullest_tier() -> None:
    svc = service(placement={"minTiers": 2})
    current = [
        CurrentPlacement("t1", "h100", "h100", 3),
        CurrentPlacement("t2", "h100", "h100", 2),
    ]
    assert placed_replicas(place(svc, 4, three_tiers(), current)) == {
        ("t1", "h100", "h100"): 2,
        ("t2", "h100", "h100"): 2,
    }


def test_raising_min_tiers_adds_a_tier_without_moving_more_than_needed() -> None:
    svc = service(placement={"minTiers": 2})
    current = [CurrentPlacement("t3", "h100", "h100", 4)]
    decision = place(svc, 4, three_tiers(), current)
    assert placed_replicas(decision) == {("t1", "h100", "h100"): 1, ("t3", "h100", "h100"): 3}
    assert decision.spread_ok


def test_kept_placement_is_trimmed_when_its_pool_shrinks() -> None:
    # Two of the regional nodes' GPUs are gone: 4 scheduled replicas, capacity now 2.
    tiers = cheap_and_dear()
    tiers[1] = view(tiers[1].tier, {"h100": (2, 2)})
    current = [CurrentPlacement("regional", "h100", "h100", 4, scheduled=2)]
    decision = place(service(), 4, tiers, current)
    assert placed_replicas(decision) == {
        ("regional", "h100", "h100"): 2,
        ("central", "h100", "h100"): 2,
    }


def test_a_current_placement_on_a_lost_tier_is_replaced() -> None:
    tiers = cheap_and_dear()
    tiers[1] = replace(view(tiers[1].tier, reachable=False), lost=True)
    current = [CurrentPlacement("regional", "h100", "h100", 2)]
    decision = place(service(), 2, tiers, current)
    assert placed_replicas(decision) == {("central", "h100", "h100"): 2}
    assert [str(r) for r in decision.dropped] == ["regional/h100/h100: tier lost"]
    assert [r.filter for r in decision.dropped] == ["reachable"]


def test_an_unreachable_tier_not_lost_yet_keeps_what_runs_there_but_takes_nothing_new() -> None:
    tiers = cheap_and_dear()
    tiers[1] = view(tiers[1].tier, reachable=False)
    current = [CurrentPlacement("regional", "h100", "h100", 2)]
    assert placed_replicas(place(service(), 2, tiers, current)) == {("regional", "h100", "h100"): 2}
    tiers[0] = view(tiers[0].tier, reachable=False)
    assert placed_replicas(place(service(), 2, tiers)) == {}


@pytest.mark.parametrize(
    ("current", "reason"),
    [
        (CurrentPlacement("gone", "h100", "h100", 1), "tier no longer exists"),
        (CurrentPlacement("central", "gone", "h100", 1), "pool no longer in tier"),
        (CurrentPlacement("central", "h100", "gone", 1), "variant no longer in spec"),
    ],
)
def test_dropped_current_placements_say_why(current: CurrentPlacement, reason: str) -> None:
    decision = place(service(), 1, cheap_and_dear(), [current])
    assert [r.reason for r in decision.dropped] == [reason]
    assert decision.satisfied


def test_duplicate_current_entries_are_summed() -> None:
    current = [
        CurrentPlacement("regional", "h100", "h100", 1),
        CurrentPlacement("regional", "h100", "h100", 2),
    ]
    assert placed_replicas(place(service(), 3, cheap_and_dear(), current)) == {
        ("regional", "h100", "h100"): 3
    }


def test_decision_does_not_depend_on_input_order() -> None:
    tiers = three_tiers()
    svc = service(placement={"minTiers": 2})
    current = [
        CurrentPlacement("t3", "h100", "h100", 1),
        CurrentPlacement("t2", "h100", "h100", 1),
    ]
    a = place(svc, 5, tiers, current)
    b = place(svc, 5, list(reversed(tiers)), list(reversed(current)))
    assert a == b


@given(
    count=st.integers(1, 4),
    frees=st.lists(st.integers(0, 12), min_size=1, max_size=5),
    min_tiers=st.integers(1, 3),
    data=st.data(),
)
def test_all_replicas_placed_when_capacity_suffices(
    count: int, frees: list[int], min_tiers: int, data: st.DataObject
) -> None:
    svc = service(variants=[variant("v", count=count)], placement={"minTiers": min_tiers})
    tiers = [view(tier(f"t{i}"), {"h100": free}) for i, free in enumerate(frees)]
    room = sum(free // count for free in frees)
    desired = data.draw(st.integers(0, room))
    decision = place(svc, desired, tiers)
    assert decision.satisfied
    assert decision.placed == desired
    tiers_with_room = sum(1 for free in frees if free >= count)
    if tiers_with_room >= min(min_tiers, desired):
        assert decision.spread_ok


@given(n_tiers=st.integers(2, 5), min_tiers=st.integers(2, 5), desired=st.integers(0, 40))
def test_spread_is_balanced_when_capacity_is_ample(
    n_tiers: int, min_tiers: int, desired: int
) -> None:
    svc = service(placement={"minTiers": min_tiers})
    tiers = [view(tier(f"t{i}"), {"h100": 100}) for i in range(n_tiers)]
    decision = place(svc, desired, tiers)
    counts = [p.replicas for p in decision.placements]
    assert sum(counts) == desired
    assert len(counts) == min(min_tiers, n_tiers, desired)
    assert not counts or max(counts) - min(counts) <= 1


@given(tiers=tier_views(), svc=services(), desired=st.integers(0, 12), data=st.data())
def test_placement_is_deterministic_and_order_independent(
    tiers: list[TierView], svc: InferenceService, desired: int, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(tiers))
    assert place(svc, desired, tiers) == place(svc, desired, shuffled)


@given(tiers=tier_views(), svc=services(), desired=st.integers(1, 12))
def test_applying_a_decision_is_a_fixed_point(
    tiers: list[TierView], svc: InferenceService, desired: int
) -> None:
    first = place(svc, desired, tiers)
    # The cluster now shows the decision's pods as allocated; the service reports them current.
    current = [CurrentPlacement(*p.key, p.replicas) for p in first.placements]
    second = place(svc, desired, applied(tiers, [first]), current)
    assert placed_replicas(second) == placed_replicas(first)
    assert second.held_delta == {}
    assert all(p.reason.startswith("kept") for p in second.placements)
