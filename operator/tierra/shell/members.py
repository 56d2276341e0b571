"""Member clusters: how the operator reaches each Tier's cluster, and what it sees there.

A Tier without ``cluster.kubeconfigSecretRef`` is the operator's own cluster. Otherwise the
kubeconfig is read from a Secret in the operator's namespace only; a missing or malformed
Secret makes the Tier unreachable with a reason, never crashes the operator.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import enum
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tierra.api.tier import Tier
from tierra.core.inventory import PodLedger, owner_key
from tierra.core.reconcile import is_subset
from tierra.core.render import LABEL_MANAGED_BY, LABEL_TIER, MANAGED_BY
from tierra.shell import telemetry
from tierra.shell.informer import Informer, Store, key_of
from tierra.shell.kube import (
    FIELD_MANAGER,
    PROBE_TIMEOUT_SECONDS,
    KubeClient,
    KubeError,
    Obj,
    ProbeResult,
    client_from_kubeconfig,
)
from tierra.shell.kubeconfig import (
    KubeconfigPolicy,
    KubeconfigRejectedError,
    parse_kubeconfig,
    vet_kubeconfig,
)
from tierra.shell.tasks import BackgroundTask

log = logging.getLogger(__name__)

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=tierra"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
"""Set by the Deployment controller on every Deployment; nothing Tierra renders or reads."""
PROBE_INTERVAL_SECONDS = 2.0
UNREACHABLE_AFTER_FAILURES = 3
"""Consecutive failed probes (or failed listings/watches of one kind) before a cluster counts
as unreachable: one blip moves nothing."""


def _resources(containers: list[Obj] | None) -> list[Obj]:
    return [{"resources": c.get("resources") or {}} for c in containers or []]


def slim_pod(pod: Obj) -> Obj:
    """The parts of a Pod capacity accounting reads (a full Pod is ~20x larger); the
    requests are parsed once per Pod event, by the pod ledger."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    return {
        "metadata": {
            k: meta[k]
            for k in (
                "name",
                "namespace",
                "labels",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
            )
            if k in meta
        },
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": _resources(spec.get("containers")),
            "initContainers": _resources(spec.get("initContainers")),
        },
        "status": {"phase": pod.get("status", {}).get("phase")},
    }


def slim_node(node: Obj) -> Obj:
    meta, status = node.get("metadata", {}), node.get("status", {})
    return {
        "metadata": {k: meta[k] for k in ("name", "labels", "resourceVersion") if k in meta},
        "spec": {"unschedulable": node.get("spec", {}).get("unschedulable", False)},
        "status": {
            "allocatable": status.get("allocatable") or {},
            "conditions": [
                {"type": c.get("type"), "status": c.get("status")}
                for c in status.get("conditions") or []
                if c.get("type") == "Ready"
            ],
        },
    }


class NameConflictError(Exception):
    """A child's name is taken by an object Tierra did not create."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def created_by_tierra(obj: Obj) -> bool:
    """Tierra's label, or Tierra's field manager among those that wrote it (a child whose
    labels someone stripped is still ours to repair)."""
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY:
        return True
    return any(entry.get("manager") == FIELD_MANAGER for entry in meta.get("managedFields") or [])


@dataclass(frozen=True)
class ConnectionProblem:
    """Why a Tier's cluster cannot be used: a CamelCase reason and a message that never holds
    anything read from a Secret."""

    reason: str
    message: str


class Health(enum.Enum):
    READY = "Ready"
    """Answers, accepts our credentials, and every informer has listed once."""
    SYNCING = "Syncing"
    """Answers, but some informer has not finished its first listing: what the cluster runs is
    not known yet, so nothing may be decided from it (neither moved away nor deleted)."""
    UNREACHABLE = "Unreachable"
    """Probes or listings keep failing (``problem`` says why)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MemberCluster:
    """One cluster: informers over Nodes, Pods and Tierra's children, plus a reachability probe."""

    def __init__(
        self,
        client: KubeClient,
        identity: str,
        on_child_change: Callable[[str, Obj, bool], None],
        on_capacity_change: Callable[[], None],
        on_reachability_change: Callable[[], None],
    ) -> None:
        self.client = client
        self.identity = identity
        self.nodes = Informer(client, "Node", on_change=self._node_changed, transform=slim_node)
        self.pods = Informer(client, "Pod", on_change=self._pod_changed, transform=slim_pod)
        self.pod_ledger = PodLedger()
        """Follows every write to the Pod store: allocation per node, bound replicas."""
        self.pods.store.subscribe(self.pod_ledger.put)
        self._fingerprints: dict[tuple[str, str, str], object] = {}
        # Children are indexed by their owning service (``store.by_index("ns/name")``).
        self.deployments = Informer(
            client, "Deployment", MANAGED_SELECTOR, self._child_changed, index_by=owner_key
        )
        self._on_child_change = on_child_change
        self.revision = 0
        """Bumped whenever what capacity and usage are computed from changes (a cache key)."""
        self.services = Informer(
            client,
            "Service",
            MANAGED_SELECTOR,
            functools.partial(self._child_changed, kind="Service"),
            index_by=owner_key,
        )
        self._on_capacity_change = on_capacity_change
        self._on_reachability_change = on_reachability_change
        self.consecutive_failures = 0
        self.failing_since: float | None = None
        """Wall-clock time of the first failed probe of the current run of failures."""
        self.last_probe_time: str | None = None
        self._last_probe = ProbeResult(True, "NotProbed", "not probed yet")
        self._health: Health = Health.SYNCING
        self.problem: ConnectionProblem | None = None
        """Why the cluster is unreachable (failed probes or failing watches), else None."""
        self.namespaces: set[str] = set()
        self._probe_task = BackgroundTask(f"probe-{identity}")
        self._first_sync: asyncio.Task[bool] | None = None

    @staticmethod
    def _child_key(kind: str, obj: Obj) -> tuple[str, str, str]:
        meta = obj.get("metadata", {})
        return (kind, meta.get("namespace", ""), meta.get("name", ""))

    @staticmethod
    def _child_fingerprint(kind: str, obj: Obj) -> tuple[object, object]:
        """What of a child can matter to a reconcile: its metadata (labels, annotations,
        owners; ``generation`` follows a Deployment's spec), a Service's spec (Services have
        no generation), and a Deployment's ``readyReplicas`` (reported in status)."""
        meta = obj.get("metadata", {})
        metadata = {k: v for k, v in meta.items() if k not in ("resourceVersion", "managedFields")}
        annotations = metadata.get("annotations")
        if annotations and REVISION_ANNOTATION in annotations:
            metadata["annotations"] = {
                k: v for k, v in annotations.items() if k != REVISION_ANNOTATION
            }
        if not metadata.get("annotations"):  # absent and empty are the same
            metadata.pop("annotations", None)
        if kind == "Deployment":
            return (metadata, (obj.get("status") or {}).get("readyReplicas"))
        return (metadata, obj.get("spec"))

    def _child_changed(self, event: str, obj: Obj, kind: str = "Deployment") -> None:
        """Pass on child events that can matter to a reconcile (see ``_child_fingerprint``)
        and deletions; not the rest of the status churn a rollout makes (observedGeneration,
        updated/available replicas, conditions, the revision annotation), nor the event of
        what the operator itself just applied (see :meth:`applied`): those would only
        trigger reconciles that find nothing to do. The callback learns whether only a
        Deployment's readiness moved (status to report, nothing to repair)."""
        key = self._child_key(kind, obj)
        readiness_only = False
        if event == "DELETED":
            self._fingerprints.pop(key, None)
        else:
            fingerprint = self._child_fingerprint(key[0], obj)
            previous = self._fingerprints.get(key)
            if previous == fingerprint:
                return
            self._fingerprints[key] = fingerprint
            # Same metadata (and so the same generation): only readyReplicas moved.
            readiness_only = (
                kind == "Deployment"
                and isinstance(previous, tuple)
                and previous[0] == fingerprint[0]
            )
        if kind == "Deployment":
            self.revision += 1
        self._on_child_change(event, obj, readiness_only)

    def applied(self, kind: str, obj: Obj) -> None:
        """The operator wrote ``obj`` (the apiserver's answer to an apply): its own watch
        event, when it brings nothing else, need not trigger a reconcile."""
        key = self._child_key(kind, obj)
        self._fingerprints[key] = self._child_fingerprint(key[0], obj)

    def _capacity_moved(self, kind: str, obj: Obj, event: str, fingerprint: object) -> None:
        """Poke the reconciler only when what capacity is computed from changed (not on the
        heartbeats and status churn that make up most Node and Pod events)."""
        meta = obj.get("metadata", {})
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        if event == "DELETED":
            if self._fingerprints.pop(key, None) is not None:
                self.revision += 1
                self._on_capacity_change()
            return
        if self._fingerprints.get(key) != fingerprint:
            self._fingerprints[key] = fingerprint
            self.revision += 1
            self._on_capacity_change()

    def _node_changed(self, event: str, node: Obj) -> None:
        status = node.get("status", {})
        ready = [
            c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"
        ]
        fingerprint = (
            tuple(sorted((node.get("metadata", {}).get("labels") or {}).items())),
            tuple(sorted((status.get("allocatable") or {}).items())),
            bool(node.get("spec", {}).get("unschedulable")),
            tuple(ready),
        )
        self._capacity_moved("Node", node, event, fingerprint)

    def _pod_changed(self, event: str, pod: Obj) -> None:
        # Binding, finishing and deletion move capacity; readiness churn does not.
        spec = pod.get("spec", {})
        finished = pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
        fingerprint = (spec.get("nodeName"), finished)
        self._capacity_moved("Pod", pod, event, fingerprint)

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (self.nodes, self.pods, self.deployments, self.services)

    def start(self) -> None:
        for informer in self.informers:
            informer.on_state = self.refresh_health
            informer.start()
        self._probe_task.start(self._probe_loop())

    async def stop(self) -> None:
        if self._first_sync is not None:
            self._first_sync.cancel()
        await self._probe_task.stop()
        for informer in self.informers:
            await informer.stop()

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)

    @property
    def health(self) -> Health:
        return self._health

    @property
    def reachable(self) -> bool:
        """Whether the cluster can be used at all (ready or still syncing)."""
        return self._health is not Health.UNREACHABLE

    @property
    def ready(self) -> bool:
        """Whether what the cluster runs is known: reachable and fully listed."""
        return self._health is Health.READY

    async def wait_synced(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(i.synced.wait() for i in self.informers)), timeout
            )
        except TimeoutError:
            return False
        return True

    async def wait_first_sync(self, timeout: float) -> None:
        """Wait for the informers' first sync, once: every caller shares one wait of at most
        ``timeout``; after it the cluster is looked at as it is (a cluster that is still
        listing is SYNCING, and reconciles wait for it without holding up this one)."""
        if self._first_sync is None:
            self._first_sync = asyncio.create_task(
                self.wait_synced(timeout), name=f"first-sync-{self.identity}"
            )
        if not self._first_sync.done():
            await asyncio.wait({self._first_sync})  # (a stop cancels the wait, not the caller)

    def _watch_problem(self) -> ConnectionProblem | None:
        """A kind whose listing or watch keeps failing makes the cluster unusable: its objects
        cannot be known (401/403 also say that the credentials are expired or too weak)."""
        for informer in self.informers:
            error = informer.last_error
            if informer.failures < UNREACHABLE_AFTER_FAILURES or error is None:
                continue
            status = error.status if isinstance(error, KubeError) else None
            reason = {401: "Unauthorized", 403: "Forbidden"}.get(status or 0, "WatchFailing")
            detail = error.message if isinstance(error, KubeError) else type(error).__name__
            return ConnectionProblem(
                reason,
                f"listing {informer.kind}s failed {informer.failures} times in a row: "
                f"{detail[:300]}",
            )
        return None

    def _assess(self) -> Health:
        if self.consecutive_failures >= UNREACHABLE_AFTER_FAILURES:
            probe = self._last_probe
            self.problem = ConnectionProblem(
                probe.reason,
                f"{self.consecutive_failures} consecutive probes failed: {probe.message}",
            )
        else:
            self.problem = self._watch_problem()
        if self.problem is not None:
            return Health.UNREACHABLE
        return Health.READY if self.synced else Health.SYNCING

    def refresh_health(self) -> None:
        """Re-assess health (probes, informers) and tell the operator when it changed."""
        was = self._health
        self._health = self._assess()
        if self._health is Health.UNREACHABLE and self.failing_since is None:
            self.failing_since = time.time()  # (failing watches, before any failed probe)
        if was is not self._health:
            if self._health is Health.UNREACHABLE:
                assert self.problem is not None
                log.warning(
                    "cluster %s unreachable: %s: %s",
                    self.identity,
                    self.problem.reason,
                    self.problem.message,
                )
            else:
                log.info("cluster %s %s", self.identity, self._health.value.lower())
            self._on_reachability_change()

    async def _probe_loop(self) -> None:
        while True:
            result = await self.client.probe()
            self.last_probe_time = _now()
            self._last_probe = result
            self.consecutive_failures = 0 if result.ok else self.consecutive_failures + 1
            if result.ok:
                self.failing_since = None
            elif self.failing_since is None:
                # When the probe was sent: a cluster that hangs fails only at the timeout.
                self.failing_since = time.time() - PROBE_TIMEOUT_SECONDS * (
                    result.reason == "ProbeTimeout"
                )
            self.refresh_health()
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)

    async def ensure_namespace(self, namespace: str) -> None:
        if namespace in self.namespaces:
            return
        if await self.client.get("Namespace", namespace) is None:
            with contextlib.suppress(KubeError):  # 409: created concurrently
                await self.client.create(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
                )
        self.namespaces.add(namespace)

    def namespace_gone(self, namespace: str) -> None:
        """An apply found the namespace missing or terminating: check it again next time."""
        self.namespaces.discard(namespace)

    # ------------------------------------------------------------------- children
    def store_of(self, kind: str) -> Store:
        return (self.deployments if kind == "Deployment" else self.services).store

    def children_of(self, service_key: str) -> list[tuple[str, Obj]]:
        """The cached children (kind, object) labelled as the service's (any owner uid)."""
        return [
            (informer.kind, obj)
            for informer in (self.deployments, self.services)
            for obj in informer.store.by_index(service_key)
        ]

    def children_labelled(self, label: str, value: str) -> list[tuple[str, Obj]]:
        return [
            (informer.kind, obj)
            for informer in (self.deployments, self.services)
            for obj in list(informer.store.values())
            if ((obj.get("metadata") or {}).get("labels") or {}).get(label) == value
        ]

    def assume(self, manifest: Obj) -> Obj | None:
        """Write a Deployment we are about to apply into the cache, so that the next
        placement counts its replicas before the apiserver answers; return what the cache
        held before (give it back to :meth:`apply`, which restores it should the apply
        fail)."""
        store = self.store_of(manifest["kind"])
        key = key_of(manifest)
        live: Obj | None = store.get(key)
        if manifest["kind"] == "Deployment" and (live is None or not is_subset(manifest, live)):
            store[key] = {**manifest, "status": (live or {}).get("status", {})}
        return live

    async def apply(self, manifest: Obj, previous: Obj | None) -> None:
        """Server-side apply one child. ``previous`` is what the cache held before the plan
        was assumed; None means Tierra knows no child of that name here, so an object found
        there belongs to someone else and is left alone (:class:`NameConflictError`). A failed
        apply restores ``previous`` in the cache (forget), so the live child stays accounted
        for."""
        meta = manifest["metadata"]
        namespace = meta["namespace"]
        store = self.store_of(manifest["kind"])
        try:
            await self.ensure_namespace(namespace)
            if previous is None:
                existing = await self.client.get(manifest["kind"], meta["name"], namespace)
                if existing is not None and not created_by_tierra(existing):
                    tier = (meta.get("labels") or {}).get(LABEL_TIER, "?")
                    raise NameConflictError(
                        f"{manifest['kind']} {namespace}/{meta['name']} in tier {tier} already "
                        "exists and was not created by Tierra; it is left untouched (rename or "
                        "remove it)"
                    )
            try:
                applied = await self.client.apply(manifest)
            except KubeError as error:
                # 404: the namespace is gone; 403: it is being deleted. Either way the cache
                # of namespaces is stale.
                if error.status not in (403, 404):
                    raise
                self.namespace_gone(namespace)
                if error.status == 403:
                    raise
                await self.ensure_namespace(namespace)
                applied = await self.client.apply(manifest)
        except BaseException:
            if previous is None:
                store.pop(key_of(manifest), None)
            else:
                store[key_of(manifest)] = previous
            self.revision += 1
            raise
        applied.get("metadata", {}).pop("managedFields", None)
        self.applied(manifest["kind"], applied)
        current = store.get(key_of(manifest), {})
        if int(applied["metadata"]["resourceVersion"]) >= int(
            current.get("metadata", {}).get("resourceVersion") or 0
        ):
            store[key_of(manifest)] = applied
        telemetry.APPLIES.labels(kind=manifest["kind"]).inc()

    async def delete(self, kind: str, obj: Obj) -> None:
        namespace, name = key_of(obj)
        await self.client.delete(kind, name, namespace)
        self.store_of(kind).pop((namespace, name), None)


class MemberRegistry:
    """Resolves Tiers to member clusters, sharing one connection per distinct kubeconfig."""

    def __init__(
        self,
        management: KubeClient,
        operator_namespace: str,
        on_child_change: Callable[[str, Obj, bool], None],
        on_capacity_change: Callable[[], None],
        on_reachability_change: Callable[[], None],
        policy: KubeconfigPolicy | None = None,
    ) -> None:
        self.management = management
        self.operator_namespace = operator_namespace
        self.policy = policy or KubeconfigPolicy()
        self._callbacks = (on_child_change, on_capacity_change, on_reachability_change)
        self._clusters: dict[str, MemberCluster] = {}
        self._by_tier: dict[str, MemberCluster | ConnectionProblem] = {}
        self._lock = asyncio.Lock()

    def for_tier(self, tier: str) -> MemberCluster | ConnectionProblem | None:
        return self._by_tier.get(tier)

    def clusters(self) -> list[MemberCluster]:
        return list(self._clusters.values())

    def forget(self, tier: str) -> None:
        self._by_tier.pop(tier, None)

    async def _cluster(self, identity: str, make: Callable[[], Any]) -> MemberCluster:
        cluster = self._clusters.get(identity)
        if cluster is None:
            client = await make() if asyncio.iscoroutinefunction(make) else make()
            cluster = MemberCluster(client, identity, *self._callbacks)
            cluster.start()
            self._clusters[identity] = cluster
        return cluster

    async def resolve(self, tier: Tier) -> MemberCluster | ConnectionProblem:
        async with self._lock:
            result = await self._resolve(tier)
            self._by_tier[tier.metadata.name] = result
            return result

    async def _resolve(self, tier: Tier) -> MemberCluster | ConnectionProblem:
        ref = tier.spec.cluster.kubeconfig_secret_ref
        if ref is None:
            return await self._cluster("local", lambda: self.management)
        try:
            secret = await self.management.get("Secret", ref.name, self.operator_namespace)
        except KubeError as error:
            return ConnectionProblem(
                "SecretUnreadable",
                f"cannot read Secret {self.operator_namespace}/{ref.name}: {error.message}",
            )
        if secret is None:
            return ConnectionProblem(
                "SecretNotFound",
                f"Secret {self.operator_namespace}/{ref.name} does not exist (kubeconfig Secrets "
                f"are read from the operator's namespace only)",
            )
        encoded = (secret.get("data") or {}).get(ref.key)
        if not encoded:
            return ConnectionProblem(
                "KubeconfigMissing", f"Secret {ref.name} has no key {ref.key!r}"
            )
        version = secret["metadata"].get("resourceVersion", "")
        identity = f"secret:{ref.name}/{ref.key}@{version}"
        if identity in self._clusters:
            return self._clusters[identity]
        where = f"Secret {ref.name} key {ref.key!r}"
        try:
            raw = base64.b64decode(encoded, validate=True)
            config = vet_kubeconfig(parse_kubeconfig(raw), self.policy)
        except KubeconfigRejectedError as rejected:
            return ConnectionProblem("KubeconfigRejected", f"{where}: {rejected.message}")
        except (ValueError, TypeError):
            return ConnectionProblem("KubeconfigRejected", f"{where}: not valid base64")
        try:
            client = await client_from_kubeconfig(config, name=tier.metadata.name)
            client.write_gate = self.management.write_gate  # members write only as leader
        except Exception as error:  # the library's message may quote credentials
            log.warning("kubeconfig of %s unusable: %s", where, type(error).__name__)
            return ConnectionProblem(
                "KubeconfigInvalid",
                f"{where} is not a usable kubeconfig ({type(error).__name__})",
            )
        return await self._cluster(identity, lambda: client)

    async def _shut(self, identity: str) -> None:
        """Stop one cluster's informers and probe, and close its own client."""
        cluster = self._clusters.pop(identity)
        await cluster.stop()
        if cluster.client is not self.management:
            await cluster.client.close()

    async def prune(self) -> None:
        """Stop clusters no Tier uses any more (e.g. after a kubeconfig Secret rotated)."""
        used = {id(m) for m in self._by_tier.values() if isinstance(m, MemberCluster)}
        for identity, cluster in list(self._clusters.items()):
            if id(cluster) not in used:
                await self._shut(identity)

    async def close(self) -> None:
        for identity in list(self._clusters):
            await self._shut(identity)
