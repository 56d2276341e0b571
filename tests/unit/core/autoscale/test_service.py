"""A whole service's autoscaling inputs: combining tiers' samples, the primary variant, the RTT."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tierra.core.autoscale import (
    RunningPlacement,
    ServiceSample,
    Signals,
    TierSample,
    arrival_need,
    blended_capacity,
    combine_samples,
    primary_variant,
    service_scaling_inputs,
)
from tierra.core.slo_reach import ServingProfile
from tierra_testing.builders import service, variant


def sample(
    queue: float | None,
    running: float | None,
    arrival: float | None,
    p95: float | None,
    at: float | None = 100.0,
    prompt: float | None = None,
) -> TierSample:
    return TierSample(
        Signals(
            queue_depth=queue,
            running=running,
            arrival_rate=arrival,
            p95_latency_ms=p95,
            observed_at=at,
        ),
        mean_prompt_tokens=prompt,
    )


def test_combining_adds_loads_and_takes_the_worst_latency() -> None:
    combined = combine_samples(
        [sample(2, 5, 3.0, 900.0, prompt=1000.0), sample(1, None, 1.0, 1500.0, prompt=200.0)]
    )
    assert combined is not None
    s = combined.signals
    assert (s.queue_depth, s.running, s.arrival_rate, s.p95_latency_ms) == (3, 5, 4.0, 1500.0)
    assert combined.mean_prompt_tokens == pytest.approx((1000 * 3 + 200 * 1) / 4)


def test_combining_keeps_the_oldest_time_and_missing_stays_missing() -> None:
    combined = combine_samples([sample(None, None, None, None, at=90.0), sample(1, 1, 1, 1)])
    assert combined is not None
    assert combined.signals.observed_at == 90.0
    assert combined.signals.ttft_p95_ms is None
    assert combine_samples([sample(1, 1, 1, 1), sample(1, 1, 1, 1, at=None)]) is not None
    no_time = combine_samples([sample(1, 1, 1, 1), sample(1, 1, 1, 1, at=None)])
    assert no_time is not None and no_time.signals.observed_at is None
    assert combine_samples([]) is None


def test_the_primary_variant_runs_the_most_replicas() -> None:
    svc = service(variants=[variant("l4", model="L4"), variant("h100", model="H100")])
    placements = [RunningPlacement("edge", "l4", 1), RunningPlacement("central", "h100", 3)]
    chosen, tier = primary_variant(svc, placements)
    assert (chosen.name, tier) == ("h100", "central")


def test_with_no_placement_the_first_allowed_variant_sizes_it() -> None:
    svc = service(
        variants=[variant("l4", model="L4"), variant("h100", model="H100")],
        placement={"allowedVariants": ["h100"]},
    )
    chosen, tier = primary_variant(svc, [])
    assert (chosen.name, tier) == ("h100", None)


def test_inputs_sum_replicas_and_take_the_tier_rtt_off_the_budget() -> None:
    svc = service(
        variants=[variant("h100", decode=1000.0, startup=45)],
        placement={"userRegions": {"eu-west": 0.5, "eu-central": 0.5}},
        slo={"latencyP95Ms": 3000, "maxQueuePerReplica": 4},
    )
    placements = [RunningPlacement("a", "h100", 2), RunningPlacement("b", "h100", 1)]
    latency = {"a": {"eu-west": 10.0, "eu-central": 30.0}, "b": {"eu-west": 90.0}}
    observed = ServiceSample(Signals(queue_depth=1, observed_at=5.0), 800.0, 150.0)
    inputs = service_scaling_inputs(svc, placements, latency, ready_replicas=2, sample=observed)
    assert inputs.desired_replicas == 3
    assert inputs.ready_replicas == 2
    assert inputs.rtt_ms == 20.0
    assert inputs.decode_tokens_per_second == 1000.0
    assert inputs.startup_seconds == 45.0
    assert inputs.max_queue_per_replica == 4
    assert (inputs.mean_prompt_tokens, inputs.mean_output_tokens) == (800.0, 150.0)
    assert inputs.signals is not None and inputs.signals.queue_depth == 1


def test_a_tier_without_latency_for_a_region_counts_no_rtt() -> None:
    svc = service(placement={"userRegions": {"us-east": 1.0}})
    inputs = service_scaling_inputs(
        svc,
        [RunningPlacement("a", "h100", 1)],
        {"a": {"eu-west": 10.0}},
        ready_replicas=1,
        sample=None,
    )
    assert inputs.rtt_ms == 0.0
    assert inputs.signals is None


def test_a_service_over_variants_of_different_speeds_is_sized_by_their_mix() -> None:
    """One slow edge replica beside one fast one: the pool serves what both do together,
    not twice the slow one's share."""
    slow = variant("orin", model="Orin", prefill=900.0, decode=90.0, concurrency=4, startup=180)
    fast = variant("l4", model="L4", prefill=6500.0, decode=750.0, concurrency=32, startup=120)
    svc = service(variants=[slow, fast])
    placements = [RunningPlacement("edge", "orin", 1), RunningPlacement("regional", "l4", 1)]
    inputs = service_scaling_inputs(svc, placements, {}, ready_replicas=2, sample=None)
    assert inputs.decode_tokens_per_second == pytest.approx((90.0 + 750.0) / 2)
    assert inputs.max_concurrency == 18
    assert inputs.startup_seconds == 180.0  # the primary variant's (the first of a tie)
    assert blended_capacity(svc, placements[:1]) is None  # one variant: its own profile
    heavy = [RunningPlacement("edge", "orin", 3), RunningPlacement("regional", "l4", 1)]
    mix = service_scaling_inputs(svc, heavy, {}, ready_replicas=4, sample=None)
    assert mix.decode_tokens_per_second == pytest.approx((3 * 90.0 + 750.0) / 4)
    # the arrival signal sizes the mix between the all-slow and all-fast counts
    at = {"prompt": 800.0, "output": 200.0, "rate": 6.0}
    counts = [
        arrival_need(
            replace(i, mean_prompt_tokens=at["prompt"], mean_output_tokens=at["output"]),
            at["rate"],
        )
        for i in (
            service_scaling_inputs(svc, [placements[0]], {}, ready_replicas=1, sample=None),
            inputs,
            service_scaling_inputs(svc, [placements[1]], {}, ready_replicas=1, sample=None),
        )
    ]
    slow_n, mixed_n, fast_n = (c.replicas for c in counts if c is not None)
    assert slow_n > mixed_n > fast_n


def test_each_running_variant_in_each_tier_is_checked_at_its_own_profile() -> None:
    slow = variant("orin", model="Orin", prefill=900.0, decode=90.0, concurrency=4)
    fast = variant("l4", model="L4", prefill=6500.0, decode=750.0)
    svc = service(variants=[slow, fast], placement={"userRegions": {"eu-central": 1.0}})
    placements = [
        RunningPlacement("edge", "orin", 1),
        RunningPlacement("regional", "l4", 2),
        RunningPlacement("central", "l4", 0),  # (asked for none: nothing runs there)
        RunningPlacement("regional", "l4", 1),
    ]
    latency = {"edge": {"eu-central": 4.0}, "regional": {"eu-central": 18.0}}
    inputs = service_scaling_inputs(svc, placements, latency, ready_replicas=3, sample=None)
    assert inputs.serving == (
        ServingProfile("orin", "edge", 900.0, 90.0, 4.0),
        ServingProfile("l4", "regional", 6500.0, 750.0, 18.0),
    )
