"""Scorers: one number per feasible candidate under the service's objective, lower is
better."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from tierra.api.common import Objective
from tierra.api.inference_service import Variant
from tierra.core.accelerators import nominal_kilowatts, units_per_replica
from tierra.core.placement.model import Candidate, weighted_rtt_ms

UNKNOWN_CARBON_INTENSITY = 1000.0
"""gCO2e/kWh assumed for a tier that states none: a coal-heavy grid, so tiers that publish a
cleaner figure win under the carbon objective rather than unknown ones."""


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
