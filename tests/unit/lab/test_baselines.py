"""Baseline policies: HPA v2 ratio, tolerance, stabilisation and rate limit; KEDA activation
and cooldown; static-peak sizing; the oracle as the cost floor at full attainment; the
hindsight hold, which knows the past's needs and not the future's."""

from __future__ import annotations

import random
from dataclasses import replace

from tierra.core.queue_model import ReplicaProfile
from tierra.lab.baselines import (
    HoldPolicy,
    HpaBehaviour,
    HpaPolicy,
    KedaPolicy,
    Observation,
    OraclePolicy,
    PolicyContext,
    SharedNeeds,
    SloTarget,
    StaticPeakPolicy,
    StaticPolicy,
    TraceRequest,
    hpa_pods_proposal,
    oracle_needs,
)

PROFILE = ReplicaProfile(
    max_concurrency=8,
    prefill_tokens_per_second=5000,
    decode_tokens_per_second=500,
    startup_seconds=30,
)


def context(**changes: object) -> PolicyContext:
    base = PolicyContext(
        trace=(),
        profile=PROFILE,
        slo=SloTarget(latency_seconds=4.0),
        min_replicas=1,
        max_replicas=20,
        scale_to_zero=False,
        interval=15.0,
        warm_replicas=4,
        peak_replicas=7,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def observe(t: float, concurrency: int, desired: int, ready: int | None = None) -> Observation:
    return Observation(
        time=t,
        waiting=0,
        running=concurrency,
        ready_replicas=desired if ready is None else ready,
        desired_replicas=desired,
        arrival_rate=None,
        p95_latency_ms=None,
        ttft_p95_ms=None,
        mean_prompt_tokens=None,
        mean_output_tokens=None,
    )


# ---- HPA


def test_hpa_proposal_is_the_ceiling_of_the_ratio_times_ready_pods() -> None:
    assert hpa_pods_proposal(4, 4, 0, total=20, target=2, tolerance=0.1) == 10  # ratio 2.5
    assert hpa_pods_proposal(4, 4, 0, total=3, target=2, tolerance=0.1) == 2  # ratio 0.375


def test_hpa_tolerance_keeps_the_count_within_ten_percent() -> None:
    assert hpa_pods_proposal(4, 4, 0, total=8.7, target=2, tolerance=0.1) == 4  # ratio 1.0875
    assert hpa_pods_proposal(4, 4, 0, total=7.3, target=2, tolerance=0.1) == 4  # ratio 0.9125
    assert hpa_pods_proposal(4, 4, 0, total=9, target=2, tolerance=0.1) == 5  # ratio 1.125


def test_hpa_counts_starting_pods_as_idle_when_scaling_up() -> None:
    # 4 ready at 3 each (ratio 1.5); with 4 more starting the ratio is 0.75: no change
    assert hpa_pods_proposal(8, 4, 4, total=12, target=2, tolerance=0.1) == 8
    # 4 ready at 6 each; 2 starting: 24 / (6 x 2) = 2 -> 12
    assert hpa_pods_proposal(6, 4, 2, total=24, target=2, tolerance=0.1) == 12


def test_hpa_scale_down_waits_for_the_max_over_the_stabilisation_window() -> None:
    behaviour = HpaBehaviour(min_replicas=1, max_replicas=50)
    behaviour.warm(0.0, 10)
    assert behaviour.apply(15.0, 10, 3) == 10  # the warm recommendation is within 300 s
    assert behaviour.apply(150.0, 10, 6) == 10
    assert behaviour.apply(301.0, 10, 4) == 6  # max of (150: 6, 301: 4)
    assert behaviour.apply(451.0, 6, 4) == 4


def test_hpa_scale_up_is_immediate_but_rate_limited() -> None:
    behaviour = HpaBehaviour(min_replicas=1, max_replicas=50)
    assert behaviour.apply(0.0, 2, 40) == 6  # max(2 x 2, 2 + 4)
    assert behaviour.apply(15.0, 6, 40) == 12
    assert behaviour.apply(30.0, 12, 40) == 24
    assert behaviour.apply(45.0, 24, 80) == 48


def test_hpa_policy_follows_load_and_respects_bounds() -> None:
    policy = HpaPolicy(target=2)
    assert policy.start(context(warm_replicas=4)) == 4
    assert policy.decide(observe(15.0, concurrency=200, desired=4)) == 8  # rate limit
    assert policy.decide(observe(30.0, concurrency=200, desired=8, ready=4)) == 16
    assert policy.decide(observe(45.0, concurrency=400, desired=16)) == 20  # maxReplicas
    low = HpaPolicy(target=2)
    low.start(context(warm_replicas=4, min_replicas=0, scale_to_zero=True))
    assert low.decide(observe(400.0, concurrency=0, desired=4)) == 1  # HPA's floor is 1


# ---- KEDA


def test_keda_desired_is_the_total_over_the_threshold() -> None:
    policy = KedaPolicy(target=5)
    policy.start(context(warm_replicas=2))
    assert policy.decide(observe(15.0, concurrency=30, desired=2)) == 6


def test_keda_activates_from_zero_on_its_poll_and_cools_down_after_300_s() -> None:
    policy = KedaPolicy(target=4, activation_threshold=0)
    assert policy.start(context(warm_replicas=0, min_replicas=0, scale_to_zero=True)) == 0
    assert policy.decide(observe(15.0, concurrency=0, desired=0)) == 0
    # a request arrives just after the poll at 15 s: the next poll is at 45 s
    assert policy.decide(observe(30.0, concurrency=3, desired=0)) == 0
    assert policy.decide(observe(45.0, concurrency=3, desired=0)) == 1
    assert policy.decide(observe(60.0, concurrency=12, desired=1)) == 3
    # idle from 75 s on: HPA goes to 1, KEDA to 0 on the first poll 300 s after the last
    # poll that saw activity (45 s; the HPA's read at 60 s is not KEDA's)
    desired, t = 3, 75.0
    while desired and t < 600.0:
        desired = policy.decide(observe(t, concurrency=0, desired=desired))
        if desired == 0:
            break
        t += 15.0
    assert desired == 0
    assert t == 345.0


def test_keda_without_scale_to_zero_keeps_min_replicas() -> None:
    policy = KedaPolicy(target=4)
    policy.start(context(warm_replicas=3, min_replicas=2))
    for step in range(1, 60):
        replicas = policy.decide(observe(step * 15.0, concurrency=0, desired=3))
    assert replicas == 2


def test_keda_activation_threshold_ignores_a_trickle_at_zero() -> None:
    policy = KedaPolicy(target=4, activation_threshold=5)
    policy.start(context(warm_replicas=0, min_replicas=0, scale_to_zero=True))
    assert policy.decide(observe(30.0, concurrency=5, desired=0)) == 0
    assert policy.decide(observe(60.0, concurrency=6, desired=0)) == 1


# ---- static peak and oracle


def test_static_peak_holds_the_planned_count() -> None:
    policy = StaticPeakPolicy()
    assert policy.start(context(peak_replicas=7)) == 7
    assert policy.decide(observe(15.0, concurrency=0, desired=7)) == 7
    assert policy.decide(observe(30.0, concurrency=500, desired=7)) == 7


def step_trace(rate_low: float, rate_high: float, seconds: float) -> list[TraceRequest]:
    """Evenly spaced arrivals, the rate stepping up for the middle third."""
    trace, t = [], 0.0
    while t < seconds:
        high = seconds / 3 <= t < 2 * seconds / 3
        trace.append(TraceRequest(t, 1000, 100))
        t += 1.0 / (rate_high if high else rate_low)
    return trace


def test_oracle_orders_replicas_startup_seconds_ahead() -> None:
    trace = step_trace(2.0, 12.0, 600.0)  # 0.4 s of work each: ~1 then ~5 replicas busy
    ctx = context(trace=trace, warm_replicas=1, max_replicas=10)
    oracle = OraclePolicy()
    first = oracle.start(ctx)
    needs = oracle.needs
    assert len(needs) == 40
    assert max(needs[:13]) < max(needs[14:26])  # the step needs more
    # the bin from 195 s needs its replicas ordered by 165 s (ready 30 s later)
    assert oracle.decide(observe(165.0, 1, first)) >= needs[13]
    assert oracle.decide(observe(180.0, 1, first)) >= needs[14]
    assert oracle.decide(observe(90.0, 1, first)) < max(needs[14:26])  # not ordered early
    assert oracle.decide(observe(500.0, 1, 5)) == max(needs[33:37])


def test_oracle_meets_the_slo_when_it_is_feasible() -> None:
    slo = SloTarget(latency_seconds=1.0)
    assert slo.feasible(PROFILE, 1000, 100)  # 0.2 + 0.2 s alone
    assert not slo.feasible(PROFILE, 1000, 500)  # 1.2 s alone
    ttft = SloTarget(latency_seconds=10.0, ttft_seconds=0.1)
    assert not ttft.feasible(PROFILE, 1000, 10)  # prefill alone 0.2 s


def test_the_reachable_share_counts_the_requests_that_can_meet_the_slo_alone() -> None:
    slo = SloTarget(latency_seconds=1.0)
    requests = [TraceRequest(float(i), 1000, out) for i, out in enumerate((100, 500, 100, 50))]
    assert slo.reachable_share(PROFILE, requests) == 0.75  # the 500-token answer takes 1.2 s
    assert slo.reachable_share(PROFILE, []) == 1.0


# ---- static:N, the HPA's scale-down window, the oracle at an attainment


def test_static_holds_its_count_whatever_the_load() -> None:
    policy = StaticPolicy(3)
    assert (policy.name, policy.target, policy.window) == ("static", 3.0, None)
    assert policy.start(context()) == 3
    assert policy.decide(observe(15.0, concurrency=500, desired=3)) == 3


def test_hpa_and_keda_take_the_services_scale_down_window() -> None:
    """With the service's 120 s window instead of the default 300 s, the HPA comes down after
    120 s of lower recommendations; the label says which window ran."""
    for make in (HpaPolicy, KedaPolicy):
        default, short = make(2.0), make(2.0, down_window=120.0)
        assert (default.window, short.window) == (None, 120.0)
        counts = {}
        for policy in (default, short):
            policy.start(context(warm_replicas=8))
            desired, t = 8, 0.0
            while t < 400.0 and desired == 8:
                t += 15.0
                desired = policy.decide(observe(t, concurrency=4, desired=8))
            counts[policy.window] = t
        assert counts[120.0] <= 135.0
        assert counts[None] >= 300.0


def test_the_oracle_at_an_attainment_holds_fewer_replicas() -> None:
    """Poisson arrivals of varied sizes: allowing 10 % of misses, the oracle holds fewer
    replicas over the trace (it spends its budget of misses on the costliest bins)."""
    rng = random.Random(3)
    trace, t = [], 0.0
    while t < 600.0:
        t += rng.expovariate(6.0)
        trace.append(TraceRequest(t, int(rng.lognormvariate(7.0, 0.8)), 100))
    ctx = context(trace=trace, warm_replicas=1, max_replicas=10, slo=SloTarget(1.5))
    full, partial = OraclePolicy(), OraclePolicy(attainment=0.9)
    full.start(ctx)
    partial.start(ctx)
    assert (full.target, partial.target) == (None, 0.9)
    assert sum(partial.needs) < sum(full.needs)


# ---- the hindsight hold


def test_hold_asks_for_the_largest_past_need_within_its_lookback_and_never_a_future_one() -> None:
    trace = step_trace(2.0, 12.0, 600.0)  # the step from 200 s to 400 s
    ctx = context(trace=trace, warm_replicas=1, max_replicas=10)
    needs = oracle_needs(ctx, 15.0)
    hold = HoldPolicy(60.0, lambda _ctx, _bin: needs)
    assert (hold.name, hold.target, hold.window) == ("hold", 60.0, None)
    assert hold.start(ctx) == 1
    # at 195 s the bins that ended by then are before the step: the step's need is not known
    assert hold.decide(observe(195.0, 1, 1)) == max(needs[9:13]) < max(needs[14:26])
    # once a bin of the step is over it is held for the lookback, then let go
    assert hold.decide(observe(225.0, 1, 1)) == max(needs[11:15])
    assert hold.decide(observe(450.0, 1, 5)) == max(needs[26:30]) < max(needs[14:26])
    # until it has seen a lookback's worth, the warm start counts as the past
    assert HoldPolicy(600.0, lambda _c, _b: needs).start(context(trace=trace, warm_replicas=6)) == 6
    whole = HoldPolicy(3600.0, lambda _c, _b: needs)
    whole.start(ctx)
    assert whole.decide(observe(585.0, 1, 5)) == max(needs[:39])


def test_a_hold_sweep_computes_the_needs_once() -> None:
    shared = SharedNeeds()
    ctx = context(trace=step_trace(2.0, 6.0, 120.0))
    for lookback in (60.0, 300.0, 900.0):
        HoldPolicy(lookback, shared).start(ctx)
    assert shared(ctx, 15.0) is shared(ctx, 15.0)  # (memoised: the same list)
    assert shared(ctx, 15.0) == oracle_needs(ctx, 15.0)
    other = context(trace=step_trace(2.0, 12.0, 120.0))
    assert shared(other, 15.0) == oracle_needs(other, 15.0)
