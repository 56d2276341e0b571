"""The InferenceService controller: triggers, workers, and one reconcile per service.

Level-triggered: triggers (spec changes, child drift, capacity and reachability changes,
retries) only say *which* service to look at. A reconcile reads the latest body, validates it,
takes a snapshot of the fleet, asks the pure core for a plan, assumes it, and executes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from pydantic import ValidationError

from tierra.api.inference_service import InferenceService
from tierra.autoscaler import Autoscaler
from tierra.controllers.finalizer import FINALIZER, ServiceFinalizer
from tierra.controllers.service_cache import ServiceCache
from tierra.core.autoscale import RunningPlacement
from tierra.core.inventory import owner_key
from tierra.core.migration import MigrationSettings
from tierra.core.reconcile import (
    DEFAULT_MIGRATION,
    Plan,
    Requeue,
    desired_replicas,
    plan,
    report,
)
from tierra.settings import ServiceSettings
from tierra.shell import telemetry
from tierra.shell.events import EventRecorder, now_rfc3339
from tierra.shell.fleet_view import Assumed, FleetView
from tierra.shell.informer import Informer
from tierra.shell.kube import KubeClient, KubeError, Obj
from tierra.shell.leader import NotLeaderError
from tierra.shell.members import NameConflictError
from tierra.shell.workqueue import WorkQueue

log = logging.getLogger(__name__)


class ServiceController:
    """Keeps every InferenceService's children and status converged."""

    def __init__(
        self,
        management: KubeClient,
        fleet: FleetView,
        cache: ServiceCache,
        autoscaler: Autoscaler,
        events: EventRecorder,
        settings: ServiceSettings,
        member_sync_timeout: float,
        migration: MigrationSettings = DEFAULT_MIGRATION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.management = management
        self.fleet = fleet
        self.cache = cache
        self.autoscaler = autoscaler
        self.events = events
        self.settings = settings
        self.member_sync_timeout = member_sync_timeout
        self.migration = migration
        self.clock = clock
        self.moving: dict[str, frozenset[str]] = {}
        """Services with a move in progress, and the tiers they move into."""
        self.queue: WorkQueue[str] = WorkQueue()
        self.finalizer = ServiceFinalizer(management, fleet, cache, events, settings, clock)
        # Services come from an informer of ours rather than kopf's per-object handler
        # machinery (a worker task and a deep-copied diff base per event, for handlers we do
        # not have): about a tenth of the operator's CPU when placing 1,000 services.
        self.informer = Informer(management, "InferenceService", on_change=self.on_event)
        self._tasks: list[asyncio.Task[None]] = []
        self._capacity_poke: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, tiers_synced: asyncio.Event) -> None:
        self.informer.start()
        for index in range(self.settings.workers):
            self._tasks.append(
                asyncio.create_task(self._worker(tiers_synced), name=f"reconcile-{index}")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.informer.stop()

    def workers_alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    # ------------------------------------------------------------------- triggers
    def on_event(self, event_type: str | None, body: Obj) -> None:
        meta = body["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        if event_type == "DELETED":
            self.cache.deleted(key)
            self.autoscaler.forget(key)
            self.moving.pop(key, None)
            return
        before = self.cache.watched(key, body)
        was = (before or {}).get("metadata") or {}
        deleting = bool(meta.get("deletionTimestamp"))
        changed = (
            before is None
            or was.get("generation") != meta.get("generation")
            or was.get("uid") != meta.get("uid")
            or deleting != bool(was.get("deletionTimestamp"))
            # While it is being deleted, another controller's finalizer change may be what our
            # own finalizer removal waits for.
            or (deleting and was.get("finalizers") != meta.get("finalizers"))
        )
        if changed:
            self.cache.state(key).attempts = 0
            # The services listed at start-up (mostly in place already) wait behind services
            # created or changed meanwhile.
            self.queue.add(key, background=not self.informer.synced.is_set())

    def child_changed(self, event_type: str, obj: Obj, readiness_only: bool) -> None:
        """Drift (a child edited or deleted) is urgent; a readiness change to report waits
        behind placements and repairs."""
        key = owner_key(obj)
        if key is not None and key in self.cache.bodies:
            self.queue.add(key, background=readiness_only)

    def capacity_changed(self) -> None:
        """Capacity or reachability moved: look again at services that are not fully placed."""
        if self._capacity_poke is not None:
            return

        def poke() -> None:
            self._capacity_poke = None
            for key, state in self.cache.states.items():
                if not state.placed:
                    self.queue.add(key, background=True)

        self._capacity_poke = asyncio.get_running_loop().call_later(0.5, poke)

    def enqueue(self, key: str, background: bool = False) -> None:
        self.queue.add(key, background=background)

    def enqueue_all(self) -> None:
        """Every service: a higher ``migration.priority`` first, then those missing their
        SLO (when a tier is lost or drained, they get the target's capacity and move slots
        first)."""
        for key in sorted(self.cache.bodies, key=self._priority_order):
            self.queue.add(key)

    def _priority_order(self, key: str) -> tuple[int, bool, str]:
        body = self.cache.bodies.get(key) or {}
        priority = ((body.get("spec") or {}).get("migration") or {}).get("priority", 0)
        conditions = (body.get("status") or {}).get("conditions") or []
        slo_met = not any(
            c.get("type") == "SLOMet" and c.get("status") == "False" for c in conditions
        )
        return (-priority if isinstance(priority, int) else 0, slo_met, key)

    def moves_into(self, key: str) -> dict[str, int]:
        """Moves in progress into each tier, other than ``key``'s own."""
        counts: dict[str, int] = {}
        for other, tiers in self.moving.items():
            if other != key:
                for tier in tiers:
                    counts[tier] = counts.get(tier, 0) + 1
        return counts

    # -------------------------------------------------------------------- workers
    async def _worker(self, tiers_synced: asyncio.Event) -> None:
        await tiers_synced.wait()
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
            except NotLeaderError:
                result = "dropped"  # leadership lost: the controllers are being stopped
            except Exception as error:
                result = "error"
                telemetry.ERRORS.labels(kind=type(error).__name__).inc()
                if isinstance(error, KubeError):  # an apiserver's answer: no traceback to show
                    log.warning("reconcile %s failed: %s", key, error)
                else:
                    log.exception("reconcile %s failed", key)
                self.queue.add(key, delay=self.backoff(key))
            finally:
                self.queue.done(key)
                telemetry.RECONCILES.labels(result=result).inc()
                telemetry.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    def backoff(self, key: str) -> float:
        state = self.cache.state(key)
        state.attempts += 1
        delay = self.settings.retry_base_seconds * 2 ** (state.attempts - 1)
        return float(min(self.settings.retry_max_seconds, delay))

    # ------------------------------------------------------------------ reconcile
    async def reconcile(self, key: str) -> float | None:
        """Converge one service; return a delay to look again after, or None."""
        body = self.cache.latest(key)
        if body is None:
            return None
        if body["metadata"].get("deletionTimestamp"):
            return await self.finalizer.finalize(key, body)
        try:
            service = self.cache.validate(key, body)
        except ValidationError as error:
            await self._report_invalid(body, error)
            return None
        await self.fleet.resolve_unresolved(self.member_sync_timeout)
        has_finalizer = FINALIZER in (body["metadata"].get("finalizers") or [])
        desired = desired_replicas(service, self.autoscaler.recommended(key))
        # snapshot -> plan -> assume, with no await in between: atomic among the workers
        todo = plan(
            service,
            self.fleet.snapshot(key, self.moves_into(key)),
            desired,
            has_finalizer=has_finalizer,
            settings=self.migration,
        )
        assumed = self.fleet.assume(todo)
        if todo.requeue is Requeue.SOON:
            return self.settings.syncing_retry_seconds
        self._track_move(key, todo)
        conflict = await self._execute(key, body, todo, assumed)
        placed = await self._report(key, body, service, todo, conflict)
        self.cache.state(key).placed = placed
        retry = todo.recheck_after
        if todo.move is not None and todo.move.blocked == "Throttled":
            retry = self.settings.syncing_retry_seconds
        elif not placed:
            retry = min(retry or math.inf, self.backoff(key))
        else:
            self.cache.state(key).attempts = 0
        return retry

    def _track_move(self, key: str, todo: Plan) -> None:
        moving = todo.moving_into
        if moving:
            self.moving[key] = moving
        else:
            self.moving.pop(key, None)

    async def _execute(self, key: str, body: Obj, todo: Plan, assumed: Assumed) -> str | None:
        """Apply (the finalizer goes on alongside), then, only when every apply worked,
        delete. Returns a name conflict to report, if any."""
        outcomes = await asyncio.gather(
            self.finalizer.add(key, body) if todo.add_finalizer else asyncio.sleep(0),
            *(self.fleet.apply(tier, manifest, assumed) for tier, manifest in todo.applies),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            # Nothing is deleted while what should replace it is not in place; a name
            # conflict is only reported when nothing else went wrong.
            other = next((e for e in errors if not isinstance(e, NameConflictError)), None)
            if other is not None:
                raise other
            first = errors[0]
            assert isinstance(first, NameConflictError)
            return first.message
        await asyncio.gather(
            *(self.fleet.delete(tier, kind, obj) for tier, kind, obj in todo.deletes)
        )
        return None

    async def _report(
        self, key: str, body: Obj, service: InferenceService, todo: Plan, conflict: str | None
    ) -> bool:
        """Tell the autoscaler where the service runs, then write status and Events; return
        whether it is fully placed."""
        assert todo.decision is not None
        state = self.cache.state(key)
        state.running = [
            RunningPlacement(tier=p.tier, variant=p.variant, replicas=p.replicas)
            for p in todo.decision.placements
        ]
        state.ready = sum(todo.ready.values())
        state.running_known = True
        self.autoscaler.placed(key, state.running, self.fleet.tiers)
        latest = self.cache.latest(key) or body  # with the finalizer just added
        said = report(
            service,
            todo,
            previous_status=latest.get("status") or {},
            last_summary=state.last_summary,
            now=now_rfc3339(),
            scaling=self.autoscaler.report(key),
            conflict=conflict,
        )
        for event in said.events:
            self.events.emit(latest, event.reason, event.message, event.type)
            if event.reason in ("Placed", "PlacementFailed"):
                telemetry.PLACEMENTS.labels(result=event.reason).inc()
        for ended in said.finished:
            telemetry.MIGRATIONS.labels(reason=ended.trigger, outcome=ended.outcome).inc()
            telemetry.MIGRATION_SECONDS.labels(reason=ended.trigger).observe(ended.seconds)
        state.last_summary = said.summary
        if said.status is not None:
            meta = latest["metadata"]
            try:
                written = await self.management.patch(
                    "InferenceService",
                    meta["name"],
                    meta["namespace"],
                    {"status": said.status},
                    subresource="status",
                )
            except KubeError as error:
                if error.status != 404:
                    raise
            else:
                self.cache.wrote(key, written)
        return said.placed

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
        await self.events.post(body, "InvalidSpec", message, "Warning")
