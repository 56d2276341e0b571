"""What member clusters keep of Pods: enough for capacity accounting to give the same figures."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from tierra.core.inventory import PodLedger, pod_active, pod_request
from tierra.shell.kube import KubeClient
from tierra.shell.members import MemberCluster, slim_node, slim_pod
from tierra_testing.builders import child_labels, tier

TIER = tier()

RESOURCES = ["cpu", "nvidia.com/gpu", "google.com/tpu", "memory"]
quantities = st.sampled_from(["1", "2", "500m", "1500m", "8", "0", "1Gi", 3, 0.25])
resource_maps = st.dictionaries(st.sampled_from(RESOURCES), quantities, max_size=3)
containers = st.lists(
    st.fixed_dictionaries(
        {"name": st.just("c")},
        optional={
            "resources": st.fixed_dictionaries(
                {}, optional={"requests": resource_maps, "limits": resource_maps}
            )
        },
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(containers, containers, st.sampled_from(["Running", "Pending", "Succeeded", None]))
def test_slim_pod_keeps_effective_requests(
    running: list[dict[str, Any]], init: list[dict[str, Any]], phase: str | None
) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"}, "uid": "u"},
        "spec": {"nodeName": "node-1", "containers": running, "initContainers": init},
        "status": {"phase": phase, "conditions": [{"type": "Ready"}]},
    }
    slim = slim_pod(pod)
    for resource in RESOURCES:
        assert pod_request(slim, resource) == pod_request(pod, resource)
    assert pod_active(slim) == pod_active(pod)
    assert slim["spec"]["nodeName"] == "node-1"
    assert slim["metadata"] == {"name": "p", "namespace": "n", "labels": {"a": "b"}}


@settings(max_examples=100, deadline=None)
@given(
    node=st.sampled_from([None, "node-1"]),
    phase=st.sampled_from(["Pending", "Running", "Failed"]),
    deleting=st.booleans(),
    second=st.integers(0, 59),
)
def test_the_pod_ledger_reads_the_same_from_a_slim_pod(
    node: str | None, phase: str, deleting: bool, second: int
) -> None:
    """Bound replicas and the wait of unbound ones (Capacity trigger) come out the same."""
    meta: dict[str, Any] = {
        "name": "p",
        "namespace": "n",
        "labels": child_labels("chat"),
        "creationTimestamp": f"2026-11-30T12:00:{second:02d}Z",
        "uid": "u",
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T12:01:00Z"
    spec = {"containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]}
    pod = {"metadata": meta, "spec": {**spec, "nodeName": node}, "status": {"phase": phase}}
    full, slim = PodLedger.of([pod]), PodLedger.of([slim_pod(pod)])
    assert slim.pending_since(TIER, "team-a/chat") == full.pending_since(TIER, "team-a/chat")
    assert slim.bound_replicas(TIER) == full.bound_replicas(TIER)
    waits = node is None and phase == "Pending" and not deleting
    assert bool(full.pending_since(TIER, "team-a/chat")) == waits


def test_slim_pod_keeps_unparsable_quantities_as_they_are() -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"resources": {"requests": {"cpu": "lots"}}}]},
    }
    assert slim_pod(pod)["spec"]["containers"] == [{"resources": {"requests": {"cpu": "lots"}}}]


def deployment_event(
    generation: int, ready: int | None, version: str, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": generation, "updatedReplicas": 1}
    if ready is not None:
        status["readyReplicas"] = ready
    return {
        "metadata": {
            "name": "chat-h100",
            "namespace": "team-a",
            "generation": generation,
            "resourceVersion": version,
            "labels": labels or {"app.kubernetes.io/managed-by": "tierra"},
        },
        "status": status,
    }


def test_only_deployment_changes_a_reconcile_cares_about_are_passed_on() -> None:
    seen: list[tuple[str, int, int | None, bool]] = []
    member = MemberCluster(
        cast(KubeClient, object()),
        "test",
        on_child_change=lambda event, obj, readiness_only: seen.append(
            (
                event,
                obj["metadata"]["generation"],
                obj["status"].get("readyReplicas"),
                readiness_only,
            )
        ),
        on_capacity_change=lambda: None,
        on_reachability_change=lambda: None,
    )
    events = [
        ("ADDED", deployment_event(1, None, "1")),
        ("MODIFIED", deployment_event(1, None, "2")),  # rollout status churn: dropped
        ("MODIFIED", deployment_event(1, 1, "3")),  # ready replicas: reported in status
        ("MODIFIED", deployment_event(1, 1, "4")),  # churn again: dropped
        ("MODIFIED", deployment_event(2, 1, "5")),  # spec edited by hand: drift
        ("MODIFIED", deployment_event(2, 1, "6", labels={"x": "y"})),  # labels edited: drift
        ("DELETED", deployment_event(2, 1, "7", labels={"x": "y"})),
        ("ADDED", deployment_event(1, None, "8")),  # recreated
    ]
    revision = member.revision
    for event, obj in events:
        member._child_changed(event, obj)
    # Only the readiness change is flagged as such (it waits behind urgent work).
    assert seen == [
        ("ADDED", 1, None, False),
        ("MODIFIED", 1, 1, True),
        ("MODIFIED", 2, 1, False),
        ("MODIFIED", 2, 1, False),
        ("DELETED", 2, 1, False),
        ("ADDED", 1, None, False),
    ]
    assert member.revision == revision + len(seen)


def test_the_revision_annotation_and_own_applies_trigger_no_reconcile() -> None:
    seen: list[tuple[str, str]] = []
    member = MemberCluster(
        cast(KubeClient, object()),
        "test",
        on_child_change=lambda event, obj, readiness_only: seen.append(
            (event, obj["metadata"]["resourceVersion"])
        ),
        on_capacity_change=lambda: None,
        on_reachability_change=lambda: None,
    )
    applied = deployment_event(1, None, "1")
    member.applied("Deployment", applied)
    member._child_changed("ADDED", deployment_event(1, None, "1"))  # our own apply: dropped
    revised = deployment_event(1, None, "2")
    revised["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    member._child_changed("MODIFIED", revised)  # the Deployment controller's annotation
    member._child_changed("MODIFIED", deployment_event(1, 1, "3"))  # ready: passed on
    edited = deployment_event(1, 1, "4")
    edited["metadata"]["annotations"] = {"team": "x"}
    member._child_changed("MODIFIED", edited)  # an annotation edited by hand: passed on
    assert seen == [("MODIFIED", "3"), ("MODIFIED", "4")]


def test_service_events_pass_on_changes_of_their_metadata_and_spec_only() -> None:
    seen: list[tuple[str, str]] = []
    member = MemberCluster(
        cast(KubeClient, object()),
        "test",
        on_child_change=lambda event, obj, readiness_only: seen.append(
            (event, obj["metadata"]["resourceVersion"])
        ),
        on_capacity_change=lambda: None,
        on_reachability_change=lambda: None,
    )

    def service(version: str, port: int = 8000) -> dict[str, Any]:
        return {
            "metadata": {"name": "chat", "namespace": "team-a", "resourceVersion": version},
            "spec": {"ports": [{"port": port}]},
        }

    revision = member.revision
    member.applied("Service", service("1"))
    notify = member.services.on_change
    assert notify is not None
    notify("ADDED", service("1"))  # our own apply: dropped
    notify("MODIFIED", service("2"))  # nothing that matters changed: dropped
    notify("MODIFIED", service("3", port=9000))  # spec edited by hand: drift
    notify("DELETED", service("3", port=9000))
    notify("ADDED", service("4"))  # recreated by someone else
    assert seen == [("MODIFIED", "3"), ("DELETED", "3"), ("ADDED", "4")]
    # A Deployment with the same name is another object.
    member._child_changed("ADDED", deployment_event(1, None, "5"))
    assert len(seen) == 4
    assert member.revision == revision + 1  # only Deployments move usage


def test_slim_node_keeps_what_capacity_reads() -> None:
    node = {
        "metadata": {"name": "n", "labels": {"a": "b"}, "uid": "u", "annotations": {"x": "y"}},
        "spec": {
            "unschedulable": True,
            "taints": [{"key": "k", "value": "v", "effect": "NoExecute", "timeAdded": "t"}],
            "podCIDR": "10.0.0.0/24",
        },
        "status": {
            "allocatable": {"nvidia.com/gpu": "8"},
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure"}],
            "images": [{"names": ["big"]}],
        },
    }
    slim = slim_node(node)
    assert slim["spec"] == {"unschedulable": True}
    assert slim["status"]["allocatable"] == {"nvidia.com/gpu": "8"}
    assert slim["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    assert "images" not in slim["status"] and "annotations" not in slim["metadata"]
