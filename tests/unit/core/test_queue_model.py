"""Queue model: the processor-sharing replica pool simulator and the M/M/c closed forms."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierra.api.inference_service import Variant
from tierra.core.queue_model import (
    CompletedRequest,
    ReplicaPool,
    ReplicaProfile,
    erlang_b,
    erlang_c,
    mmc_mean_wait,
    mmc_wait_percentile,
    replay,
    replicas_for_slo,
    solo_service_seconds,
)
from tierra_testing.builders import variant

# Prefill 1000 tok/s and decode 100 tok/s: 100 prompt tokens take 0.1 s, 10 output tokens 0.1 s.
PROFILE = ReplicaProfile(
    max_concurrency=4, prefill_tokens_per_second=1000.0, decode_tokens_per_second=100.0
)


def profile(**changes: float) -> ReplicaProfile:
    values: dict[str, float] = {
        "max_concurrency": PROFILE.max_concurrency,
        "prefill_tokens_per_second": PROFILE.prefill_tokens_per_second,
        "decode_tokens_per_second": PROFILE.decode_tokens_per_second,
    }
    values.update(changes)
    return ReplicaProfile(
        max_concurrency=int(values["max_concurrency"]),
        prefill_tokens_per_second=values["prefill_tokens_per_second"],
        decode_tokens_per_second=values["decode_tokens_per_second"],
        startup_seconds=values.get("startup_seconds", 0.0),
        rtt_seconds=values.get("rtt_seconds", 0.0),
    )


def by_id(done: list[CompletedRequest]) -> dict[object, CompletedRequest]:
    return {d.request_id: d for d in done}


# --------------------------------------------------------------------------------------------
# Single requests and processor sharing


def test_single_request_latency_is_prefill_plus_decode_exactly() -> None:
    pool = ReplicaPool(PROFILE, replicas=1)
    pool.submit(0.0, "a", 800, 45)
    (done,) = pool.run_until_idle()
    prefill, decode = 800 / 1000.0, 45 / 100.0
    assert done.started == 0.0
    assert done.first_token_time == prefill
    assert done.finish_time == prefill + decode
    assert done.latency == solo_service_seconds(800, 45, 1000.0, 100.0)
    assert done.queue_wait == 0.0


def test_rtt_is_added_once_to_latency_and_ttft() -> None:
    pool = ReplicaPool(profile(rtt_seconds=0.05), replicas=1)
    pool.submit(10.0, "a", 100, 10)
    (done,) = pool.run_until_idle()
    assert done.finish_time == pytest.approx(10.2)
    assert done.latency == pytest.approx(0.25)
    assert done.ttft == pytest.approx(0.15)


def test_two_identical_concurrent_requests_each_take_twice_as_long() -> None:
    pool = ReplicaPool(PROFILE, replicas=1)
    pool.submit(0.0, "a", 100, 10)
    pool.submit(0.0, "b", 100, 10)
    done = by_id(pool.run_until_idle())
    for request in done.values():
        assert request.latency == pytest.approx(0.4)
        assert request.ttft == pytest.approx(0.2)


def test_shares_change_when_the_running_set_changes() -> None:
    # a: 1 s of work alone; b arrives at 0.5 s with 1 s of work. a runs alone for 0.5 s, then
    # both at half speed until a finishes at 1.5 s; b has then done 0.5 s and finishes alone.
    pool = ReplicaPool(profile(decode_tokens_per_second=10.0), replicas=1)
    pool.submit(0.0, "a", 0, 10)
    pool.submit(0.5, "b", 0, 10)
    done = by_id(pool.run_until_idle())
    assert done["a"].finish_time == pytest.approx(1.5)
    assert done["b"].finish_time == pytest.approx(2.0)


def test_first_token_is_when_the_prefill_completes_at_its_share() -> None:
    # a: prefill 1 s, decode 1 s. b arrives at 0.5 s: a's remaining 0.5 s of prefill at half
    # speed ends at 1.5 s.
    pool = ReplicaPool(profile(prefill_tokens_per_second=100.0, decode_tokens_per_second=10.0), 1)
    pool.submit(0.0, "a", 100, 10)
    pool.submit(0.5, "b", 0, 10)
    done = by_id(pool.run_until_idle())
    assert done["a"].first_token_time == pytest.approx(1.5)
    assert done["b"].first_token_time == pytest.approx(0.5)


def test_requests_route_to_the_least_loaded_replica() -> None:
    pool = ReplicaPool(PROFILE, replicas=3)
    for i in range(3):
        pool.submit(0.0, i, 100, 10)
    done = pool.run_until_idle()
    assert sorted(d.replica for d in done) == [0, 1, 2]
    assert all(d.latency == pytest.approx(0.2) for d in done)


# --------------------------------------------------------------------------------------------
# Queueing, startup, scale-down


def test_requests_beyond_max_concurrency_wait_in_fifo_order() -> None:
    pool = ReplicaPool(profile(max_concurrency=2, decode_tokens_per_second=10.0), replicas=1)
    for name in ("a", "b", "c", "d"):
        pool.submit(0.0, name, 0, 10)
    assert (pool.running, pool.waiting) == (2, 2)
    done = by_id(pool.advance(2.0))
    assert set(done) == {"a", "b"}
    assert (pool.running, pool.waiting) == (2, 0)
    done = by_id(pool.run_until_idle())
    assert done["c"].started == pytest.approx(2.0)
    assert done["c"].queue_wait == pytest.approx(2.0)
    assert done["d"].finish_time == pytest.approx(4.0)


def test_a_new_replica_serves_only_after_its_startup_delay() -> None:
    pool = ReplicaPool(profile(startup_seconds=60.0), replicas=0)
    pool.set_replicas(0.0, 1)
    pool.submit(1.0, "a", 100, 10)
    state = pool.state()
    assert (state.ready_replicas, state.starting_replicas, state.waiting) == (0, 1, 1)
    assert pool.advance(59.0) == []
    assert pool.waiting == 1
    (done,) = pool.run_until_idle()
    assert done.started == pytest.approx(60.0)
    assert done.queue_wait == pytest.approx(59.0)
    assert (pool.ready_replicas, pool.starting_replicas) == (1, 0)


def test_scale_up_while_busy_drains_the_queue_into_the_new_replica() -> None:
    pool = ReplicaPool(profile(max_concurrency=1, startup_seconds=5.0), replicas=1)
    for i in range(3):
        pool.submit(0.0, i, 0, 1000)  # 10 s each
    pool.set_replicas(0.0, 2)
    done = by_id(pool.run_until_idle())
    assert done[1].started == pytest.approx(5.0)
    assert done[1].replica == 1
    assert done[2].started == pytest.approx(10.0)


def test_scale_down_is_graceful_and_removes_idle_replicas_first() -> None:
    pool = ReplicaPool(profile(decode_tokens_per_second=10.0), replicas=3)
    pool.submit(0.0, "a", 0, 10)  # replica 0
    pool.submit(0.0, "b", 0, 10)  # replica 1
    pool.set_replicas(0.5, 1)  # replica 2 is idle: gone; one busy replica drains
    assert (pool.ready_replicas, pool.draining_replicas, pool.provisioned_replicas) == (1, 1, 2)
    assert pool.running == 2
    pool.submit(0.6, "c", 0, 10)  # only the remaining ready replica (0) takes it
    done = by_id(pool.run_until_idle())
    assert done["b"].replica == 1
    assert done["b"].finish_time == pytest.approx(1.0)  # drained undisturbed
    assert done["c"].replica == 0
    assert done["a"].finish_time == pytest.approx(1.4)  # 0.6 s alone, then shares with c
    assert (pool.draining_replicas, pool.provisioned_replicas) == (0, 1)


def test_scale_down_removes_starting_replicas_before_ready_ones() -> None:
    pool = ReplicaPool(profile(startup_seconds=30.0), replicas=2)
    pool.set_replicas(0.0, 4)
    assert pool.starting_replicas == 2
    pool.set_replicas(1.0, 3)
    assert (pool.ready_replicas, pool.starting_replicas) == (2, 1)
    pool.set_replicas(2.0, 1)
    assert (pool.ready_replicas, pool.starting_replicas) == (1, 0)
    pool.advance(100.0)
    assert pool.ready_replicas == 1


def test_replica_seconds_count_starting_ready_and_draining_replicas() -> None:
    pool = ReplicaPool(profile(startup_seconds=10.0, decode_tokens_per_second=1.0), replicas=1)
    pool.submit(0.0, "a", 0, 30)  # 30 s on replica 0
    pool.set_replicas(0.0, 2)  # replica 1 starts, ready at 10
    pool.set_replicas(20.0, 1)  # replica 1 idle: removed; replica 0 keeps running
    pool.advance(100.0)
    assert pool.replica_seconds == pytest.approx(100.0 + 20.0)


def test_time_only_moves_forward() -> None:
    pool = ReplicaPool(PROFILE, replicas=1)
    pool.advance(5.0)
    with pytest.raises(ValueError, match="forward"):
        pool.submit(4.0, "a", 1, 1)


def test_profile_from_variant() -> None:
    v = Variant.model_validate(variant(prefill=9000.0, decode=900.0, startup=45))
    p = ReplicaProfile.from_variant(v, rtt_seconds=0.01)
    assert (p.max_concurrency, p.prefill_tokens_per_second, p.decode_tokens_per_second) == (
        32,
        9000.0,
        900.0,
    )
    assert (p.startup_seconds, p.rtt_seconds) == (45.0, 0.01)


# --------------------------------------------------------------------------------------------
# Properties


requests_strategy = st.lists(
    st.tuples(
        st.floats(0.0, 5.0, allow_nan=False),
        st.integers(0, 2000),
        st.integers(0, 300),
    ),
    min_size=1,
    max_size=60,
)


@given(
    requests=requests_strategy,
    concurrency=st.integers(1, 8),
    replicas=st.integers(1, 4),
    scale_events=st.lists(st.tuples(st.floats(0.0, 60.0), st.integers(0, 5)), max_size=4),
    startup=st.sampled_from([0.0, 2.0]),
)
def test_conservation_share_bound_and_fifo(
    requests: list[tuple[float, int, int]],
    concurrency: int,
    replicas: int,
    scale_events: list[tuple[float, int]],
    startup: float,
) -> None:
    p = profile(max_concurrency=concurrency, startup_seconds=startup)
    pool = ReplicaPool(p, replicas=replicas)
    arrivals = sorted(
        [(t, "arrive", i, prompt, output) for i, (t, prompt, output) in enumerate(requests)]
        + [(t, "scale", n, 0, 0) for t, n in scale_events]
    )
    for t, kind, value, prompt, output in arrivals:
        if kind == "arrive":
            pool.submit(t, value, prompt, output)
        else:
            pool.set_replicas(t, value)
        assert pool.running <= concurrency * pool.provisioned_replicas
    pool.set_replicas(pool.now, max(1, pool.desired_replicas))
    done = pool.run_until_idle()

    ids = [d.request_id for d in done]
    assert sorted(ids) == list(range(len(requests)))  # every request completes exactly once
    assert (pool.waiting, pool.running) == (0, 0)
    for d in done:
        arrival, prompt, output = requests[d.request_id]  # type: ignore[index]
        work = p.work_seconds(prompt, output)
        assert d.arrival == arrival
        assert d.arrival <= d.started <= d.first_token_time <= d.finish_time
        assert d.finish_time - d.started >= work * (1 - 1e-9) - 1e-12
        assert d.first_token_time - d.started >= p.prefill_seconds(prompt) * (1 - 1e-9) - 1e-12
    by_arrival = sorted(done, key=lambda d: (d.arrival, d.request_id))
    starts = [d.started for d in by_arrival]
    assert starts == sorted(starts)  # FIFO: nobody overtakes an earlier arrival


@given(
    tokens=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 300)), min_size=1, max_size=40),
    concurrency=st.integers(1, 8),
)
def test_a_busy_replica_is_work_conserving(tokens: list[tuple[int, int]], concurrency: int) -> None:
    p = profile(max_concurrency=concurrency)
    pool = ReplicaPool(p, replicas=1)
    for i, (prompt, output) in enumerate(tokens):
        pool.submit(0.0, i, prompt, output)
    done = pool.run_until_idle()
    total = sum(p.work_seconds(prompt, output) for prompt, output in tokens)
    assert max(d.finish_time for d in done) == pytest.approx(total, rel=1e-9, abs=1e-12)


def test_replay_is_deterministic_and_fast_enough_for_an_hour_of_traffic() -> None:
    rng = random.Random(7)
    t, requests = 0.0, []
    for _ in range(3000):
        t += rng.expovariate(5.0)
        requests.append((t, rng.randint(50, 3000), rng.randint(10, 500)))
    p = profile(max_concurrency=16, prefill_tokens_per_second=8000, decode_tokens_per_second=800)
    first = replay(ReplicaPool(p, replicas=4), requests)
    second = replay(ReplicaPool(p, replicas=4), requests)
    assert first == second
    assert len(first) == len(requests)


# --------------------------------------------------------------------------------------------
# Closed forms


def erlang_c_by_factorials(servers: int, load: float) -> float:
    head = sum(load**k / math.factorial(k) for k in range(servers))
    tail = load**servers / math.factorial(servers) * servers / (servers - load)
    return tail / (head + tail)


@pytest.mark.parametrize("load", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_erlang_c_with_one_server_is_the_utilisation(load: float) -> None:
    assert erlang_c(1, load) == pytest.approx(load)


def test_erlang_c_textbook_values() -> None:
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(3, 2.0) == pytest.approx(4 / 9)
    # The call-centre example: 10 agents, 8 Erlangs of traffic, 40.9 % of calls wait.
    assert erlang_c(10, 8.0) == pytest.approx(0.4092, abs=1e-4)
    assert erlang_b(1, 1.0) == pytest.approx(0.5)


@given(servers=st.integers(1, 60), utilisation=st.floats(0.01, 0.99))
def test_erlang_c_matches_the_factorial_formula(servers: int, utilisation: float) -> None:
    load = servers * utilisation
    assert erlang_c(servers, load) == pytest.approx(erlang_c_by_factorials(servers, load))


def test_erlang_c_is_stable_for_large_pools_and_saturates_when_unstable() -> None:
    value = erlang_c(5000, 4900.0)
    assert 0.0 < value < 1.0
    assert erlang_c(10, 10.0) == 1.0
    assert erlang_c(10, 12.0) == 1.0


def test_mm1_wait_mean_and_percentile() -> None:
    # M/M/1 with rho = 0.5 and 1 s service: mean wait rho/(mu - lambda) = 1 s, and
    # P(W > t) = rho exp(-(mu - lambda) t), so p95 = ln(0.5 / 0.05) / 0.5.
    assert mmc_mean_wait(0.5, 1.0, 1) == pytest.approx(1.0)
    assert mmc_wait_percentile(0.5, 1.0, 1, 0.95) == pytest.approx(2 * math.log(10))
    assert mmc_wait_percentile(0.01, 1.0, 1, 0.95) == 0.0
    assert mmc_mean_wait(2.0, 1.0, 2) == math.inf


def test_replicas_for_slo_is_the_fewest_meeting_the_target() -> None:
    rate, service, per_replica, target = 10.0, 0.75, 2, 0.5
    replicas = replicas_for_slo(rate, service, per_replica, target)
    assert mmc_wait_percentile(rate, service, replicas * per_replica) <= target
    assert mmc_wait_percentile(rate, service, (replicas - 1) * per_replica) > target
    assert replicas_for_slo(0.0, service, per_replica, target) == 0


def test_replicas_for_slo_stops_past_its_limit() -> None:
    assert replicas_for_slo(1000.0, 1.0, 1, 0.0, limit=10) == 11
    assert replicas_for_slo(1000.0, 1.0, 1, 0.0, limit=2000) <= 2000
    assert 500 < replicas_for_slo(1000.0, 1.0, 2, 0.1, limit=600) <= 600


@given(
    rates=st.tuples(st.floats(0.0, 200.0), st.floats(0.0, 200.0)),
    service=st.floats(0.01, 20.0),
    per_replica=st.integers(1, 64),
    target=st.floats(0.0, 10.0),
    percentile=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_replicas_for_slo_is_monotone_in_arrival_rate(
    rates: tuple[float, float],
    service: float,
    per_replica: int,
    target: float,
    percentile: float,
) -> None:
    low, high = sorted(rates)
    fewer = replicas_for_slo(low, service, per_replica, target, percentile)
    more = replicas_for_slo(high, service, per_replica, target, percentile)
    assert fewer <= more
    assert more == 0 if high == 0 else more * per_replica > high * service  # a stable queue


@given(
    rate=st.floats(0.1, 100.0),
    service=st.floats(0.01, 10.0),
    targets=st.tuples(st.floats(0.0, 10.0), st.floats(0.0, 10.0)),
)
def test_replicas_for_slo_needs_no_more_for_a_looser_target(
    rate: float, service: float, targets: tuple[float, float]
) -> None:
    tight, loose = sorted(targets)
    assert replicas_for_slo(rate, service, 4, loose) <= replicas_for_slo(rate, service, 4, tight)


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        replicas_for_slo(-1.0, 1.0, 1, 1.0)
    with pytest.raises(ValueError):
        replicas_for_slo(1.0, 0.0, 1, 1.0)
    with pytest.raises(ValueError):
        replicas_for_slo(1.0, 1.0, 1, 1.0, percentile=1.0)
    with pytest.raises(ValueError):
        ReplicaProfile(max_concurrency=0, prefill_tokens_per_second=1, decode_tokens_per_second=1)


def test_tokens_are_counted_per_iteration_and_running_is_integrated() -> None:
    """vLLM counts prompt and generation tokens per iteration: a request alone on a replica
    (1 s of prefill, then 1 s of decode) has half its prompt counted after 0.5 s, all of it
    and half its output after 1.5 s, and the running-seconds integral grows with it."""
    pool = ReplicaPool(ReplicaProfile(4, 1000, 100), replicas=1)
    pool.submit(0.0, 1, 1000, 100)
    pool.advance(0.5)
    assert pool.tokens_processed() == pytest.approx((500, 0))
    pool.advance(1.5)
    assert pool.tokens_processed() == pytest.approx((1000, 50))
    assert pool.running_seconds == pytest.approx(1.5)
    pool.submit(1.5, 2, 1000, 100)  # shares the replica: each progresses at half speed
    assert [d.request_id for d in pool.advance(2.5)] == [1]  # its last 0.5 s took 1 s
    assert pool.tokens_processed() == pytest.approx((1500, 100))
    done = pool.run_until_idle()  # the second: 0.5 s of prefill and 1 s of decode left
    assert [(d.request_id, d.finish_time) for d in done] == [(2, pytest.approx(4.0))]
    assert pool.tokens_processed() == pytest.approx((2000, 200))
    assert pool.running_seconds == pytest.approx(1.5 + 2 * 1.0 + 1.5)
