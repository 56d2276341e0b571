"""Builds the controllers from the settings, starts them in order and stops them in reverse
(the role controller-runtime's Manager plays), and says whether they are healthy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tierra.autoscaler import Autoscaler
from tierra.controllers.autoscaling import AutoscalingLoop
from tierra.controllers.service_cache import ServiceCache
from tierra.controllers.services import ServiceController
from tierra.controllers.sweep import OrphanSweep
from tierra.controllers.tiers import TierController
from tierra.settings import Settings
from tierra.shell.events import EventRecorder
from tierra.shell.fleet_view import FleetView
from tierra.shell.kube import KubeClient

log = logging.getLogger(__name__)

EVENT_DRAIN_SECONDS = 10.0
"""How long ``stop`` waits for Events still being posted."""


@dataclass(frozen=True)
class Health:
    """What ``/healthz`` reports."""

    ok: bool
    problems: tuple[str, ...]
    details: dict[str, Any]


class Manager:
    def __init__(self, management: KubeClient, settings: Settings) -> None:
        self.management = management
        self.settings = settings
        self.fleet = FleetView(
            management,
            settings.namespace,
            settings.members.kubeconfig_policy,
            settings.services.pod_snapshot_seconds,
        )
        self.events = EventRecorder(management)
        self.cache = ServiceCache()
        self.autoscaler = Autoscaler(
            settings.autoscaling.prometheus_url,
            default_scrape_interval=settings.autoscaling.scrape_interval_seconds,
            status_refresh_seconds=settings.autoscaling.status_refresh_seconds,
        )
        self.services = ServiceController(
            management,
            self.fleet,
            self.cache,
            self.autoscaler,
            self.events,
            settings.services,
            settings.members.sync_timeout,
            settings.migration,
        )
        self.tiers = TierController(
            management,
            self.fleet,
            self.events,
            settings.tiers,
            settings.members.sync_timeout,
            services_changed=self.services.enqueue_all,
            service_exists=lambda key: key in self.cache.bodies,
        )
        self.sweep = OrphanSweep(management, self.fleet, self.cache, settings.sweep)
        self.autoscaling = AutoscalingLoop(
            self.autoscaler,
            self.fleet,
            self.cache,
            self.events,
            settings.autoscaling,
            reconcile=self.services.enqueue,
        )
        triggers = self.fleet.triggers
        triggers.child_changed = self.services.child_changed
        triggers.capacity_changed = self.services.capacity_changed

        def reachability_changed() -> None:
            # Services on a tier that went away may have to move; stale copies on one that
            # came back are to be removed.
            self.tiers.reachability_changed()
            self.services.enqueue_all()

        triggers.reachability_changed = reachability_changed
        self.running = False

    async def start(self) -> None:
        """Tiers first (services wait for the full list of Tiers), then services, autoscaling
        and the sweep."""
        self.tiers.start()
        self.services.start(self.tiers.synced)
        self.autoscaling.start(self.tiers.synced)
        self.sweep.start()
        self.running = True
        log.info("controllers started")

    async def stop(self) -> None:
        """Stop the loops (no new writes), let posted Events finish, close the members."""
        self.running = False
        await self.sweep.task.stop()
        await self.autoscaling.task.stop()
        await self.services.stop()
        await self.tiers.stop()
        await self.events.drain(EVENT_DRAIN_SECONDS)
        await self.fleet.registry.close()
        await self.autoscaler.close()
        log.info("controllers stopped")

    def health(self) -> Health:
        """Whether the controllers work: every loop alive, the management informers synced;
        with the queue's depth and the oldest queued key's wait."""
        problems = []
        if not self.services.workers_alive():
            problems.append("service workers are not running")
        for name, alive in (
            ("tier loop", self.tiers.task.alive()),
            ("autoscaling loop", self.autoscaling.task.alive()),
            ("orphan sweep", self.sweep.task.alive()),
        ):
            if not alive:
                problems.append(f"{name} is not running")
        queue = self.services.queue
        details: dict[str, Any] = {
            "tiersSynced": self.tiers.synced.is_set(),
            "servicesSynced": self.services.informer.synced.is_set(),
            "queueDepth": queue.ready_count(),
            "oldestQueuedSeconds": round(queue.oldest_wait(), 1),
            "members": {m.identity: m.health.value for m in self.fleet.clusters()},
        }
        return Health(ok=not problems, problems=tuple(problems), details=details)
