"""Whether a running variant can meet the service's SLO at all, for the observed request mix.

A replica serves a request alone fastest: its prefill at the profiled prefill rate, then its
decode at the profiled decode rate, plus the tier's round trip. When the *mean* request of the
observed mix takes longer than the latency or TTFT goal even so, no replica count meets that
goal on that variant: adding replicas there only spends money. (The mean request is a lower
bound for the p95's: most requests' p95 is above their mean, and queueing only adds to it.)

The autoscaler judges the variants running (``out_of_reach``: the SLOReachable condition, and
goals it does not chase with replicas); placement rules out a variant whose floor is above a
goal for the measured mean request (``tierra.core.placement.request_within_reach``), so the
service moves where the goal can be met.

The check is made at the profile's speed, not at the speed learnt online, which is one figure
for a service spread over several variants; so it claims only what the profile itself says.
A goal flagged once stays flagged until the floor is ``margin`` below it, so a mean request
size that wanders around the edge does not turn the verdict (and its Events) back and forth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from tierra.api.inference_service import Variant
from tierra.core.queue_model import solo_service_seconds

Metric = Literal["p95 latency", "p95 TTFT"]


@dataclass(frozen=True)
class ServingProfile:
    """One variant running in one tier: its profiled rates and the tier's round trip."""

    variant: str
    tier: str
    prefill_tokens_per_second: float
    decode_tokens_per_second: float
    rtt_ms: float = 0.0

    @classmethod
    def of(cls, variant: Variant, tier: str, rtt_ms: float = 0.0) -> ServingProfile:
        """The variant's profile, running in ``tier`` at ``rtt_ms`` from its users."""
        capacity = variant.capacity
        return cls(
            variant.name,
            tier,
            capacity.prefill_tokens_per_second,
            capacity.decode_tokens_per_second,
            rtt_ms,
        )


@dataclass(frozen=True)
class OutOfReach:
    """A goal that ``variant`` in ``tier`` misses on the mean request alone."""

    metric: Metric
    variant: str
    tier: str
    floor_ms: float
    """What the mean request takes there with nothing else running (round trip included)."""
    slo_ms: float
    prompt_tokens: float
    output_tokens: float
    rtt_ms: float
    share: float = 1.0
    """The share of the goal the floor was held to (below 1: a margin, see ``misses``); the
    message names it only while the floor is within that margin, not above the goal itself."""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.metric, self.variant, self.tier

    def describe(self, where: bool = True) -> str:
        what = (
            f"the mean {self.prompt_tokens:,.0f}-token prompt"
            if self.metric == "p95 TTFT"
            else f"the mean request of {self.prompt_tokens:,.0f} prompt + "
            f"{self.output_tokens:,.0f} output tokens"
        )
        rtt = f" + {self.rtt_ms:,.0f} ms round trip" if self.rtt_ms > 0 else ""
        on = f" on {self.variant} in {self.tier}" if where else ""
        held_by_margin = self.share < 1.0 and self.floor_ms <= self.slo_ms
        bound = f"{self.share:.0%} of the " if held_by_margin else ""
        return (
            f"{self.metric} floor {self.floor_ms:,.0f} ms{on} > {bound}SLO {self.slo_ms:,.0f} ms "
            f"({what} alone, at the profiled rates{rtt})"
        )


def floors_ms(
    profile: ServingProfile, prompt_tokens: float, output_tokens: float
) -> tuple[float, float]:
    """(TTFT, latency) of a request of this size alone on a replica of ``profile``, in ms."""
    prefill = prompt_tokens / profile.prefill_tokens_per_second
    whole = solo_service_seconds(
        prompt_tokens,
        output_tokens,
        profile.prefill_tokens_per_second,
        profile.decode_tokens_per_second,
    )
    return profile.rtt_ms + 1000.0 * prefill, profile.rtt_ms + 1000.0 * whole


def misses(
    profile: ServingProfile,
    prompt_tokens: float,
    output_tokens: float,
    latency_p95_ms: float,
    ttft_p95_ms: float | None,
    share: Callable[[Metric], float] = lambda _: 1.0,
) -> tuple[OutOfReach, ...]:
    """The goals whose ``share`` the variant's floor for a request of this size is above
    (none for a size that is not a number)."""
    if not (math.isfinite(prompt_tokens) and math.isfinite(output_tokens)):
        return ()
    ttft, latency = floors_ms(profile, prompt_tokens, output_tokens)
    goals: tuple[tuple[Metric, float, float | None], ...] = (
        ("p95 latency", latency, latency_p95_ms),
        ("p95 TTFT", ttft, ttft_p95_ms),
    )
    return tuple(
        OutOfReach(
            metric,
            profile.variant,
            profile.tier,
            floor,
            goal,
            prompt_tokens,
            output_tokens,
            profile.rtt_ms,
            share(metric),
        )
        for metric, floor, goal in goals
        if goal is not None and goal > 0 and floor > goal * share(metric)
    )


def out_of_reach(
    profiles: Iterable[ServingProfile],
    prompt_tokens: float,
    output_tokens: float,
    latency_p95_ms: float,
    ttft_p95_ms: float | None,
    previous: Iterable[OutOfReach] = (),
    margin: float = 0.1,
) -> tuple[OutOfReach, ...]:
    """The goals that some running variant cannot meet for a request of the mean size: a
    floor above the goal, or, for a goal flagged in ``previous``, above ``1 - margin`` of it."""
    flagged = {o.key for o in previous}

    def held_to(profile: ServingProfile) -> Callable[[Metric], float]:
        return lambda m: 1.0 - margin if (m, profile.variant, profile.tier) in flagged else 1.0

    return tuple(
        found
        for profile in profiles
        for found in misses(
            profile, prompt_tokens, output_tokens, latency_p95_ms, ttft_p95_ms, held_to(profile)
        )
    )


def reach_verdict(found: tuple[OutOfReach, ...] | None) -> tuple[bool | None, str, str]:
    """The SLOReachable condition (status, reason, message) from ``out_of_reach``'s answer
    (None: the request size is not known yet)."""
    if found is None:
        return None, "RequestSizeUnknown", "the mean request size is not measured yet"
    if not found:
        return (
            True,
            "WithinReach",
            "the mean request alone meets the SLO on every running variant (at the profiled rates)",
        )
    return (
        False,
        "OutOfReach",
        "; ".join(o.describe() for o in found)
        + ": no replica count meets it there, and the autoscaler does not add replicas for it",
    )
