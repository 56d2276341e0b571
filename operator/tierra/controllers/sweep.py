"""The orphan sweep: children whose InferenceService is gone (deleted while the operator was
down, or between a crash and the finalizer) are deleted once they are old enough."""

from __future__ import annotations

import asyncio
import datetime
import logging

from tierra.controllers.service_cache import ServiceCache
from tierra.core.inventory import owner_key
from tierra.core.render import LABEL_OWNER_UID
from tierra.settings import SweepSettings
from tierra.shell import telemetry
from tierra.shell.fleet_view import FleetView
from tierra.shell.informer import key_of
from tierra.shell.kube import KubeClient, KubeError, Obj
from tierra.shell.members import MemberCluster
from tierra.shell.tasks import BackgroundTask

log = logging.getLogger(__name__)


class OrphanSweep:
    def __init__(
        self,
        management: KubeClient,
        fleet: FleetView,
        cache: ServiceCache,
        settings: SweepSettings,
    ) -> None:
        self.management = management
        self.fleet = fleet
        self.cache = cache
        self.settings = settings
        self.task = BackgroundTask("orphan-sweep")

    def start(self) -> None:
        self.task.start(self._loop())

    async def _loop(self) -> None:
        interval = self.settings.interval_seconds
        while True:
            await asyncio.sleep(interval / 3)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("orphan sweep failed")
            await asyncio.sleep(interval * 2 / 3)

    async def sweep(self) -> int:
        """Delete children whose InferenceService (by namespace/name and uid) no longer exists.

        Candidates are children whose owner the watch does not know; only when there are any
        is the list of services read from the apiserver, to confirm they are orphans (the
        watch may not have caught up), so a sweep of a healthy fleet costs no request. Clusters
        that are unreachable or not listed yet are skipped (the next sweep sees them)."""
        known = {(k, b["metadata"].get("uid")) for k, b in self.cache.bodies.items()}
        now = datetime.datetime.now(datetime.UTC)
        candidates: list[tuple[MemberCluster, str, Obj, str]] = []
        for member in self.fleet.clusters():
            if not member.ready:
                continue
            for kind, store in (
                ("Deployment", member.deployments.store),
                ("Service", member.services.store),
            ):
                for obj in list(store.values()):
                    key = owner_key(obj)
                    uid = (obj["metadata"].get("labels") or {}).get(LABEL_OWNER_UID)
                    created = obj["metadata"].get("creationTimestamp")
                    if key is None or (key, uid) in known or not created:
                        continue
                    age = now - datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
                    if age.total_seconds() >= self.settings.min_age_seconds:
                        candidates.append((member, kind, obj, f"{key} {uid}"))
        if not candidates:
            return 0
        listing = await self.management.list("InferenceService")
        alive = {
            f"{i['metadata']['namespace']}/{i['metadata']['name']} {i['metadata']['uid']}"
            for i in listing.get("items", [])
        }
        removed = 0
        for member, kind, obj, owner in candidates:
            if owner in alive or not member.reachable:
                continue
            log.info("deleting orphan %s %s/%s (owner %s gone)", kind, *key_of(obj), owner)
            try:
                await member.delete(kind, obj)
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
