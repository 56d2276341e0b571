"""A member namespace that enforces Pod Security "restricted": the operator's default workload
runs there, and a service that asked for "baseline" is refused by the apiserver (so the label
is really enforced)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cluster_helpers import (
    Clients,
    WaitFor,
    children,
    create,
    running_pods,
    wait_placed,
)
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tierra_testing.builders import service_manifest, variant

pytestmark = pytest.mark.cluster

MEMBER = "regional"


@pytest.fixture
def restricted_namespace(namespace: str, clients: Clients) -> Iterator[str]:
    """The service's namespace in the member cluster, created before the operator would, with
    Pod Security "restricted" enforced."""
    core = client.CoreV1Api(clients[MEMBER])
    core.create_namespace(
        {
            "metadata": {
                "name": namespace,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            }
        }
    )
    yield namespace
    try:
        core.delete_namespace(namespace)
    except ApiException as error:
        if error.status != 404:
            raise


def _refusal(clients: Clients, namespace: str, name: str) -> str:
    """The message of a ReplicaFailure of the service's ReplicaSets ("" while there is none)."""
    apps = client.AppsV1Api(clients[MEMBER])
    for replica_set in apps.list_namespaced_replica_set(
        namespace, label_selector=f"tierra.dev/inference-service={name}"
    ).items:
        for condition in replica_set.status.conditions or []:
            if condition.type == "ReplicaFailure" and condition.status == "True":
                return str(condition.message)
    return ""


def _metrics(operator: Any) -> str:
    import urllib.request

    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_default_workload_runs_in_a_restricted_namespace(
    operator: Any,
    fleet_tiers: None,
    clients: Clients,
    restricted_namespace: str,
    wait_for: WaitFor,
) -> None:
    namespace = restricted_namespace
    for name, runtime in (
        ("strict", {"image": "vllm/vllm-openai:v0.10.0"}),
        ("rootful", {"image": "vllm/vllm-openai:v0.10.0", "podSecurity": "baseline"}),
    ):
        create(
            clients,
            service_manifest(
                name,
                namespace,
                [variant("l4", "nvidia-gpu", "L4", startup=0)],
                runtime=runtime,
                placement={"levels": [MEMBER]},
                scaling={"minReplicas": 1, "maxReplicas": 1},
            ),
        )
    wait_placed(clients, wait_for, namespace, "strict")
    wait_placed(clients, wait_for, namespace, "rootful")
    [deployment] = children(clients, MEMBER, "strict")
    assert deployment.metadata.namespace == namespace
    wait_for(lambda: running_pods(clients, MEMBER, "strict"), what="restricted pod Running")

    # The operator's /metrics reports the placement and its conditions (dashboard, alerts).
    series = (
        f'tierra_placement_ready_replicas{{accelerator="nvidia-gpu",name="strict",'
        f'namespace="{namespace}",pool="l4",tier="{MEMBER}",variant="l4"}} 1.0'
    )
    wait_for(lambda: series in _metrics(operator), what=series)
    placed = (
        f'tierra_inferenceservice_condition{{condition="Placed",name="strict",'
        f'namespace="{namespace}",status="true"}} 1.0'
    )
    assert placed in _metrics(operator)

    # The same namespace refuses the pod that asked for less than restricted.
    message = wait_for(lambda: _refusal(clients, namespace, "rootful"), what="baseline pod refused")
    assert 'violates PodSecurity "restricted:latest"' in message, message
    assert running_pods(clients, MEMBER, "rootful") == []
