"""The Tier controller: Tiers resolved to member clusters, their status, their deletion.

Tiers come from our own informer so that nothing is reconciled before the full list of Tiers
is known (a partial view would look like "no tier fits" and drop children). A Tier whose
cluster has been usable carries ``tierra.dev/tier-cleanup``: on deletion the Tier acts like a
NoExecute taint first: placement rules it out and its services move away make-before-break
(each service removes its old children once the new ones are Ready); children whose service is
gone are deleted at once; the Tier is released when nothing of Tierra's is left there. After
``cleanup_timeout_seconds`` what is still there is deleted (services with nowhere else to go
included: deleting the Tier is a person's explicit decision), or, if the cluster is out of
reach, the Tier is released with a Warning Event naming what was left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from tierra.api.tier import Tier
from tierra.core.inventory import owner_key, pool_capacities, pool_node_counts
from tierra.core.reconcile import strip_times
from tierra.core.render import LABEL_TIER
from tierra.core.status import tier_status
from tierra.settings import TierSettings
from tierra.shell import telemetry
from tierra.shell.events import EventRecorder, now_rfc3339
from tierra.shell.finalizers import add_finalizer, remove_finalizer
from tierra.shell.fleet_view import FleetView
from tierra.shell.informer import Informer, key_of
from tierra.shell.kube import KubeClient, KubeError, Obj
from tierra.shell.members import ConnectionProblem, Health, MemberCluster
from tierra.shell.tasks import BackgroundTask

log = logging.getLogger(__name__)

TIER_FINALIZER = "tierra.dev/tier-cleanup"


def _rejected_credentials(member: MemberCluster | ConnectionProblem | None) -> bool:
    return isinstance(member, MemberCluster) and (
        member.problem is not None and member.problem.reason in ("Unauthorized", "Forbidden")
    )


class TierController:
    def __init__(
        self,
        management: KubeClient,
        fleet: FleetView,
        events: EventRecorder,
        settings: TierSettings,
        member_sync_timeout: float,
        services_changed: Callable[[], None],
        service_exists: Callable[[str], bool] = lambda _: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.management = management
        self.fleet = fleet
        self.events = events
        self.settings = settings
        self.member_sync_timeout = member_sync_timeout
        self.services_changed = services_changed
        """Look again at every service (the set of usable tiers changed)."""
        self.service_exists = service_exists
        """Whether the service ``namespace/name`` exists (and so moves its own children)."""
        self.clock = clock
        self.informer = Informer(management, "Tier", on_change=self.on_event)
        self.dirty = asyncio.Event()
        self.task = BackgroundTask("tiers")

    @property
    def synced(self) -> asyncio.Event:
        return self.informer.synced

    def start(self) -> None:
        self.informer.start()
        self.task.start(self._loop())

    async def stop(self) -> None:
        await self.task.stop()
        await self.informer.stop()

    # ------------------------------------------------------------------- triggers
    def on_event(self, event_type: str | None, body: Obj) -> None:
        fleet = self.fleet
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            fleet.forget_tier(name)
            self.services_changed()
            return
        before = fleet.tier_bodies.get(name)
        fleet.tier_bodies[name] = body
        deleting = body["metadata"].get("deletionTimestamp")
        if deleting and name not in fleet.deleting:
            fleet.mark_deleting(name, deleting)
            self.services_changed()
            self.dirty.set()
        if before is not None and before["metadata"].get("generation") == body["metadata"].get(
            "generation"
        ):
            return  # status-only change (our own tier status writes)
        try:
            fleet.tiers[name] = Tier.model_validate(body)
        except ValidationError as error:
            log.error("tier %s is invalid: %s", name, error)
            fleet.tiers.pop(name, None)
            return
        fleet.registry.forget(name)
        self.dirty.set()
        self.services_changed()  # taints, pools or reach changed: placements may have to move

    def reachability_changed(self) -> None:
        self.dirty.set()

    # ----------------------------------------------------------------------- loop
    async def _loop(self) -> None:
        last_resolve = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), self.settings.status_interval_seconds)
            self.dirty.clear()
            periodic = self.clock() - last_resolve > self.settings.resolve_interval_seconds
            if periodic:
                last_resolve = self.clock()
            # Each step on its own: one failing (a forbidden patch, a cluster that hangs) must
            # not keep the others, above all the status, from being done.
            if await self._step("resolve", self._resolve(periodic)):
                await self._step("prune", self.fleet.registry.prune())
                self.services_changed()
            await self._step("finalizers", self._add_finalizers())
            for name in list(self.fleet.deleting):
                await self._step(f"deletion of {name}", self._clean_up(name))
            await self._step("status", self._write_statuses())

    async def _step(self, what: str, work: Awaitable[Any]) -> Any:
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except KubeError as error:
            log.warning("tier loop, %s: %s", what, error)
        except Exception:
            log.exception("tier loop, %s failed", what)
        return None

    async def _resolve(self, every: bool) -> bool:
        """Resolve new Tiers, and re-read kubeconfig Secrets (rotations, fixes): those of
        every Tier when ``every``, else only where the cluster rejects the credentials.
        Whether any Tier's cluster changed."""
        fleet = self.fleet
        changed = any(fleet.member(n) is None for n in fleet.tiers)
        await fleet.resolve_unresolved(self.member_sync_timeout)
        for name, tier in list(fleet.tiers.items()):
            before = fleet.member(name)
            if not every and not _rejected_credentials(before):
                continue
            after = await fleet.registry.resolve(tier)
            if after != before and not (isinstance(after, MemberCluster) and after is before):
                changed = True
        return changed

    async def _add_finalizers(self) -> None:
        """A Tier whose cluster Tierra can use carries the finalizer that keeps its deletion
        from leaking what runs there. (One whose cluster was never usable cannot have had
        anything placed there, and is deleted at once.)"""
        for name, body in list(self.fleet.tier_bodies.items()):
            meta = body["metadata"]
            if TIER_FINALIZER in (meta.get("finalizers") or []) or meta.get("deletionTimestamp"):
                continue
            member = self.fleet.member(name)
            if not isinstance(member, MemberCluster) or not member.ready:
                continue
            written = await add_finalizer(self.management, "Tier", body, TIER_FINALIZER, 1)
            if written is not None and name in self.fleet.tier_bodies:
                self.fleet.tier_bodies[name] = written  # (a lost race: the next pass retries)

    async def _clean_up(self, name: str) -> None:
        body = self.fleet.tier_bodies.get(name)
        if body is None or TIER_FINALIZER not in (body["metadata"].get("finalizers") or []):
            return
        member = self.fleet.member(name)
        left: list[str] = []
        deleted_at = datetime.datetime.fromisoformat(
            self.fleet.deleting[name].replace("Z", "+00:00")
        )
        waited = (datetime.datetime.now(datetime.UTC) - deleted_at).total_seconds()
        timed_out = waited >= self.settings.cleanup_timeout_seconds
        if isinstance(member, MemberCluster) and member.synced:
            moving = 0
            for kind, obj in member.children_labelled(LABEL_TIER, name):
                service = owner_key(obj)
                if not timed_out and service is not None and self.service_exists(service):
                    moving += 1  # its service moves it away make-before-break
                    continue
                try:
                    await member.delete(kind, obj)
                except Exception as error:
                    log.warning(
                        "tier %s: deleting %s %s: %s",
                        name,
                        kind,
                        "/".join(key_of(obj)),
                        error if isinstance(error, KubeError) else type(error).__name__,
                    )
                    left.append(f"{kind} {'/'.join(key_of(obj))}")
            if moving:
                return
            if not left:
                if await remove_finalizer(self.management, "Tier", body, TIER_FINALIZER):
                    log.info("tier %s: nothing of Tierra's left in its cluster; released", name)
                return
        if not timed_out:
            return
        if isinstance(member, MemberCluster):
            left = left or [
                f"{kind} {'/'.join(key_of(obj))}"
                for kind, obj in member.children_labelled(LABEL_TIER, name)
            ]
            what = ", ".join(left[:20]) + (f" and {len(left) - 20} more" if len(left) > 20 else "")
            problem = member.problem.reason if member.problem else "NotSynced"
            message = f"released after {waited:.0f}s with its cluster unusable ({problem}); " + (
                f"left behind there: {what}" if left else "nothing of Tierra's was known there"
            )
        else:
            reason = member.reason if isinstance(member, ConnectionProblem) else "NotResolved"
            message = (
                f"released after {waited:.0f}s without reaching its cluster ({reason}); "
                f"whatever Tierra ran there (label {LABEL_TIER}={name}) is left behind"
            )
        log.warning("tier %s %s", name, message)
        await self.events.post(body, "CleanupIncomplete", message[:1000], "Warning")
        await remove_finalizer(self.management, "Tier", body, TIER_FINALIZER)

    def _status(self, name: str, tier: Tier, previous: Any) -> dict[str, Any]:
        member = self.fleet.member(name)
        now = now_rfc3339()
        if isinstance(member, MemberCluster):
            trouble = member.problem
            telemetry.TIER_REACHABLE.labels(tier=name).set(1 if member.reachable else 0)
            return tier_status(
                member.reachable,
                (trouble.reason, trouble.message) if trouble is not None else None,
                pool_capacities(tier, member.nodes.store.values(), member.pod_ledger),
                pool_node_counts(tier, member.nodes.store.values()),
                member.consecutive_failures,
                member.last_probe_time,
                tier.metadata.generation,
                previous,
                now,
                syncing=member.health is Health.SYNCING,
            )
        telemetry.TIER_REACHABLE.labels(tier=name).set(0)
        problem = (
            (member.reason, member.message)
            if isinstance(member, ConnectionProblem)
            else ("Unknown", "not resolved")
        )
        return tier_status(False, problem, {}, {}, 0, now, tier.metadata.generation, previous, now)

    async def _write_statuses(self) -> None:
        for name, tier in list(self.fleet.tiers.items()):
            if name in self.fleet.deleting:
                continue  # on its way out
            previous = self.fleet.tier_bodies.get(name, {}).get("status") or {}
            status = self._status(name, tier, previous)
            if strip_times(previous) == strip_times(status):
                continue
            try:
                updated = await self.management.patch(
                    "Tier", name, None, {"status": status}, subresource="status"
                )
                self.fleet.tier_bodies[name] = updated
            except KubeError as error:
                log.warning("tier %s status: %s", name, error)
