"""InferenceService and Tier status from decisions and observations (pure)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tierra.api.inference_service import ScalingSchedule
from tierra.core.autoscale.schedule import last_start, next_start
from tierra.core.placement import PlacementDecision, PoolCapacity


def epoch_seconds(stamp: str) -> float | None:
    """An RFC 3339 time as the API writes it (``...Z``) in seconds since the epoch; None when
    it is not one."""
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


MAX_REJECTED_IN_STATUS = 50


def condition(
    type_: str,
    ok: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    previous: Sequence[Mapping[str, Any]],
    now: str,
) -> dict[str, Any]:
    """A condition whose lastTransitionTime only moves when its status changes (``ok`` None:
    Unknown)."""
    status = "Unknown" if ok is None else "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == type_), None)
    since = before.get("lastTransitionTime") if before and before.get("status") == status else None
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since or now,
    }


def placement_reason(decision: PlacementDecision) -> str:
    if decision.satisfied:
        return "Placed" if decision.spread_ok else "PlacedWithoutSpread"
    if decision.placed:
        return "PartiallyPlaced"
    return "NoFeasiblePlacement"


@dataclass(frozen=True)
class ScalingReport:
    """What the autoscaler has to say in a service's status."""

    mode: str
    """auto, manual or hold."""
    recommended: int
    reason: str
    metrics_available: bool
    metrics_reason: str
    """CamelCase reason of the MetricsAvailable condition."""
    metrics_message: str
    signal: str | None = None
    needs: Mapping[str, int] = field(default_factory=dict)
    keeps: int | None = None
    """What the last sample keeps against a scale-down (``Recommendation.keeps``)."""
    metrics: Mapping[str, Any] | None = None
    """The last observation, as ``status.metrics`` (camelCase keys)."""
    last_scale: Mapping[str, Any] | None = None
    """The last scale decision, as ``status.lastScale``."""
    reach: tuple[bool | None, str, str] | None = None
    """The SLOReachable condition (``reach_verdict``); None: not judged (manual, no
    metrics), the condition stays as it is."""
    limit: tuple[bool | None, str, str] | None = None
    """The ScalingLimited condition (``limit_verdict``); None: not judged, it stays as it is."""
    state: Mapping[str, float] = field(default_factory=dict)
    """What a restart needs of the recommender's state (``status_signals``), as of
    ``state_time``: ``status.autoscaling.state``."""
    state_time: str | None = None


def limit_verdict(
    mode: str, beyond_max: int | None, signal: str | None, max_replicas: int
) -> tuple[bool | None, str, str] | None:
    """ScalingLimited from a decision: True while the signals ask for more than
    ``maxReplicas`` (the requests beyond what that many serve wait, whatever the autoscaler
    does); None when no automatic decision judged it (a hold on missing metrics)."""
    if mode == "manual":
        return False, "ManualScaling", "spec.replicas sets the count: the autoscaler is off"
    if mode != "auto":
        return None
    if beyond_max is None:
        return False, "WithinBounds", f"the signals' need is within maxReplicas {max_replicas}"
    by = f"the {signal} signal" if signal else "the signals"
    return (
        True,
        "MaxReplicas",
        f"{by} asks for {beyond_max} replicas, held at maxReplicas {max_replicas}: the "
        "requests beyond what those serve wait; raise maxReplicas or expect the SLO to be missed",
    )


def slo_verdict(
    metrics: Mapping[str, Any] | None, latency_p95_ms: float, ttft_p95_ms: float | None
) -> tuple[bool | None, str, str]:
    """SLOMet from the observed p95 latency and TTFT: (ok or None for unknown, reason,
    message)."""
    if metrics is None:
        return None, "NoMetrics", "no latency observed"
    p95, ttft = metrics.get("p95LatencyMs"), metrics.get("ttftP95Ms")
    if p95 is None and (ttft is None or ttft_p95_ms is None):
        return None, "NoLatencyObserved", "no latency observed (no completed requests)"
    misses = []
    if p95 is not None and p95 > latency_p95_ms:
        misses.append(f"p95 latency {p95:.0f} ms > {latency_p95_ms:g} ms")
    if ttft is not None and ttft_p95_ms is not None and ttft > ttft_p95_ms:
        misses.append(f"p95 TTFT {ttft:.0f} ms > {ttft_p95_ms:g} ms")
    if misses:
        return False, "SLOViolated", "; ".join(misses)
    parts = [f"p95 latency {p95:.0f} ms <= {latency_p95_ms:g} ms"] if p95 is not None else []
    if ttft is not None and ttft_p95_ms is not None:
        parts.append(f"p95 TTFT {ttft:.0f} ms <= {ttft_p95_ms:g} ms")
    return True, "WithinSLO", "; ".join(parts)


def scaling_status(
    report: ScalingReport,
    latency_p95_ms: float,
    ttft_p95_ms: float | None,
    generation: int | None,
    previous: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    """The autoscaler's part of the status: MetricsAvailable, SLOMet, SLOReachable and
    ScalingLimited conditions, the recommendation, the last observed metrics and the last scale
    decision."""
    old: Sequence[Mapping[str, Any]] = previous.get("conditions") or []
    before = previous.get("autoscaling") or {}
    slo_ok, slo_reason, slo_message = slo_verdict(report.metrics, latency_p95_ms, ttft_p95_ms)
    if not report.metrics_available:
        slo_ok, slo_reason, slo_message = None, "MetricsUnavailable", report.metrics_message
    return {
        "conditions": [
            condition(
                "MetricsAvailable",
                report.metrics_available,
                report.metrics_reason,
                report.metrics_message,
                generation,
                old,
                now,
            ),
            condition("SLOMet", slo_ok, slo_reason, slo_message, generation, old, now),
            *(
                [condition("SLOReachable", *report.reach, generation, old, now)]
                if report.reach is not None
                else []
            ),
            *(
                [condition("ScalingLimited", *report.limit, generation, old, now)]
                if report.limit is not None
                else []
            ),
        ],
        "autoscaling": {
            "mode": report.mode,
            "recommendedReplicas": report.recommended,
            "signal": report.signal,
            "needs": replacing(before.get("needs"), report.needs),
            "keeps": report.keeps,
            "reason": report.reason[:1000],
            "state": replacing(before.get("state"), report.state),
            "stateTime": report.state_time,
        },
        "metrics": replacing(previous.get("metrics"), report.metrics)
        if report.metrics is not None
        else previous.get("metrics"),
        "lastScale": _last_scale(previous.get("lastScale"), report.last_scale)
        if report.last_scale is not None
        else previous.get("lastScale"),
    }


def replacing(previous: Any, new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` as a merge patch that replaces the map ``previous`` whole: a JSON merge patch
    merges maps key by key, so a key ``new`` no longer has is removed by a null, or it would
    stay beside the new ones (a restart would read a scale-down window mixed from two writes)."""
    gone = {k: None for k in previous if k not in new} if isinstance(previous, Mapping) else {}
    return {**gone, **new}


def _last_scale(previous: Any, new: Mapping[str, Any]) -> dict[str, Any]:
    """A new ``status.lastScale`` as a merge patch: its signals replace the last decision's."""
    before = previous.get("signals") if isinstance(previous, Mapping) else None
    return {**new, "signals": replacing(before, new.get("signals") or {})}


KSTATUS = ("Reconciling", "Stalled")


def kstatus_conditions(
    stalled: tuple[str, str] | None,
    progressing: tuple[str, str] | None,
    generation: int | None,
    previous: Sequence[Mapping[str, Any]],
    now: str,
) -> list[dict[str, Any]]:
    """Reconciling and Stalled, as kstatus reads them (Flux's health checks, Helm 4's
    ``--wait``, kpt): Reconciling while the operator works toward the spec, Stalled when it
    cannot get there without a change elsewhere (capacity, a Secret). Each is a (reason,
    message) or None when it does not apply; both carry ``observedGeneration``."""
    return [
        condition(
            "Reconciling",
            progressing is not None,
            progressing[0] if progressing else "Reconciled",
            progressing[1] if progressing else "",
            generation,
            previous,
            now,
        ),
        condition(
            "Stalled",
            stalled is not None,
            stalled[0] if stalled else "NotStalled",
            stalled[1] if stalled else "",
            generation,
            previous,
            now,
        ),
    ]


def _progress(
    ready_ok: bool, ready_message: str, previous: Sequence[Mapping[str, Any]]
) -> tuple[str, str] | None:
    migrating = next((c for c in previous if c.get("type") == "Migrating"), {})
    if migrating.get("status") == "True":
        return "Migrating", str(migrating.get("message") or "migrating")
    if not ready_ok:
        return "ReplicasNotReady", ready_message
    return None


def service_status(
    decision: PlacementDecision,
    ready_by_placement: Mapping[tuple[str, str, str], int],
    selector: str,
    generation: int | None,
    previous: Mapping[str, Any],
    now: str,
    scaling: Mapping[str, Any] | None = None,
    conflict: str | None = None,
) -> dict[str, Any]:
    """The status subtree the operator owns; ``scaling`` is :func:`scaling_status`'s part
    (without it, the autoscaler's conditions and fields are kept as they are). ``conflict``
    names a child whose name is taken by an object Tierra did not create: the service is not
    (fully) placed, whatever the decision says."""
    old_conditions: Sequence[Mapping[str, Any]] = previous.get("conditions") or []
    placements = [
        {
            "tier": p.tier,
            "pool": p.pool,
            "variant": p.variant,
            "replicas": p.replicas,
            "readyReplicas": ready_by_placement.get(p.key, 0),
            "reason": p.reason,
        }
        for p in decision.placements
    ]
    ready = sum(ready_by_placement.get(p.key, 0) for p in decision.placements)
    desired = decision.placed
    placed_message = decision.summary
    if not decision.satisfied and decision.rejected:
        placed_message += "; " + "; ".join(str(r) for r in decision.rejected[:3])
    if decision.desired == 0:
        ready_ok, ready_reason, ready_message = True, "ScaledToZero", "scaled to zero"
    elif ready >= decision.desired:
        ready_ok, ready_reason, ready_message = True, "ReplicasReady", f"{ready}/{desired} ready"
    else:
        ready_ok, ready_reason = False, "ReplicasNotReady"
        ready_message = f"{ready}/{decision.desired} replicas ready"
    conditions = [
        condition(
            "Placed",
            decision.satisfied and conflict is None,
            placement_reason(decision) if conflict is None else "NameConflict",
            placed_message if conflict is None else conflict,
            generation,
            old_conditions,
            now,
        ),
        condition("Ready", ready_ok, ready_reason, ready_message, generation, old_conditions, now),
    ]
    conditions += kstatus_conditions(
        stalled=(placement_reason(decision), placed_message) if not decision.satisfied else None,
        # Stalled wins: kstatus reads Reconciling=True as in progress, whatever else is set.
        progressing=_progress(ready_ok, ready_message, old_conditions)
        if decision.satisfied
        else None,
        generation=generation,
        previous=old_conditions,
        now=now,
    )
    scaled = list(scaling["conditions"]) if scaling is not None else []
    conditions += scaled
    # Conditions owned by other parts of the operator (Migrating; SLOMet and MetricsAvailable
    # when the autoscaler has nothing new) stay.
    ours = {"Placed", "Ready", *KSTATUS, *(c["type"] for c in scaled)}
    conditions += [dict(c) for c in old_conditions if c.get("type") not in ours]
    extra = {k: v for k, v in (scaling or {}).items() if k != "conditions" and v is not None}
    return {
        **extra,
        "observedGeneration": generation,
        "conditions": conditions,
        "placements": placements,
        "rejected": [
            {"tier": r.tier, "pool": r.pool, "variant": r.variant or "", "reason": r.reason}
            for r in decision.rejected[:MAX_REJECTED_IN_STATUS]
        ],
        "replicas": desired,
        "readyReplicas": ready,
        "selector": selector,
        "tiers": ",".join(dict.fromkeys(p.tier for p in decision.placements)),
        "variant": ",".join(dict.fromkeys(p.variant for p in decision.placements)),
    }


def tier_status(
    reachable: bool,
    problem: tuple[str, str] | None,
    pools: Mapping[str, PoolCapacity],
    node_counts: Mapping[str, int],
    consecutive_failures: int,
    last_probe_time: str | None,
    generation: int | None,
    previous: Mapping[str, Any],
    now: str,
    syncing: bool = False,
) -> dict[str, Any]:
    """``problem`` (reason, message) says why the cluster cannot be used; ``syncing``: it
    answers, but its objects are still being listed for the first time."""
    old: Sequence[Mapping[str, Any]] = previous.get("conditions") or []
    if problem is not None:
        reach = condition("Reachable", False, problem[0], problem[1], generation, old, now)
    elif reachable and syncing:
        reach = condition(
            "Reachable",
            True,
            "Syncing",
            "the apiserver accepts the credentials; its objects are still being listed",
            generation,
            old,
            now,
        )
    elif reachable:
        reach = condition(
            "Reachable",
            True,
            "ProbeSucceeded",
            "the apiserver accepts the credentials and its objects are listed",
            generation,
            old,
            now,
        )
    else:
        reach = condition(
            "Reachable",
            False,
            "ProbeFailed",
            f"{consecutive_failures} consecutive readiness probes failed",
            generation,
            old,
            now,
        )
    usable = [p for p in pools.values() if p.capacity > 0]
    ready_ok = reach["status"] == "True" and bool(usable)
    ready_message = (
        f"{len(usable)}/{len(pools)} pools have capacity"
        if reach["status"] == "True"
        else "unreachable"
    )
    ready = condition(
        "Ready",
        ready_ok,
        "PoolsAvailable" if ready_ok else "NoCapacity",
        ready_message,
        generation,
        old,
        now,
    )
    # A kubeconfig problem needs a change elsewhere (Stalled); a failing probe may clear itself.
    progressing = None if reach["status"] == "True" or problem else ("Probing", reach["message"])
    return {
        "observedGeneration": generation,
        "conditions": [
            reach,
            ready,
            *kstatus_conditions(problem, progressing, generation, old, now),
        ],
        "pools": [
            {
                "name": p.pool,
                "capacity": p.capacity,
                "allocated": p.allocated,
                "free": p.free,
                "nodes": node_counts.get(p.pool, 0),
            }
            for p in pools.values()
        ],
        "lastProbeTime": last_probe_time,
        "consecutiveProbeFailures": consecutive_failures,
    }


def schedule_lines(spec: Mapping[str, Any], status: Mapping[str, Any], now: float) -> list[str]:
    """Each of ``spec.scaling.schedules``: open now (until when), or its next start and when
    its replicas are asked for (the start-up time of the variant running the most replicas,
    as the autoscaler reads it, ahead)."""
    schedules = (spec.get("scaling") or {}).get("schedules") or []
    if not schedules:
        return []
    variants = {v.get("name"): v for v in spec.get("variants") or [] if isinstance(v, Mapping)}
    running = [p for p in status.get("placements") or [] if p.get("variant") in variants]
    primary = (
        variants[max(running, key=lambda p: p.get("replicas", 0))["variant"]]
        if running
        else next(iter(variants.values()), {})
    )
    lead = float(primary.get("startupSeconds", 0) or 0)
    lines = [f"  schedules (replicas asked for {lead:g} s ahead of each start, the start-up):"]
    for raw in schedules:
        try:
            rule = ScalingSchedule.model_validate(raw)
        except ValidationError as error:
            name = raw.get("name", "?") if isinstance(raw, Mapping) else "?"
            problem = error.errors()[0].get("msg", "invalid")
            lines.append(f"    {name}: not applied: {problem}")
            continue
        what = (
            f"    {rule.name}: {rule.min_replicas} replicas for {rule.duration_seconds} s from "
            f"'{rule.start}' {rule.time_zone}: "
        )
        start = last_start(rule, now + lead)
        if start is not None and now < start.timestamp() + rule.duration_seconds:
            until = datetime.datetime.fromtimestamp(
                start.timestamp() + rule.duration_seconds, start.tzinfo
            )
            held = "open" if now >= start.timestamp() else "asked for now, open"
            lines.append(f"{what}{held} {start:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}")
            continue
        upcoming = next_start(rule, now + lead)
        lines.append(
            what
            + (f"next {upcoming:%Y-%m-%d %H:%M %Z}" if upcoming is not None else "never starts")
        )
    return lines


def explain_status(
    key: str, spec: Mapping[str, Any], status: Mapping[str, Any], now: float | None = None
) -> str:
    """Why the service runs where it runs, from its recorded status, for a person (with the
    schedules' windows at ``now``, when given)."""
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    placed = conditions.get("Placed", {})
    ready = conditions.get("Ready", {})
    placement = spec.get("placement") or {}
    lines = [
        f"{key}: objective {placement.get('objective', 'cost')}, "
        f"levels {','.join(placement.get('levels') or ['central', 'regional', 'edge'])}"
        + (f", residency {placement['residency']}" if placement.get("residency") else ""),
        f"  Placed={placed.get('status', 'Unknown')} ({placed.get('reason', '-')}): "
        f"{placed.get('message', 'not reconciled yet')}",
        f"  Ready={ready.get('status', 'Unknown')}: {ready.get('message', '-')}",
    ]
    reach = conditions.get("SLOReachable")
    if reach and reach.get("status") == "False":
        lines.append(f"  SLO out of reach: {reach.get('message', '')}")
    limited = conditions.get("ScalingLimited")
    if limited and limited.get("status") == "True":
        lines.append(f"  scaling limited: {limited.get('message', '')}")
    metrics = conditions.get("MetricsAvailable")
    if metrics and (
        metrics.get("status") == "False"
        or metrics.get("reason") in ("RatesMissing", "ScrapeIntervalMeasured")
    ):
        lines.append(f"  metrics ({metrics.get('reason', '-')}): {metrics.get('message', '')}")
    scaling = status.get("autoscaling") or {}
    if scaling.get("reason"):
        lines.append(
            f"  autoscaling ({scaling.get('mode', '-')}, {scaling.get('recommendedReplicas', '?')}"
            f" recommended): {scaling['reason']}"
        )
    if now is not None:
        lines += schedule_lines(spec, status, now)
    rows = status.get("placements") or []
    if rows:
        lines.append("  runs on:")
        width = max(len(f"{p['tier']}/{p['pool']}/{p['variant']}") for p in rows)
        lines += [
            f"    {p['tier'] + '/' + p['pool'] + '/' + p['variant']:<{width}}  "
            f"{p.get('readyReplicas', 0)}/{p.get('replicas', 0)} ready  {p.get('reason', '')}"
            for p in rows
        ]
    rejected = status.get("rejected") or []

    def where(r: Mapping[str, Any]) -> str:
        return "/".join(x for x in (r.get("tier"), r.get("pool"), r.get("variant")) if x)

    unfit = [r for r in rejected if str(r.get("reason", "")).startswith("no variant runs on")]
    considered = [r for r in rejected if r not in unfit]
    if considered:
        lines.append("  ruled out:")
        lines += [f"    {where(r)}: {r.get('reason', '')}" for r in considered[:12]]
        if len(considered) > 12:
            lines.append(f"    ... and {len(considered) - 12} more")
    if unfit:
        lines.append("  no matching accelerator: " + ", ".join(where(r) for r in unfit))
    migrating = conditions.get("Migrating")
    if migrating and migrating.get("reason") not in (None, "Settled"):
        state = "moving" if migrating.get("status") == "True" else "blocked"
        lines.append(
            f"  migration {state} ({migrating.get('reason')}): {migrating.get('message', '')}"
        )
    moves = status.get("migrations") or []
    if moves:
        lines.append("  migrations, oldest first:")
        lines += [
            f"    {m.get('started', '?')}  {m.get('trigger', '?')}: "
            f"{','.join(m.get('from') or []) or '-'} -> {','.join(m.get('to') or []) or '-'}  "
            f"{m.get('outcome', '?')}" + (f" at {m['finished']}" if m.get("finished") else "")
            for m in moves
        ]
    return "\n".join(lines)
