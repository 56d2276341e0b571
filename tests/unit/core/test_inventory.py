"""Pool capacity and per-service footprint from raw Nodes, Pods and Deployments."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierra.core.inventory import (
    PodLedger,
    bound_replicas,
    held_by_others,
    merge_usage,
    parse_quantity,
    pod_active,
    pod_request,
    pool_capacities,
    service_usage,
)
from tierra_testing import builders
from tierra_testing.builders import child_labels, tier

TIER = tier(
    region="us-central",
    pools=[
        builders.pool(per_node=8, selector={"tierra.dev/pool": "h100"}),
        builders.pool("cpu", "cpu", None, per_node=32, selector={"tierra.dev/pool": "cpu"}),
    ],
)


def node(
    name: str, pool: str, resources: dict[str, str], ready: bool = True, unschedulable: bool = False
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"tierra.dev/pool": pool}},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(
    name: str,
    node_name: str | None,
    requests: dict[str, str],
    phase: str = "Running",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {"requests": requests}}]}
    if node_name:
        spec["nodeName"] = node_name
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {"phase": phase},
    }


def deployment(service: str, pool: str, variant: str, replicas: int, gpus: str) -> dict[str, Any]:
    return builders.deployment(
        f"{service}-{variant}",
        replicas,
        namespace="team-a",
        labels=child_labels(service, pool=pool, variant=variant),
        resources={"nvidia.com/gpu": gpus},
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("8", 8), ("500m", 0.5), ("1Gi", 2**30), ("2k", 2000), ("1.5", 1.5), ("1e3", 1000)],
)
def test_parse_quantity(text: str, value: float) -> None:
    assert parse_quantity(text) == value


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity("eight")


def test_capacity_counts_ready_schedulable_pool_nodes_only() -> None:
    nodes = [
        node("g0", "h100", {"nvidia.com/gpu": "8"}),
        node("g1", "h100", {"nvidia.com/gpu": "8"}),
        node("g2", "h100", {"nvidia.com/gpu": "8"}, ready=False),
        node("g3", "h100", {"nvidia.com/gpu": "8"}, unschedulable=True),
        node("c0", "cpu", {"cpu": "32"}),
    ]
    pods = [
        pod("a", "g0", {"nvidia.com/gpu": "4"}),
        pod("b", "g1", {"nvidia.com/gpu": "2"}),
        pod("done", "g1", {"nvidia.com/gpu": "2"}, phase="Succeeded"),
        pod("pending", None, {"nvidia.com/gpu": "8"}),
        pod("web", "c0", {"cpu": "500m"}),
        pod("web2", "c0", {"cpu": "1"}),
    ]
    pools = pool_capacities(TIER, nodes, pods)
    assert (pools["h100"].capacity, pools["h100"].allocated, pools["h100"].free) == (16, 6, 10)
    assert (pools["cpu"].capacity, pools["cpu"].allocated) == (32, 2)  # 1.5 cores round up


def test_service_usage_separates_wanted_from_bound() -> None:
    deployments = [
        deployment("chat", "h100", "h100", 3, "2"),
        deployment("big", "h100", "h100", 2, "8"),
    ]
    pods = [
        pod("chat-0", "g0", {"nvidia.com/gpu": "2"}, labels=child_labels("chat")),
        pod("chat-1", None, {"nvidia.com/gpu": "2"}, labels=child_labels("chat")),
        pod("big-0", "g1", {"nvidia.com/gpu": "8"}, labels=child_labels("big")),
    ]
    usage = merge_usage([service_usage(TIER, deployments, pods)])
    chat = usage["team-a/chat"]
    [current] = chat.current()
    assert (current.replicas, current.scheduled) == (3, 1)
    assert chat.unbound_units() == {("central", "h100"): 4}
    # big wants 2x8 and holds 1x8: 8 units are held against everyone else.
    assert held_by_others(usage, exclude="team-a/chat") == {("central", "h100"): 8}
    assert held_by_others(usage, exclude="team-a/big") == {("central", "h100"): 4}


# ------------------------------------------------------------------------------- PodLedger
_NODES = ["g0", "g1", "c0"]
_POD_VERSIONS = st.fixed_dictionaries(
    {
        "node": st.sampled_from([None, *_NODES]),
        "phase": st.sampled_from(["Pending", "Running", "Succeeded", "Failed"]),
        "gpu": st.sampled_from(["1", "2", "8"]),
        "cpu": st.sampled_from(["100m", "250m", "1", "1500m"]),
        "service": st.sampled_from([None, "chat", "big"]),
        "deleting": st.booleans(),
        "created": st.integers(0, 5),
    }
)


def _pod_version(name: str, version: dict[str, Any]) -> dict[str, Any]:
    labels = child_labels(version["service"]) if version["service"] else {}
    body = pod(
        name,
        version["node"],
        {"nvidia.com/gpu": version["gpu"], "cpu": version["cpu"]},
        phase=version["phase"],
        labels=labels,
    )
    if version["deleting"]:
        body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:0{version['created']}Z"
    return body


def _waiting_since(pods: list[dict[str, Any]], owner: str) -> dict[tuple[str, str, str], float]:
    """What ``PodLedger.pending_since`` must say, recounted from the pods."""
    found: dict[tuple[str, str, str], float] = {}
    for p in pods:
        labels = p["metadata"]["labels"]
        meta = p["metadata"]
        if (
            labels.get("tierra.dev/inference-service") != owner.split("/")[1]
            or p["spec"].get("nodeName")
            or meta.get("deletionTimestamp")
            or p["status"]["phase"] != "Pending"
        ):
            continue
        slot = ("central", labels["tierra.dev/pool"], labels["tierra.dev/variant"])
        created = datetime.datetime.fromisoformat(
            meta["creationTimestamp"].replace("Z", "+00:00")
        ).timestamp()
        found[slot] = min(found.get(slot, created), created)
    return found


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["p0", "p1", "p2", "p3"]), st.none() | _POD_VERSIONS),
        max_size=40,
    )
)
def test_ledger_follows_pod_events_like_a_recount(
    events: list[tuple[str, dict[str, Any] | None]],
) -> None:
    """Any sequence of pod versions and deletions leaves the ledger where a recount of the
    surviving pods lands, with no drift from summing fractional requests up and down."""
    ledger = PodLedger()
    live: dict[str, dict[str, Any]] = {}
    for name, version in events:
        body = None if version is None else _pod_version(name, version)
        ledger.put(name, body)
        if body is None:
            live.pop(name, None)
        else:
            live[name] = body
    pods = list(live.values())
    for node_name in _NODES:
        for resource in ("nvidia.com/gpu", "cpu"):
            expected = sum(
                pod_request(p, resource)
                for p in pods
                if p["spec"].get("nodeName") == node_name and pod_active(p)
            )
            assert ledger.allocated([node_name], resource) == pytest.approx(expected, abs=1e-9)
    assert ledger.bound_replicas(TIER) == bound_replicas(TIER, pods)
    for owner in ("team-a/chat", "team-a/big"):
        assert ledger.pending_since(TIER, owner) == _waiting_since(pods, owner)
    recount = PodLedger.of(pods)
    assert ledger.allocated(_NODES, "cpu") == recount.allocated(_NODES, "cpu")
    assert len(ledger) == len(live)
    if not live:  # nothing left behind once every pod is gone
        assert ledger.allocated(_NODES, "cpu") == 0
        assert ledger.bound_replicas(TIER) == {}
        assert ledger.pending_since(TIER, "team-a/chat") == {}


def test_bound_replicas_count_active_bound_pods_of_this_tier_only() -> None:
    labels = child_labels("chat")
    elsewhere = {**labels, "tierra.dev/tier": "regional"}
    pods = [
        pod("bound", "g0", {"nvidia.com/gpu": "1"}, labels=labels),
        pod("pending", None, {"nvidia.com/gpu": "1"}, labels=labels),
        pod("done", "g0", {"nvidia.com/gpu": "1"}, phase="Succeeded", labels=labels),
        pod("other-tier", "g0", {"nvidia.com/gpu": "1"}, labels=elsewhere),
        pod("not-tierra", "g0", {"nvidia.com/gpu": "1"}),
    ]
    assert bound_replicas(TIER, pods) == {"team-a/chat": {("central", "h100", "h100"): 1}}
