"""One InferenceService's reconcile as a pure function: what is observed -> what to do.

The shell takes a :class:`ServiceView` (a snapshot of the fleet as one service sees it), calls
:func:`plan`, *assumes* the plan in its caches (so the next service's placement sees it), and
executes it: applies, then deletes, then the status patch and the Events. Nothing here does
I/O or reads a clock; ``now`` is given.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tierra.api.inference_service import InferenceService
from tierra.core.migration import (
    Finished,
    MigrationSettings,
    Move,
    active_placements,
    decide,
    migration_report,
    pending_recheck,
    recheck_after,
    with_losses,
)
from tierra.core.placement import (
    CurrentPlacement,
    PlacementDecision,
    PoolKey,
    TierView,
    explain,
)
from tierra.core.render import (
    LABEL_OWNER_UID,
    child_name,
    child_selector,
    owner_of,
    render,
    target_namespace,
)
from tierra.core.status import ScalingReport, condition, scaling_status, service_status

Obj = dict[str, Any]
ChildKey = tuple[str, str, str, str]
"""(tier, kind, namespace, name) of one rendered child."""

DEFAULT_MIGRATION = MigrationSettings()

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


def strip_times(status: Mapping[str, Any]) -> Any:
    """A status without the fields that change with the clock alone."""
    return {
        k: (
            [{ck: cv for ck, cv in c.items() if ck != "lastTransitionTime"} for c in v or []]
            if k == "conditions"
            else v
        )
        for k, v in status.items()
        if k != "lastProbeTime"
    }


def status_changes(previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether merging ``status`` into ``previous`` would change more than timestamps."""
    return bool(strip_times(merge_patched(previous, status)) != strip_times(previous))


class Requeue(enum.Enum):
    NO = "no"
    """Converged (or waiting for an event that will come)."""
    SOON = "soon"
    """Nothing decided: a member cluster is still being listed."""
    BACKOFF = "backoff"
    """Not (fully) placed: look again after a growing delay, and on capacity changes."""


@dataclass(frozen=True)
class ServiceView:
    """The fleet as one service's reconcile sees it, taken at one moment."""

    tiers: Sequence[TierView]
    current: Sequence[CurrentPlacement] = ()
    """Where the service runs now (its Deployments' replicas)."""
    held: Mapping[PoolKey, int] = field(default_factory=dict)
    """What other services hold in each pool."""
    children: Mapping[ChildKey, Obj] = field(default_factory=dict)
    """The service's children (by owner uid) as the member clusters' caches hold them."""
    settled: frozenset[str] = frozenset()
    """Tiers whose cluster is reachable and fully listed: only there may children the service
    no longer wants be deleted (elsewhere the picture is incomplete)."""
    local: frozenset[str] = frozenset()
    """Tiers in the management cluster: children beside their service get ownerReferences."""
    syncing: tuple[str, ...] = ()
    """Tiers whose cluster answers but is still being listed for the first time."""
    now: float = 0.0
    """Clock time (seconds) of the snapshot: what the tier-lost threshold is measured with."""
    moves_into: Mapping[str, int] = field(default_factory=dict)
    """Moves in progress into each tier, by other services."""


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"


@dataclass(frozen=True)
class Plan:
    """What one reconcile of a service changes in the fleet, in order: apply (with the
    finalizer alongside), then delete."""

    decision: PlacementDecision | None = None
    move: Move | None = None
    desired: tuple[tuple[str, Obj], ...] = ()
    """Every child the decision wants, as (tier, manifest)."""
    applies: tuple[tuple[str, Obj], ...] = ()
    """The desired children whose live version differs (or is missing)."""
    deletes: tuple[tuple[str, str, Obj], ...] = ()
    """Retiring children (the decision no longer wants them) in settled tiers, once the
    decision's placements have the Ready replicas it needs: (tier, kind, object)."""
    retiring: tuple[tuple[str, str, Obj], ...] = ()
    """Retiring children kept for now: their replacements are not Ready yet, or their tier's
    cluster cannot be written to."""
    add_finalizer: bool = False
    ready: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """Ready replicas per placement, as the children report them (0 where the tier's cluster
    is unreachable: its figures are stale)."""
    unknown: tuple[str, ...] = ()
    """Tiers of the decision whose cluster is unreachable: readiness there is unknown."""
    requeue: Requeue = Requeue.NO
    recheck_after: float | None = None
    """Look again after this many seconds (a tier the service runs on may be lost by then)."""
    waiting_for: tuple[str, ...] = ()
    """Tiers still syncing, when nothing was decided."""
    settled: frozenset[str] = frozenset()
    """The snapshot's settled tiers."""

    @property
    def moving_into(self) -> frozenset[str]:
        """Tiers this service is moving into: a move starts, or its new placements are not
        all Ready, or old children are still to be removed where that can be done (stale
        copies in an unreachable tier hold no move open)."""
        if self.decision is None:
            return frozenset()
        leaving = self.retiring or self.deletes
        unready = sum(self.ready.values()) < self.decision.desired
        if not (self._starting or self.retiring_removable or (leaving and unready)):
            return frozenset()
        return frozenset(p.tier for p in self.decision.placements)

    @property
    def retiring_removable(self) -> tuple[tuple[str, str, Obj], ...]:
        """Retiring children still to be removed where their cluster can be written to
        (copies in an unreachable tier wait for it to come back)."""
        return self.deletes + tuple(c for c in self.retiring if c[0] in self.settled)

    @property
    def _starting(self) -> bool:
        return self.move is not None and self.move.trigger is not None


@dataclass(frozen=True)
class Report:
    """What one reconcile says about the service: its status and Events."""

    status: dict[str, Any] | None
    """The status to merge-patch, or None when it would change nothing."""
    events: tuple[Event, ...]
    summary: str
    """What the Events were decided against (the next report's ``last_summary``)."""
    placed: bool
    """Fully placed: nothing to look at again until something changes."""
    finished: tuple[Finished, ...] = ()
    """Moves that ended (for the metrics)."""


def desired_replicas(service: InferenceService, recommended: int | None) -> int:
    """Manual mode's ``spec.replicas``, else the autoscaler's recommendation; before the
    autoscaler's first step (a new service, or an operator restart) what status last
    recorded, within the bounds, so that a restart changes nothing."""
    spec = service.spec
    if spec.replicas is not None:  # manual mode: the scale subresource rules
        return spec.replicas
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


def _rendered(
    service: InferenceService, decision: PlacementDecision, view: ServiceView
) -> list[tuple[str, Obj]]:
    tiers = {v.name: v.tier for v in view.tiers}
    owner = owner_of(service)
    out = []
    for placement in decision.placements:
        tier = tiers[placement.tier]
        for manifest in render(
            service, placement, tier, owner, same_cluster=placement.tier in view.local
        ):
            out.append((placement.tier, manifest))
    return out


def _child_key(tier: str, manifest: Obj) -> ChildKey:
    meta = manifest["metadata"]
    return (tier, manifest["kind"], meta.get("namespace", ""), meta["name"])


def _is_live(live: Obj | None, manifest: Obj) -> bool:
    """Whether the cached child already is what we would apply (and was written: a
    write-through without a resourceVersion is not)."""
    return (
        live is not None
        and bool((live.get("metadata") or {}).get("resourceVersion"))
        and is_subset(manifest, live)
    )


def plan(
    service: InferenceService,
    view: ServiceView,
    desired: int,
    *,
    has_finalizer: bool,
    settings: MigrationSettings = DEFAULT_MIGRATION,
) -> Plan:
    """Decide where ``desired`` replicas of ``service`` run, and what that changes.

    Make-before-break: children the decision no longer wants (a move's source, a placement
    scaled away, a stale copy in a tier that came back) are deleted only once the decision's
    placements have ``desired`` Ready replicas, and only where their cluster is settled."""
    if view.syncing:
        return Plan(requeue=Requeue.SOON, waiting_for=view.syncing)
    tiers = with_losses(view.tiers, view.now, settings)
    active = active_placements(view.current, service.status.placements)
    move = decide(
        service, desired, tiers, active, view.held, settings, view.moves_into, now=view.now
    )
    decision = move.decision
    reachable = {v.name for v in tiers if v.reachable}
    # A Tier being deleted keeps what still runs there (a service with nowhere else to go)
    # but gets nothing new: what its clean-up removes is not put back.
    writable = reachable - {v.name for v in tiers if v.deleting}
    wanted = _rendered(service, decision, view)
    wanted_keys = {_child_key(tier, m) for tier, m in wanted}
    applies = tuple(
        (tier, m)
        for tier, m in wanted
        if tier in writable and not _is_live(view.children.get(_child_key(tier, m)), m)
    )
    uid = service.metadata.uid
    by_tier = {v.name: v.tier for v in view.tiers}
    ready: dict[tuple[str, str, str], int] = {}
    for placement in decision.placements:
        tier = by_tier[placement.tier]
        key = (
            placement.tier,
            "Deployment",
            target_namespace(service, tier),
            child_name(service, placement.variant, tier),
        )
        live = view.children.get(key) or {}
        count = int((live.get("status") or {}).get("readyReplicas", 0))
        ready[placement.key] = count if placement.tier in reachable else 0
    replaced = sum(ready.values()) >= decision.desired
    retiring = [
        (key[0], key[1], live)
        for key, live in sorted(view.children.items(), key=lambda item: item[0])
        if key not in wanted_keys
        and ((live.get("metadata") or {}).get("labels") or {}).get(LABEL_OWNER_UID) == uid
    ]
    # Children of a Tier that is gone run on no Tier of the fleet: they go at once.
    known = {v.name for v in tiers}
    deletes = tuple(c for c in retiring if c[0] in view.settled and (replaced or c[0] not in known))
    # Children the management cluster's garbage collector cannot remove (in another cluster or
    # namespace, without an ownerReference) need the finalizer; it goes on alongside the first
    # of them (should the operator die in between, the orphan sweep removes them).
    add_finalizer = not has_finalizer and any(
        not m["metadata"].get("ownerReferences") for _, m in wanted
    )
    unknown = tuple(sorted({p.tier for p in decision.placements} - reachable))
    backoff = not decision.satisfied or move.blocked is not None
    requeue = Requeue.BACKOFF if backoff else Requeue.NO
    return Plan(
        decision=decision,
        move=move,
        desired=tuple(wanted),
        applies=applies,
        deletes=deletes,
        retiring=tuple(c for c in retiring if c not in deletes),
        add_finalizer=add_finalizer,
        ready=ready,
        unknown=unknown,
        requeue=requeue,
        recheck_after=min(
            (
                w
                for w in (
                    recheck_after(tiers, active, view.now, settings),
                    pending_recheck(active, view.now, settings),
                    move.wait,
                )
                if w
            ),
            default=None,
        ),
        settled=view.settled,
    )


def report(
    service: InferenceService,
    done: Plan,
    *,
    previous_status: Mapping[str, Any],
    last_summary: str,
    now: str,
    scaling: ScalingReport | None = None,
    conflict: str | None = None,
) -> Report:
    """The status and Events after ``done`` was carried out. ``conflict`` (a child's name was
    taken by an object Tierra did not create) reports the service as not placed."""
    decision = done.decision
    if decision is None:
        return Report(None, (), last_summary, placed=False)
    meta = service.metadata
    generation = meta.generation
    slo = service.spec.slo
    status = service_status(
        decision,
        done.ready,
        child_selector(meta.name, meta.namespace or ""),
        generation,
        previous_status,
        now,
        conflict=conflict,
        scaling=None
        if scaling is None
        else scaling_status(
            scaling, slo.latency_p95_ms, slo.ttft_p95_ms, generation, previous_status, now
        ),
    )
    conditions = status["conditions"]
    if done.unknown and decision.desired > 0:
        ready_at = next(i for i, c in enumerate(conditions) if c["type"] == "Ready")
        conditions[ready_at] = condition(
            "Ready",
            None,
            "TierUnreachable",
            f"{', '.join(done.unknown)} unreachable: what runs there is not known",
            generation,
            previous_status.get("conditions") or [],
            now,
        )
    summary = conflict or decision.summary
    events: list[Event] = []
    if summary != last_summary:
        if conflict is not None:
            events.append(Event("NameConflict", conflict[:1000], "Warning"))
        elif decision.satisfied:
            events.append(Event("Placed", decision.summary[:1000]))
        else:
            events.append(Event("PlacementFailed", explain(decision)[:1000], "Warning"))
    finished: tuple[Finished, ...] = ()
    if done.move is not None:
        previous_conditions = previous_status.get("conditions") or []
        moved = migration_report(
            done.move,
            previous=previous_status.get("migrations") or [],
            previous_condition=next(
                (c for c in previous_conditions if c.get("type") == "Migrating"), None
            ),
            targets_ready=sum(done.ready.values()),
            need=decision.desired,
            retiring_reachable=len(done.retiring_removable),
            now=now,
        )
        ok, reason, message = moved.condition
        conditions[:] = [c for c in conditions if c.get("type") != "Migrating"]
        conditions.append(
            condition("Migrating", ok, reason, message, generation, previous_conditions, now)
        )
        status["migrations"] = moved.migrations
        status["opportunity"] = done.move.opportunity  # (None removes it)
        if moved.last_migration is not None:
            status["lastMigration"] = moved.last_migration
        events += [Event(reason, message, kind) for reason, message, kind in moved.events]
        finished = moved.finished
    blocked = done.move is not None and done.move.blocked is not None
    return Report(
        status=status if status_changes(previous_status, status) else None,
        events=tuple(events),
        summary=summary,
        placed=decision.satisfied and conflict is None and not blocked,
        finished=finished,
    )
