"""What a tier's cluster holds, derived from its Nodes, Pods and Tierra's Deployments (pure).

Placement needs three numbers per pool and per service:

- ``capacity``: allocatable units (accelerators, or cores for cpu pools) over Ready,
  schedulable nodes that match the pool's nodeSelector;
- ``allocated``: units requested by pods bound to those nodes and not finished;
- for each Tierra service: units its Deployments *want* there versus units its pods
  actually *hold* (bound). The difference is "held" capacity other services must not take
  even though the scheduler has not bound those pods yet (no double-booking).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tierra.api.tier import Pool, Tier
from tierra.core.accelerators import has_resource_name, resource_name
from tierra.core.placement import CurrentPlacement, PoolCapacity, PoolKey
from tierra.core.render import (
    LABEL_OWNER_UID,
    LABEL_POOL,
    LABEL_SERVICE,
    LABEL_SERVICE_NAMESPACE,
    LABEL_TIER,
    LABEL_VARIANT,
    label_value,
)

__all__ = ["LABEL_OWNER_UID", "ServiceUsage", "pool_capacities", "service_usage"]

Obj = Mapping[str, Any]


_SUFFIXES = {
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a float ("500m" -> 0.5, "8" -> 8, "1Gi" -> 2**30)."""
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = match.groups()
    if suffix and suffix not in _SUFFIXES:
        raise ValueError(f"unknown quantity suffix in {value!r}")
    return float(number) * _SUFFIXES.get(suffix, 1.0)


def _labels(obj: Obj) -> Mapping[str, str]:
    labels: Mapping[str, str] = obj.get("metadata", {}).get("labels") or {}
    return labels


def node_ready(node: Obj) -> bool:
    if node.get("spec", {}).get("unschedulable"):
        return False
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def node_in_pool(node: Obj, pool: Pool) -> bool:
    """Matches the pool's nodeSelector; an empty selector matches nodes exposing its resource."""
    labels = _labels(node)
    if pool.node_selector:
        return all(labels.get(k) == v for k, v in pool.node_selector.items())
    allocatable = node.get("status", {}).get("allocatable") or {}
    return parse_quantity(allocatable.get(resource_name(pool), 0)) > 0


def pod_active(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


def pod_request(pod: Obj, resource: str) -> float:
    """Effective request of one resource: max(sum of containers, largest init container)."""
    spec = pod.get("spec", {})

    def request(container: Obj) -> float:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get(resource)
        if value is None:  # extended resources may be given as limits only
            value = (resources.get("limits") or {}).get(resource, 0)
        return parse_quantity(value)

    running = sum(request(c) for c in spec.get("containers") or [])
    init = max((request(c) for c in spec.get("initContainers") or []), default=0.0)
    return max(running, init)


def pool_capacities(
    tier: Tier, nodes: Iterable[Obj], pods: Iterable[Obj]
) -> dict[str, PoolCapacity]:
    """Observed capacity and allocation of every pool of the tier."""
    node_list = [n for n in nodes if node_ready(n)]
    bound: dict[str, list[Obj]] = defaultdict(list)
    for pod in pods:
        node_name = pod.get("spec", {}).get("nodeName")
        if node_name and pod_active(pod):
            bound[node_name].append(pod)
    result = {}
    for pool in tier.spec.pools:
        if not has_resource_name(pool):  # admission rejects this; count it as empty anyway
            result[pool.name] = PoolCapacity(tier.metadata.name, pool.name, 0, 0)
            continue
        resource = resource_name(pool)
        members = [n for n in node_list if node_in_pool(n, pool)]
        capacity = sum(
            parse_quantity((n.get("status", {}).get("allocatable") or {}).get(resource, 0))
            for n in members
        )
        allocated = sum(
            pod_request(p, resource) for n in members for p in bound[n["metadata"]["name"]]
        )
        result[pool.name] = PoolCapacity(
            tier=tier.metadata.name,
            pool=pool.name,
            capacity=math.floor(capacity + 1e-9),
            allocated=math.ceil(allocated - 1e-9),
        )
    return result


def pool_node_counts(tier: Tier, nodes: Iterable[Obj]) -> dict[str, int]:
    """Ready, schedulable nodes per pool."""
    ready = [n for n in nodes if node_ready(n)]
    return {pool.name: sum(1 for n in ready if node_in_pool(n, pool)) for pool in tier.spec.pools}


def owner_key(obj: Obj) -> str | None:
    """``namespace/name`` of the InferenceService a Tierra child or pod belongs to."""
    labels = _labels(obj)
    name, namespace = labels.get(LABEL_SERVICE), labels.get(LABEL_SERVICE_NAMESPACE)
    return f"{namespace}/{name}" if name and namespace else None


@dataclass
class ServiceUsage:
    """One service's footprint, per (tier, pool, variant)."""

    replicas: dict[tuple[str, str, str], int] = field(default_factory=dict)
    units_per_replica: dict[tuple[str, str, str], float] = field(default_factory=dict)
    bound_replicas: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def current(self) -> list[CurrentPlacement]:
        return [
            CurrentPlacement(
                tier=t,
                pool=p,
                variant=v,
                replicas=n,
                scheduled=min(n, self.bound_replicas.get((t, p, v), 0)),
            )
            for (t, p, v), n in sorted(self.replicas.items())
        ]

    def unbound_units(self) -> dict[PoolKey, int]:
        """Units the Deployments want but the scheduler has not bound yet, per pool."""
        held: dict[PoolKey, int] = defaultdict(int)
        for (t, p, v), n in self.replicas.items():
            missing = max(0, n - self.bound_replicas.get((t, p, v), 0))
            held[(t, p)] += math.ceil(missing * self.units_per_replica.get((t, p, v), 0))
        return dict(held)


def deployment_units(deployment: Obj, resource: str) -> float:
    template = deployment.get("spec", {}).get("template", {})
    return pod_request(template, resource)


Slot = tuple[str, str, str]  # (tier, pool, variant)


def bound_replicas(tier: Tier, pods: Iterable[Obj]) -> dict[str, dict[Slot, int]]:
    """Per service: its pods bound to nodes (active, not terminating), per slot."""
    tier_name = tier.metadata.name
    tier_label = label_value(tier_name)
    bound: dict[str, dict[Slot, int]] = defaultdict(lambda: defaultdict(int))
    for pod in pods:
        labels = _labels(pod)
        key = owner_key(pod)
        if (
            key is None
            or labels.get(LABEL_TIER) != tier_label
            or not pod.get("spec", {}).get("nodeName")
            or not pod_active(pod)
            or pod.get("metadata", {}).get("deletionTimestamp")
        ):
            continue
        bound[key][(tier_name, labels.get(LABEL_POOL, ""), labels.get(LABEL_VARIANT, ""))] += 1
    return bound


def service_usage(
    tier: Tier,
    deployments: Iterable[Obj],
    pods: Iterable[Obj],
    bound: Mapping[str, Mapping[Slot, int]] | None = None,
) -> dict[str, ServiceUsage]:
    """Footprint of every Tierra service in one tier's cluster, keyed by ``namespace/name``.

    ``bound`` (from :func:`bound_replicas`) may be passed precomputed instead of ``pods``; it
    must come from the same pod snapshot as the ``allocated`` figures placement uses, so that
    a pod bound in between is counted exactly once (as allocated, or as wanted-but-unbound).
    """
    tier_name = tier.metadata.name
    tier_label = label_value(tier_name)
    pools = {pool.name: pool for pool in tier.spec.pools if has_resource_name(pool)}
    usage: dict[str, ServiceUsage] = defaultdict(ServiceUsage)
    for deployment in deployments:
        labels = _labels(deployment)
        key = owner_key(deployment)
        pool = pools.get(labels.get(LABEL_POOL, ""))
        if key is None or pool is None or labels.get(LABEL_TIER) != tier_label:
            continue
        slot = (tier_name, pool.name, labels.get(LABEL_VARIANT, ""))
        usage[key].replicas[slot] = int(deployment.get("spec", {}).get("replicas", 1))
        usage[key].units_per_replica[slot] = deployment_units(deployment, resource_name(pool))
    if bound is None:
        bound = bound_replicas(tier, pods)
    for key, service in usage.items():
        for slot, count in bound.get(key, {}).items():
            if slot in service.replicas:
                service.bound_replicas[slot] = count
    return dict(usage)


def merge_usage(parts: Iterable[Mapping[str, ServiceUsage]]) -> dict[str, ServiceUsage]:
    """Combine per-tier usage maps into one per service."""
    merged: dict[str, ServiceUsage] = defaultdict(ServiceUsage)
    for part in parts:
        for key, usage in part.items():
            merged[key].replicas.update(usage.replicas)
            merged[key].units_per_replica.update(usage.units_per_replica)
            merged[key].bound_replicas.update(usage.bound_replicas)
    return dict(merged)


def held_by_others(usage: Mapping[str, ServiceUsage], exclude: str) -> dict[PoolKey, int]:
    """Unbound units of every service but ``exclude`` (the one being placed)."""
    held: dict[PoolKey, int] = defaultdict(int)
    for key, service in usage.items():
        if key == exclude:
            continue
        for pool_key, units in service.unbound_units().items():
            held[pool_key] += units
    return dict(held)
