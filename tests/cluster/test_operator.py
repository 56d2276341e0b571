"""The operator end to end on the local fleet: place, render, act, report, repair, clean up.

Everything here runs against real kube-apiservers, a real scheduler and kwok nodes, with
``tierra run`` as a separate process, exactly as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
import yaml
from cluster_helpers import (
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    Clients,
    Kubectl,
    WaitFor,
    all_children,
    children,
    condition,
    create,
    get_service,
    node_pool,
    running_pods,
    wait_event,
    wait_placed,
    wait_pool_free,
)
from kubernetes import client

from tierra.controllers.finalizer import FINALIZER
from tierra_testing.builders import service_manifest, variant

pytestmark = pytest.mark.cluster


# --------------------------------------------------------------------------------------- tests
def test_examples_place_across_the_fleet(
    fleet_tiers: None, kubectl: Kubectl, clients: Clients, wait_for: WaitFor, operator: Any
) -> None:
    wait_pool_free(clients, wait_for, "edge", "orin", 3)
    kubectl("apply", "--server-side", "-f", str(REPO / "examples/services/namespaces.yaml"))
    kubectl("apply", "--server-side", "-f", str(REPO / "examples/services"))
    try:
        big = wait_placed(clients, wait_for, "team-a", "llama-70b")
        chat = wait_placed(clients, wait_for, "team-a", "chat-small")
        eu = wait_placed(clients, wait_for, "team-b", "eu-assistant")
        embeddings = wait_placed(clients, wait_for, "team-b", "embeddings")

        # The 70B model only fits central accelerators; TPU v5e is cheaper per token than H100.
        assert [(p["tier"], p["pool"], p["variant"]) for p in big["status"]["placements"]] == [
            ("central", "tpu-v5e", "tpu-v5e")
        ]
        [deployment] = children(clients, "central", "llama-70b")
        pod = deployment.spec.template.spec
        assert pod.containers[0].resources.limits["google.com/tpu"] == "4"
        assert pod.node_selector["cloud.google.com/gke-tpu-topology"] == "2x2"
        assert any(t.key == "google.com/tpu" for t in pod.tolerations)
        tpu_pods = wait_for(
            lambda: running_pods(clients, "central", "llama-70b"), what="llama-70b pod Running"
        )
        assert node_pool(clients, "central", tpu_pods[0].spec.node_name) == "tpu-v5e"

        # The small model goes to the edge first and spreads to a second tier (minTiers 2).
        tiers = {p["tier"]: p for p in chat["status"]["placements"]}
        assert set(tiers) == {"edge", "regional"}
        assert tiers["edge"]["pool"] == "orin"
        edge_pods = wait_for(
            lambda: running_pods(clients, "edge", "chat-small"),
            what="chat-small Running at the edge",
        )
        assert {node_pool(clients, "edge", p.spec.node_name) for p in edge_pods} == {"orin"}

        # The EU-resident service never leaves EU tiers; the US tier is ruled out by residency.
        assert {p["tier"] for p in eu["status"]["placements"]} <= {"regional", "edge"}
        assert any(
            r["tier"] == "central" and "residency" in r["reason"] for r in eu["status"]["rejected"]
        )
        assert not children(clients, "central", "eu-assistant")

        # minReplicas 0 with scaleToZero: placed, nothing running.
        assert embeddings["status"]["replicas"] == 0
        assert not any(all_children(clients, "embeddings").values())

        # Status carries what the scale subresource and printer columns need.
        assert "tierra.dev/inference-service=chat-small" in chat["status"]["selector"]
        assert chat["status"]["replicas"] == 2
        wait_for(
            lambda: (
                condition(get_service(clients, "team-a", "chat-small"), "Ready").get("status")
                == "True"
            ),
            what="chat-small Ready",
        )
        explained = subprocess.run(
            [".venv/bin/tierra", "explain", "team-b/eu-assistant", "--context", "tierra-central"],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env={"KUBECONFIG": str(operator.kubeconfig), "PATH": "/usr/bin:/bin"},
        ).stdout
        assert "residency" in explained and "regional" in explained
    finally:
        kubectl(
            "delete",
            "-f",
            str(REPO / "examples/services"),
            "--ignore-not-found",
            "--wait=true",
            "--timeout=60s",
            check=False,
        )
    for name in ("llama-70b", "chat-small", "eu-assistant"):
        wait_for(
            lambda n=name: not any(all_children(clients, n).values()),
            timeout=30,
            what=f"children of {name} deleted everywhere",
        )


def test_gpu_service_runs_on_h100_with_owner_references(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor
) -> None:
    create(
        clients,
        service_manifest(
            "gpu-chat",
            namespace,
            [variant("h100", "nvidia-gpu", "H100", count=2, startup=0)],
            placement={"levels": ["central"]},
            scaling={"minReplicas": 2, "maxReplicas": 4},
        ),
    )
    body = wait_placed(clients, wait_for, namespace, "gpu-chat")
    assert body["status"]["placements"][0]["pool"] == "h100"
    [deployment] = children(clients, "central", "gpu-chat")
    assert deployment.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "2"
    assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "tierra"
    owner = deployment.metadata.owner_references[0]
    assert (owner.kind, owner.uid) == ("InferenceService", body["metadata"]["uid"])
    assert children(clients, "central", "gpu-chat", "services")
    pods = wait_for(
        lambda: (
            len(running_pods(clients, "central", "gpu-chat")) == 2
            and running_pods(clients, "central", "gpu-chat")
        ),
        what="2 pods Running",
    )
    assert {node_pool(clients, "central", p.spec.node_name) for p in pods} == {"h100"}
    # Every child has an ownerReference, so the service carries no finalizer: deleting it
    # is the garbage collector's job, and nothing blocks it should the operator be gone.
    assert FINALIZER not in (body["metadata"].get("finalizers") or [])
    client.CustomObjectsApi(clients["central"]).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "gpu-chat"
    )
    wait_for(
        lambda: not any(all_children(clients, "gpu-chat").values()),
        timeout=30,
        what="children collected with their owner",
    )


def test_overflow_spills_to_next_tier(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor
) -> None:
    """Three Orin nodes at the edge: five replicas put three there and two in regional L4."""
    wait_pool_free(clients, wait_for, "edge", "orin", 3)
    wait_pool_free(clients, wait_for, "regional", "l4", 2)
    create(
        clients,
        service_manifest(
            "spill",
            namespace,
            [variant("orin", "edge-gpu", startup=0), variant("l4", "nvidia-gpu", "L4", startup=0)],
            placement={
                "levels": ["edge", "regional"],
                "objective": "latency",
                "userRegions": {"eu-central": 1.0},
            },
            scaling={"minReplicas": 5, "maxReplicas": 8},
        ),
    )
    body = wait_placed(clients, wait_for, namespace, "spill")
    placed = {(p["tier"], p["pool"]): p["replicas"] for p in body["status"]["placements"]}
    assert placed == {("edge", "orin"): 3, ("regional", "l4"): 2}
    wait_for(
        lambda: (
            len(running_pods(clients, "edge", "spill")) == 3
            and len(running_pods(clients, "regional", "spill")) == 2
        ),
        what="3 pods at the edge and 2 in regional Running",
    )


def test_unsatisfiable_reports_placed_false_without_hot_loop(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor, operator: Any
) -> None:
    """Three 8-GPU replicas on two 8-GPU nodes: two are placed, the rest is reported."""
    wait_pool_free(clients, wait_for, "central", "h100", 16)
    create(
        clients,
        service_manifest(
            "too-big",
            namespace,
            [variant("h100", "nvidia-gpu", "H100", count=8, startup=0)],
            placement={"levels": ["central"]},
            scaling={"minReplicas": 3, "maxReplicas": 3},
        ),
    )
    body = wait_placed(clients, wait_for, namespace, "too-big", status="False")
    placed = condition(body, "Placed")
    assert placed["reason"] == "PartiallyPlaced"
    assert "1 unplaced" in placed["message"] and "full" in placed["message"]
    assert sum(p["replicas"] for p in body["status"]["placements"]) == 2
    wait_event(clients, wait_for, namespace, "too-big", "PlacementFailed", "Warning")
    # Once settled, retries back off exponentially (5 s, 10 s, 20 s, ...): no hot loop.
    time.sleep(10)
    before = operator.metric("tierra_reconcile_total")
    time.sleep(20)
    after = operator.metric("tierra_reconcile_total")
    assert after - before <= 3, f"{after - before} reconciles in 20 s: a retry storm"


def test_drift_is_repaired_within_ten_seconds(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor
) -> None:
    create(
        clients,
        service_manifest(
            "drift",
            namespace,
            [variant("l4", "nvidia-gpu", "L4", startup=0)],
            placement={"levels": ["regional"]},
            scaling={"minReplicas": 2, "maxReplicas": 4},
        ),
    )
    wait_placed(clients, wait_for, namespace, "drift")
    [deployment] = children(clients, "regional", "drift")
    apps = client.AppsV1Api(clients["regional"])
    name, ns = deployment.metadata.name, deployment.metadata.namespace

    apps.patch_namespaced_deployment(name, ns, {"spec": {"replicas": 4}})
    started = time.monotonic()
    wait_for(
        lambda: apps.read_namespaced_deployment(name, ns).spec.replicas == 2,
        timeout=10,
        interval=0.1,
        what="replicas restored",
    )
    print(f"replica drift repaired in {time.monotonic() - started:.2f}s")

    apps.delete_namespaced_deployment(name, ns)
    started = time.monotonic()
    wait_for(
        lambda: any(
            d.metadata.uid != deployment.metadata.uid
            for d in children(clients, "regional", "drift")
        ),
        timeout=10,
        interval=0.1,
        what="deleted Deployment recreated",
    )
    print(f"deleted Deployment recreated in {time.monotonic() - started:.2f}s")

    core = client.CoreV1Api(clients["regional"])
    [service] = children(clients, "regional", "drift", "services")
    core.delete_namespaced_service(service.metadata.name, ns)
    wait_for(
        lambda: any(
            s.metadata.uid != service.metadata.uid
            for s in children(clients, "regional", "drift", "services")
        ),
        timeout=10,
        interval=0.1,
        what="deleted Service recreated",
    )


def test_scale_subresource_drives_replicas(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor, kubectl: Kubectl
) -> None:
    create(
        clients,
        service_manifest(
            "scaled",
            namespace,
            [variant("cpu", "cpu", count=2, startup=0)],
            placement={"levels": ["central"]},
            scaling={"minReplicas": 1, "maxReplicas": 6},
        ),
    )
    wait_placed(clients, wait_for, namespace, "scaled")
    kubectl("scale", "tisvc/scaled", "-n", namespace, "--replicas=3")
    wait_for(
        lambda: sum(d.spec.replicas for d in children(clients, "central", "scaled")) == 3,
        what="member Deployment scaled to 3",
    )
    body = wait_placed(clients, wait_for, namespace, "scaled")
    assert body["status"]["replicas"] == 3
    # the status says the scale subresource overrides the autoscaler
    wait_for(
        lambda: (
            (status := (get_service(clients, namespace, "scaled") or {}).get("status") or {})
            .get("autoscaling", {})
            .get("mode")
            == "manual"
            and status["autoscaling"]["recommendedReplicas"] == 3
        ),
        timeout=20,
        what="autoscaling mode manual",
    )


def test_delete_removes_children_in_every_cluster(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor
) -> None:
    create(
        clients,
        service_manifest(
            "spread",
            namespace,
            [
                variant("orin", "edge-gpu", startup=0),
                variant("l4", "nvidia-gpu", "L4", startup=0),
                variant("cpu", "cpu", startup=0),
            ],
            placement={"minTiers": 3},
            scaling={"minReplicas": 3, "maxReplicas": 3},
        ),
    )
    body = wait_placed(clients, wait_for, namespace, "spread")
    assert {p["tier"] for p in body["status"]["placements"]} == {"central", "regional", "edge"}
    assert FINALIZER in body["metadata"]["finalizers"]  # remote children need it
    assert all(all_children(clients, "spread").values())
    client.CustomObjectsApi(clients["central"]).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "spread"
    )
    wait_for(
        lambda: get_service(clients, namespace, "spread") is None,
        timeout=30,
        what="InferenceService gone (finalizer released)",
    )
    assert not any(all_children(clients, "spread").values())


def test_restart_changes_nothing_that_was_correct(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor, operator: Any
) -> None:
    create(
        clients,
        service_manifest(
            "steady",
            namespace,
            [variant("orin", "edge-gpu", startup=0), variant("l4", "nvidia-gpu", "L4", startup=0)],
            placement={"minTiers": 2, "levels": ["edge", "regional"]},
            scaling={"minReplicas": 2, "maxReplicas": 2},
        ),
    )
    wait_placed(clients, wait_for, namespace, "steady")
    wait_for(
        lambda: (
            (b := get_service(clients, namespace, "steady")) is not None
            and condition(b, "Ready").get("status") == "True"
            and condition(b, "MetricsAvailable")  # the autoscaler has reported too
        ),
        what="steady Ready and its autoscaling reported",
    )
    time.sleep(2)

    def snapshot() -> dict[str, str]:
        versions = {
            f"{c}/{o.metadata.namespace}/{o.metadata.name}/{type(o).__name__}": (
                o.metadata.resource_version
            )
            for c, objs in all_children(clients, "steady").items()
            for o in objs
        }
        body = get_service(clients, namespace, "steady")
        assert body is not None
        versions["service"] = body["metadata"]["resourceVersion"]
        return versions

    before = snapshot()
    operator.restart()
    time.sleep(8)  # informers resync, every service is reconciled again
    assert snapshot() == before


def test_orphans_of_a_service_deleted_while_the_operator_was_down_are_swept(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor, operator: Any
) -> None:
    create(
        clients,
        service_manifest(
            "orphaned",
            namespace,
            [variant("l4", "nvidia-gpu", "L4", startup=0)],
            placement={"levels": ["regional"]},
            scaling={"minReplicas": 1, "maxReplicas": 1},
        ),
    )
    wait_placed(clients, wait_for, namespace, "orphaned")
    operator.stop()
    custom = client.CustomObjectsApi(clients["central"])
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "orphaned", {"metadata": {"finalizers": None}}
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "orphaned")
    assert children(clients, "regional", "orphaned")
    operator.start()
    wait_for(
        lambda: not any(all_children(clients, "orphaned").values()),
        timeout=90,
        what="orphaned children swept",
    )


def test_tier_with_missing_or_bad_secret_is_unreachable_with_reason(
    fleet_tiers: None, clients: Clients, wait_for: WaitFor, kubectl: Kubectl, operator: Any
) -> None:
    tier = yaml.safe_load("""
apiVersion: tierra.dev/v1alpha1
kind: Tier
metadata: {name: ghost}
spec:
  level: edge
  region: eu-north
  cluster: {kubeconfigSecretRef: {name: ghost-kubeconfig}}
  pools: [{name: cpu, accelerator: {type: cpu}}]
""")
    kubectl("apply", "-f", "-", input=json.dumps(tier))
    custom = client.CustomObjectsApi(clients["central"])
    try:

        def reason() -> str:
            body = custom.get_cluster_custom_object(GROUP, VERSION, "tiers", "ghost")
            return str(condition(body, "Reachable").get("reason", ""))

        wait_for(lambda: reason() == "SecretNotFound", timeout=45, what="SecretNotFound")
        core = client.CoreV1Api(clients["central"])
        core.create_namespaced_secret(
            "tierra-system",
            {
                "metadata": {"name": "ghost-kubeconfig"},
                "stringData": {"kubeconfig": "this: is not [a kubeconfig"},
            },
        )
        wait_for(lambda: reason() == "KubeconfigRejected", timeout=45, what="KubeconfigRejected")
        assert operator.process.poll() is None
    finally:
        kubectl("delete", "tier", "ghost", "--ignore-not-found", check=False)
        kubectl(
            "delete",
            "secret",
            "ghost-kubeconfig",
            "-n",
            "tierra-system",
            "--ignore-not-found",
            check=False,
        )
