"""explain(): a decision told for a person."""

from __future__ import annotations

from dataclasses import replace

from tierra.core.placement import (
    CurrentPlacement,
    explain,
    place,
)
from tierra_testing.builders import (
    cheap_and_dear,
    service,
    tier,
)
from tierra_testing.builders import tier_view as view


def test_explain_is_short_and_names_every_reason() -> None:
    svc = service(placement={"residency": "eu"})
    tiers = [
        *cheap_and_dear(),
        view(tier("us", residency=["us"])),
        replace(view(tier("down"), reachable=False), lost=True),
    ]
    current = [CurrentPlacement("down", "h100", "h100", 1)]
    text = explain(place(svc, 3, tiers, current))
    lines = text.splitlines()
    assert lines[0] == "team-a/chat: 3/3 replicas placed (objective cost, minTiers 1)"
    assert "placed:" in lines
    assert any("central/h100/h100  x3  best by cost" in line for line in lines)
    assert "feasible, best first:" in lines
    assert any(line.startswith("  1. central/h100/h100") and "8 free" in line for line in lines)
    assert "  us/h100: residency eu required, tier has [us]" in lines
    assert "  down/h100: tier lost" in lines
    assert "dropped from current placement:" in lines
    assert "  down/h100/h100: tier lost" in lines
    assert len(lines) < 20


def test_explain_caps_long_rejection_lists() -> None:
    tiers = [view(tier(f"us-{i:02}", residency=["us"])) for i in range(15)]
    decision = place(service(placement={"residency": "eu"}), 1, tiers)
    lines = explain(decision).splitlines()
    assert len(decision.rejected) == 15
    assert "  ... and 5 more" in lines
    assert len(lines) < 20


def test_explain_lists_unplaced() -> None:
    text = explain(place(service(), 2, [view(tier(), {"h100": 1})]))
    assert "unplaced: 1 (feasible pools full)" in text.splitlines()
