"""The real kube-scheduler places pods on the fleet's kwok accelerator nodes, and kwok runs them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from tierra_testing.builders import deployment

pytestmark = pytest.mark.cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
TPU_TOLERATION = {"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"}
EDGE_TOLERATION = {
    "key": "node-role.kubernetes.io/edge",
    "operator": "Exists",
    "effect": "NoSchedule",
}


@pytest.fixture
def namespace(api_clients: dict[str, client.ApiClient]) -> Iterator[Callable[[str], str]]:
    """Create a throwaway namespace in a cluster; delete it (and wait for its pods) afterwards."""
    created: list[tuple[str, str]] = []

    def make(cluster: str) -> str:
        name = f"sched-{uuid.uuid4().hex[:8]}"
        client.CoreV1Api(api_clients[cluster]).create_namespace({"metadata": {"name": name}})
        created.append((cluster, name))
        return name

    yield make
    for cluster, name in created:
        core = client.CoreV1Api(api_clients[cluster])
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        core.delete_namespace(name)


def pods_by_phase(api: client.ApiClient, namespace: str, app: str) -> dict[str, list[Any]]:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    phases: dict[str, list[Any]] = {}
    for pod in pods:
        phases.setdefault(pod.status.phase, []).append(pod)
    return phases


def wait_running(
    api: client.ApiClient, namespace: str, app: str, n: int, wait_for: Callable[..., Any]
) -> list[Any]:
    """The app's pods once exactly ``n`` of them are Running."""

    def running() -> list[Any]:
        pods = pods_by_phase(api, namespace, app).get("Running", [])
        return pods if len(pods) == n else []

    result: list[Any] = wait_for(running, what=f"{n} {app} pods Running")
    return result


def failed_scheduling(api: client.ApiClient, namespace: str, pod: Any, fragment: str) -> bool:
    """Whether the scheduler reported the pod unschedulable with ``fragment`` in the message."""
    events = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod.metadata.name}")
        .items
    )
    return any(e.reason == "FailedScheduling" and fragment in (e.message or "") for e in events)


def node_labels(api: client.ApiClient, node: str) -> dict[str, str]:
    return dict(client.CoreV1Api(api).read_node(node).metadata.labels)


def test_gpu_pods_run_on_h100_nodes(
    api_clients: dict[str, client.ApiClient],
    namespace: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    api = api_clients["central"]
    ns = namespace("central")
    client.AppsV1Api(api).create_namespaced_deployment(
        ns, deployment("gpu", 3, resources={"nvidia.com/gpu": "4"}, tolerations=[GPU_TOLERATION])
    )
    running = wait_running(api, ns, "gpu", 3, wait_for)
    for pod in running:
        labels = node_labels(api, pod.spec.node_name)
        assert labels["tierra.dev/pool"] == "h100"
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"


def test_gpu_request_beyond_pool_stays_pending(
    api_clients: dict[str, client.ApiClient],
    namespace: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    """Two H100 nodes with 8 GPUs each: three 8-GPU replicas -> two run, one stays Pending."""
    api = api_clients["central"]
    ns = namespace("central")
    client.AppsV1Api(api).create_namespaced_deployment(
        ns, deployment("big", 3, resources={"nvidia.com/gpu": "8"}, tolerations=[GPU_TOLERATION])
    )
    wait_for(
        lambda: len(pods_by_phase(api, ns, "big").get("Running", [])) == 2,
        what="2 of 3 8-GPU pods Running",
    )
    pending = pods_by_phase(api, ns, "big").get("Pending", [])
    assert len(pending) == 1

    wait_for(
        lambda: failed_scheduling(api, ns, pending[0], "Insufficient nvidia.com/gpu"),
        what="FailedScheduling: Insufficient nvidia.com/gpu",
    )
    # A request larger than any node is never placed.
    client.AppsV1Api(api).create_namespaced_deployment(
        ns, deployment("huge", 1, resources={"nvidia.com/gpu": "9"}, tolerations=[GPU_TOLERATION])
    )
    wait_for(lambda: pods_by_phase(api, ns, "huge").get("Pending"), what="9-GPU pod Pending")
    assert not pods_by_phase(api, ns, "huge").get("Running")


def test_gpu_pod_without_toleration_is_repelled_by_taint(
    api_clients: dict[str, client.ApiClient],
    namespace: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    api = api_clients["central"]
    ns = namespace("central")
    client.AppsV1Api(api).create_namespaced_deployment(
        ns, deployment("notol", 1, resources={"nvidia.com/gpu": "1"})
    )
    pod = wait_for(lambda: pods_by_phase(api, ns, "notol").get("Pending"), what="pod Pending")[0]

    wait_for(
        lambda: failed_scheduling(api, ns, pod, "untolerated taint"),
        what="FailedScheduling naming the untolerated taint",
    )


def test_plain_pod_lands_on_cpu_pool(
    api_clients: dict[str, client.ApiClient],
    namespace: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    api = api_clients["central"]
    ns = namespace("central")
    client.AppsV1Api(api).create_namespaced_deployment(
        ns, deployment("web", 2, resources={"cpu": "2"})
    )
    running = wait_running(api, ns, "web", 2, wait_for)
    assert {node_labels(api, p.spec.node_name)["tierra.dev/pool"] for p in running} == {"cpu"}


def test_tpu_pods_run_on_tpu_slice_nodes(
    api_clients: dict[str, client.ApiClient],
    namespace: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    api = api_clients["central"]
    ns = namespace("central")
    selector = {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
        "cloud.google.com/gke-tpu-topology": "2x2",
    }
    client.AppsV1Api(api).create_namespaced_deployment(
        ns,
        deployment(
            "tpu",
            2,
            resources={"google.com/tpu": "4"},
            tolerations=[TPU_TOLERATION],
            node_selector=selector,
        ),
    )
    running = wait_running(api, ns, "tpu", 2, wait_for)
    assert len({p.spec.node_name for p in running}) == 2  # 4 chips per node: one pod each
    for pod in running:
        assert node_labels(api, pod.spec.node_name)["tierra.dev/pool"] == "tpu-v5e"


def test_edge_gpu_pods_run_on_edge_nodes(
    api_clients: dict[str, client.ApiClient],
    namespace: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    api = api_clients["edge"]
    ns = namespace("edge")
    client.AppsV1Api(api).create_namespaced_deployment(
        ns,
        deployment(
            "orin",
            3,
            resources={"nvidia.com/gpu": "1"},
            tolerations=[EDGE_TOLERATION],
            node_selector={"node-role.kubernetes.io/edge": ""},
        ),
    )
    running = wait_running(api, ns, "orin", 3, wait_for)
    assert {node_labels(api, p.spec.node_name)["tierra.dev/pool"] for p in running} == {"orin"}
    # Three Orin nodes with one GPU each: a fourth replica cannot fit.
    client.AppsV1Api(api).patch_namespaced_deployment_scale("orin", ns, {"spec": {"replicas": 4}})
    wait_for(lambda: pods_by_phase(api, ns, "orin").get("Pending"), what="4th edge pod Pending")
