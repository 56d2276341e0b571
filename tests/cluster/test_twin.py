"""The load twin on the local fleet, scraped by a real Prometheus (Debian's package).

A plain Deployment carrying Tierra's labels stands in for one the operator would write (no
operator runs here); its pods land on kwok nodes, which mark them Ready. The twin simulates
them as vLLM servers, Prometheus scrapes the twin, and the queries are the operator's own.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tierra.core.metrics_presets import (
    EveryService,
    Selector,
    every_service_queries,
    service_key,
    vllm,
    vllm_rates,
)
from tierra.lab.twin import TwinProcess
from tierra.localfleet.prometheus import PrometheusServer, ScrapeTarget
from tierra_testing.builders import child_labels, deployment, service_manifest, variant

pytestmark = pytest.mark.cluster

NAMESPACE = "twin-test"
SERVICE = "chat"
SCRAPE_SECONDS = 1.0
QUERIES = vllm(Selector(NAMESPACE, SERVICE))
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def inference_service() -> dict[str, Any]:
    """Each replica serves 2 requests at once and ~2 requests/s (100 prompt + 40 output
    tokens: 0.1 s prefill + 0.4 s decode), and starts in 2 s."""
    cpu = variant("cpu", "cpu", concurrency=2, prefill=1000, decode=100, startup=2)
    return service_manifest(
        SERVICE,
        NAMESPACE,
        [cpu],
        model={"name": "tiny-chat", "uri": "hf://example/tiny-chat"},
        slo={"latencyP95Ms": 5000},
    )


def twin_deployment(name: str, replicas: int) -> dict[str, Any]:
    """A Deployment with the labels of one the operator would write for the service."""
    labels = child_labels(SERVICE, NAMESPACE, pool="cpu", variant="cpu")
    return deployment(
        name,
        replicas,
        namespace=NAMESPACE,
        labels={**labels, "app.kubernetes.io/instance": name},
        selector={"app.kubernetes.io/instance": name},
        container="model-server",
        image="registry.k8s.io/pause:3.10",
        requests={"cpu": "100m", "memory": "64Mi"},
        node_selector={"tierra.dev/pool": "cpu"},
    )


def apply(kubectl: Kubectl, manifest: dict[str, Any]) -> None:
    kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(manifest)
    )


class Env:
    def __init__(self, twin: TwinProcess, prometheus: PrometheusServer, kubectl: Kubectl) -> None:
        self.twin = twin
        self.prometheus = prometheus
        self.kubectl = kubectl

    def pool(self, deployment_name: str) -> dict[str, Any] | None:
        pools = self.twin.state()["pools"]
        return next((p for p in pools if p["deployment"] == deployment_name), None)

    def value(self, expr: str | None) -> float | None:
        assert expr is not None
        return self.prometheus.value(expr)


@pytest.fixture(scope="module")
def env(
    fleet_kubeconfig: Path,
    crds_installed: None,
    kubectl: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("twin")
    kubectl("create", "namespace", NAMESPACE, check=False)
    twin = TwinProcess(fleet_kubeconfig, directory / "twin.log", extra_args=["--seed", "7"])
    prometheus = PrometheusServer(
        directory / "prometheus", [ScrapeTarget(twin.address)], scrape_interval=SCRAPE_SECONDS
    )
    try:
        apply(kubectl, inference_service())
        seconds = twin.start()
        print(f"\ntwin ready in {seconds:.1f}s")
        seconds = prometheus.start()
        scraped = prometheus.wait_for_scrapes()
        print(f"prometheus ready in {seconds:.1f}s, first scrape {scraped:.1f}s later")
        yield Env(twin, prometheus, kubectl)
    finally:
        twin.stop()
        prometheus.stop()
        print("\n--- twin log tail ---\n" + twin.log_tail(2000))
        print("--- prometheus log tail ---\n" + prometheus.log_tail(2000))
        kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_load_queues_on_too_few_replicas_and_drains_when_scaled_up(
    env: Env, kubectl: Kubectl, wait_for: Callable[..., Any]
) -> None:
    name = "chat-cpu-central"
    apply(kubectl, twin_deployment(name, replicas=1))
    wait_for(lambda: (env.pool(name) or {}).get("ready") == 1, 60, what="one serving replica")

    env.twin.set_load(NAMESPACE, SERVICE, rate=6.0, prompt_tokens=100, output_tokens=40)
    running = wait_for(
        lambda: (env.value(QUERIES.running) or 0) > 0, 30, what="running requests in Prometheus"
    )
    assert running
    first = wait_for(lambda: env.value(QUERIES.queue_depth), 30, what="a waiting queue")
    time.sleep(3 * SCRAPE_SECONDS)
    grown = env.value(QUERIES.queue_depth)
    assert grown is not None and grown > first, "4 req/s beyond capacity must pile up"

    [series] = env.prometheus.query(f'vllm:num_requests_waiting{{pod="{name}"}}')
    labels = series["metric"]
    assert labels["namespace"] == NAMESPACE
    assert labels["tierra_dev_inference_service"] == SERVICE
    assert labels["tierra_dev_inference_service_namespace"] == NAMESPACE
    assert labels["tierra_dev_tier"] == "central"
    assert labels["tierra_dev_variant"] == "cpu"
    assert labels["model_name"] == "tiny-chat"

    peak = grown
    kubectl("scale", "deployment", name, "-n", NAMESPACE, "--replicas=6")
    wait_for(lambda: (env.pool(name) or {}).get("ready") == 6, 60, what="six serving replicas")
    wait_for(
        lambda: (env.value(QUERIES.queue_depth) or 0) < max(2.0, peak / 4),
        60,
        what=f"the queue (peak {peak}) to drain",
    )
    p95 = wait_for(lambda: env.value(QUERIES.latency_p95_seconds), 30, what="a p95 latency")
    assert p95 > 0.5  # queueing made requests slower than their 0.5 s of work
    assert (env.value(QUERIES.arrival_rate) or 0) > 0
    assert env.value(QUERIES.ttft_p95_seconds) is not None
    env.twin.clear_load(NAMESPACE, SERVICE)


def test_series_of_a_deleted_deployment_disappear(
    env: Env, kubectl: Kubectl, wait_for: Callable[..., Any]
) -> None:
    name = "chat-cpu-gone"
    apply(kubectl, twin_deployment(name, replicas=1))
    query = f'vllm:num_requests_running{{pod="{name}"}}'
    wait_for(lambda: env.prometheus.query(query), 60, what="the deployment's series")
    kubectl("delete", "deployment", name, "-n", NAMESPACE)
    wait_for(lambda: env.pool(name) is None, 30, what="the twin to drop the pool")
    assert f'pod="{name}"' not in env.twin.metrics()
    wait_for(lambda: not env.prometheus.query(query), 30, what="Prometheus to mark it stale")


def test_prometheus_restarts_on_the_same_port_with_its_storage(
    env: Env, wait_for: Callable[..., Any]
) -> None:
    before = env.prometheus.port
    env.prometheus.stop()
    assert not env.prometheus.running
    env.prometheus.start()
    assert env.prometheus.port == before
    env.prometheus.wait_for_scrapes()
    history = env.prometheus.value('count(count_over_time(up{job="tierra-twin"}[10m]))')
    assert history == 1.0
    wait_for(
        lambda: (env.prometheus.value('count_over_time(up{job="tierra-twin"}[10m])') or 0) > 5,
        30,
        what="old samples plus new scrapes",
    )


def test_each_service_s_series_in_a_query_for_every_service_is_its_own_query_s_value(
    env: Env, kubectl: Kubectl, wait_for: Callable[..., Any]
) -> None:
    """The autoscaler's pass samples every service with one query per metric: on the twin's
    series of a service under load, evaluated at the same instant, each query's series for the
    service (also split by tier) is exactly the value of the service's own query."""
    name = "chat-cpu-every"
    apply(kubectl, twin_deployment(name, replicas=2))
    wait_for(lambda: (env.pool(name) or {}).get("ready") == 2, 60, what="two serving replicas")
    env.twin.set_load(NAMESPACE, SERVICE, rate=5.0, prompt_tokens=100, output_tokens=40)
    try:
        # (completions in the window: every query then has a value; the queue may be empty,
        # a value too, when an earlier test left replicas enough)
        wait_for(
            lambda: (
                (env.value(QUERIES.latency_p95_seconds) or 0) > 0
                and (env.value(QUERIES.ttft_p95_seconds) or 0) > 0
            ),
            60,
            what="latencies in Prometheus",
        )
        at = time.time() - 1.0
        own = {**vars(QUERIES), **vars(vllm_rates(Selector(NAMESPACE, SERVICE)))}
        compared = []
        for by_tier in (False, True):
            queries = every_service_queries("vllm", by_tier, SCRAPE_SECONDS)
            assert queries is not None
            every = {**vars(queries[0]), **vars(queries[1])}
            key = service_key(NAMESPACE, SERVICE, "central" if by_tier else None)
            labels = EveryService(by_tier=by_tier).labels
            for field, query in every.items():
                if field == "latency_statistic":
                    continue
                series = {
                    tuple(s["metric"].get(label) for label in labels): float(s["value"][1])
                    for s in env.prometheus.query(query, at=at)
                }
                alone = env.prometheus.value(own[field], at=at)
                mine = series.get(key)
                if alone is None or math.isnan(alone):
                    assert mine is None or math.isnan(mine), (field, mine)
                else:
                    assert mine == alone, (field, by_tier, mine, alone)
                    compared.append(field)
        # (every one of the 12 has a value under load, the token ratios and p95s included)
        assert len(set(compared)) == 12, compared
    finally:
        env.twin.clear_load(NAMESPACE, SERVICE)
        kubectl("delete", "deployment", name, "-n", NAMESPACE, check=False)
