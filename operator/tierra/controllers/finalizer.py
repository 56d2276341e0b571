"""The InferenceService finalizer: children the garbage collector cannot reach go first.

Children beside their service carry an ownerReference; children in other clusters or
namespaces do not, so a service that has any carries ``tierra.dev/cleanup`` until they are
deleted (or, after ``cleanup_give_up_seconds`` of unreachable clusters, left to the orphan
sweep with a Warning Event).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tierra.controllers.service_cache import ServiceCache
from tierra.core.render import LABEL_OWNER_UID
from tierra.settings import ServiceSettings
from tierra.shell.events import EventRecorder
from tierra.shell.finalizers import add_finalizer, remove_finalizer
from tierra.shell.fleet_view import FleetView
from tierra.shell.kube import KubeClient, KubeError, Obj

log = logging.getLogger(__name__)

FINALIZER = "tierra.dev/cleanup"


class ServiceFinalizer:
    def __init__(
        self,
        management: KubeClient,
        fleet: FleetView,
        cache: ServiceCache,
        events: EventRecorder,
        settings: ServiceSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.management = management
        self.fleet = fleet
        self.cache = cache
        self.events = events
        self.settings = settings
        self.clock = clock

    async def add(self, key: str, body: Obj) -> None:
        """Add the finalizer; what the apiserver returns is remembered, so reconciles that run
        before its watch event arrives do not add it again."""
        written = await add_finalizer(self.management, "InferenceService", body, FINALIZER)
        if written is not None:
            self.cache.wrote(key, written)

    async def finalize(self, key: str, body: Obj) -> float | None:
        """Delete the service's children everywhere, then release it; a delay to look again
        after while clusters cannot be reached."""
        meta = body["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            return None
        state = self.cache.state(key)
        if state.deleting_since is None:
            state.deleting_since = self.clock()
        failures = await self.delete_children(key, meta.get("uid"))
        waited = self.clock() - state.deleting_since
        if failures and waited < self.settings.cleanup_give_up_seconds:
            state.attempts += 1
            delay = self.settings.retry_base_seconds * 2 ** (state.attempts - 1)
            return float(min(self.settings.retry_max_seconds, delay))
        if failures:
            await self.events.post(
                body,
                "CleanupIncomplete",
                "gave up deleting children in unreachable clusters: "
                + ", ".join(failures)
                + "; the orphan sweep will remove them",
                "Warning",
            )
        if not await remove_finalizer(self.management, "InferenceService", body, FINALIZER):
            return self.settings.retry_base_seconds  # kept losing races: look again soon
        return None

    async def delete_children(self, key: str, uid: str | None) -> list[str]:
        """Delete every child of the service in every member cluster; return the clusters
        where that failed (or whose children are not known yet)."""
        failures = []
        for member in self.fleet.clusters():
            if not member.synced:  # its children are not known yet
                failures.append(member.identity)
                continue
            try:
                for kind, obj in member.children_of(key):
                    labels = obj["metadata"].get("labels") or {}
                    if labels.get(LABEL_OWNER_UID) == uid:
                        await member.delete(kind, obj)
            except Exception as error:
                log.warning(
                    "cleanup of %s in %s failed: %s",
                    key,
                    member.identity,
                    error if isinstance(error, KubeError) else type(error).__name__,
                )
                failures.append(member.identity)
        return failures
