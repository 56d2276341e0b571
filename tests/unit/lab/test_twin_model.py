"""The load twin's pure model: arrivals, routing, pools following ready replicas, metrics."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from tierra.api.inference_service import InferenceService
from tierra.lab.twin_model import (
    DeploymentView,
    Histogram,
    PoissonLoad,
    TraceLoad,
    TraceRequest,
    TwinModel,
    WeightedRoundRobin,
    deployment_view,
    parse_trace,
    percentile,
    series_labels,
)

SERVICE = ("team-a", "chat")


def service(startup: int = 10, concurrency: int = 2, name: str = "chat") -> InferenceService:
    return InferenceService.model_validate(
        {
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": {
                "model": {"name": "llama-3.1-8b-instruct", "uri": "hf://meta-llama/x"},
                "runtime": {"image": "vllm/vllm-openai:v0.10.0"},
                "variants": [
                    {
                        "name": "h100",
                        "accelerator": {"type": "nvidia-gpu", "model": "H100", "count": 1},
                        "capacity": {
                            "maxConcurrency": concurrency,
                            "prefillTokensPerSecond": 1000,
                            "decodeTokensPerSecond": 100,
                        },
                        "startupSeconds": startup,
                    }
                ],
                "slo": {"latencyP95Ms": 5000},
            },
        }
    )


def deployment(name: str = "chat-h100-central", ready: int = 1, tier: str = "central") -> Any:
    labels = {
        "app.kubernetes.io/managed-by": "tierra",
        "tierra.dev/inference-service": "chat",
        "tierra.dev/inference-service-namespace": "team-a",
        "tierra.dev/tier": tier,
        "tierra.dev/variant": "h100",
        "tierra.dev/pool": "h100",
    }
    return {
        "metadata": {"name": name, "namespace": "team-a", "labels": labels},
        "spec": {"template": {"metadata": {"labels": labels}}},
        "status": {"readyReplicas": ready} if ready else {},
    }


def view(name: str = "chat-h100-central", ready: int = 1, tier: str = "central") -> DeploymentView:
    result = deployment_view("tierra-central", deployment(name, ready, tier))
    assert result is not None
    return result


# ---------------------------------------------------------------------------------- arrivals


def test_poisson_arrivals_are_seeded_ordered_and_at_the_rate() -> None:
    def times(seed: int) -> list[float]:
        load = PoissonLoad(20.0, 100, 10, random.Random(seed), start=5.0)
        return [a.time for a in load.arrivals_until(1005.0)]

    first = times(1)
    assert first == times(1)
    assert first != times(2)
    assert first == sorted(first) and first[0] > 5.0 and first[-1] <= 1005.0
    assert abs(len(first) / 1000.0 - 20.0) < 1.0  # 20000 arrivals: 5 sigma is ~0.7/s


def test_poisson_arrivals_resume_where_they_stopped_and_rate_zero_is_silent() -> None:
    load = PoissonLoad(5.0, 1, 1, random.Random(0))
    whole = [a.time for a in PoissonLoad(5.0, 1, 1, random.Random(0)).arrivals_until(10.0)]
    parts = [a.time for t in (2.5, 2.5, 7.0, 10.0) for a in load.arrivals_until(t)]
    assert parts == whole
    assert list(PoissonLoad(0.0, 1, 1, random.Random(0)).arrivals_until(1e9)) == []
    with pytest.raises(ValueError):
        PoissonLoad(-1.0, 1, 1, random.Random(0))


def test_parse_trace_reads_the_azure_format() -> None:
    lines = [
        "TIMESTAMP,ContextTokens,GeneratedTokens\n",
        "2023-11-16 18:15:46.6805900,374,44\n",
        "2023-11-16 18:15:50.9951690,396,109\n",
        "2023-11-16 18:15:46.1805900,10,1\n",
        "\n",
    ]
    trace = parse_trace(lines)
    assert [r.prompt_tokens for r in trace] == [10, 374, 396]
    assert trace[0].offset == 0.0
    assert trace[1].offset == pytest.approx(0.5)
    assert trace[2].offset == pytest.approx(4.814579)


def test_trace_replay_compresses_time_skips_and_loops() -> None:
    trace = [TraceRequest(0.0, 1, 1), TraceRequest(10.0, 2, 2), TraceRequest(20.0, 3, 3)]
    fast = TraceLoad(trace, speed=10.0, start=100.0)
    assert [(a.time, a.prompt_tokens) for a in fast.arrivals_until(101.0)] == [
        (100.0, 1),
        (101.0, 2),
    ]
    assert [a.time for a in fast.arrivals_until(1e9)] == [102.0]
    assert fast.finished

    skipped = TraceLoad(trace, skip=10.0, start=0.0)
    assert [(a.time, a.prompt_tokens) for a in skipped.arrivals_until(1e9)] == [(0.0, 2), (10.0, 3)]

    looped = TraceLoad(trace, loop=True)  # span 20 s + mean gap 10 s: period 30 s
    assert [a.time for a in looped.arrivals_until(65.0)] == [0, 10, 20, 30, 40, 50, 60]
    assert not looped.finished


def test_weighted_round_robin_is_proportional_and_smooth() -> None:
    a, b = ("c", "ns", "a"), ("c", "ns", "b")
    router = WeightedRoundRobin()
    picks = [router.pick({a: 3.0, b: 1.0}) for _ in range(8)]
    assert picks.count(a) == 6 and picks.count(b) == 2
    assert picks[:4].count(b) == 1  # spread out, not bunched
    with pytest.raises(ValueError):
        router.pick({})


# ------------------------------------------------------------------------------ deployments


def test_deployment_view_reads_labels_and_ready_replicas() -> None:
    seen = view(ready=3)
    assert seen.service == SERVICE
    assert (seen.variant, seen.tier, seen.ready_replicas) == ("h100", "central", 3)
    assert view(ready=0).ready_replicas == 0
    foreign = deployment()
    foreign["metadata"]["labels"] = {}
    foreign["spec"]["template"]["metadata"]["labels"] = {"app": "x"}
    assert deployment_view("c", foreign) is None


def test_series_labels_are_what_labelmap_of_the_pod_labels_gives() -> None:
    labels = series_labels(view(), "llama")
    assert labels["tierra_dev_inference_service"] == "chat"
    assert labels["tierra_dev_inference_service_namespace"] == "team-a"
    assert labels["tierra_dev_tier"] == "central"
    assert labels["tierra_dev_variant"] == "h100"
    assert labels["app_kubernetes_io_managed_by"] == "tierra"
    assert labels["namespace"] == "team-a"
    assert labels["pod"] == "chat-h100-central"
    assert labels["model_name"] == "llama"
    assert labels["cluster"] == "tierra-central"


# -------------------------------------------------------------------------------- the model


def test_pools_follow_ready_replicas_with_the_startup_delay() -> None:
    model = TwinModel()
    services = {SERVICE: service(startup=10)}
    model.sync(0.0, [view(ready=1)], services)
    pool = model.pools[view().key].pool
    assert pool.ready_replicas == 1  # already running when the twin started: serves at once

    model.sync(1.0, [view(ready=3)], services)
    assert (pool.ready_replicas, pool.starting_replicas) == (1, 2)
    model.step(10.5)
    assert pool.ready_replicas == 1
    model.step(11.0)
    assert pool.ready_replicas == 3

    model.sync(12.0, [view(ready=1)], services)
    assert pool.desired_replicas == 1


def test_deployments_seen_later_start_up_and_startup_factor_scales_it() -> None:
    model = TwinModel(startup_factor=0.5)
    services = {SERVICE: service(startup=10)}
    model.sync(0.0, [], services)
    model.sync(1.0, [view(ready=2)], services)
    pool = model.pools[view().key].pool
    assert (pool.ready_replicas, pool.starting_replicas) == (0, 2)
    model.step(6.0)
    assert pool.ready_replicas == 2


def test_unknown_service_or_variant_has_no_pool_and_vanished_pools_go() -> None:
    model = TwinModel()
    model.sync(0.0, [view()], {})
    assert model.pools == {}
    model.sync(1.0, [view()], {SERVICE: service()})
    assert list(model.pools) == [view().key]
    model.sync(2.0, [], {SERVICE: service()})
    assert model.pools == {}
    assert all(not f.series and not f.histograms for f in model.families())


def test_too_few_replicas_queue_and_more_replicas_drain_the_queue() -> None:
    model = TwinModel(seed=3)
    services = {SERVICE: service(startup=0, concurrency=2)}
    model.sync(0.0, [view(ready=1)], services)
    # 1 s of a replica per request (500 prompt at 1000/s + 50 output at 100/s): 1 req/s each
    model.set_poisson(SERVICE, rate=4.0, prompt_tokens=500, output_tokens=50)
    for tick in range(1, 301):
        model.step(tick * 0.1)
    state = model.state()["pools"][0]
    assert state["running"] == 2 and state["waiting"] > 50

    model.sync(30.0, [view(ready=8)], services)
    for tick in range(301, 901):
        model.step(tick * 0.1)
    after = model.state()["pools"][0]
    assert after["waiting"] < 5 and after["ready"] == 8
    assert after["completed"] > 150
    assert after["p95LatencySeconds"] is not None and after["p95LatencySeconds"] > 1.0


def test_arrivals_split_by_serving_replicas_and_queue_when_none_serves() -> None:
    model = TwinModel(seed=1)
    services = {SERVICE: service(startup=0, concurrency=1000)}
    a, b = view("chat-a", ready=3, tier="a"), view("chat-b", ready=1, tier="b")
    model.sync(0.0, [a, b], services)
    model.set_poisson(SERVICE, rate=100.0, prompt_tokens=0, output_tokens=1000)  # 10 s each
    model.step(4.0)
    running = {p["deployment"]: p["running"] for p in model.state()["pools"]}
    assert running["chat-a"] == pytest.approx(3 * running["chat-b"], abs=2)

    empty = TwinModel()
    empty.sync(0.0, [view("chat-a", ready=0), view("chat-b", ready=0)], services)
    empty.set_poisson(SERVICE, rate=10.0, prompt_tokens=1, output_tokens=1)
    empty.step(5.0)
    waiting = {p["deployment"]: p["waiting"] for p in empty.state()["pools"]}
    assert waiting["chat-a"] > 0 and waiting["chat-b"] == 0


def test_load_without_pools_waits_at_the_gateway_then_is_handed_over() -> None:
    """Scaled to zero: the gateway holds the requests and exports how many, the signal that
    wakes the service; the first pool gets them."""
    model = TwinModel()
    model.set_poisson(SERVICE, rate=10.0, prompt_tokens=1, output_tokens=1)
    model.step(10.0)
    held = model.state()["loads"]["team-a/chat"]["held"]
    assert held > 50
    assert model.state()["loads"]["team-a/chat"]["dropped"] == 0
    gateway = next(f for f in model.families() if f.name == "tierra_gateway_requests_waiting")
    assert [(s.labels, s.value) for s in gateway.series] == [
        (
            {
                "tierra_dev_inference_service_namespace": "team-a",
                "tierra_dev_inference_service": "chat",
            },
            float(held),
        )
    ]
    model.sync(10.0, [view(ready=1)], {SERVICE: service(startup=0, concurrency=4)})
    model.step(10.5)
    assert model.state()["loads"]["team-a/chat"]["held"] == 0
    assert sum(p["waiting"] + p["running"] + p["completed"] for p in model.state()["pools"]) >= held


def test_the_gateway_drops_beyond_its_capacity() -> None:
    model = TwinModel()
    model.set_poisson(SERVICE, rate=1000.0, prompt_tokens=1, output_tokens=1)
    model.step(20.0)
    loads = model.state()["loads"]["team-a/chat"]
    assert loads["held"] == 10_000
    assert loads["dropped"] > 5_000


def test_token_counters_grow_per_iteration_before_any_completion() -> None:
    """A long prompt alone on a replica: half-way through its prefill the prompt counter
    shows half of it and nothing has completed, as on vLLM (so the presets' token ratio over
    such a window is +Inf)."""
    model = TwinModel(seed=1)
    model.sync(0.0, [view(ready=1)], {SERVICE: service(startup=0, concurrency=4)})
    model.loads[SERVICE] = TraceLoad([TraceRequest(0.0, 8000, 100)])
    model.step(0.5)
    families = {f.name: f for f in model.families()}
    assert families["vllm:request_success_total"].series[0].value == 0
    prompt = families["vllm:prompt_tokens_total"].series[0].value
    assert 0 < prompt < 8000
    model.step(60.0)
    families = {f.name: f for f in model.families()}
    assert families["vllm:request_success_total"].series[0].value == 1
    assert families["vllm:prompt_tokens_total"].series[0].value == 8000
    assert families["vllm:generation_tokens_total"].series[0].value == 100


def test_families_have_vllm_names_types_and_consistent_counters() -> None:
    model = TwinModel(seed=2)
    model.sync(0.0, [view(ready=2)], {SERVICE: service(startup=0, concurrency=4)})
    model.set_poisson(SERVICE, rate=2.0, prompt_tokens=100, output_tokens=20)
    for tick in range(1, 201):
        model.step(tick * 0.1)
    families = {f.name: f for f in model.families()}
    assert {name: f.kind for name, f in families.items()} == {
        "vllm:num_requests_waiting": "gauge",
        "vllm:num_requests_running": "gauge",
        "vllm:request_success_total": "counter",
        "vllm:prompt_tokens_total": "counter",
        "vllm:generation_tokens_total": "counter",
        "vllm:e2e_request_latency_seconds": "histogram",
        "vllm:time_to_first_token_seconds": "histogram",
        "tierra_gateway_requests_waiting": "gauge",
    }
    success = families["vllm:request_success_total"].series[0].value
    assert success > 20
    # per iteration: the completed requests' tokens and part of the running ones'
    running = families["vllm:num_requests_running"].series[0].value
    prompt = families["vllm:prompt_tokens_total"].series[0].value
    generated = families["vllm:generation_tokens_total"].series[0].value
    assert 100 * success <= prompt <= 100 * (success + running)
    assert 20 * success <= generated <= 20 * (success + running)
    e2e = families["vllm:e2e_request_latency_seconds"].histograms[0]
    assert e2e.buckets[-1] == (math.inf, success)
    assert e2e.sum >= success * 0.3  # each request needs 0.3 s of a replica
    assert e2e.labels["tierra_dev_inference_service"] == "chat"


def test_histogram_and_percentile() -> None:
    hist = Histogram((1.0, 2.0))
    for value in (0.5, 1.0, 1.5, 3.0):
        hist.observe(value)
    assert hist.cumulative() == [(1.0, 2), (2.0, 3), (math.inf, 4)]
    assert hist.sum == 6.0
    assert percentile([], 0.95) is None
    assert percentile(range(1, 101), 0.95) == 95
