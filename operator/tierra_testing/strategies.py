"""Hypothesis strategies for the placement properties: small fleets of tiers with random
pools, prices, capacity and reachability, and services over a few accelerator variants."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tierra.api.inference_service import InferenceService
from tierra.core.placement import TierView
from tierra_testing.builders import pool, service, tier, tier_view, variant

POOL_KINDS: dict[str, dict[str, Any]] = {
    "h100": pool("h100", "nvidia-gpu", "H100"),
    "l4": pool("l4", "nvidia-gpu", "L4"),
    "v5e": pool("v5e", "google-tpu", "v5e"),
}
VARIANTS: dict[str, dict[str, Any]] = {
    "h100": variant("h100", "nvidia-gpu", "H100", decode=2400),
    "h100x2": variant("h100x2", "nvidia-gpu", "H100", count=2, decode=4000),
    "l4": variant("l4", "nvidia-gpu", "L4", decode=300),
    "gpu": variant("gpu", "nvidia-gpu", None, count=3, decode=1000),
    "tpu": variant("tpu", "google-tpu", "v5e", count=4, decode=1900),
}


@st.composite
def tier_views(draw: st.DrawFn) -> list[TierView]:
    """One to four tiers, each with some of ``POOL_KINDS`` at random prices, capacity and
    allocation, reachable or not."""
    views = []
    for i in range(draw(st.integers(1, 4))):
        kinds = draw(st.lists(st.sampled_from(sorted(POOL_KINDS)), min_size=1, unique=True))
        pools = [
            {**POOL_KINDS[k], "pricePerAcceleratorHour": draw(st.sampled_from([0.5, 1.0, 2.0]))}
            for k in kinds
        ]
        t = tier(
            f"t{i}",
            draw(st.sampled_from(["central", "regional", "edge"])),
            carbon=draw(st.none() | st.sampled_from([50.0, 300.0])),
            pools=pools,
        )
        capacity: dict[str, int | tuple[int, int]] = {}
        for k in kinds:
            total = draw(st.integers(0, 12))
            capacity[k] = (total, draw(st.integers(0, total)))
        views.append(tier_view(t, capacity, reachable=draw(st.booleans())))
    return views


@st.composite
def services(draw: st.DrawFn, name: str = "svc") -> InferenceService:
    """A service with some of ``VARIANTS``, a random minTiers and objective."""
    names = draw(st.lists(st.sampled_from(sorted(VARIANTS)), min_size=1, unique=True))
    return service(
        name,
        variants=[VARIANTS[n] for n in names],
        placement={
            "minTiers": draw(st.integers(1, 3)),
            "objective": draw(st.sampled_from(["cost", "latency", "carbon"])),
        },
    )
