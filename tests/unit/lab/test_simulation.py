"""The what-if simulator: placement picks the profile, the tierra policy is the operator's
recommender, JSON rows, determinism, and the oracle as the floor at full attainment."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from typing import Any

import pytest

from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.autoscaler import DEFAULT_INTERVAL_SECONDS
from tierra.lab.simulation import (
    COLD_START_SECONDS,
    HOLD_LOOKBACKS,
    OPERATOR_SAMPLE_SECONDS,
    POLICY_NAMES,
    SETTLED_SECONDS,
    PolicySpec,
    SimulationError,
    TierraPolicy,
    TraceRequest,
    build_policies,
    cheapest_reaching,
    comparison,
    parse_policies,
    policy_context,
    run_policy,
    scrape_timing,
    settled_after,
    setup_service,
    simulate,
    sized_for,
)

JSON_KEYS = {
    "policy",
    "requests",
    "within_slo",
    "p95_latency_ms",
    "p99_latency_ms",
    "accelerator_hours",
    "cost",
    "scale_events",
}


def tiers() -> list[Tier]:
    def tier(name: str, level: str, rtt: float, pool: str, model: str, price: float) -> Tier:
        return Tier.model_validate(
            {
                "metadata": {"name": name},
                "spec": {
                    "level": level,
                    "region": "eu-west",
                    "residency": ["eu"],
                    "latencyMs": {"eu-west": rtt},
                    "pools": [
                        {
                            "name": pool,
                            "accelerator": {"type": "nvidia-gpu", "model": model, "perNode": 4},
                            "pricePerAcceleratorHour": price,
                        }
                    ],
                },
            }
        )

    return [
        tier("regional", "regional", 10, "l4", "L4", 0.8),
        tier("central", "central", 40, "h100", "H100", 4.0),
    ]


def service(**spec: Any) -> InferenceService:
    base: dict[str, Any] = {
        "model": {"name": "chat"},
        "runtime": {"image": "vllm/vllm-openai:v0.10.0"},
        "variants": [
            {
                "name": "l4",
                "accelerator": {"type": "nvidia-gpu", "model": "L4", "count": 1},
                "capacity": {
                    "maxConcurrency": 16,
                    "prefillTokensPerSecond": 5000,
                    "decodeTokensPerSecond": 500,
                },
                "startupSeconds": 30,
            },
            {
                "name": "h100",
                "accelerator": {"type": "nvidia-gpu", "model": "H100", "count": 2},
                "capacity": {
                    "maxConcurrency": 64,
                    "prefillTokensPerSecond": 20000,
                    "decodeTokensPerSecond": 2000,
                },
                "startupSeconds": 30,
            },
        ],
        "placement": {"userRegions": {"eu-west": 1.0}, "objective": "cost"},
        "slo": {"latencyP95Ms": 3000},
        "scaling": {"minReplicas": 1, "maxReplicas": 12, "scaleDownDelaySeconds": 60},
    }
    base.update(spec)
    return InferenceService.model_validate(
        {"metadata": {"name": "chat", "namespace": "team-a"}, "spec": base}
    )


def poisson_trace(seed: int, seconds: float = 600.0) -> list[TraceRequest]:
    """Poisson arrivals stepping from 2 to 8 req/s in the middle third; 0.4 s of work each on
    average (1000-token prompts, 100 output tokens on the L4)."""
    rng = random.Random(seed)
    trace, t = [], 0.0
    while True:
        high = seconds / 3 <= t < 2 * seconds / 3
        t += rng.expovariate(8.0 if high else 2.0)
        if t >= seconds:
            return trace
        trace.append(TraceRequest(t, rng.randint(500, 1500), rng.randint(50, 150)))


def test_placement_chooses_the_variant_and_the_tier_rtt() -> None:
    setup = setup_service(service(), tiers())
    assert (setup.tier.metadata.name, setup.pool.name, setup.variant.name) == (
        "regional",
        "l4",
        "l4",
    )
    assert setup.rtt_ms == 10
    assert setup.profile.rtt_seconds == pytest.approx(0.010)
    assert setup.profile.max_concurrency == 16
    assert setup.price_per_replica_hour == pytest.approx(0.8)


def test_a_service_spread_over_tiers_is_rejected_with_the_reason() -> None:
    spread = service(placement={"userRegions": {"eu-west": 1.0}, "minTiers": 2})
    with pytest.raises(SimulationError, match="minTiers"):
        setup_service(spread, tiers())


def test_no_feasible_tier_is_an_error() -> None:
    with pytest.raises(SimulationError, match="no tier"):
        setup_service(service(placement={"levels": ["edge"]}), tiers())


def test_parse_policies_expands_names_and_targets() -> None:
    assert parse_policies("tierra, hpa:2.5,static:3,oracle,oracle:0.99,hold:600") == [
        PolicySpec("tierra"),
        PolicySpec("hpa", 2.5),
        PolicySpec("static", 3),
        PolicySpec("oracle"),
        PolicySpec("oracle", 0.99),
        PolicySpec("hold", 600),
    ]
    for bad in ("nope", "tierra:3", "hpa:x", "hpa:0", "", "static:1.5", "oracle:2"):
        with pytest.raises(ValueError):
            parse_policies(bad)
    setup = setup_service(service(), tiers())
    top = setup.service.spec.scaling.max_replicas
    policies = build_policies(
        parse_policies(",".join(POLICY_NAMES)), setup, sweep=(1, 2), windows=(None, 60.0)
    )
    assert [(p.name, p.target, getattr(p, "window", None)) for p in policies] == [
        ("tierra", None, None),
        ("hpa", 1, None),
        ("hpa", 2, None),
        ("hpa", 1, 60.0),
        ("hpa", 2, 60.0),
        ("keda", 1, None),
        ("keda", 2, None),
        ("keda", 1, 60.0),
        ("keda", 2, 60.0),
        *[("static", n, None) for n in range(1, top + 1)],
        ("static-peak", None, None),
        ("oracle", None, None),
        *[("hold", lookback, None) for lookback in HOLD_LOOKBACKS],
    ]


@pytest.fixture(scope="module")
def results() -> list[Any]:
    return simulate(
        service(), tiers(), poisson_trace(3), parse_policies(",".join(POLICY_NAMES)), (1, 2, 4)
    )


def test_every_run_reports_the_required_json_keys(results: list[Any]) -> None:
    top = service().spec.scaling.max_replicas
    assert len(results) == 1 + 3 + 3 + top + 2 + len(HOLD_LOOKBACKS)
    for r in results:
        row = r.to_json()
        assert row.keys() >= JSON_KEYS
        assert 0.0 <= row["within_slo"] <= 1.0
        assert row["requests"] == r.requests > 1000
        assert row["cost"] == pytest.approx(row["accelerator_hours"] * 0.8, abs=1e-3)
    assert {r.to_json()["target"] for r in results if r.policy == "hpa"} == {1, 2, 4}


def test_tierra_answers_the_step_and_recovers(results: list[Any]) -> None:
    """A 4x step in one instant: the first decision after it scales up, the SLO is back within
    the step, and the count comes down after the load falls."""
    tierra = next(r for r in results if r.policy == "tierra")
    by_time = {p.time: p for p in tierra.timeline}
    assert by_time[210.0].desired_replicas > by_time[195.0].desired_replicas
    assert all(by_time[t].p95_latency_ms < 3000 for t in (375.0, 390.0))
    assert by_time[600.0].desired_replicas < max(p.desired_replicas for p in tierra.timeline)


def test_oracle_is_the_floor_of_the_runs_at_full_attainment(results: list[Any]) -> None:
    oracle = next(r for r in results if r.policy == "oracle")
    assert oracle.within_slo >= 0.999
    full = [r for r in results if r.policy != "oracle" and r.within_slo >= oracle.within_slo]
    assert full  # static-peak at least
    for r in full:
        assert oracle.cost <= r.cost + 1e-9, r.label


def test_static_peak_never_scales(results: list[Any]) -> None:
    static = next(r for r in results if r.policy == "static-peak")
    assert static.scale_events == 0
    assert {p.desired_replicas for p in static.timeline} == {static.peak_replicas}


def test_comparison_picks_the_cheapest_baseline_reaching_tierra(results: list[Any]) -> None:
    tierra = next(r for r in results if r.policy == "tierra")
    picks = comparison(results)
    assert set(picks) == {"static", "hpa", "keda"}
    for name, pick in picks.items():
        reaching = [r for r in results if r.policy == name and r.within_slo >= tierra.within_slo]
        if pick is None:
            assert not reaching
        else:
            assert pick.cost == min(r.cost for r in reaching)
    assert cheapest_reaching(results, "hpa", 1.01) is None


def test_runs_are_deterministic() -> None:
    trace = poisson_trace(7, seconds=300.0)
    specs = parse_policies("tierra,hpa:2,keda:2")
    first = [r.to_json() for r in simulate(service(), tiers(), trace, specs)]
    again = [r.to_json() for r in simulate(service(), tiers(), trace, specs)]
    assert first == again
    other = [r.to_json() for r in simulate(service(), tiers(), poisson_trace(8, 300.0), specs)]
    assert other != first


def test_tierra_policy_records_the_recommenders_reasons() -> None:
    setup = setup_service(service(), tiers())
    trace = poisson_trace(5, seconds=300.0)
    policy = TierraPolicy(setup)
    run_policy(setup, policy_context(setup, trace), policy)
    assert policy.reasons
    assert all(reason.startswith(("scale up", "scale down")) for _, reason in policy.reasons)


def test_requests_that_never_complete_count_against_the_slo() -> None:
    trace = [TraceRequest(1.0, 100, 10)]
    setup = setup_service(service(), tiers())
    context = policy_context(setup, trace)

    class Off:
        name, target = "off", None

        def start(self, context: object) -> int:
            return 0

        def decide(self, observation: object) -> int:
            return 0

    result = run_policy(setup, context, Off())
    assert result.within_slo == 0.0
    assert result.completed == 0
    assert result.to_json()["p95_latency_ms"] is None


@pytest.mark.parametrize("overload_from", [0.0, COLD_START_SECONDS])
def test_misses_in_the_first_minutes_are_counted_apart(overload_from: float) -> None:
    """A single replica overloaded for half a minute, either at the start or after the cold
    start: its misses land in ``cold_start_misses`` only in the first case."""
    rng = random.Random(3)
    trace, t = [], 0.0
    while t < 2 * COLD_START_SECONDS:
        heavy = overload_from <= t < overload_from + 30.0
        t += rng.expovariate(8.0 if heavy else 0.5)
        trace.append(TraceRequest(t, 1000, 100))
    (run,) = simulate(service(), tiers(), trace, parse_policies("static:1"))
    misses = round((1.0 - run.within_slo) * run.requests)
    assert misses > 50
    early = run.cold_start_misses
    assert early == misses if overload_from == 0.0 else early == 0
    assert run.to_json()["cold_start_misses"] == early


@pytest.mark.parametrize("overload_from", [0.0, SETTLED_SECONDS + 60.0])
@pytest.mark.parametrize("replicas", [1, 3])
def test_the_settled_span_counts_the_requests_and_replicas_from_then_on(
    overload_from: float, replicas: int
) -> None:
    """An overload before the settled time costs the whole run's share but not the settled
    one's; one after costs both. A static fleet's settled cost is its count over the span."""
    rng = random.Random(5)
    trace, t = [], 0.0
    while t < 2 * SETTLED_SECONDS:
        heavy = overload_from <= t < overload_from + 30.0
        t += rng.expovariate(8.0 * replicas if heavy else 0.5)
        trace.append(TraceRequest(t, 1000, 100))
    setup = setup_service(service(), tiers())
    context = policy_context(setup, trace)
    (static,) = build_policies(parse_policies(f"static:{replicas}"), setup)
    run = run_policy(setup, context, static, settled=SETTLED_SECONDS)
    assert run.settled_from == SETTLED_SECONDS
    after = [r for r in trace if r.arrival >= SETTLED_SECONDS]
    assert run.settled_within_slo is not None and run.settled_cost is not None
    misses_after = round((1.0 - run.settled_within_slo) * len(after))
    if overload_from < SETTLED_SECONDS:
        assert run.within_slo < 0.95 and misses_after == 0
    else:
        assert misses_after > 20 and run.settled_within_slo < 0.95
    # (a static fleet costs the same every second: the span's share of the run's duration)
    replica_seconds = run.accelerator_hours * 3600.0 / setup.accelerators_per_replica
    duration = replica_seconds / replicas
    assert math.isclose(
        run.settled_cost, run.cost * (duration - SETTLED_SECONDS) / duration, rel_tol=1e-6
    )
    unsettled = run_policy(setup, context, static)
    assert unsettled.settled_within_slo is None and unsettled.within_slo == run.within_slo


def test_a_run_settles_after_ten_minutes_or_two_start_ups() -> None:
    quick = setup_service(service(), tiers())
    slow = dataclasses.replace(
        quick, profile=dataclasses.replace(quick.profile, startup_seconds=900.0)
    )
    assert quick.profile.startup_seconds == 30.0
    assert settled_after(quick) == SETTLED_SECONDS
    assert settled_after(slow) == 1800.0


def test_the_warm_start_is_sized_for_the_busiest_of_its_first_minutes() -> None:
    """The step to 8 req/s begins 200 s in: the default five minutes see part of it, the first
    minute alone does not."""
    setup = setup_service(service(), tiers())
    trace = poisson_trace(3)
    prompt = statistics.fmean(r.prompt_tokens for r in trace)
    output = statistics.fmean(r.output_tokens for r in trace)
    per_minute = [sum(1 for r in trace if m * 60 <= r.arrival < (m + 1) * 60) for m in range(5)]
    five = policy_context(setup, trace).warm_replicas
    first = policy_context(setup, trace, warm_minutes=1).warm_replicas
    assert five == sized_for(setup, max(per_minute) / 60, prompt, output)
    assert first == sized_for(setup, per_minute[0] / 60, prompt, output)
    assert first < five


def test_a_profile_that_is_off_runs_the_replicas_at_the_truth() -> None:
    """+30 %: the spec says 1.3x what replicas do; the recommender is told the spec, the pool
    runs at the truth, and the oracle (clairvoyant) plans with the truth."""
    exact = setup_service(service(), tiers())
    off = setup_service(service(), tiers(), profile_error=0.3)
    assert off.profile == exact.profile == exact.served_profile
    truth = off.served_profile
    assert truth.prefill_tokens_per_second == pytest.approx(5000 / 1.3)
    assert truth.decode_tokens_per_second == pytest.approx(500 / 1.3)
    assert policy_context(off, poisson_trace(1)).profile == truth
    with pytest.raises(SimulationError):
        setup_service(service(), tiers(), profile_error=-1.0)
    trace = poisson_trace(4)
    slow = simulate(service(), tiers(), trace, parse_policies("static:3"), profile_error=0.3)
    fast = simulate(service(), tiers(), trace, parse_policies("static:3"), profile_error=-0.3)
    assert slow[0].p95_latency_ms > fast[0].p95_latency_ms


def test_the_oracle_reaches_the_attainment_it_aims_at() -> None:
    trace = poisson_trace(5)
    full, partial = simulate(service(), tiers(), trace, parse_policies("oracle,oracle:0.95"))
    assert partial.label == "oracle:0.95"
    assert partial.within_slo >= 0.95 - 0.01  # (per-bin accounting; in-flight ones shift)
    assert partial.cost <= full.cost


def test_the_observation_carries_per_iteration_token_rates() -> None:
    """What the tierra policy sees: token rates counted per iteration and the mean running
    over the minute, the completions since the last scrape; a request size that can be +Inf
    in a window with tokens and no completion is the recommender's to ignore."""
    setup = setup_service(service(), tiers())
    context = policy_context(setup, poisson_trace(6))
    seen: list[Any] = []

    class Spy(TierraPolicy):
        def decide(self, observation: Any) -> int:
            seen.append(observation)
            return super().decide(observation)

    run_policy(setup, context, Spy(setup), keep_timeline=False)
    busy = [o for o in seen[4:] if o.running > 0]
    assert busy and all(o.prompt_tokens_rate > 0 and o.mean_running > 0 for o in busy)
    assert all(o.recent_completion_rate is not None for o in seen[1:])
    assert seen[0].recent_completion_rate is None


@pytest.mark.parametrize(("offset", "lag"), [(0.0, 0.0), (0.0, 5.0), (7.0, 0.0), (3.0, 14.0)])
def test_a_decision_reads_the_scrape_a_lag_before_it(offset: float, lag: float) -> None:
    """Prometheus scrapes ``scrape_offset`` into each interval and a policy decides
    ``scrape_lag`` after each scrape on its gauges and windows, with the replicas as of the
    decision; what arrives in between is in the next scrape, and every request is served
    either way."""
    setup = setup_service(service(), tiers(), 0.0)
    trace = [TraceRequest(12.0, 1000, 20000), *poisson_trace(4, seconds=300.0)[40:]]
    trace.sort(key=lambda r: r.arrival)
    context = dataclasses.replace(
        policy_context(setup, trace), scrape_offset=offset, scrape_lag=lag
    )
    seen: list[Any] = []

    class Spy(TierraPolicy):
        def decide(self, observation: Any) -> int:
            seen.append(observation)
            return super().decide(observation)

    run = run_policy(setup, context, Spy(setup))
    assert run.completed == len(trace)
    scrapes = [offset + 15.0 * k for k in (1, 2, 3)]
    assert [o.time for o in seen[:3]] == [t + lag for t in scrapes]
    assert [p.time for p in run.timeline[:3]] == [t + lag for t in scrapes]
    for o in seen:
        assert (o.scraped_at if o.scraped_at is not None else o.time) == o.time - lag
    # (the request of 12 s runs for tens of seconds: a scrape before it has not seen it, one
    # after it has)
    first = seen[0]
    assert first.running + first.waiting == (1 if scrapes[0] >= 12.0 else 0)


def test_scrapes_fall_anywhere_in_the_interval_and_are_read_within_the_operator_s() -> None:
    draws = [scrape_timing(random.Random(seed)) for seed in range(300)]
    offsets = [d["scrape_offset"] for d in draws]
    lags = [d["scrape_lag"] for d in draws]
    assert all(0.0 <= x < 15.0 for x in offsets) and min(offsets) < 1.0 and max(offsets) > 14.0
    assert all(0.0 <= x <= 5.0 for x in lags) and min(lags) < 0.5 and max(lags) > 4.5
    assert scrape_timing(random.Random(7)) == scrape_timing(random.Random(7))
    assert OPERATOR_SAMPLE_SECONDS == DEFAULT_INTERVAL_SECONDS  # (--metrics-interval's default)


def test_a_steady_low_rate_does_not_flap() -> None:
    """At a steady Poisson rate near the edge between two counts, the count would go up on a
    noisy sample and down after the delay, again and again, if the deadband were narrower
    than the arrival estimate's noise. Over rates of 0.2-2 requests/s (an hour each, three
    seeds) the recommender changes the count about once per run on average (a 10 % band:
    three times as often), and every run stays within the SLO."""
    body = service().model_dump(by_alias=True, exclude_none=True)
    for variant in body["spec"]["variants"]:
        variant["startupSeconds"] = 10  # (no burst headroom: the deadband alone)
    setup = setup_service(InferenceService.model_validate(body), tiers(), 0.0)
    changes = 0
    for rate in [0.2 * i for i in range(1, 11)]:
        for seed in (1, 2, 3):
            rng, t, trace = random.Random(seed), 0.0, []
            while (t := t + rng.expovariate(rate)) < 3600.0:
                trace.append(TraceRequest(t, 1000, 100))
            run = run_policy(
                setup, policy_context(setup, trace), TierraPolicy(setup), keep_timeline=False
            )
            assert run.within_slo >= 0.99, (rate, seed, run.within_slo)
            changes += run.scale_events
    assert changes <= 40, changes


@pytest.mark.parametrize("factor", [3, 5])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_heavier_mix_is_followed_within_a_minute(seed: int, factor: int) -> None:
    """4 req/s of chat requests, then prompts ``factor`` times as long at the same rate (a
    client with long contexts): 75 s later the size the recommender plans with, from the
    simulated runtime's per-iteration token counters, is within 20 % of the new mix's (a 300 s
    smoothing alone is well short of it), and not beyond it by more than a quarter."""
    setup = setup_service(service(), tiers(), 0.0)
    rng, t, trace = random.Random(seed), 0.0, []
    shift, end = 900.0, 975.0
    while (t := t + rng.expovariate(4.0)) < end:
        prompt = int(rng.lognormvariate(math.log(500), 0.6)) * (factor if t >= shift else 1)
        trace.append(TraceRequest(t, max(1, prompt), int(rng.lognormvariate(math.log(100), 0.6))))
    new_mean = statistics.mean(r.prompt_tokens for r in trace if r.arrival >= shift)
    policy = TierraPolicy(setup)
    run_policy(setup, policy_context(setup, trace), policy, keep_timeline=False)
    assert policy.state.sizes is not None
    planned = policy.state.sizes[0]
    assert 0.8 * new_mean <= planned <= 1.25 * new_mean, (planned, new_mean)


def crowd_trace(seed: int, start_high: bool = False) -> list[TraceRequest]:
    """1 req/s, a crowd that ramps to 10 req/s over 90 s and stays 5 minutes, 1 req/s again
    (``start_high``: the trace opens in a crowd, which then ends and comes back)."""
    rng, t, trace = random.Random(seed), 0.0, []

    def rate(at: float) -> float:
        if start_high and at < 300.0:
            return 10.0
        if 600.0 <= at < 690.0:
            return 1.0 + 9.0 * (at - 600.0) / 90.0
        return 10.0 if 690.0 <= at < 990.0 else 1.0

    while (t := t + rng.expovariate(10.0)) < 1800.0:
        if rng.random() < rate(t) / 10.0:
            trace.append(TraceRequest(t, rng.randint(500, 1500), rng.randint(50, 150)))
    return trace


class _Recording(TierraPolicy):
    """The operator's recommender, remembering its state after every decision."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.states: list[Any] = []

    def decide(self, observation: Any) -> int:
        replicas = super().decide(observation)
        self.states.append(self.state)
        return replicas


def _crowd_setup() -> Any:
    body = service().model_dump(by_alias=True, exclude_none=True)
    for variant in body["spec"]["variants"]:
        variant["startupSeconds"] = 90
    return setup_service(InferenceService.model_validate(body), tiers(), 0.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_speed_estimate_stays_true_through_a_crowd(seed: int) -> None:
    """A crowd that ramps up over a start-up time gets a scale-up at every decision. Each
    scale-up's replicas serve a start-up time after *it*, not after the last one: counting
    them all as starting until the last one's start-up ends divides the work done by too few
    serving replicas, and an exact profile was taken for one nearly twice as fast (the
    decisions after then asked for about half of what the load needed)."""
    setup = _crowd_setup()
    policy = _Recording(setup)
    run_policy(setup, policy_context(setup, crowd_trace(seed)), policy, keep_timeline=False)
    speeds = [s.speed for s in policy.states if s.speed_at is not None]
    assert max(speeds) <= 1.15, max(speeds)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_draining_backlog_is_not_taken_for_arrivals(seed: int) -> None:
    """While the crowd's backlog drains, the replicas complete far more than arrives; the
    arrival rates the burst headroom remembers stay near the crowd's real peak (10 req/s,
    15 s samples of it: Poisson noise), not the completions' (which held the count up for
    the whole lookback)."""
    setup = _crowd_setup()
    policy = _Recording(setup)
    run_policy(setup, policy_context(setup, crowd_trace(seed)), policy, keep_timeline=False)
    remembered = max(rate for state in policy.states for _, rate, _ in state.rates)
    assert remembered <= 13.0, remembered


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_crowd_under_way_when_first_observed_is_held_for_when_it_ends(seed: int) -> None:
    """The trace opens in a crowd (no rise was ever seen), which ends, and another comes
    five minutes later: its fall is the evidence of bursty traffic, so the replicas it needed
    are held through the lull, and the second crowd is served within the SLO."""
    setup = _crowd_setup()
    trace = crowd_trace(seed, start_high=True)
    run = run_policy(setup, policy_context(setup, trace), TierraPolicy(setup))
    lull = [p.desired_replicas for p in run.timeline if 400.0 <= p.time < 600.0]
    assert min(lull) >= 5, lull  # (10 req/s of 0.4 s requests: 4 replicas busy)
    assert run.within_slo >= 0.99, run.within_slo


def burst_trace(seed: int) -> list[TraceRequest]:
    """1 req/s with a 30 s burst to 15 req/s every 5 minutes, for an hour."""
    rng, t, trace = random.Random(seed), 0.0, []
    while (t := t + rng.expovariate(15.0)) < 3600.0:
        in_burst = 120.0 <= t % 300.0 < 150.0
        if in_burst or rng.random() < 1.0 / 15.0:
            trace.append(TraceRequest(t, rng.randint(500, 1500), rng.randint(50, 150)))
    return trace


def _roomy_setup(startup_seconds: float) -> Any:
    """The test service with room for 40 replicas that start in ``startup_seconds``."""
    body = service().model_dump(by_alias=True, exclude_none=True)
    body["spec"]["scaling"]["maxReplicas"] = 40
    for variant in body["spec"]["variants"]:
        variant["startupSeconds"] = startup_seconds
    return setup_service(InferenceService.model_validate(body), tiers(), 0.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_first_burst_on_too_few_replicas_holds_no_more_than_the_later_ones(seed: int) -> None:
    """The first burst finds 1-2 replicas and a backlog builds. That growth is the deficit of
    too few replicas, not a fan-out: the count held after it is what the bursts' rate needs,
    the same as once the first burst has left the lookback (it was held as a crowd, about
    twice that count for 30 minutes), and the later bursts are served within the SLO."""
    setup = _roomy_setup(60.0)
    run = run_policy(setup, policy_context(setup, burst_trace(seed)), TierraPolicy(setup))
    early = max(p.desired_replicas for p in run.timeline if 600.0 <= p.time < 1800.0)
    late = max(p.desired_replicas for p in run.timeline if p.time >= 2400.0)
    assert early <= late + 1, (early, late)
    later_misses = (1.0 - run.within_slo) * run.requests - run.cold_start_misses
    assert later_misses <= 0.01 * run.requests, later_misses


def morning_trace(seed: int) -> list[TraceRequest]:
    """A morning ramp: 0.5 req/s for 5 minutes, then rising by 0.01 req/s every second for
    20 minutes (to 12.5 req/s), steady for 15 minutes."""
    rng, t, trace = random.Random(seed), 0.0, []

    def rate(at: float) -> float:
        return 0.5 + 0.01 * min(max(0.0, at - 300.0), 1200.0)

    while (t := t + rng.expovariate(12.5)) < 2700.0:
        if rng.random() < rate(t) / 12.5:
            trace.append(TraceRequest(t, rng.randint(500, 1500), rng.randint(50, 150)))
    return trace


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_slow_ramp_is_met_despite_a_long_start_up(seed: int) -> None:
    """Replicas that take 5 minutes to start must be asked for 5 minutes ahead of the load: the
    ramp's slope, fitted over a start-up time of samples, holds them there. Fitted over one
    minute only, it was lost in the Poisson noise at a few requests a second: 73-86 % within
    the SLO, 91-96 % now. (What is left: the fit across the ramp's knee underestimates its
    slope for a start-up time, and a noisy early extrapolation's replicas are let go after
    the 60 s scale-down delay, before they even serve; a static fleet for the peak reaches
    100 % at 1.5x the cost.)"""
    setup = _roomy_setup(300.0)
    run = run_policy(setup, policy_context(setup, morning_trace(seed)), TierraPolicy(setup))
    assert run.within_slo >= 0.9, run.within_slo


def long_prompt_trace(seed: int, share: float, seconds: float = 1800.0) -> list[TraceRequest]:
    """4 req/s of 500-token prompts, ``share`` of them 8000 tokens instead (1.6 s of prefill
    alone on the L4: the p95's requests when ``share`` is over 5 %)."""
    rng = random.Random(seed)
    trace, t = [], 0.0
    while True:
        t += rng.expovariate(4.0)
        if t >= seconds:
            return trace
        prompt = 8000 if rng.random() < share else 500
        trace.append(TraceRequest(t, prompt, rng.randint(20, 60)))


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("error", [-0.3, 0.0, 0.3])
def test_a_ttft_the_longest_prompts_alone_miss_is_not_chased_with_replicas(
    seed: int, error: float
) -> None:
    """A 1 s TTFT goal, and 10 % of the prompts take 1.6 s to prefill alone: the p95 is out of
    reach at any count, though the mean prompt's floor is not. The latency feedback tests its
    first doubling (or the first steps that add half as many replicas again) and, the p95 left
    over the goal by more than any queueing that could be left, chases it no more: 5-8
    replicas at most, where it had gone on to 23-40 (maxReplicas) at 3-8x the cost for the
    same share. With 2 % of them the p95 is within reach
    and nothing is given up."""
    body = service(slo={"latencyP95Ms": 3000, "ttftP95Ms": 1000}).model_dump(
        by_alias=True, exclude_none=True
    )
    body["spec"]["scaling"]["maxReplicas"] = 40
    setup = setup_service(InferenceService.model_validate(body), tiers(), error)
    for share, given_up in ((0.1, True), (0.02, False)):
        policy = TierraPolicy(setup)
        run = run_policy(setup, policy_context(setup, long_prompt_trace(seed, share)), policy)
        reasons = [why for _, why in policy.reasons]
        verdicts = sum("more replicas did not bring it closer" in why for why in reasons)
        peak = max(point.desired_replicas for point in run.timeline)
        if given_up:
            assert verdicts >= 1 and peak <= 16, (peak, reasons[-3:])
        else:
            # (the long prompts miss whatever the count: all the others are served in time)
            assert verdicts == 0 and run.within_slo >= 0.99 - share, (run.within_slo, reasons[-3:])
