"""The operator's control loop: observe -> core decides -> shell acts -> status.

Level-triggered: every reconcile of an InferenceService reads the current state of every member
cluster (from informers), decides placement with the pure core, converges the children with
server-side apply, and reports. Triggers (spec changes, child drift, capacity and reachability
changes, retries) only say *which* service to look at, never *what* to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.autoscaler import DEFAULT_INTERVAL_SECONDS, Autoscaler
from tierra.core.autoscale import RunningPlacement
from tierra.core.inventory import (
    LABEL_OWNER_UID,
    ServiceUsage,
    Slot,
    UsageIndex,
    held_by_others,
    owner_key,
    pool_capacities,
    pool_node_counts,
)
from tierra.core.placement import PlacementDecision, TierView, explain, place
from tierra.core.render import (
    LABEL_MANAGED_BY,
    LABEL_TIER,
    child_name,
    child_selector,
    owner_of,
    render,
    target_namespace,
)
from tierra.core.status import scaling_status, service_status, tier_status
from tierra.shell import telemetry
from tierra.shell.informer import Informer, Store, StoreListener, key_of
from tierra.shell.kube import JSON_PATCH, KubeClient, KubeError, Obj
from tierra.shell.kubeconfig import KubeconfigPolicy
from tierra.shell.members import ConnectionProblem, Health, MemberCluster, MemberRegistry
from tierra.shell.workqueue import WorkQueue

log = logging.getLogger(__name__)

FINALIZER = "tierra.dev/cleanup"
TIER_FINALIZER = "tierra.dev/tier-cleanup"
"""Holds a deleted Tier until what Tierra runs in its cluster is gone (or provably out of
reach for ``tier_cleanup_timeout``)."""
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0
TIER_STATUS_INTERVAL_SECONDS = 5.0
TIER_RESOLVE_INTERVAL_SECONDS = 30.0
ORPHAN_SWEEP_INTERVAL_SECONDS = 30.0
ORPHAN_MIN_AGE_SECONDS = 30.0
CLEANUP_GIVE_UP_SECONDS = 300.0
SYNCING_RETRY_SECONDS = 1.0
"""How soon a service waiting for a member cluster's first listing is looked at again."""
POD_SNAPSHOT_SECONDS = 0.5
EVENT_CONCURRENCY = 8
"""Events in flight at once (they are posted in the background, off the reconcile path)."""
EVENT_DRAIN_SECONDS = 10.0
"""How long ``stop`` waits for Events still being posted."""


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_ZERO_VALUES: tuple[Any, ...] = ([], {}, 0, False, "", None)


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field of ``desired`` has the same value in ``live`` (SSA leaves extras).

    Zero values (``[]``, ``{}``, ``0``, ``False``, ``""``) match a missing field: the apiserver
    omits them when it serialises an object.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            is_subset(v, live[k]) if k in live else v in _ZERO_VALUES for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
        )
    return bool(desired == live) or str(desired) == str(live)


def merge_patched(target: Any, patch: Any) -> Any:
    """``target`` after a JSON merge patch (RFC 7386): what the apiserver will store."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patched(result.get(k), v)
    return result


def _resource_version(body: Obj | None) -> int:
    try:
        return int(((body or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _strip_times(status: Mapping[str, Any]) -> Any:
    return {
        k: (
            [{ck: cv for ck, cv in c.items() if ck != "lastTransitionTime"} for c in v or []]
            if k == "conditions"
            else v
        )
        for k, v in status.items()
        if k != "lastProbeTime"
    }


def _rejected_credentials(member: MemberCluster | ConnectionProblem | None) -> bool:
    return isinstance(member, MemberCluster) and (
        member.problem is not None and member.problem.reason in ("Unauthorized", "Forbidden")
    )


class NameConflictError(Exception):
    """A child's name is taken by an object Tierra did not create."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _label(obj: Obj, key: str) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(key, "?"))


def _created_by_tierra(obj: Obj) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(LABEL_MANAGED_BY) == "tierra")


@dataclass(frozen=True)
class _PodSnapshot:
    """Pod-derived figures of one tier at one moment (see ``Reconciler._observe``)."""

    tier: Tier
    visible: bool
    revision: int
    taken: float
    view: TierView
    bound: Mapping[str, Mapping[tuple[str, str, str], int]]


@dataclass
class ServiceState:
    """What the reconciler remembers per service between reconciles (all re-derivable)."""

    attempts: int = 0
    last_summary: str = ""
    deleting_since: float | None = None
    placed: bool = False
    running: list[RunningPlacement] = field(default_factory=list)
    """Where the last reconcile placed it (the autoscaler's current replicas)."""
    ready: int = 0
    written: Obj | None = None
    """The service as our last write of it (finalizer or status patch) returned it, while the
    watch has not caught up with that write: reconciles that run before our own write's event
    arrives see it rather than the older cached body (no re-adding the finalizer, no rewriting
    the same status)."""


@dataclass
class Reconciler:
    management: KubeClient
    namespace: str
    workers: int = 16
    clock: Callable[[], float] = time.monotonic
    services: dict[str, Obj] = field(default_factory=dict)
    tiers: dict[str, Tier] = field(default_factory=dict)
    tier_bodies: dict[str, Obj] = field(default_factory=dict)
    state: dict[str, ServiceState] = field(default_factory=dict)
    prometheus_url: str | None = None
    """Operator-wide Prometheus for tiers without ``spec.metrics``."""
    metrics_interval: float = DEFAULT_INTERVAL_SECONDS
    kubeconfig_policy: KubeconfigPolicy = field(default_factory=KubeconfigPolicy)
    """What member kubeconfig Secrets may contain beyond inline credentials."""
    member_sync_timeout: float = 10.0
    """How long a reconcile waits for a new member cluster's first listing before it moves on
    (services with a say there wait on, as *syncing*, rather than see the cluster empty)."""
    tier_cleanup_timeout: float = CLEANUP_GIVE_UP_SECONDS
    """How long a deleted Tier whose cluster cannot be reached holds its deletion before its
    finalizer is released with a Warning Event naming what may be left behind."""

    def __post_init__(self) -> None:
        self.queue: WorkQueue[str] = WorkQueue()
        self.autoscaler = Autoscaler(self.prometheus_url)
        # the typed spec of each service by resourceVersion, for the autoscaler's passes
        self._validated: dict[str, tuple[str | None, InferenceService]] = {}
        self.registry = MemberRegistry(
            self.management,
            self.namespace,
            on_child_change=self._child_changed,
            on_capacity_change=self._capacity_changed,
            on_reachability_change=self._reachability_changed,
            policy=self.kubeconfig_policy,
        )
        self._place_lock = asyncio.Lock()
        # Tiers come from our own informer so that nothing is reconciled before the full list
        # of Tiers is known (a partial view would look like "no tier fits" and drop children).
        self.tier_informer = Informer(self.management, "Tier", on_change=self.on_tier_event)
        # Services, too, come from an informer of ours rather than kopf's per-object handler
        # machinery (a worker task and a deep-copied diff base per event, for handlers we do
        # not have): about a tenth of the operator's CPU when placing 1,000 services.
        self.service_informer = Informer(
            self.management, "InferenceService", on_change=self.on_service_event
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._capacity_poke: asyncio.TimerHandle | None = None
        self._observed: dict[str, _PodSnapshot] = {}
        # Every service's footprint, kept current by the member clusters' Deployment stores
        # (each tier's index subscribes to its cluster's store: tier, member, subscription).
        self._usage = UsageIndex()
        self._usage_sources: dict[str, tuple[Tier, MemberCluster, StoreListener]] = {}
        self._tier_dirty = asyncio.Event()
        self.tiers_deleting: dict[str, str] = {}
        """Tiers being deleted, with their deletionTimestamp."""
        self._events: set[asyncio.Task[None]] = set()
        self._event_limit = asyncio.Semaphore(EVENT_CONCURRENCY)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.tier_informer.start()
        self.service_informer.start()
        for index in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"reconcile-{index}"))
        self._tasks.append(asyncio.create_task(self._tier_loop(), name="tier-status"))
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="orphan-sweep"))
        self._tasks.append(asyncio.create_task(self._autoscale_loop(), name="autoscale"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.drain_events(EVENT_DRAIN_SECONDS)
        await self.service_informer.stop()
        await self.tier_informer.stop()
        await self.registry.close()
        await self.autoscaler.close()

    # ------------------------------------------------------------------- triggers
    def on_service_event(self, event_type: str | None, body: Obj) -> None:
        meta = body["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        if event_type == "DELETED":
            self.services.pop(key, None)
            self.state.pop(key, None)
            self._validated.pop(key, None)
            self.autoscaler.forget(key)
            return
        before = self.services.get(key)
        self.services[key] = body
        state = self.state.get(key)
        if (
            state is not None
            and state.written is not None
            and _resource_version(body) >= _resource_version(state.written)
        ):
            state.written = None  # the watch has caught up with our last write
        changed = (
            before is None
            or before["metadata"].get("generation") != meta.get("generation")
            or before["metadata"].get("uid") != meta.get("uid")
            or bool(meta.get("deletionTimestamp"))
            != bool(before["metadata"].get("deletionTimestamp"))
            # While it is being deleted, another controller's finalizer change may be what our
            # own finalizer removal waits for.
            or (
                bool(meta.get("deletionTimestamp"))
                and before["metadata"].get("finalizers") != meta.get("finalizers")
            )
        )
        if changed:
            self.state.setdefault(key, ServiceState()).attempts = 0
            # The services listed at start-up (mostly in place already) wait behind services
            # created or changed meanwhile.
            self.queue.add(key, background=not self.service_informer.synced.is_set())

    def on_tier_event(self, event_type: str | None, body: Obj) -> None:
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self.tiers.pop(name, None)
            self.tier_bodies.pop(name, None)
            self.tiers_deleting.pop(name, None)
            self.registry.forget(name)
            self._enqueue_all()
            return
        before = self.tier_bodies.get(name)
        self.tier_bodies[name] = body
        deleting = body["metadata"].get("deletionTimestamp")
        if deleting and name not in self.tiers_deleting:
            # Its services move elsewhere (placement rules the tier out), then the tier loop
            # removes what is left and releases the Tier.
            self.tiers_deleting[name] = deleting
            self._observed.pop(name, None)
            self._enqueue_all()
            self._tier_dirty.set()
        if before is not None and before["metadata"].get("generation") == body["metadata"].get(
            "generation"
        ):
            return  # status-only change (our own tier status writes)
        try:
            self.tiers[name] = Tier.model_validate(body)
        except ValidationError as error:
            log.error("tier %s is invalid: %s", name, error)
            self.tiers.pop(name, None)
            return
        self.registry.forget(name)
        self._tier_dirty.set()

    def _child_changed(self, event_type: str, obj: Obj, readiness_only: bool) -> None:
        """Drift (a child edited or deleted) is urgent; a readiness change to report waits
        behind placements and repairs."""
        key = owner_key(obj)
        if key is not None and key in self.services:
            self.queue.add(key, background=readiness_only)

    def _capacity_changed(self) -> None:
        """Capacity or reachability moved: look again at services that are not fully placed."""
        if self._capacity_poke is not None:
            return
        loop = asyncio.get_running_loop()

        def poke() -> None:
            self._capacity_poke = None
            for key, state in self.state.items():
                if not state.placed:
                    self.queue.add(key, background=True)

        self._capacity_poke = loop.call_later(0.5, poke)

    def _reachability_changed(self) -> None:
        """A member cluster became usable, syncing or unreachable: report it on its Tiers now,
        and look again at services that are not fully placed."""
        self._tier_dirty.set()
        self._capacity_changed()

    def _enqueue_all(self) -> None:
        for key in self.services:
            self.queue.add(key)

    # -------------------------------------------------------------------- workers
    async def _worker(self) -> None:
        await self.tier_informer.synced.wait()
        while True:
            key = await self.queue.get()
            started = time.perf_counter()
            result = "success"
            try:
                retry = await self.reconcile(key)
                if retry is not None:
                    result = "retry"
                    self.queue.add(key, delay=retry)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                result = "error"
                telemetry.ERRORS.labels(kind=type(error).__name__).inc()
                if isinstance(error, KubeError):  # an apiserver's answer: no traceback to show
                    log.warning("reconcile %s failed: %s", key, error)
                else:
                    log.exception("reconcile %s failed", key)
                self.queue.add(key, delay=self._backoff(key))
            finally:
                self.queue.done(key)
                telemetry.RECONCILES.labels(result=result).inc()
                telemetry.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    def _backoff(self, key: str) -> float:
        state = self.state.setdefault(key, ServiceState())
        state.attempts += 1
        return float(min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (state.attempts - 1)))

    # ---------------------------------------------------------------- observation
    def _members(self) -> dict[str, MemberCluster]:
        """Tier name -> its member cluster (only tiers that resolved to a cluster)."""
        out = {}
        for name in self.tiers:
            member = self.registry.for_tier(name)
            if isinstance(member, MemberCluster):
                out[name] = member
        return out

    def _observe(self) -> tuple[list[TierView], Mapping[str, ServiceUsage]]:
        """Views of every tier and every service's footprint, from the informers.

        What comes from Nodes and Pods (capacity, allocation, bound replicas: the member's
        pod ledger, which follows every Pod event) is one snapshot per tier, retaken when the
        Tier changes and, while its cluster changes, at most every ``POD_SNAPSHOT_SECONDS``;
        what comes from Deployments (wanted replicas, including decisions just taken) is
        always current: the usage index follows every write to the Deployment stores.
        Recounting every Pod, or every Deployment, for every reconcile made bulk placement
        O(N^2); reading one service's usage and what the others hold is O(own + pools).
        """
        views = []
        tracked = set()
        now = self.clock()
        for name, tier in self.tiers.items():
            member = self.registry.for_tier(name)
            deleting = name in self.tiers_deleting
            if not isinstance(member, MemberCluster):
                views.append(TierView(tier=tier, reachable=False, pools={}, deleting=deleting))
                continue
            visible = member.ready
            cached = self._observed.get(name)
            fresh = (
                cached is not None
                and cached.tier is tier
                and cached.visible == visible
                and (
                    cached.revision == member.revision or now - cached.taken < POD_SNAPSHOT_SECONDS
                )
            )
            if not fresh:
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
                    ),
                    bound=member.pod_ledger.bound_replicas(tier),
                )
                self._observed[name] = cached
            assert cached is not None
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

    # ------------------------------------------------------------------ reconcile
    def _latest(self, key: str, state: ServiceState) -> Obj | None:
        """The newest version of the service we know: the watch's, or our last write's."""
        body = self.services.get(key)
        if body is None:
            return None
        written = state.written
        if written is not None and _resource_version(written) > _resource_version(body):
            return written
        return body

    def _validate(self, key: str, body: Obj) -> InferenceService:
        """The typed service, validated once per resourceVersion (reconciles and autoscaling
        passes of an unchanged service share it)."""
        version = body["metadata"].get("resourceVersion")
        cached = self._validated.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        service = InferenceService.model_validate(body)
        self._validated[key] = (version, service)
        return service

    def _wrote(self, key: str, obj: Obj) -> None:
        """Remember what the apiserver returned for our write of the service."""
        state = self.state.get(key)
        if state is None or _resource_version(obj) <= max(
            _resource_version(state.written), _resource_version(self.services.get(key))
        ):
            return
        obj.get("metadata", {}).pop("managedFields", None)
        state.written = obj

    async def reconcile(self, key: str) -> float | None:
        """Converge one service; return a delay to retry after, or None."""
        state = self.state.setdefault(key, ServiceState())
        body = self._latest(key, state)
        if body is None:
            return None
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            return await self._finalize(key, body, state)
        needs_finalizer = FINALIZER not in (meta.get("finalizers") or [])
        try:
            service = self._validate(key, body)
        except ValidationError as error:
            await self._report_invalid(body, error)
            return None
        await self._resolve_unresolved_tiers()
        if any(m.health is Health.SYNCING for m in self._members().values()):
            # What runs there is not known yet: deciding now could place twice or delete
            # what is fine. (A cluster that keeps failing to list becomes unreachable.)
            return SYNCING_RETRY_SECONDS
        desired = self._desired_replicas(key, service)
        async with self._place_lock:
            views, usage = self._observe()
            own = usage.get(key, ServiceUsage())
            decision = place(service, desired, views, own.current(), held_by_others(usage, key))
            members = self._members()
            plan = self._render_children(service, decision, members)
            # What each child was before this reconcile (None: Tierra has none by that name).
            before = {
                (id(m), m_["kind"], *key_of(m_)): self._store_of(m, m_["kind"]).get(key_of(m_))
                for m, m_ in plan
            }
            # Write-through: make the decision visible to the next placement before any I/O.
            for member, manifest in plan:
                if manifest["kind"] == "Deployment":
                    store = member.deployments.store
                    live = store.get(key_of(manifest))
                    if live is None or not is_subset(manifest, live):
                        store[key_of(manifest)] = {
                            **manifest,
                            "status": (live or {}).get("status", {}),
                        }
        # Children the management cluster's garbage collector cannot remove (in another
        # cluster or namespace, so without an ownerReference) need the finalizer; a service
        # whose children all carry ownerReferences goes without one (one write less, and
        # nothing blocks its deletion should the operator be gone). The finalizer goes on
        # alongside the first such children rather than before them: should the operator die
        # in between, the orphan sweep removes what the finalizer would have.
        needs_finalizer = needs_finalizer and any(
            not manifest["metadata"].get("ownerReferences") for _, manifest in plan
        )
        outcomes = await asyncio.gather(
            self._add_finalizer(key, body) if needs_finalizer else asyncio.sleep(0),
            self._converge_children(key, service, plan, members, before),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, NameConflictError):
                raise outcome
        conflicts = [o for o in outcomes if isinstance(o, NameConflictError)]
        body = self._latest(key, state) or body  # with the finalizer just added
        state.running = [
            RunningPlacement(tier=p.tier, variant=p.variant, replicas=p.replicas)
            for p in decision.placements
        ]
        self.autoscaler.placed(key, state.running, self.tiers)
        conflict = conflicts[0].message if conflicts else None
        await self._write_status(key, body, service, decision, members, conflict)
        state.placed = decision.satisfied and conflict is None
        if not state.placed:
            return self._backoff(key)
        state.attempts = 0
        return None

    def _desired_replicas(self, key: str, service: InferenceService) -> int:
        """Manual mode's ``spec.replicas``, else the autoscaler's recommendation; before the
        autoscaler's first step (a new service, or an operator restart) what status last
        recorded, within the bounds, so that a restart changes nothing."""
        spec = service.spec
        if spec.replicas is not None:  # manual mode: the scale subresource rules
            return spec.replicas
        recommended = self.autoscaler.recommended(key)
        if recommended is not None:
            return recommended
        status = service.status
        before = status.autoscaling.recommended_replicas if status.autoscaling else None
        if before is None and status.placements:
            before = status.replicas
        if before is None:
            return spec.scaling.min_replicas
        floor = 0 if spec.scaling.scale_to_zero else spec.scaling.min_replicas
        return min(max(before, floor), spec.scaling.max_replicas)

    def _render_children(
        self,
        service: InferenceService,
        decision: PlacementDecision,
        members: Mapping[str, MemberCluster],
    ) -> list[tuple[MemberCluster, Obj]]:
        owner = owner_of(service)
        plan = []
        for placement in decision.placements:
            member = members.get(placement.tier)
            if member is None:
                continue
            tier = self.tiers[placement.tier]
            for manifest in render(
                service, placement, tier, owner, same_cluster=member.client is self.management
            ):
                plan.append((member, manifest))
        return plan

    async def _converge_children(
        self,
        key: str,
        service: InferenceService,
        plan: list[tuple[MemberCluster, Obj]],
        members: Mapping[str, MemberCluster],
        before: Mapping[tuple[int, str, str, str], Obj | None],
    ) -> None:
        """Apply what differs from the plan, then delete this service's children it no longer
        wants. Raises :class:`NameConflictError` (after the rest is done) when a child's name is
        taken by an object Tierra did not create."""
        wanted = {(id(m), m_["kind"], *key_of(m_)) for m, m_ in plan}
        applies = []
        for member, manifest in plan:
            live = self._store_of(member, manifest["kind"]).get(key_of(manifest))
            if (
                live is not None
                and "metadata" in live
                and live["metadata"].get("resourceVersion")
                and is_subset(manifest, live)
            ):
                continue
            previous = before.get((id(member), manifest["kind"], *key_of(manifest)))
            applies.append(self._apply(member, manifest, previous))
        results = await asyncio.gather(*applies, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            # Nothing is deleted while what should replace it is not in place; a name
            # conflict is only reported when nothing else went wrong.
            raise next((e for e in errors if not isinstance(e, NameConflictError)), errors[0])
        # Children this service no longer wants (a placement dropped or scaled to zero). Only
        # where the operator sees the whole picture: a synced, reachable cluster.
        uid = service.metadata.uid
        deletes = []
        for member in {id(m): m for m in members.values()}.values():
            if not member.ready:
                continue
            for informer in (member.deployments, member.services):
                for obj in informer.store.by_index(key):  # this service's children only
                    labels = obj["metadata"].get("labels") or {}
                    if labels.get(LABEL_OWNER_UID) != uid:
                        continue
                    if (
                        id(member),
                        obj.get("kind", informer.kind),
                        *key_of(obj),
                    ) in wanted:
                        continue
                    deletes.append(self._delete(member, informer.kind, obj))
        await asyncio.gather(*deletes)

    @staticmethod
    def _store_of(member: MemberCluster, kind: str) -> Store:
        return (member.deployments if kind == "Deployment" else member.services).store

    async def _apply(self, member: MemberCluster, manifest: Obj, previous: Obj | None) -> None:
        """Server-side apply one child. ``previous`` is the child as the store held it before
        this reconcile; None means Tierra knows no child of that name, so an object found
        there belongs to someone else and is left alone (:class:`NameConflictError`). A failed
        apply puts ``previous`` back (the live child stays accounted for)."""
        meta = manifest["metadata"]
        namespace = meta["namespace"]
        store = self._store_of(member, manifest["kind"])
        try:
            await member.ensure_namespace(namespace)
            if previous is None:
                existing = await member.client.get(manifest["kind"], meta["name"], namespace)
                if existing is not None and not _created_by_tierra(existing):
                    raise NameConflictError(
                        f"{manifest['kind']} {namespace}/{meta['name']} in tier "
                        f"{_label(manifest, LABEL_TIER)} already exists and was not created by "
                        "Tierra; it is left untouched (rename or remove it)"
                    )
            try:
                applied = await member.client.apply(manifest)
            except KubeError as error:
                # 404: the namespace is gone; 403: it is being deleted. Either way our cache
                # of it is stale.
                if error.status not in (403, 404):
                    raise
                member.namespace_gone(namespace)
                if error.status == 403:
                    raise
                await member.ensure_namespace(namespace)
                applied = await member.client.apply(manifest)
        except BaseException:
            if previous is None:
                store.pop(key_of(manifest), None)  # undo the write-through
            else:
                store[key_of(manifest)] = previous
            member.revision += 1
            raise
        applied.get("metadata", {}).pop("managedFields", None)
        member.applied(manifest["kind"], applied)
        current = store.get(key_of(manifest), {})
        if int(applied["metadata"]["resourceVersion"]) >= int(
            current.get("metadata", {}).get("resourceVersion") or 0
        ):
            store[key_of(manifest)] = applied
        telemetry.APPLIES.labels(kind=manifest["kind"]).inc()

    async def _delete(self, member: MemberCluster, kind: str, obj: Obj) -> None:
        namespace, name = key_of(obj)
        await member.client.delete(kind, name, namespace)
        (member.deployments if kind == "Deployment" else member.services).store.pop(
            (namespace, name), None
        )

    # --------------------------------------------------------------------- status
    async def _write_status(
        self,
        key: str,
        body: Obj,
        service: InferenceService,
        decision: PlacementDecision,
        members: Mapping[str, MemberCluster],
        conflict: str | None = None,
    ) -> None:
        ready: dict[tuple[str, str, str], int] = {}
        for placement in decision.placements:
            member = members.get(placement.tier)
            if member is None:
                continue
            tier = self.tiers[placement.tier]
            deployment = (
                target_namespace(service, tier),
                child_name(service, placement.variant, tier),
            )
            live = member.deployments.store.get(deployment, {})
            ready[placement.key] = int((live.get("status") or {}).get("readyReplicas", 0))
        previous = body.get("status") or {}
        meta = body["metadata"]
        now = now_rfc3339()
        report = self.autoscaler.report(key)
        slo = service.spec.slo
        status = service_status(
            decision,
            ready,
            child_selector(meta["name"], meta["namespace"]),
            meta.get("generation"),
            previous,
            now,
            conflict=conflict,
            scaling=None
            if report is None
            else scaling_status(
                report,
                slo.latency_p95_ms,
                slo.ttft_p95_ms,
                meta.get("generation"),
                previous,
                now,
            ),
        )
        state = self.state.setdefault(key, ServiceState())
        state.ready = sum(ready.values())
        summary = conflict or decision.summary
        if summary != state.last_summary:
            # Posted in the background, alongside the status patch.
            state.last_summary = summary
            reason = "Placed" if decision.satisfied else "PlacementFailed"
            message = decision.summary if decision.satisfied else explain(decision)
            if conflict is not None:
                reason, message = "NameConflict", conflict
            self.emit_event(
                body, reason, message[:1000], "Normal" if reason == "Placed" else "Warning"
            )
            telemetry.PLACEMENTS.labels(result=reason).inc()
        # ``previous`` is the newest status we know (the watch's, or what our last write
        # returned); skip the write when merging ours into it would change nothing.
        if _strip_times(merge_patched(previous, status)) != _strip_times(previous):
            try:
                written = await self.management.patch(
                    "InferenceService",
                    meta["name"],
                    meta["namespace"],
                    {"status": status},
                    subresource="status",
                )
            except KubeError as error:
                if error.status != 404:
                    raise
            else:
                self._wrote(key, written)

    async def _report_invalid(self, body: Obj, error: ValidationError) -> None:
        meta = body["metadata"]
        message = f"spec is invalid: {error.errors()[0]['loc']}: {error.errors()[0]['msg']}"
        condition = {
            "type": "Placed",
            "status": "False",
            "reason": "InvalidSpec",
            "message": message,
            "observedGeneration": meta.get("generation"),
            "lastTransitionTime": now_rfc3339(),
        }
        await self.management.patch(
            "InferenceService",
            meta["name"],
            meta["namespace"],
            {"status": {"conditions": [condition]}},
            subresource="status",
        )
        await self.post_event(body, "InvalidSpec", message, "Warning")

    def emit_event(self, body: Obj, reason: str, message: str, type_: str) -> None:
        """Post an Event in the background (at most ``EVENT_CONCURRENCY`` at once); ``stop``
        waits for those still in flight."""

        async def post() -> None:
            async with self._event_limit:
                await self.post_event(body, reason, message, type_)

        task = asyncio.create_task(post(), name=f"event-{reason}")
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def drain_events(self, timeout: float | None = None) -> None:
        """Wait for the Events being posted (cancelling what is left after ``timeout``)."""
        pending = set(self._events)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d Events not posted before shutdown", len(late))
            await asyncio.wait(late)

    async def post_event(self, body: Obj, reason: str, message: str, type_: str) -> None:
        meta = body["metadata"]
        stamp = now_rfc3339()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": meta.get("namespace") or "default",
            },
            "involvedObject": {
                "apiVersion": body.get("apiVersion", "tierra.dev/v1alpha1"),
                "kind": body.get("kind", "InferenceService"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": "tierra"},
            "reportingComponent": "tierra",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.management.create(event)
        except KubeError as error:
            log.warning("could not post event %s: %s", reason, error)

    # ---------------------------------------------------------------- finalizing
    async def _add_finalizer(self, key: str, body: Obj) -> None:
        """Add the finalizer, guarded so that a concurrent change of the finalizers is not
        overwritten; the result is remembered (``ServiceState.written``), so reconciles that
        run before its watch event arrives do not add it again. A lost race re-reads the
        service once and tries again."""
        for attempt in range(2):
            meta = body["metadata"]
            finalizers = meta.get("finalizers") or []
            if FINALIZER in finalizers:
                return
            patch: list[dict[str, Any]]
            if finalizers:  # only the finalizers must be as we saw them
                patch = [
                    {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
                ]
            else:  # (JSON patch cannot test that a field is absent)
                patch = [
                    {
                        "op": "test",
                        "path": "/metadata/resourceVersion",
                        "value": meta["resourceVersion"],
                    },
                    {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
                ]
            written = await self._patch_finalizers("InferenceService", meta, patch)
            if written is not None:
                self._wrote(key, written)
                return
            if attempt == 0:
                fresh = await self.management.get(
                    "InferenceService", meta["name"], meta["namespace"]
                )
                if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                    return  # gone or going: the deletion's event brings us back
                self._wrote(key, fresh)
                body = fresh

    async def _patch_finalizers(
        self, kind: str, meta: Obj, patch: list[dict[str, Any]]
    ) -> Obj | None:
        """A guarded JSON patch of the finalizers: the patched object, or None when it is gone
        (404) or the guard failed (409/422: a newer version exists)."""
        try:
            return await self.management.patch(
                kind, meta["name"], meta.get("namespace"), patch, JSON_PATCH
            )
        except KubeError as error:
            if error.status not in (404, 409, 422):
                raise
            return None

    async def _finalize(self, key: str, body: Obj, state: ServiceState) -> float | None:
        meta = body["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return None
        if state.deleting_since is None:
            state.deleting_since = self.clock()
        failures = await self.delete_children(key, meta.get("uid"))
        if failures and self.clock() - state.deleting_since < CLEANUP_GIVE_UP_SECONDS:
            return self._backoff(key)
        if failures:
            await self.post_event(
                body,
                "CleanupIncomplete",
                "gave up deleting children in unreachable clusters: "
                + ", ".join(failures)
                + "; the orphan sweep will remove them",
                "Warning",
            )
        if not await self._remove_finalizer("InferenceService", body, FINALIZER):
            return RETRY_BASE_SECONDS  # kept losing races: look again soon
        return None

    async def _remove_finalizer(self, kind: str, body: Obj, finalizer: str) -> bool:
        """Remove ``finalizer``, guarded so that a concurrent change of the finalizers (other
        controllers add and remove theirs) is never overwritten: a lost race re-reads the
        object and tries again. False when it kept losing (the caller retries later)."""
        for _ in range(4):
            meta = body["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            if finalizer not in finalizers:
                return True
            patch: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                {
                    "op": "replace",
                    "path": "/metadata/finalizers",
                    "value": [f for f in finalizers if f != finalizer],
                },
            ]
            if await self._patch_finalizers(kind, meta, patch) is not None:
                return True
            fresh = await self.management.get(kind, meta["name"], meta.get("namespace"))
            if fresh is None:
                return True  # gone: nothing holds it any more
            body = fresh
        return False

    async def delete_children(self, key: str, uid: str | None) -> list[str]:
        """Delete every child of the service in every member cluster; return failed clusters."""
        failures = []
        for member in self.registry.clusters():
            if not member.synced:  # its children are not known yet
                failures.append(member.identity)
                continue
            try:
                for informer in (member.deployments, member.services):
                    for obj in informer.store.by_index(key):  # this service's children only
                        labels = obj["metadata"].get("labels") or {}
                        if labels.get(LABEL_OWNER_UID) == uid:
                            await self._delete(member, informer.kind, obj)
            except Exception as error:
                log.warning(
                    "cleanup of %s in %s failed: %s", key, member.identity, type(error).__name__
                )
                failures.append(member.identity)
        return failures

    # -------------------------------------------------------------- tiers & sweep
    async def _resolve_unresolved_tiers(self) -> None:
        """Resolve tiers to member clusters and wait (a bounded time) for each cluster's first
        sync: a reconcile that saw a cluster's objects half-listed (right after a start or a
        new Tier) would rewrite children and status that are correct."""
        for name, tier in list(self.tiers.items()):
            member = self.registry.for_tier(name)
            if member is None:
                member = await self.registry.resolve(tier)
            if isinstance(member, MemberCluster):
                await member.wait_first_sync(self.member_sync_timeout)

    async def _tier_loop(self) -> None:
        last_resolve = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tier_dirty.wait(), TIER_STATUS_INTERVAL_SECONDS)
            self._tier_dirty.clear()
            try:
                changed = [n for n in self.tiers if self.registry.for_tier(n) is None]
                await self._resolve_unresolved_tiers()
                periodic = self.clock() - last_resolve > TIER_RESOLVE_INTERVAL_SECONDS
                if periodic:
                    last_resolve = self.clock()
                for name, tier in list(self.tiers.items()):
                    # Pick up created, fixed or rotated kubeconfig Secrets: every tier now and
                    # then, and at once those whose credentials the cluster rejects.
                    before = self.registry.for_tier(name)
                    if not periodic and not _rejected_credentials(before):
                        continue
                    after = await self.registry.resolve(tier)
                    if after != before and not (
                        isinstance(after, MemberCluster) and after is before
                    ):
                        changed.append(name)
                if changed:
                    await self.registry.prune()
                    self._enqueue_all()
                await self._add_tier_finalizers()
                for name in list(self.tiers_deleting):
                    await self._clean_up_deleted_tier(name)
                await self._write_tier_statuses()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tier status loop failed")

    async def _add_tier_finalizers(self) -> None:
        """A Tier whose cluster Tierra can use carries the finalizer that keeps its deletion
        from leaking what runs there. (One whose cluster was never usable cannot have had
        anything placed there, and is deleted at once.)"""
        for name, body in list(self.tier_bodies.items()):
            meta = body["metadata"]
            finalizers = meta.get("finalizers") or []
            if TIER_FINALIZER in finalizers or meta.get("deletionTimestamp"):
                continue
            member = self.registry.for_tier(name)
            if not isinstance(member, MemberCluster) or not member.ready:
                continue
            patch: list[dict[str, Any]] = (
                [
                    {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": TIER_FINALIZER},
                ]
                if finalizers
                else [
                    {
                        "op": "test",
                        "path": "/metadata/resourceVersion",
                        "value": meta["resourceVersion"],
                    },
                    {"op": "add", "path": "/metadata/finalizers", "value": [TIER_FINALIZER]},
                ]
            )
            written = await self._patch_finalizers("Tier", meta, patch)
            if written is not None and name in self.tier_bodies:
                self.tier_bodies[name] = written  # (a lost race: the next pass tries again)

    async def _clean_up_deleted_tier(self, name: str) -> None:
        """A deleted Tier: its services have been re-placed elsewhere (placement rules it
        out); delete whatever of Tierra's is still labelled with it in its cluster, then
        release the Tier. When the cluster cannot be reached or listed for
        ``tier_cleanup_timeout`` after the deletion, release it anyway with a Warning Event
        naming what may be left behind: nothing is leaked silently."""
        body = self.tier_bodies.get(name)
        if body is None or TIER_FINALIZER not in (body["metadata"].get("finalizers") or []):
            return
        member = self.registry.for_tier(name)
        left: list[str] = []
        if isinstance(member, MemberCluster) and member.synced:
            for kind in ("Deployment", "Service"):
                for obj in list(self._store_of(member, kind).values()):
                    if _label(obj, LABEL_TIER) != name:
                        continue
                    namespace, child = key_of(obj)
                    try:
                        await self._delete(member, kind, obj)
                    except Exception as error:
                        log.warning(
                            "tier %s: deleting %s %s/%s: %s",
                            name,
                            kind,
                            namespace,
                            child,
                            type(error).__name__,
                        )
                        left.append(f"{kind} {namespace}/{child}")
            if not left:
                if await self._remove_finalizer("Tier", body, TIER_FINALIZER):
                    log.info("tier %s: nothing of Tierra's left in its cluster; released", name)
                return
        deleted_at = datetime.datetime.fromisoformat(
            self.tiers_deleting[name].replace("Z", "+00:00")
        )
        waited = (datetime.datetime.now(datetime.UTC) - deleted_at).total_seconds()
        if waited < self.tier_cleanup_timeout:
            return
        if isinstance(member, MemberCluster):
            left = left or [
                f"{kind} {'/'.join(key_of(obj))}"
                for kind in ("Deployment", "Service")
                for obj in self._store_of(member, kind).values()
                if _label(obj, LABEL_TIER) == name
            ]
            what = ", ".join(left[:20]) + (f" and {len(left) - 20} more" if len(left) > 20 else "")
            problem = member.problem.reason if member.problem else "NotSynced"
            message = f"released after {waited:.0f}s with its cluster unusable ({problem}); " + (
                f"left behind there: {what}" if left else "nothing of Tierra's was known there"
            )
        else:
            reason = member.reason if isinstance(member, ConnectionProblem) else "NotResolved"
            message = (
                f"released after {waited:.0f}s without ever reaching its cluster ({reason}); "
                "whatever Tierra ran there (label tierra.dev/tier=" + name + ") is left behind"
            )
        log.warning("tier %s %s", name, message)
        await self.post_event(body, "CleanupIncomplete", message[:1000], "Warning")
        await self._remove_finalizer("Tier", body, TIER_FINALIZER)

    async def _write_tier_statuses(self) -> None:
        for name, tier in list(self.tiers.items()):
            member = self.registry.for_tier(name)
            body = self.tier_bodies.get(name, {})
            previous = body.get("status") or {}
            if isinstance(member, MemberCluster):
                trouble = member.problem
                status = tier_status(
                    member.reachable,
                    (trouble.reason, trouble.message) if trouble is not None else None,
                    pool_capacities(tier, member.nodes.store.values(), member.pod_ledger),
                    pool_node_counts(tier, member.nodes.store.values()),
                    member.consecutive_failures,
                    member.last_probe_time,
                    tier.metadata.generation,
                    previous,
                    now_rfc3339(),
                    syncing=member.health is Health.SYNCING,
                )
                telemetry.TIER_REACHABLE.labels(tier=name).set(1 if member.reachable else 0)
            else:
                status = tier_status(
                    False,
                    (member.reason, member.message)
                    if isinstance(member, ConnectionProblem)
                    else ("Unknown", "not resolved"),
                    {},
                    {},
                    0,
                    now_rfc3339(),
                    tier.metadata.generation,
                    previous,
                    now_rfc3339(),
                )
                telemetry.TIER_REACHABLE.labels(tier=name).set(0)
            if _strip_times(previous) == _strip_times(status):
                continue
            try:
                updated = await self.management.patch(
                    "Tier", name, None, {"status": status}, subresource="status"
                )
                self.tier_bodies[name] = updated
            except KubeError as error:
                log.warning("tier %s status: %s", name, error)

    # ---------------------------------------------------------------- autoscaling
    async def _autoscale_loop(self) -> None:
        await self.tier_informer.synced.wait()
        while True:
            started = time.monotonic()
            try:
                await self.autoscale_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("autoscaling pass failed")
            await asyncio.sleep(max(0.0, self.metrics_interval - (time.monotonic() - started)))

    async def autoscale_once(self) -> None:
        """One step of the autoscaler for every live, valid service the reconciler has seen."""
        limit = asyncio.Semaphore(32)

        async def one(key: str) -> None:
            body = self.services.get(key)
            state = self.state.get(key)
            if body is None or state is None or body["metadata"].get("deletionTimestamp"):
                return
            try:
                service = self._validate(key, body)
            except ValidationError:
                return  # reported by reconcile
            async with limit:
                outcome = await self.autoscaler.step(
                    key, service, list(state.running), state.ready, self.tiers
                )
            for event in outcome.events:
                log.info("%s: %s: %s", key, event.reason, event.message)
                await self.post_event(body, event.reason, event.message[:1000], event.type)
            if outcome.reconcile:
                self.queue.add(key, background=outcome.report_only)

        await asyncio.gather(*(one(key) for key in list(self.services)))
        for key in [k for k in self._validated if k not in self.services]:
            del self._validated[key]

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(ORPHAN_SWEEP_INTERVAL_SECONDS / 3)
            try:
                await self.sweep_orphans()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("orphan sweep failed")
            await asyncio.sleep(ORPHAN_SWEEP_INTERVAL_SECONDS * 2 / 3)

    async def sweep_orphans(self) -> int:
        """Delete children whose InferenceService (by namespace/name and uid) no longer exists.

        Candidates are children whose owner the watch does not know; only when there are any
        is the list of services read from the apiserver, to confirm they are orphans (the
        watch may not have caught up), so a sweep of a healthy fleet costs no request."""
        known = {(k, b["metadata"].get("uid")) for k, b in self.services.items()}
        now = datetime.datetime.now(datetime.UTC)
        candidates: list[tuple[MemberCluster, str, Obj, str]] = []
        for member in self.registry.clusters():
            if not member.ready:  # unreachable or not listed yet: next sweep
                continue
            for informer in (member.deployments, member.services):
                for obj in list(informer.store.values()):
                    key = owner_key(obj)
                    uid = (obj["metadata"].get("labels") or {}).get(LABEL_OWNER_UID)
                    created = obj["metadata"].get("creationTimestamp")
                    if key is None or (key, uid) in known or not created:
                        continue
                    age = now - datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
                    if age.total_seconds() >= ORPHAN_MIN_AGE_SECONDS:
                        candidates.append((member, informer.kind, obj, f"{key} {uid}"))
        if not candidates:
            return 0
        listing = await self.management.list("InferenceService")
        alive = {
            f"{i['metadata']['namespace']}/{i['metadata']['name']} {i['metadata']['uid']}"
            for i in listing.get("items", [])
        }
        removed = 0
        for member, kind, obj, owner in candidates:
            if owner in alive:
                continue
            if not member.reachable:
                continue
            log.info("deleting orphan %s %s/%s (owner %s gone)", kind, *key_of(obj), owner)
            try:
                await self._delete(member, kind, obj)
                removed += 1
            except Exception as error:  # one cluster's failure must not stop the sweep
                log.warning(
                    "orphan %s %s/%s in %s: %s",
                    kind,
                    *key_of(obj),
                    member.identity,
                    error if isinstance(error, KubeError) else type(error).__name__,
                )
        telemetry.ORPHANS.inc(removed)
        return removed
