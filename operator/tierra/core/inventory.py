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
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Iterator, Mapping
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
from tierra.core.status import epoch_seconds

__all__ = [
    "LABEL_OWNER_UID",
    "PodLedger",
    "ServiceUsage",
    "UsageIndex",
    "pool_capacities",
    "service_usage",
]

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
    tier: Tier, nodes: Iterable[Obj], pods: Iterable[Obj] | PodLedger
) -> dict[str, PoolCapacity]:
    """Observed capacity and allocation of every pool of the tier (``pods``: the cluster's
    Pods, or a :class:`PodLedger` that follows them)."""
    ledger = pods if isinstance(pods, PodLedger) else PodLedger.of(pods)
    node_list = [n for n in nodes if node_ready(n)]
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
        allocated = ledger.allocated([n["metadata"]["name"] for n in members], resource)
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
    return PodLedger.of(pods).bound_replicas(tier)


_MICRO = 1_000_000
"""The ledger sums requests in millionths, as integers: sums that go up and down by
quantities like 100m for hours must not drift."""


@dataclass(frozen=True, slots=True)
class _PodShare:
    """What one pod contributes to the ledger."""

    node: str | None
    """Set when the pod is bound and active (it holds its requests there)."""
    units: tuple[tuple[str, int], ...]
    """Effective requests per resource, in millionths."""
    bound: tuple[str, str, str, str] | None
    """(tier label, owning service, pool, variant) of a Tierra pod that holds a replica."""
    waiting: tuple[str, str, str, str, float] | None = None
    """(tier label, owning service, pool, variant, creation time) of a Tierra pod no node has
    taken yet."""


class PodLedger:
    """A cluster's Pods folded into what capacity accounting reads, kept current one pod event
    at a time: each node's summed effective requests of its active pods, and for each tier
    label each service's bound replicas per (pool, variant).

    Recounting every Pod for every capacity snapshot was an eighth of the operator's CPU when
    placing 1,000 services; with the ledger a snapshot costs O(nodes + pools).
    """

    def __init__(self) -> None:
        self._pods: dict[Hashable, _PodShare] = {}
        self._node_units: dict[str, dict[str, int]] = {}
        self._bound: dict[str, dict[str, dict[tuple[str, str], int]]] = {}
        self._waiting: dict[tuple[str, str], dict[tuple[str, str], Counter[float]]] = {}

    @classmethod
    def of(cls, pods: Iterable[Obj]) -> PodLedger:
        ledger = cls()
        for index, pod in enumerate(pods):
            ledger.put(index, pod)
        return ledger

    def __len__(self) -> int:
        return len(self._pods)

    def put(self, key: Hashable, pod: Obj | None) -> None:
        """Record the pod's latest version under ``key`` (None: the pod is gone)."""
        old = self._pods.pop(key, None)
        if old is not None:
            self._count(old, -1)
        if pod is None:
            return
        share = _share(pod)
        self._pods[key] = share
        self._count(share, 1)

    def allocated(self, nodes: Iterable[str], resource: str) -> float:
        """Summed effective requests of ``resource`` by the active pods on ``nodes``."""
        total = 0
        for node in nodes:
            total += self._node_units.get(node, {}).get(resource, 0)
        return total / _MICRO

    def bound_replicas(self, tier: Tier) -> dict[str, dict[Slot, int]]:
        """Per service: its pods of this tier bound to nodes (active, not terminating)."""
        name = tier.metadata.name
        return {
            owner: {(name, pool, variant): n for (pool, variant), n in slots.items()}
            for owner, slots in self._bound.get(label_value(name), {}).items()
        }

    def pending_since(self, tier: Tier, owner: str) -> dict[Slot, float]:
        """Per slot of the service in this tier: the creation time of its oldest pod that no
        node has taken yet (slots with none are absent)."""
        name = tier.metadata.name
        slots = self._waiting.get((label_value(name), owner)) or {}
        return {(name, pool, variant): min(times) for (pool, variant), times in slots.items()}

    def _count(self, share: _PodShare, sign: int) -> None:
        if share.waiting is not None:
            tier_label, owner, pool, variant, created = share.waiting
            waiting = self._waiting.setdefault((tier_label, owner), {})
            times = waiting.setdefault((pool, variant), Counter())
            times[created] += sign
            if times[created] <= 0:
                del times[created]
            if not times:
                del waiting[(pool, variant)]
            if not waiting:
                del self._waiting[(tier_label, owner)]
        if share.node is not None:
            units = self._node_units.setdefault(share.node, {})
            for resource, amount in share.units:
                units[resource] = units.get(resource, 0) + sign * amount
                if not units[resource]:
                    del units[resource]
            if not units:
                del self._node_units[share.node]
        if share.bound is not None:
            tier_label, owner, pool, variant = share.bound
            owners = self._bound.setdefault(tier_label, {})
            slots = owners.setdefault(owner, {})
            slots[(pool, variant)] = slots.get((pool, variant), 0) + sign
            if not slots[(pool, variant)]:
                del slots[(pool, variant)]
            if not slots:
                del owners[owner]
            if not owners:
                del self._bound[tier_label]


def _share(pod: Obj) -> _PodShare:
    node_name = pod.get("spec", {}).get("nodeName") or None
    if node_name is None or not pod_active(pod):
        return _PodShare(node=None, units=(), bound=None, waiting=_waiting(pod))
    units = []
    for resource in sorted(_resource_names(pod)):
        try:
            amount = round(pod_request(pod, resource) * _MICRO)
        except ValueError:  # the apiserver validates quantities; count what does not parse as 0
            continue
        if amount:
            units.append((resource, amount))
    labels = _labels(pod)
    owner = owner_key(pod)
    bound = None
    if owner is not None and not pod.get("metadata", {}).get("deletionTimestamp"):
        bound = (
            labels.get(LABEL_TIER, ""),
            owner,
            labels.get(LABEL_POOL, ""),
            labels.get(LABEL_VARIANT, ""),
        )
    return _PodShare(node=node_name, units=tuple(units), bound=bound)


def _waiting(pod: Obj) -> tuple[str, str, str, str, float] | None:
    """What an unbound Tierra pod contributes to ``PodLedger.pending_since``."""
    meta = pod.get("metadata") or {}
    owner = owner_key(pod)
    if (
        owner is None
        or meta.get("deletionTimestamp")
        or (pod.get("status") or {}).get("phase", "Pending") != "Pending"
        or (pod.get("spec") or {}).get("nodeName")
    ):
        return None
    created = epoch_seconds(str(meta.get("creationTimestamp")))
    if created is None:
        return None
    labels = _labels(pod)
    return (
        labels.get(LABEL_TIER, ""),
        owner,
        labels.get(LABEL_POOL, ""),
        labels.get(LABEL_VARIANT, ""),
        created,
    )


def _resource_names(pod: Obj) -> set[str]:
    spec = pod.get("spec", {})
    return {
        name
        for container in (*(spec.get("containers") or []), *(spec.get("initContainers") or []))
        for part in ("requests", "limits")
        for name in ((container.get("resources") or {}).get(part) or {})
    }


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
    """Unbound units of every service but ``exclude`` (the one being placed).

    Pools where another service holds Deployments appear even when it holds 0 units there.
    """
    if isinstance(usage, UsageIndex):
        return usage.held_by_others(exclude)
    held: dict[PoolKey, int] = defaultdict(int)
    for key, service in usage.items():
        if key == exclude:
            continue
        for pool_key, units in service.unbound_units().items():
            held[pool_key] += units
    return dict(held)


# ------------------------------------------------------------------------ incremental index
#
# ``service_usage`` + ``merge_usage`` + ``held_by_others`` recompute every service's footprint
# from every Deployment, which made each reconcile O(all Deployments) and bulk placement
# O(N^2). ``UsageIndex`` holds the same figures and is updated one Deployment write and one pod
# snapshot at a time; reading one service and "what the others hold" costs O(its own
# placements + pools).


@dataclass(frozen=True, slots=True)
class _Entry:
    """What one Deployment contributes (it passed ``service_usage``'s filters)."""

    seq: int
    owner: str
    slot: Slot
    replicas: int
    units: float


class _TierUsage:
    """The index of one tier: its cluster's Deployments (a mirror of one store) and pods."""

    def __init__(
        self,
        tier: Tier,
        deployments: Iterable[tuple[Hashable, Obj]],
        bound: Mapping[str, Mapping[Slot, int]],
    ) -> None:
        self.tier = tier
        self.name = tier.metadata.name
        self.label = label_value(self.name)
        self.resources = {
            pool.name: resource_name(pool) for pool in tier.spec.pools if has_resource_name(pool)
        }
        self.bound = bound
        # Store position of every key (a dict keeps a key's place when it is overwritten): when
        # two Deployments fill one slot, ``service_usage`` keeps the later one.
        self.order: dict[Hashable, int] = {}
        self.next_seq = 0
        self.entries: dict[Hashable, _Entry] = {}
        self.groups: dict[tuple[str, Slot], dict[Hashable, _Entry]] = {}
        self.slots: dict[str, dict[Slot, _Entry]] = {}  # owner -> slot -> the entry that counts
        self.unbound: dict[str, dict[PoolKey, int]] = {}  # owner -> pool -> unbound units
        self.held: dict[PoolKey, int] = defaultdict(int)  # sum of ``unbound`` over owners
        self.holders: dict[PoolKey, int] = defaultdict(int)  # owners with a slot in the pool
        for key, obj in deployments:
            self.put(key, obj)

    def _entry(self, seq: int, obj: Obj) -> _Entry | None:
        labels = _labels(obj)
        owner = owner_key(obj)
        pool = labels.get(LABEL_POOL, "")
        resource = self.resources.get(pool)
        if owner is None or resource is None or labels.get(LABEL_TIER) != self.label:
            return None
        try:
            replicas = int(obj.get("spec", {}).get("replicas", 1))
            units = deployment_units(obj, resource)
        except (TypeError, ValueError):  # never from an apiserver; ignored, not fatal
            return None
        slot = (self.name, pool, labels.get(LABEL_VARIANT, ""))
        return _Entry(seq, owner, slot, replicas, units)

    def put(self, key: Hashable, obj: Obj) -> None:
        seq = self.order.get(key)
        if seq is None:
            seq = self.order[key] = self.next_seq
            self.next_seq += 1
        self._replace(key, self._entry(seq, obj))

    def remove(self, key: Hashable) -> None:
        if self.order.pop(key, None) is not None:
            self._replace(key, None)

    def _replace(self, key: Hashable, new: _Entry | None) -> None:
        old = self.entries.pop(key, None)
        if old == new:
            if new is not None:
                self.entries[key] = new
            return
        if old is not None:
            previous = self.groups[(old.owner, old.slot)]
            del previous[key]
            if not previous:
                del self.groups[(old.owner, old.slot)]
        if new is not None:
            self.entries[key] = new
            self.groups.setdefault((new.owner, new.slot), {})[key] = new
        touched = {(e.owner, e.slot) for e in (old, new) if e is not None}
        for owner, slot in touched:
            group = self.groups.get((owner, slot))
            slots = self.slots.setdefault(owner, {})
            if group:
                slots[slot] = max(group.values(), key=lambda e: e.seq)
            else:
                slots.pop(slot, None)
            if not slots:
                del self.slots[owner]
        for owner in {owner for owner, _ in touched}:
            self._refresh(owner)

    def _refresh(self, owner: str) -> None:
        """Recompute one owner's unbound units per pool and fold the change into the totals."""
        new: dict[PoolKey, int] = {}
        bound = self.bound.get(owner) or {}
        for slot, entry in (self.slots.get(owner) or {}).items():
            missing = max(0, entry.replicas - bound.get(slot, 0))
            pool_key = (slot[0], slot[1])
            new[pool_key] = new.get(pool_key, 0) + math.ceil(missing * entry.units)
        old = self.unbound.pop(owner, {})
        for pool_key, units in old.items():
            self.held[pool_key] -= units
            self.holders[pool_key] -= 1
            if not self.holders[pool_key]:
                del self.holders[pool_key], self.held[pool_key]
        for pool_key, units in new.items():
            self.held[pool_key] += units
            self.holders[pool_key] += 1
        if new:
            self.unbound[owner] = new

    def set_bound(self, bound: Mapping[str, Mapping[Slot, int]]) -> None:
        if bound is self.bound:
            return
        previous, self.bound = self.bound, bound
        for owner in set(previous) | set(bound):
            if owner in self.slots and previous.get(owner) != bound.get(owner):
                self._refresh(owner)

    def usage_into(self, owner: str, usage: ServiceUsage) -> bool:
        slots = self.slots.get(owner)
        if not slots:
            return False
        for slot, entry in slots.items():
            usage.replicas[slot] = entry.replicas
            usage.units_per_replica[slot] = entry.units
        for slot, count in (self.bound.get(owner) or {}).items():
            if slot in slots:
                usage.bound_replicas[slot] = count
        return True


class UsageIndex(Mapping[str, ServiceUsage]):
    """Every service's footprint over the tracked tiers, kept current incrementally.

    Equal, as a mapping, to ``merge_usage(service_usage(tier, store.values(), (), bound=b) for
    each tracked tier)`` where ``store`` is the mapping of Deployments the tier was tracked from
    and every later write to it was passed on through :meth:`write` (dict semantics: an
    overwritten key keeps its place), and ``b`` the tier's latest :meth:`set_bound`.
    :func:`held_by_others` on an index answers from running totals in O(tiers x pools).
    """

    def __init__(self) -> None:
        self._tiers: dict[str, _TierUsage] = {}

    def track(
        self,
        tier: Tier,
        deployments: Iterable[tuple[Hashable, Obj]],
        bound: Mapping[str, Mapping[Slot, int]] | None = None,
    ) -> None:
        """(Re)index one tier from the full contents of its cluster's Deployment store."""
        self._tiers[tier.metadata.name] = _TierUsage(tier, deployments, bound or {})

    def untrack(self, tier_name: str) -> None:
        self._tiers.pop(tier_name, None)

    def tracked(self) -> list[str]:
        return list(self._tiers)

    def write(self, tier_name: str, key: Hashable, obj: Obj | None) -> None:
        """One Deployment of the tier's store was set (``obj``) or deleted (``None``)."""
        part = self._tiers.get(tier_name)
        if part is None:
            return
        if obj is None:
            part.remove(key)
        else:
            part.put(key, obj)

    def set_bound(self, tier_name: str, bound: Mapping[str, Mapping[Slot, int]]) -> None:
        """A new pod snapshot of the tier (see :func:`bound_replicas`)."""
        part = self._tiers.get(tier_name)
        if part is not None:
            part.set_bound(bound)

    def __getitem__(self, owner: str) -> ServiceUsage:
        usage = ServiceUsage()
        found = False
        for part in self._tiers.values():
            found = part.usage_into(owner, usage) or found
        if not found:
            raise KeyError(owner)
        return usage

    def __contains__(self, owner: object) -> bool:
        return any(owner in part.slots for part in self._tiers.values())

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(o for part in self._tiers.values() for o in part.slots))

    def __len__(self) -> int:
        return len({o for part in self._tiers.values() for o in part.slots})

    def held_by_others(self, exclude: str) -> dict[PoolKey, int]:
        held: dict[PoolKey, int] = {}
        for part in self._tiers.values():
            own = part.unbound.get(exclude) or {}
            for pool_key, holders in part.holders.items():
                if holders - (pool_key in own) > 0:
                    held[pool_key] = part.held[pool_key] - own.get(pool_key, 0)
        return held
