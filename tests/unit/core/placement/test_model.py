"""Placement's inputs: a tier's view from its status."""

from __future__ import annotations

from tierra.api.tier import Tier
from tierra.core.placement import (
    PoolCapacity,
    tier_view,
)
from tierra_testing.builders import (
    pool,
)


def test_tier_view_from_status() -> None:
    t = Tier.model_validate(
        {
            "metadata": {"name": "central"},
            "spec": {"level": "central", "region": "eu-central", "pools": [pool()]},
            "status": {
                "conditions": [{"type": "Reachable", "status": "True"}],
                "pools": [{"name": "h100", "capacity": 8, "allocated": 3}],
            },
        }
    )
    tv = tier_view(t)
    assert tv.reachable
    assert tv.pools == {"h100": PoolCapacity("central", "h100", 8, 3)}
    assert tv.pools["h100"].free == 5
    assert not tier_view(t, reachable=False).reachable
