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
from tierra.core.placement import (
    CurrentPlacement,
    PlacementDecision,
    PoolKey,
    TierView,
    explain,
    place,
)
from tierra.core.render import (
    LABEL_OWNER_UID,
    child_name,
    child_selector,
    owner_of,
    render,
    target_namespace,
)
from tierra.core.status import ScalingReport, scaling_status, service_status

Obj = dict[str, Any]
ChildKey = tuple[str, str, str, str]
"""(tier, kind, namespace, name) of one rendered child."""

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
    desired: tuple[tuple[str, Obj], ...] = ()
    """Every child the decision wants, as (tier, manifest)."""
    applies: tuple[tuple[str, Obj], ...] = ()
    """The desired children whose live version differs (or is missing)."""
    deletes: tuple[tuple[str, str, Obj], ...] = ()
    """Live children the decision no longer wants, in settled tiers: (tier, kind, object)."""
    add_finalizer: bool = False
    ready: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    """Ready replicas per placement, as the children report them."""
    requeue: Requeue = Requeue.NO
    waiting_for: tuple[str, ...] = ()
    """Tiers still syncing, when nothing was decided."""


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
    service: InferenceService, view: ServiceView, desired: int, *, has_finalizer: bool
) -> Plan:
    """Decide where ``desired`` replicas of ``service`` run, and what that changes."""
    if view.syncing:
        return Plan(requeue=Requeue.SOON, waiting_for=view.syncing)
    decision = place(service, desired, list(view.tiers), list(view.current), view.held)
    wanted = _rendered(service, decision, view)
    wanted_keys = {_child_key(tier, m) for tier, m in wanted}
    applies = tuple(
        (tier, m) for tier, m in wanted if not _is_live(view.children.get(_child_key(tier, m)), m)
    )
    uid = service.metadata.uid
    deletes = tuple(
        (key[0], key[1], live)
        for key, live in sorted(view.children.items(), key=lambda item: item[0])
        if key not in wanted_keys
        and key[0] in view.settled
        and ((live.get("metadata") or {}).get("labels") or {}).get(LABEL_OWNER_UID) == uid
    )
    # Children the management cluster's garbage collector cannot remove (in another cluster or
    # namespace, without an ownerReference) need the finalizer; it goes on alongside the first
    # of them (should the operator die in between, the orphan sweep removes them).
    add_finalizer = not has_finalizer and any(
        not m["metadata"].get("ownerReferences") for _, m in wanted
    )
    tiers = {v.name: v.tier for v in view.tiers}
    ready: dict[tuple[str, str, str], int] = {}
    for placement in decision.placements:
        tier = tiers[placement.tier]
        key = (
            placement.tier,
            "Deployment",
            target_namespace(service, tier),
            child_name(service, placement.variant, tier),
        )
        live = view.children.get(key) or {}
        ready[placement.key] = int((live.get("status") or {}).get("readyReplicas", 0))
    return Plan(
        decision=decision,
        desired=tuple(wanted),
        applies=applies,
        deletes=deletes,
        add_finalizer=add_finalizer,
        ready=ready,
        requeue=Requeue.NO if decision.satisfied else Requeue.BACKOFF,
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
    summary = conflict or decision.summary
    events: tuple[Event, ...] = ()
    if summary != last_summary:
        if conflict is not None:
            events = (Event("NameConflict", conflict[:1000], "Warning"),)
        elif decision.satisfied:
            events = (Event("Placed", decision.summary[:1000]),)
        else:
            events = (Event("PlacementFailed", explain(decision)[:1000], "Warning"),)
    return Report(
        status=status if status_changes(previous_status, status) else None,
        events=events,
        summary=summary,
        placed=decision.satisfied and conflict is None,
    )
