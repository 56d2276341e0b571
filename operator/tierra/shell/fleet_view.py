"""The fleet as the controllers see it: Tiers, their member clusters, capacity and usage.

:meth:`FleetView.snapshot` is the one read a service's reconcile makes (a
:class:`~tierra.core.reconcile.ServiceView`); :meth:`FleetView.assume` makes a plan visible to
the next placement before any I/O, and :meth:`FleetView.apply` writes one child, forgetting the
assumption should the write fail (Kueue's snapshot -> assume -> write -> forget on error).
Nothing outside the shell touches a member cluster's caches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from tierra.api.tier import Tier
from tierra.core.inventory import (
    ServiceUsage,
    Slot,
    UsageIndex,
    held_by_others,
    pool_capacities,
)
from tierra.core.placement import CurrentPlacement, TierView
from tierra.core.reconcile import ChildKey, Plan, ServiceView
from tierra.core.render import LABEL_TIER
from tierra.shell.informer import StoreListener, key_of
from tierra.shell.kube import KubeClient, Obj
from tierra.shell.kubeconfig import KubeconfigPolicy
from tierra.shell.members import ConnectionProblem, Health, MemberCluster, MemberRegistry


@dataclass
class Triggers:
    """What the fleet tells the controllers (set once they exist)."""

    child_changed: Callable[[str, Obj, bool], None] = lambda *_: None
    """A child was edited, deleted or changed readiness (event, object, readiness only)."""
    capacity_changed: Callable[[], None] = lambda: None
    """Capacity moved in some cluster (nodes, pod bindings)."""
    reachability_changed: Callable[[], None] = lambda: None
    """A cluster became usable, syncing or unreachable."""


@dataclass(frozen=True)
class _PodSnapshot:
    """Pod-derived figures of one tier at one moment."""

    tier: Tier
    visible: bool
    revision: int
    taken: float
    view: TierView
    bound: Mapping[str, Mapping[Slot, int]]


@dataclass
class Assumed:
    """What the caches held before a plan was assumed, per child (None: nothing)."""

    before: dict[ChildKey, Obj | None] = field(default_factory=dict)


class FleetView:
    """Tiers (as the Tier controller keeps them) resolved to member clusters."""

    def __init__(
        self,
        management: KubeClient,
        namespace: str,
        policy: KubeconfigPolicy,
        pod_snapshot_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.management = management
        self.triggers = Triggers()
        self.registry = MemberRegistry(
            management,
            namespace,
            # (bound late: the controllers set the triggers once they exist)
            on_child_change=self._child_changed,
            on_capacity_change=self._capacity_changed,
            on_reachability_change=self._reachability_changed,
            policy=policy,
        )
        self.tiers: dict[str, Tier] = {}
        """Valid Tiers by name."""
        self.tier_bodies: dict[str, Obj] = {}
        """Every Tier as last seen (valid or not)."""
        self.deleting: dict[str, str] = {}
        """Tiers being deleted, with their deletionTimestamp."""
        self._pod_snapshot_seconds = pod_snapshot_seconds
        self._clock = clock
        self._observed: dict[str, _PodSnapshot] = {}
        # Every service's footprint, kept current by the member clusters' Deployment stores
        # (each tier's index subscribes to its cluster's store: tier, member, subscription).
        self._usage = UsageIndex()
        self._usage_sources: dict[str, tuple[Tier, MemberCluster, StoreListener]] = {}

    def _child_changed(self, event: str, obj: Obj, readiness_only: bool) -> None:
        self.triggers.child_changed(event, obj, readiness_only)

    def _capacity_changed(self) -> None:
        self.triggers.capacity_changed()

    def _reachability_changed(self) -> None:
        self.triggers.reachability_changed()

    # ---------------------------------------------------------------------- tiers
    def member(self, tier: str) -> MemberCluster | ConnectionProblem | None:
        return self.registry.for_tier(tier)

    def members(self) -> dict[str, MemberCluster]:
        """Tier name -> its member cluster (only tiers that resolved to a cluster)."""
        out = {}
        for name in self.tiers:
            member = self.registry.for_tier(name)
            if isinstance(member, MemberCluster):
                out[name] = member
        return out

    def clusters(self) -> list[MemberCluster]:
        return self.registry.clusters()

    def mark_deleting(self, name: str, since: str) -> None:
        self.deleting[name] = since
        self._observed.pop(name, None)

    def forget_tier(self, name: str) -> None:
        self.tiers.pop(name, None)
        self.tier_bodies.pop(name, None)
        self.deleting.pop(name, None)
        self.registry.forget(name)

    async def resolve_unresolved(self, sync_timeout: float) -> None:
        """Resolve tiers to member clusters and wait (a bounded time) for each cluster's
        first sync: a reconcile that saw a cluster's objects half-listed (right after a start
        or a new Tier) would rewrite children and status that are correct."""
        for name, tier in list(self.tiers.items()):
            member = self.registry.for_tier(name)
            if member is None:
                member = await self.registry.resolve(tier)
            if isinstance(member, MemberCluster):
                await member.wait_first_sync(sync_timeout)

    # ------------------------------------------------------------------- snapshot
    def _observe(self) -> tuple[list[TierView], Mapping[str, ServiceUsage]]:
        """Views of every tier and every service's footprint, from the informers.

        What comes from Nodes and Pods (capacity, allocation, bound replicas: the member's
        pod ledger, which follows every Pod event) is one snapshot per tier, retaken when the
        Tier changes and, while its cluster changes, at most every ``pod_snapshot_seconds``;
        what comes from Deployments (wanted replicas, including decisions just assumed) is
        always current: the usage index follows every write to the Deployment stores.
        Recounting every Pod, or every Deployment, for every reconcile made bulk placement
        O(N^2); reading one service's usage and what the others hold is O(own + pools).
        """
        views = []
        tracked = set()
        now = self._clock()
        for name, tier in self.tiers.items():
            member = self.registry.for_tier(name)
            deleting = name in self.deleting
            if not isinstance(member, MemberCluster):
                views.append(TierView(tier=tier, reachable=False, pools={}, deleting=deleting))
                continue
            visible = member.ready
            failing_since = None if member.reachable else member.failing_since
            cached = self._observed.get(name)
            fresh = (
                cached is not None
                and cached.tier is tier
                and cached.visible == visible
                and cached.view.unreachable_since == failing_since
                and (
                    cached.revision == member.revision
                    or now - cached.taken < self._pod_snapshot_seconds
                )
            )
            if cached is None or not fresh:
                cached = _PodSnapshot(
                    tier=tier,
                    visible=visible,
                    revision=member.revision,
                    taken=now,
                    view=TierView(
                        tier=tier,
                        reachable=visible,
                        pools=pool_capacities(tier, member.nodes.store.values(), member.pod_ledger),
                        deleting=deleting,
                        unreachable_since=failing_since,
                    ),
                    bound=member.pod_ledger.bound_replicas(tier),
                )
                self._observed[name] = cached
            views.append(cached.view)
            self._track_usage(name, tier, member, cached.bound)
            tracked.add(name)
        for name in [n for n in self._usage_sources if n not in tracked]:
            _, member, listener = self._usage_sources.pop(name)
            member.deployments.store.unsubscribe(listener)
            self._usage.untrack(name)
        return views, self._usage

    def _track_usage(
        self,
        name: str,
        tier: Tier,
        member: MemberCluster,
        bound: Mapping[str, Mapping[Slot, int]],
    ) -> None:
        """Keep the tier's usage index subscribed to its cluster's Deployments (reindexing
        when the Tier or its cluster changes) and on its latest pod snapshot."""
        source = self._usage_sources.get(name)
        if source is not None and source[0] is tier and source[1] is member:
            self._usage.set_bound(name, bound)
            return
        if source is not None:
            source[1].deployments.store.unsubscribe(source[2])
        store = member.deployments.store
        self._usage.track(tier, store.items(), bound)

        def listener(key: tuple[str, str], obj: Obj | None) -> None:
            self._usage.write(name, key, obj)

        store.subscribe(listener)
        self._usage_sources[name] = (tier, member, listener)

    def snapshot(
        self, service_key: str, moves_into: Mapping[str, int] | None = None
    ) -> ServiceView:
        """The fleet as the service ``namespace/name`` sees it now; ``moves_into`` counts
        the moves other services have in progress into each tier."""
        views, usage = self._observe()
        children: dict[ChildKey, Obj] = {}
        settled: set[str] = set()
        local: set[str] = set()
        syncing: list[str] = []
        seen: set[int] = set()
        for name in self.tiers:
            member = self.registry.for_tier(name)
            if not isinstance(member, MemberCluster):
                continue
            if member.client is self.management:
                local.add(name)
            if member.health is Health.SYNCING:
                syncing.append(name)
            if member.ready:
                settled.add(name)
            if id(member) in seen:
                continue
            seen.add(id(member))
            for kind, obj in member.children_of(service_key):
                tier = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_TIER, "")
                children[(tier, kind, *key_of(obj))] = obj
                if member.ready:
                    settled.add(tier)  # (a child of a Tier that is gone, in a known cluster)
        own = usage.get(service_key, ServiceUsage())
        return ServiceView(
            tiers=views,
            current=self._with_pending(service_key, own.current()),
            held=held_by_others(usage, service_key),
            children=children,
            settled=frozenset(settled),
            local=frozenset(local),
            syncing=tuple(syncing),
            now=time.time(),
            moves_into=moves_into or {},
        )

    def _with_pending(
        self, service_key: str, current: list[CurrentPlacement]
    ) -> list[CurrentPlacement]:
        """The placements with the creation time of their oldest pod no node took yet (read
        from the pod ledgers as they are now: a pod bound since the last pod snapshot is
        neither bound nor waiting, which only delays the Capacity trigger)."""
        waiting: dict[tuple[str, str, str], float] = {}
        for name in {p.tier for p in current if p.scheduled is None or p.scheduled < p.replicas}:
            member = self.registry.for_tier(name)
            tier = self.tiers.get(name)
            if isinstance(member, MemberCluster) and tier is not None:
                waiting.update(member.pod_ledger.pending_since(tier, service_key))
        if not waiting:
            return current
        return [replace(p, pending_since=waiting.get((p.tier, p.pool, p.variant))) for p in current]

    # ------------------------------------------------------------- assume & write
    def assume(self, plan: Plan) -> Assumed:
        """Make the plan's children visible to the next placement before any I/O."""
        members = self.members()
        assumed = Assumed()
        for tier, manifest in plan.desired:
            member = members.get(tier)
            if member is None:
                continue
            meta = manifest["metadata"]
            key = (tier, manifest["kind"], meta["namespace"], meta["name"])
            assumed.before[key] = member.assume(manifest)
        return assumed

    async def apply(self, tier: str, manifest: Obj, assumed: Assumed) -> None:
        """Write one child of the plan (forgetting its assumption if the write fails)."""
        member = self.members().get(tier)
        if member is None:
            return
        meta = manifest["metadata"]
        key = (tier, manifest["kind"], meta["namespace"], meta["name"])
        await member.apply(manifest, assumed.before.get(key))

    async def delete(self, tier: str, kind: str, obj: Obj) -> None:
        """Delete one child the plan no longer wants (``obj`` as the snapshot gave it)."""
        member = self.members().get(tier)
        if member is None or member.store_of(kind).get(key_of(obj)) is not obj:
            # (a child of a Tier that is gone: whichever cluster caches this very object)
            member = next(
                (m for m in self.clusters() if m.store_of(kind).get(key_of(obj)) is obj), None
            )
        if member is not None:
            await member.delete(kind, obj)
