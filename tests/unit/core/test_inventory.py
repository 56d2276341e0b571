"""Pool capacity and per-service footprint from raw Nodes, Pods and Deployments."""

from __future__ import annotations

from typing import Any

import pytest

from tierra.api.tier import Tier
from tierra.core.inventory import (
    held_by_others,
    merge_usage,
    parse_quantity,
    pool_capacities,
    service_usage,
)

TIER = Tier.model_validate(
    {
        "metadata": {"name": "central"},
        "spec": {
            "level": "central",
            "region": "us-central",
            "pools": [
                {
                    "name": "h100",
                    "accelerator": {"type": "nvidia-gpu", "model": "H100", "perNode": 8},
                    "nodeSelector": {"tierra.dev/pool": "h100"},
                },
                {
                    "name": "cpu",
                    "accelerator": {"type": "cpu", "perNode": 32},
                    "nodeSelector": {"tierra.dev/pool": "cpu"},
                },
            ],
        },
    }
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


def tierra_labels(service: str, pool: str, variant: str) -> dict[str, str]:
    return {
        "tierra.dev/inference-service": service,
        "tierra.dev/inference-service-namespace": "team-a",
        "tierra.dev/tier": "central",
        "tierra.dev/pool": pool,
        "tierra.dev/variant": variant,
        "app.kubernetes.io/managed-by": "tierra",
    }


def deployment(service: str, pool: str, variant: str, replicas: int, gpus: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{service}-{variant}",
            "namespace": "team-a",
            "labels": tierra_labels(service, pool, variant),
        },
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "m",
                            "resources": {
                                "requests": {"nvidia.com/gpu": gpus},
                                "limits": {"nvidia.com/gpu": gpus},
                            },
                        }
                    ]
                }
            },
        },
    }


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
        pod("chat-0", "g0", {"nvidia.com/gpu": "2"}, labels=tierra_labels("chat", "h100", "h100")),
        pod("chat-1", None, {"nvidia.com/gpu": "2"}, labels=tierra_labels("chat", "h100", "h100")),
        pod("big-0", "g1", {"nvidia.com/gpu": "8"}, labels=tierra_labels("big", "h100", "h100")),
    ]
    usage = merge_usage([service_usage(TIER, deployments, pods)])
    chat = usage["team-a/chat"]
    [current] = chat.current()
    assert (current.replicas, current.scheduled) == (3, 1)
    assert chat.unbound_units() == {("central", "h100"): 4}
    # big wants 2x8 and holds 1x8: 8 units are held against everyone else.
    assert held_by_others(usage, exclude="team-a/chat") == {("central", "h100"): 8}
    assert held_by_others(usage, exclude="team-a/big") == {("central", "h100"): 4}
