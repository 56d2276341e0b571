"""The controllers' writes to the management cluster: each one once, whatever the watch lags.

Reconciles of a service can run before the watch brings back the operator's own last write of
it (the finalizer, the status). They must work from that write, not from the older cached
body: no second finalizer patch, no status patch that changes nothing. Events are posted off
the reconcile path and are not lost on shutdown.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

import pytest

from tierra.controllers.finalizer import FINALIZER, ServiceFinalizer
from tierra.controllers.service_cache import ServiceCache
from tierra.controllers.services import ServiceController
from tierra.core.inventory import owner_key
from tierra.core.placement import CurrentPlacement
from tierra.core.reconcile import merge_patched, plan
from tierra.core.render import LABEL_OWNER_UID, LABEL_SERVICE, LABEL_SERVICE_NAMESPACE
from tierra.core.status import ScalingReport
from tierra.settings import ServiceSettings
from tierra.shell.events import EventRecorder
from tierra.shell.finalizers import remove_finalizer
from tierra.shell.fleet_view import FleetView
from tierra.shell.informer import Informer
from tierra.shell.kube import JSON_PATCH, KubeClient, KubeError, Obj
from tierra.shell.kubeconfig import KubeconfigPolicy
from tierra_testing.builders import (
    pool,
    service_manifest,
    service_view,
    tier,
    tier_view,
    variant,
)

KEY = "team-a/chat"


class FakeManagement:
    """Just enough of a KubeClient for the reconciler's writes of one InferenceService."""

    def __init__(self, obj: Obj) -> None:
        self.obj = copy.deepcopy(obj)
        self.calls: list[tuple[str, Any]] = []
        self.fail_next_patch: int | None = None
        self.events: list[Obj] = []
        self.event_delay = 0.0

    def _bump(self) -> Obj:
        meta = self.obj["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return {**copy.deepcopy(self.obj), "metadata": {**meta, "managedFields": [{"m": 1}]}}

    async def patch(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        patch: Any,
        content_type: str = "",
        subresource: str | None = None,
    ) -> Obj:
        self.calls.append(("patch" if subresource is None else f"patch/{subresource}", patch))
        if self.fail_next_patch is not None:
            status, self.fail_next_patch = self.fail_next_patch, None
            raise KubeError(status, "conflict")
        if content_type == JSON_PATCH:
            for op in patch:
                path = op["path"].strip("/").split("/")
                if op["op"] == "test":
                    value = self.obj
                    for part in path:
                        value = value.get(part) if isinstance(value, dict) else None
                    if value != op["value"]:
                        raise KubeError(422, "test failed")
                elif op["op"] == "add" and path[-1] == "-":
                    self.obj["metadata"]["finalizers"].append(op["value"])
                else:
                    self.obj["metadata"][path[-1]] = op["value"]
        else:
            self.obj = merge_patched(self.obj, patch)
        return self._bump()

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        self.calls.append(("get", name))
        return copy.deepcopy(self.obj)

    async def create(self, manifest: Obj) -> Obj:
        await asyncio.sleep(self.event_delay)
        self.events.append(manifest)
        return manifest

    def writes(self, kind: str) -> list[Any]:
        return [patch for call, patch in self.calls if call == kind]


def body(resource_version: str = "10", finalizers: list[str] | None = None) -> Obj:
    """team-a/chat (one cpu variant) as the watch brings it."""
    manifest = service_manifest(variants=[variant("cpu", "cpu")], uid="uid-1")
    manifest["metadata"] |= {"generation": 1, "resourceVersion": resource_version}
    if finalizers is not None:
        manifest["metadata"]["finalizers"] = finalizers
    return manifest


CENTRAL = tier(pools=[pool("cpu", "cpu", None)])


class _Autoscaler:
    """The autoscaler as the service controller's report reads it."""

    def __init__(self, scaling: ScalingReport | None = None) -> None:
        self.scaling = scaling

    def placed(self, *_: Any) -> None:
        return None

    def report(self, key: str) -> ScalingReport | None:
        return self.scaling


class Harness:
    def __init__(self, fake: FakeManagement, watched: Obj, scaling: ScalingReport | None = None):
        management = cast(KubeClient, fake)
        self.fake = fake
        self.cache = ServiceCache()
        self.cache.watched(KEY, watched)
        self.cache.state(KEY)
        self.events = EventRecorder(management)
        fleet = FleetView(management, "tierra-system", KubeconfigPolicy())
        self.fleet = fleet
        self.finalizer = ServiceFinalizer(
            management, fleet, self.cache, self.events, ServiceSettings()
        )
        self.controller = ServiceController(
            management,
            fleet,
            self.cache,
            cast(Any, _Autoscaler(scaling)),
            self.events,
            ServiceSettings(),
            member_sync_timeout=1,
        )

    async def report(self, free: int = 8, desired: int = 1) -> None:
        """One reconcile's report, from what the cache holds now."""
        latest = self.cache.latest(KEY)
        assert latest is not None
        service = self.cache.validate(KEY, latest)
        # The service runs where its first report put it (as a restarted operator finds it).
        running = [CurrentPlacement("central", "cpu", "cpu", 1)]
        seen = service_view(tier_view(CENTRAL, {"cpu": free}), current=running)
        todo = plan(service, seen, desired, has_finalizer=True)
        await self.controller._report(KEY, latest, service, todo, None)


def test_merge_patched_is_what_the_apiserver_stores() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": {"e": 1}, "keep": 1}
    patch = {"a": {"b": None, "c": [3]}, "d": {}, "new": {"x": None, "y": 2}}
    assert merge_patched(target, patch) == {
        "a": {"c": [3]},
        "d": {"e": 1},
        "keep": 1,
        "new": {"y": 2},
    }
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": {"e": 1}, "keep": 1}


async def test_the_finalizer_is_added_once_while_the_watch_lags() -> None:
    watched = body()
    fake = FakeManagement(watched)
    h = Harness(fake, watched)
    for _ in range(3):  # three reconciles before the finalizer's watch event arrives
        latest = h.cache.latest(KEY)
        assert latest is not None
        if FINALIZER not in (latest["metadata"].get("finalizers") or []):
            await h.finalizer.add(KEY, latest)
    assert len(fake.writes("patch")) == 1
    assert fake.obj["metadata"]["finalizers"] == [FINALIZER]
    written = h.cache.states[KEY].written
    assert written is not None and "managedFields" not in written["metadata"]
    # An older event (e.g. of the create) keeps what we wrote; our write's event replaces it.
    h.controller.on_event("MODIFIED", body("10"))
    assert h.cache.states[KEY].written is written
    h.controller.on_event("MODIFIED", copy.deepcopy(fake.obj))
    assert h.cache.states[KEY].written is None
    assert h.cache.latest(KEY) == fake.obj


async def test_a_lost_finalizer_race_rereads_once_and_keeps_the_other_finalizers() -> None:
    watched = body()
    fake = FakeManagement(watched)
    fake.obj["metadata"]["finalizers"] = ["other.io/keep"]  # added behind our back
    fake.obj["metadata"]["resourceVersion"] = "11"
    h = Harness(fake, watched)
    await h.finalizer.add(KEY, watched)
    assert [c for c, _ in fake.calls] == ["patch", "get", "patch"]
    assert fake.writes("patch")[1] == [
        {"op": "test", "path": "/metadata/finalizers", "value": ["other.io/keep"]},
        {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
    ]
    assert fake.obj["metadata"]["finalizers"] == ["other.io/keep", FINALIZER]


async def test_a_second_lost_race_is_left_to_the_next_reconcile() -> None:
    watched = body()
    fake = FakeManagement(watched)
    fake.fail_next_patch = 409
    h = Harness(fake, watched)
    await h.finalizer.add(KEY, watched)  # 409, re-read, then the retry succeeds
    assert fake.obj["metadata"]["finalizers"] == [FINALIZER]
    fake2 = FakeManagement(watched)
    h2 = Harness(fake2, watched)
    fake2.obj["metadata"]["resourceVersion"] = "12"
    original_get = fake2.get

    async def get_then_conflict(kind: str, name: str, namespace: str | None = None) -> Obj | None:
        fake2.fail_next_patch = 409
        return await original_get(kind, name, namespace)

    fake2.get = get_then_conflict  # type: ignore[method-assign]
    await h2.finalizer.add(KEY, watched)  # no error, no loop
    assert [c for c, _ in fake2.calls] == ["patch", "get", "patch"]


async def test_status_is_written_once_for_the_same_decision() -> None:
    watched = body("10", [FINALIZER])
    fake = FakeManagement(watched)
    h = Harness(fake, watched)
    for _ in range(3):  # reconciles before the status's watch event arrives
        await h.report()
    await h.events.drain()
    assert len(fake.writes("patch/status")) == 1
    assert [e["reason"] for e in fake.events] == ["Placed"]
    # The watch catches up with the status; still nothing to write.
    h.controller.on_event("MODIFIED", copy.deepcopy(fake.obj))
    await h.report()
    assert len(fake.writes("patch/status")) == 1
    # A real change (a replica more than the pool has room for) is written, with its Event.
    await h.report(free=0, desired=2)
    await h.events.drain()
    assert len(fake.writes("patch/status")) == 2
    assert [e["reason"] for e in fake.events] == ["Placed", "PlacementFailed"]


async def test_null_fields_in_the_status_do_not_cause_rewrites() -> None:
    """A ``None`` in the merge patch (e.g. the autoscaler's ``signal`` without metrics)
    removes the field, so the stored status lacks it: that is no change to write again."""
    watched = body("10", [FINALIZER])
    fake = FakeManagement(watched)
    scaling = ScalingReport(
        mode="hold",
        recommended=1,
        reason="hold 1: no metrics",
        metrics_available=False,
        metrics_reason="NoMetricsSource",
        metrics_message="no Prometheus for tier(s) central",
        signal=None,
    )
    h = Harness(fake, watched, scaling)
    await h.report()
    assert "signal" not in fake.obj["status"]["autoscaling"]
    h.controller.on_event("MODIFIED", copy.deepcopy(fake.obj))  # the watch caught up
    await h.report()
    await h.events.drain()
    assert len(fake.writes("patch/status")) == 1
    conditions = {c["type"]: c for c in fake.obj["status"]["conditions"]}
    assert conditions["MetricsAvailable"]["reason"] == "NoMetricsSource"


async def test_events_are_posted_in_the_background_and_drained_on_stop() -> None:
    watched = body()
    fake = FakeManagement(watched)
    fake.event_delay = 0.05
    events = EventRecorder(cast(KubeClient, fake))
    for index in range(20):
        events.emit(watched, f"Reason{index}", "message", "Normal")
    assert fake.events == []  # nothing awaited on the caller's path
    await events.drain(10)
    assert sorted(e["reason"] for e in fake.events) == sorted(f"Reason{i}" for i in range(20))


async def test_events_still_hanging_at_shutdown_are_given_up_after_the_timeout() -> None:
    watched = body()
    fake = FakeManagement(watched)
    fake.event_delay = 60
    events = EventRecorder(cast(KubeClient, fake))
    events.emit(watched, "Stuck", "message", "Normal")
    await asyncio.sleep(0)
    await asyncio.wait_for(events.drain(timeout=0.05), 5)
    assert fake.events == []
    assert not events._pending


class _Member:
    """A member cluster with only the stores that deletion reads."""

    def __init__(self) -> None:
        client = cast(KubeClient, object())
        self.deployments = Informer(client, "Deployment", index_by=owner_key)
        self.services = Informer(client, "Service", index_by=owner_key)
        self.identity = "m"
        self.synced = True
        self.deleted: list[tuple[str, str]] = []

    def children_of(self, key: str) -> list[tuple[str, Obj]]:
        return [
            (informer.kind, obj)
            for informer in (self.deployments, self.services)
            for obj in informer.store.by_index(key)
        ]

    async def delete(self, kind: str, obj: Obj) -> None:
        self.deleted.append((kind, obj["metadata"]["name"]))


@pytest.mark.parametrize("uid", ["uid-1", "uid-old"])
async def test_delete_children_deletes_only_the_service_children_with_its_uid(uid: str) -> None:
    watched = body()
    h = Harness(FakeManagement(watched), watched)
    member = _Member()

    def child(name: str, service: str, owner_uid: str) -> Obj:
        return {
            "metadata": {
                "name": name,
                "namespace": "team-a",
                "labels": {
                    LABEL_SERVICE: service,
                    LABEL_SERVICE_NAMESPACE: "team-a",
                    LABEL_OWNER_UID: owner_uid,
                },
                "annotations": {},
            }
        }

    for informer in (member.deployments, member.services):
        informer.store[("team-a", "chat-cpu")] = child("chat-cpu", "chat", uid)
        informer.store[("team-a", "other-cpu")] = child("other-cpu", "other", "uid-1")
    h.fleet.clusters = lambda: [member]  # type: ignore[method-assign,list-item,return-value]
    assert await h.finalizer.delete_children(KEY, "uid-1") == []
    expected = [("Deployment", "chat-cpu"), ("Service", "chat-cpu")] if uid == "uid-1" else []
    assert member.deleted == expected


async def test_the_finalizer_removal_survives_another_controller_removing_its_own() -> None:
    """Seen [other, ours]; the other controller removed its finalizer meanwhile: the guarded
    removal loses, re-reads and removes ours (nothing stays Terminating)."""
    watched = body(finalizers=["other.io/hold", FINALIZER])
    fake = FakeManagement(watched)
    fake.obj["metadata"]["finalizers"] = [FINALIZER]
    fake.obj["metadata"]["resourceVersion"] = "11"
    assert await remove_finalizer(cast(KubeClient, fake), "InferenceService", watched, FINALIZER)
    assert [c for c, _ in fake.calls] == ["patch", "get", "patch"]
    assert fake.obj["metadata"]["finalizers"] == []


async def test_the_finalizer_removal_keeps_a_finalizer_added_meanwhile() -> None:
    watched = body(finalizers=[FINALIZER])
    fake = FakeManagement(watched)
    fake.obj["metadata"]["finalizers"] = [FINALIZER, "late.io/hold"]
    assert await remove_finalizer(cast(KubeClient, fake), "InferenceService", watched, FINALIZER)
    assert fake.obj["metadata"]["finalizers"] == ["late.io/hold"]


async def test_when_every_service_is_looked_at_priority_and_slo_misses_come_first() -> None:
    watched = body()
    h = Harness(FakeManagement(watched), watched)

    def with_(name: str, priority: int, slo_met: bool) -> Obj:
        obj = copy.deepcopy(watched)
        obj["metadata"]["name"] = name
        obj["spec"]["migration"] = {"priority": priority}
        met = {"type": "SLOMet", "status": "True" if slo_met else "False"}
        obj["status"] = {"conditions": [met]}
        return obj

    for name, priority, met in [("a", 0, True), ("b", 0, False), ("c", 5, True), ("d", -1, False)]:
        h.cache.watched(f"team-a/{name}", with_(name, priority, met))
    h.controller.enqueue_all()
    order = []
    while h.controller.queue.ready_count():
        key = await h.controller.queue.get()
        order.append(key)
        h.controller.queue.done(key)
    assert [k for k in order if k != KEY] == ["team-a/c", "team-a/b", "team-a/a", "team-a/d"]
