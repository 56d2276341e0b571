"""The autoscaling loop: every interval, one recommender step per live, valid service; a
changed recommendation (or a status to report) queues the service's reconcile."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pydantic import ValidationError

from tierra.autoscaler import Autoscaler
from tierra.controllers.service_cache import ServiceCache
from tierra.settings import AutoscalingSettings
from tierra.shell import telemetry
from tierra.shell.events import EventRecorder
from tierra.shell.fleet_view import FleetView
from tierra.shell.tasks import BackgroundTask

log = logging.getLogger(__name__)

CONCURRENT_SAMPLES = 32
"""Services sampled from Prometheus at once."""


class AutoscalingLoop:
    def __init__(
        self,
        autoscaler: Autoscaler,
        fleet: FleetView,
        cache: ServiceCache,
        events: EventRecorder,
        settings: AutoscalingSettings,
        reconcile: Callable[[str, bool], None],
    ) -> None:
        self.autoscaler = autoscaler
        self.fleet = fleet
        self.cache = cache
        self.events = events
        self.settings = settings
        self.reconcile = reconcile
        """Queue a service's reconcile (key, background)."""
        self.task = BackgroundTask("autoscaling")

    def start(self, tiers_synced: asyncio.Event) -> None:
        self.task.start(self._loop(tiers_synced))

    async def _loop(self, tiers_synced: asyncio.Event) -> None:
        await tiers_synced.wait()
        telemetry.AUTOSCALING_INTERVAL_SECONDS.set(self.settings.interval_seconds)
        while True:
            started = time.monotonic()
            try:
                await self.step_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("autoscaling pass failed")
            elapsed = time.monotonic() - started
            telemetry.AUTOSCALING_PASS_SECONDS.observe(elapsed)
            await asyncio.sleep(max(0.0, self.settings.interval_seconds - elapsed))

    async def step_all(self) -> None:
        """One step of the autoscaler for every live, valid service, in one sampling pass
        (a query per metric and Prometheus for all of them)."""
        limit = asyncio.Semaphore(CONCURRENT_SAMPLES)

        async def one(key: str) -> None:
            body = self.cache.bodies.get(key)
            state = self.cache.states.get(key)
            if body is None or state is None or body["metadata"].get("deletionTimestamp"):
                return
            if not state.running_known:
                return  # (its first reconcile says where it runs; the next pass steps it)
            try:
                service = self.cache.validate(key, body)
            except ValidationError:
                return  # reported by the reconcile
            async with limit:
                outcome = await self.autoscaler.step(
                    key, service, list(state.running), state.ready, self.fleet.tiers
                )
            for event in outcome.events:
                log.info("%s: %s: %s", key, event.reason, event.message)
                await self.events.post(body, event.reason, event.message[:1000], event.type)
            if outcome.reconcile:
                self.reconcile(key, outcome.report_only)

        keys = list(self.cache.bodies)
        async with self.autoscaler.sampling_pass():
            await asyncio.gather(*(one(key) for key in keys))
        telemetry.AUTOSCALING_SERVICES.set(len(keys))
        self.cache.prune_validated()
