"""When and where a service moves between placements, and the record it leaves (pure).

A move is decided inside the service's reconcile (:func:`tierra.core.reconcile.plan`): the
placements of record (``status.placements``) are what the service runs on; placement
re-checks them against the fleet, and a placement that a filter on the tier's *state* rules
out (see ``ENVIRONMENT_FILTERS``: a lost or draining tier, full pools, RTT beyond the SLO, an
observed mean request the variant cannot serve within it) is a trigger to move. What
placement ranks best elsewhere becomes the target; the children of the old placements are
*retiring* and stay until the new ones are Ready (make-before-break), which
:func:`tierra.core.reconcile.plan` enforces.

Guards, in order: ``migration.policy: manual`` keeps the placements (``ManualPolicy``); a
move whose target cannot take the service keeps them too (``NoTarget``; a lost tier is the
exception: whatever fits elsewhere is better than nothing); a target tier that already takes
``max_moves_per_target_tier`` moves waits (``Throttled``). All state lives in the service's
status and its children, so a restarted operator picks a move up where it was.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tierra.api.inference_service import (
    MAX_MIGRATIONS_IN_STATUS,
    InferenceService,
    PlacementStatus,
)
from tierra.core.placement import (
    ENVIRONMENT_FILTERS,
    CandidateKey,
    CurrentPlacement,
    PlacementDecision,
    PoolKey,
    Rejection,
    TierView,
    place,
    with_waiting,
)

TRIGGER_OF_FILTER: Mapping[str, str] = {
    "reachable": "TierLost",
    "deleting": "TierDeleting",
    "taints": "Drain",
    "latency": "SLO",
    "reach": "SLO",
    "capacity": "Capacity",
}
"""The trigger a current placement's failing filter stands for, most urgent first."""


@dataclass(frozen=True)
class MigrationSettings:
    """How eagerly services move."""

    tier_lost_after_seconds: float = 10.0
    """A tier unreachable this long is lost: what ran there is placed elsewhere at once.
    Shorter, and a slow apiserver restart moves everything; the probe's own threshold (3
    failed probes) comes first, so one blip never counts."""
    max_moves_per_target_tier: int = 25
    """Moves into one tier that may be in progress at once; the rest wait their turn (a lost
    edge site with a hundred services must not flood the regional tier's apiservers)."""
    optimise_margin: float = 0.25
    """A placement counts as better when its objective's score (cost, RTT or carbon per
    token, replica-weighted) is lower by at least this fraction."""
    optimise_after_seconds: float = 300.0
    """A better placement must hold this long before the service moves to it (a price or
    capacity blip moves nothing)."""
    min_dwell_seconds: float = 900.0
    """No optimisation move within this time of the last move's start (no ping-pong)."""
    pending_after_seconds: float = 30.0
    """Replicas whose pods no node takes for this long, in a pool that seems to have room (a
    scheduler outage, node taints, affinity, CPU or memory the pool's accelerator count does
    not show), move to the next allowed pool or tier. Where the pool visibly has no room they
    go at once."""


@dataclass(frozen=True)
class Move:
    """What :func:`decide` concluded for one service."""

    decision: PlacementDecision
    """Where the service runs from now on (the old placements, when the move is refused)."""
    trigger: str | None = None
    """Set when a move starts now: TierLost, TierDeleting, Drain, SLO or Capacity."""
    blocked: str | None = None
    """ManualPolicy, NoTarget or Throttled: a trigger fired but the placements stay."""
    message: str = ""
    sources: tuple[CandidateKey, ...] = ()
    """The placements the service leaves."""
    opportunity: Mapping[str, Any] | None = None
    """A better placement seen but not taken yet (``status.opportunity``)."""
    wait: float | None = None
    """Seconds until a pending opportunity may be taken."""


def key_text(key: CandidateKey) -> str:
    return "/".join(key)


def tier_lost(view: TierView, now: float, settings: MigrationSettings) -> bool:
    since = view.unreachable_since
    return (
        not view.reachable and since is not None and now - since >= settings.tier_lost_after_seconds
    )


def with_losses(
    tiers: Sequence[TierView], now: float, settings: MigrationSettings
) -> list[TierView]:
    """The views with ``lost`` decided by the clock."""
    return [
        replace(v, lost=True) if not v.lost and tier_lost(v, now, settings) else v for v in tiers
    ]


def recheck_after(
    tiers: Sequence[TierView],
    active: Sequence[CurrentPlacement],
    now: float,
    settings: MigrationSettings,
) -> float | None:
    """Seconds until a tier the service runs on, unreachable but not lost yet, would be lost."""
    used = {p.tier for p in active if p.replicas > 0}
    waits = [
        settings.tier_lost_after_seconds
        if v.unreachable_since is None
        else v.unreachable_since + settings.tier_lost_after_seconds - now
        for v in tiers
        if v.name in used and not v.reachable and not v.lost
    ]
    return max(0.5, min(waits)) if waits else None


def overdue(
    active: Sequence[CurrentPlacement], now: float, settings: MigrationSettings
) -> dict[CandidateKey, float]:
    """Placements whose oldest unbound pod has waited ``pending_after_seconds``, with how
    long it has waited."""
    return {
        (p.tier, p.pool, p.variant): now - p.pending_since
        for p in active
        if p.pending_since is not None and now - p.pending_since >= settings.pending_after_seconds
    }


def pending_recheck(
    active: Sequence[CurrentPlacement], now: float, settings: MigrationSettings
) -> float | None:
    """Seconds until a placement's waiting pod has waited ``pending_after_seconds``."""
    waits = [
        p.pending_since + settings.pending_after_seconds - now
        for p in active
        if p.pending_since is not None and now - p.pending_since < settings.pending_after_seconds
    ]
    return max(0.5, min(waits)) if waits else None


def _capped(
    held: Mapping[PoolKey, int],
    tiers: Sequence[TierView],
    stuck: Mapping[CandidateKey, float],
) -> dict[PoolKey, int]:
    """``held`` raised so that, in the pools of ``stuck`` placements, the service sees no more
    room than the replicas it has bound there: the room the pool seems to have is not real
    for it."""
    capped = dict(held)
    views = {v.name: v for v in tiers}
    for tier_name, pool, _ in stuck:
        view = views.get(tier_name)
        observed = view.pools.get(pool) if view is not None else None
        if observed is not None:
            key = (tier_name, pool)
            capped[key] = max(capped.get(key, 0), observed.capacity - observed.allocated)
    return capped


def _shrunk(
    active: Sequence[CurrentPlacement], decision: PlacementDecision
) -> dict[CandidateKey, int]:
    """Placements with waiting pods that ``decision`` shrinks (their waiting replicas move, or
    have nowhere to go), with the replicas it leaves them."""
    after = {p.key: p.replicas for p in decision.placements}
    return {
        (p.tier, p.pool, p.variant): after.get((p.tier, p.pool, p.variant), 0)
        for p in active
        if p.pending_since is not None and after.get((p.tier, p.pool, p.variant), 0) < p.replicas
    }


def _unbound(p: CurrentPlacement) -> int:
    return p.replicas - (p.replicas if p.scheduled is None else min(p.scheduled, p.replicas))


def _waiting_text(waiting: int, replicas: int, seconds: float | None) -> str:
    if seconds is None:
        return f"{waiting} of {replicas} replicas Pending, the pool is full"
    return (
        f"{waiting} of {replicas} replicas Pending for {seconds:.0f}s although the pool shows room"
    )


def _waiting_move(
    service: InferenceService,
    auto: PlacementDecision,
    keep: Callable[[], PlacementDecision],
    active: Sequence[CurrentPlacement],
    shrunk: Mapping[CandidateKey, int],
    stuck: Mapping[CandidateKey, float],
    settings: MigrationSettings,
    moves_into: Mapping[str, int],
) -> Move:
    """The Capacity trigger: replicas no node takes go where placement found room for them
    (``auto``), and those that fit nowhere keep waiting where they are; manual policy and a
    busy target tier keep all of them waiting (``keep``)."""
    had = {(p.tier, p.pool, p.variant): p for p in active}
    waiting = {k: min(had[k].replicas - left, _unbound(had[k])) for k, left in shrunk.items()}
    why = "; ".join(
        f"{key_text(k)}: {_waiting_text(n, had[k].replicas, stuck.get(k))}"
        for k, n in sorted(waiting.items())
    )
    moved = auto
    for key, n in sorted(waiting.items()):
        moved = with_waiting(service, moved, key, n)
    before = {k for k, p in had.items() if p.replicas > 0}
    targets = sorted({p.tier for p in moved.placements if p.key not in before})
    if not targets and auto.unplaced == 0:
        return Move(auto)  # a scale-down: nothing had to go elsewhere
    if not targets:
        return Move(
            moved,
            blocked="NoTarget",
            message=f"Capacity: {why}; no allowed placement can take them: {_why_nowhere(auto)}",
        )
    if service.spec.migration.policy == "manual":
        return Move(
            keep(), blocked="ManualPolicy", message=f"Capacity: {why}; migration.policy is manual"
        )
    full = [t for t in targets if moves_into.get(t, 0) >= settings.max_moves_per_target_tier]
    if full:
        return Move(
            keep(),
            blocked="Throttled",
            message=f"Capacity: {why}; waiting: {', '.join(full)} already takes "
            f"{settings.max_moves_per_target_tier} moves",
        )
    return Move(moved, trigger="Capacity", message=why, sources=tuple(sorted(shrunk)))


def active_placements(
    observed: Sequence[CurrentPlacement], recorded: Sequence[PlacementStatus]
) -> list[CurrentPlacement]:
    """The placements the service runs on: those of record that are observed, and those of
    record whose children are not (yet) seen, credited nothing. Observed children outside the
    record are retiring (a move's source, a stale copy in a tier that came back). Without a
    record (a service placed before records, or a restored one), whatever runs is adopted."""
    if not recorded:
        return list(observed)
    wanted = {(p.tier, p.pool, p.variant): p for p in recorded}
    active = [p for p in observed if (p.tier, p.pool, p.variant) in wanted]
    seen = {(p.tier, p.pool, p.variant) for p in active}
    active += [
        CurrentPlacement(p.tier, p.pool, p.variant, p.replicas, scheduled=0)
        for key, p in wanted.items()
        if key not in seen and p.replicas > 0
    ]
    return active


def _trigger(pushed: Sequence[Rejection]) -> str:
    order = list(TRIGGER_OF_FILTER)
    first = min(pushed, key=lambda r: order.index(r.filter))
    return TRIGGER_OF_FILTER[first.filter]


def _why_nowhere(decision: PlacementDecision, limit: int = 6) -> str:
    reasons = [str(r) for r in decision.rejected[:limit]]
    if decision.ranked:
        reasons.insert(0, f"{decision.placed}/{decision.desired} replicas fit")
    more = len(decision.rejected) - limit
    return "; ".join(reasons) + (f"; and {more} more" if more > 0 else "") or "no candidate"


def _weighted_score(decision: PlacementDecision) -> float | None:
    scores = {s.key: s.score for s in decision.ranked}
    total = sum(p.replicas for p in decision.placements)
    if total == 0 or any(p.key not in scores for p in decision.placements):
        return None
    return sum(scores[p.key] * p.replicas for p in decision.placements) / total


def _opportunity(
    service: InferenceService,
    kept: PlacementDecision,
    tiers: Sequence[TierView],
    active: Sequence[CurrentPlacement],
    held: Mapping[PoolKey, int],
    settings: MigrationSettings,
    now: float,
) -> Move:
    """Whether a placement better by the objective than ``kept`` has held long enough to move
    to it (the optimisation trigger)."""
    if not kept.satisfied or not kept.ranked or service.spec.migration.policy == "manual":
        return Move(kept)
    best = kept.ranked[0].score
    now_score = _weighted_score(kept)
    if (
        now_score is None
        or now_score <= 0
        or (now_score - best) / now_score < settings.optimise_margin
    ):
        return Move(kept)  # not even the best candidate alone would be worth a move
    fresh = place(service, kept.desired, tiers, active, held, keep=False)
    fresh_score = _weighted_score(fresh)
    if not fresh.satisfied or fresh_score is None:
        return Move(kept)
    gain = (now_score - fresh_score) / now_score
    if gain < settings.optimise_margin:
        return Move(kept)
    to = sorted(key_text(p.key) for p in fresh.placements)
    status = service.status
    previous = status.opportunity
    since = previous.since if previous is not None and previous.to == to else None
    seen = _seconds(since) if since else now
    last_move = max((_seconds(m.started) for m in status.migrations), default=-math.inf)
    ready_at = max(seen + settings.optimise_after_seconds, last_move + settings.min_dwell_seconds)
    record = {"to": to, "gain": round(gain, 3), "since": since or _iso(now)}
    if now < ready_at:
        return Move(kept, opportunity=record, wait=ready_at - now)
    before = {p.key for p in kept.placements}
    leaving = tuple(sorted(k for k in before if k not in {p.key for p in fresh.placements}))
    message = (
        f"{', '.join(key_text(k) for k in leaving)}: {kept.objective} score "
        f"{now_score:.3g} -> {fresh_score:.3g} ({gain:.0%} better) for "
        f"{now - seen:.0f}s"
    )
    return Move(fresh, trigger="Optimisation", message=message, sources=leaving)


def decide(
    service: InferenceService,
    desired: int,
    tiers: Sequence[TierView],
    active: Sequence[CurrentPlacement],
    held: Mapping[PoolKey, int],
    settings: MigrationSettings,
    moves_into: Mapping[str, int],
    now: float = 0.0,
) -> Move:
    """Place ``desired`` replicas from the ``active`` placements, moving them only as the
    triggers and guards allow. ``tiers`` have ``lost`` decided (see :func:`with_losses`);
    ``moves_into`` counts the moves in progress into each tier (other services')."""
    stuck = overdue(active, now, settings)
    auto = place(service, desired, tiers, active, _capped(held, tiers, stuck))
    pushed = [r for r in auto.dropped if r.filter in ENVIRONMENT_FILTERS]
    shrunk = {} if pushed else _shrunk(active, auto)
    if shrunk:
        # (kept: the waiting replicas where they are, whatever room the pool shows)
        patient = [
            replace(p, scheduled=p.replicas) if (p.tier, p.pool, p.variant) in shrunk else p
            for p in active
        ]
        return _waiting_move(
            service,
            auto,
            lambda: place(service, desired, tiers, patient, held, pinned=frozenset(shrunk)),
            active,
            shrunk,
            stuck,
            settings,
            moves_into,
        )
    if not pushed:
        move = _opportunity(service, auto, tiers, active, held, settings, now)
        if move.trigger is None:
            return move
        targets = sorted({p.tier for p in move.decision.placements} - {k[0] for k in move.sources})
        if any(moves_into.get(t, 0) >= settings.max_moves_per_target_tier for t in targets):
            return Move(auto, opportunity=move.opportunity, wait=1.0)
        return move
    trigger = _trigger(pushed)
    keys = frozenset((r.tier, r.pool, r.variant or "") for r in pushed)
    had = {(p.tier, p.pool, p.variant): p.replicas for p in active}

    def reason(r: Rejection) -> str:
        k = (r.tier, r.pool, r.variant or "")
        if r.filter == "capacity" and k in stuck:  # (the room it shows is not real for it)
            return f"{key_text(k)}: {_waiting_text(had[k], had[k], stuck[k])}"
        return str(r)

    why = "; ".join(reason(r) for r in pushed)
    return _guarded(
        service,
        trigger,
        why,
        keys,
        auto,
        lambda: place(service, desired, tiers, active, held, pinned=keys),
        active,
        settings,
        moves_into,
        lost_only=all(r.filter == "reachable" for r in pushed),
    )


def _guarded(
    service: InferenceService,
    trigger: str,
    why: str,
    keys: frozenset[CandidateKey],
    auto: PlacementDecision,
    keep: Callable[[], PlacementDecision],
    active: Sequence[CurrentPlacement],
    settings: MigrationSettings,
    moves_into: Mapping[str, int],
    *,
    lost_only: bool = False,
) -> Move:
    """The move ``trigger`` asks for (to ``auto``, leaving ``keys``), unless a guard keeps
    the placements where they are (``keep``). A lost tier's replicas go wherever they fit
    even when not all of them do; others move only when all of them fit."""
    if service.spec.migration.policy == "manual":
        return Move(
            keep(), blocked="ManualPolicy", message=f"{trigger}: {why}; migration.policy is manual"
        )
    if auto.unplaced > 0 and not (lost_only and auto.placed > 0):
        return Move(
            keep(),
            blocked="NoTarget",
            message=f"{trigger}: {why}; no allowed placement can take it: {_why_nowhere(auto)}",
        )
    before = {(p.tier, p.pool, p.variant) for p in active if p.replicas > 0}
    targets = sorted({p.tier for p in auto.placements if p.key not in before})
    full = [t for t in targets if moves_into.get(t, 0) >= settings.max_moves_per_target_tier]
    if full:
        return Move(
            keep(),
            trigger=None,
            blocked="Throttled",
            message=f"{trigger}: {why}; waiting: {', '.join(full)} already takes "
            f"{settings.max_moves_per_target_tier} moves",
        )
    return Move(auto, trigger=trigger, message=why, sources=tuple(sorted(keys)))


# ------------------------------------------------------------------------------- records


def _seconds(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Finished:
    """A move that ended in this reconcile (for the metrics)."""

    trigger: str
    outcome: str
    seconds: float


@dataclass(frozen=True)
class MigrationReport:
    """The migration part of a service's status, and what to say about it."""

    migrations: list[dict[str, Any]]
    condition: tuple[bool, str, str]
    """(status, reason, message) of the Migrating condition."""
    events: tuple[tuple[str, str, str], ...]
    """(reason, message, type)."""
    last_migration: dict[str, Any] | None
    finished: tuple[Finished, ...]


def migration_report(
    move: Move,
    *,
    previous: Sequence[Mapping[str, Any]],
    previous_condition: Mapping[str, Any] | None,
    targets_ready: int,
    need: int,
    retiring_reachable: int,
    now: str,
) -> MigrationReport:
    """Record a move that starts, close one that is done, and say what blocks one.

    A move is done when the placements it moved to have ``need`` Ready replicas and nothing
    retiring is left where it could be removed (copies in an unreachable tier are removed
    when it returns; they do not hold the record open)."""
    records = [dict(r) for r in previous]
    events: list[tuple[str, str, str]] = []
    finished: list[Finished] = []
    last_migration: dict[str, Any] | None = None
    last = records[-1] if records else None
    in_progress = last is not None and last.get("outcome") == "InProgress"
    decision = move.decision
    if move.trigger is not None:
        sources = {key_text(k) for k in move.sources}
        to = sorted(key_text(p.key) for p in decision.placements if key_text(p.key) not in sources)
        if not (in_progress and last is not None and last.get("to") == to):
            if in_progress and last is not None:
                last.update(outcome="Superseded", finished=now)
                finished.append(Finished(last["trigger"], "Superseded", _elapsed(last, now)))
            record = {
                "trigger": move.trigger,
                "from": sorted(sources),
                "to": to,
                "started": now,
                "outcome": "InProgress",
                "message": move.message[:1024],
            }
            records.append(record)
            last, in_progress = record, True
            text = f"{move.trigger}: moving {', '.join(record['from'])} -> {', '.join(to)}"
            events.append(("MigrationStarted", f"{text} ({move.message})"[:1000], "Normal"))
            last_migration = {
                "time": now,
                "from": ",".join(record["from"]),
                "to": ",".join(to),
                "reason": f"{move.trigger}: {move.message}"[:1024],
            }
    elif in_progress and last is not None and targets_ready >= need and not retiring_reachable:
        last.update(outcome="Succeeded", finished=now)
        in_progress = False
        seconds = _elapsed(last, now)
        finished.append(Finished(last["trigger"], "Succeeded", seconds))
        events.append(
            (
                "MigrationFinished",
                f"{last['trigger']}: {', '.join(last['to'])} Ready after {seconds:.0f}s",
                "Normal",
            )
        )
    if move.blocked in ("ManualPolicy", "NoTarget"):
        condition = (False, move.blocked, move.message[:1024])
    elif move.blocked == "Throttled":
        condition = (True, "Throttled", move.message[:1024])
    elif in_progress and last is not None:
        condition = (
            True,
            str(last["trigger"]),
            f"moving {', '.join(last['from'])} -> {', '.join(last['to'])}: "
            f"{targets_ready}/{need} ready"
            + (f", {retiring_reachable} old children to remove" if retiring_reachable else ""),
        )
    else:
        condition = (False, "Settled", "no move in progress")
    was = previous_condition or {}
    if condition[1] in ("ManualPolicy", "NoTarget") and (
        was.get("reason") != condition[1] or was.get("message") != condition[2]
    ):
        events.append(("MigrationBlocked", f"{condition[1]}: {condition[2]}"[:1000], "Warning"))
    return MigrationReport(
        migrations=records[-MAX_MIGRATIONS_IN_STATUS:],
        condition=condition,
        events=tuple(events),
        last_migration=last_migration,
        finished=tuple(finished),
    )


def _elapsed(record: Mapping[str, Any], now: str) -> float:
    try:
        return max(0.0, _seconds(now) - _seconds(str(record["started"])))
    except (KeyError, ValueError):
        return 0.0
