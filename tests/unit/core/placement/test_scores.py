"""Placement scorers: cost, latency and carbon per candidate, and how ties break."""

from __future__ import annotations

import pytest

from tierra.core.placement import (
    carbon_score,
    cost_score,
    place,
)
from tierra_testing.builders import (
    candidate,
    placed_replicas,
    pool,
    service,
    tier,
    variant,
)
from tierra_testing.builders import tier_view as view


def test_cost_prefers_cheapest_per_token_not_per_hour() -> None:
    svc = service(
        variants=[
            variant("h100", model="H100", decode=2400),
            variant("l4", model="L4", decode=300),
        ]
    )
    central = tier("central", pools=[pool("h100", model="H100", price=4.0)])
    regional = tier("regional", "regional", pools=[pool("l4", model="L4", price=0.8)])
    decision = place(svc, 1, [view(central), view(regional)])
    assert placed_replicas(decision) == {("central", "h100", "h100"): 1}
    assert [s.key for s in decision.ranked] == [
        ("central", "h100", "h100"),
        ("regional", "l4", "l4"),
    ]
    # $4/h over 2400 tok/s = $0.463 per million tokens
    assert decision.ranked[0].score == pytest.approx(4.0 / (2400 * 3600) * 1e6)
    assert "$" not in decision.placements[0].reason  # currency-agnostic
    assert "0.463/Mtok" in decision.placements[0].reason


def test_cost_counts_accelerators_per_replica() -> None:
    svc = service(variants=[variant("x", count=4)])
    c = candidate(svc, view(tier(pools=[pool(price=1.0)])), variant_name="x")
    assert cost_score(c) == pytest.approx(4 * 1.0 / (2400 * 3600) * 1e6)


def test_latency_objective_picks_lowest_weighted_rtt() -> None:
    svc = service(
        placement={
            "objective": "latency",
            "userRegions": {"eu-central": 0.7, "eu-west": 0.3},
        }
    )
    a = tier("a", latency={"eu-central": 5, "eu-west": 20}, pools=[pool(price=9)])
    b = tier("b", latency={"eu-central": 30, "eu-west": 2}, pools=[pool(price=1)])
    decision = place(svc, 1, [view(b), view(a)])
    assert placed_replicas(decision) == {("a", "h100", "h100"): 1}
    assert decision.ranked[0].score == pytest.approx(9.5)
    assert "10 ms RTT" in decision.placements[0].reason


def test_carbon_objective_picks_cleanest_grid() -> None:
    svc = service(placement={"objective": "carbon"})
    dirty = tier("dirty", carbon=400)
    clean = tier("clean", carbon=50)
    unknown = tier("unknown")
    decision = place(svc, 1, [view(dirty), view(unknown), view(clean)])
    assert [s.tier for s in decision.ranked] == ["clean", "dirty", "unknown"]
    assert "gCO2e/Mtok" in decision.placements[0].reason


def test_carbon_accounts_for_accelerator_power() -> None:
    svc = service(
        placement={"objective": "carbon"},
        variants=[variant("h100", decode=2400), variant("npu", "edge-npu", decode=200)],
    )
    central = view(tier("central", carbon=300))
    edge = view(
        tier(
            "edge",
            "edge",
            carbon=300,
            pools=[pool("npu", "edge-npu", None, resource_name="example.com/npu")],
        )
    )
    gpu_score = carbon_score(candidate(svc, central))
    npu_score = carbon_score(candidate(svc, edge, "npu", "npu"))
    # 400 W at 2400 tok/s vs 10 W at 200 tok/s
    assert npu_score < gpu_score


def test_ties_break_by_level_preference_order() -> None:
    tiers = [view(tier("a-central", "central")), view(tier("b-edge", "edge"))]
    edge_first = service(placement={"levels": ["edge", "central"]})
    central_first = service(placement={"levels": ["central", "edge"]})
    assert placed_replicas(place(edge_first, 1, tiers)) == {("b-edge", "h100", "h100"): 1}
    assert placed_replicas(place(central_first, 1, tiers)) == {("a-central", "h100", "h100"): 1}


def test_ties_break_by_name_last() -> None:
    tiers = [view(tier("y")), view(tier("x"))]
    assert placed_replicas(place(service(), 1, tiers)) == {("x", "h100", "h100"): 1}


def test_zero_prices_fall_back_to_level_order() -> None:
    svc = service(placement={"levels": ["regional", "central"]})
    tiers = [
        view(tier("c", "central", pools=[pool(price=0)])),
        view(tier("r", "regional", pools=[pool(price=0)])),
    ]
    assert placed_replicas(place(svc, 1, tiers)) == {("r", "h100", "h100"): 1}
