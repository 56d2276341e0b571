"""Moves between placements, decided inside the pure reconcile: triggers, guards and the
make-before-break sequence, driven through a small in-memory world that carries plans out."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tierra.api.common import Taint, Toleration
from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.core.migration import (
    MigrationSettings,
    active_placements,
    migration_report,
    tier_lost,
)
from tierra.core.placement import CurrentPlacement, TierView, tolerates
from tierra.core.reconcile import ChildKey, Obj, Plan, ServiceView, merge_patched, plan, report
from tierra_testing.builders import pool, service, tier, tier_view

STAMP = "2026-11-30T12:00:00Z"
NOW = datetime.datetime(2026, 11, 30, 12, tzinfo=datetime.UTC).timestamp()
LATER = "2026-11-30T12:00:20Z"


def tainted(t: Tier, *taints: Taint) -> Tier:
    return t.model_copy(update={"spec": t.spec.model_copy(update={"taints": list(taints)})})


def tolerating(svc: InferenceService, *tolerations: Toleration) -> InferenceService:
    placement = svc.spec.placement.model_copy(update={"tolerations": list(tolerations)})
    spec = svc.spec.model_copy(update={"placement": placement})
    return svc.model_copy(update={"spec": spec})


def with_spec(svc: InferenceService, **migration: Any) -> InferenceService:
    spec = svc.spec.model_copy(
        update={"migration": svc.spec.migration.model_copy(update=migration)}
    )
    return svc.model_copy(update={"spec": spec})


DRAIN = Taint(key="tierra.dev/maintenance", effect="NoExecute")
CORDON = Taint(key="tierra.dev/maintenance", effect="NoSchedule")
EDGE = tier("edge", "edge")
REGIONAL = tier("regional", "regional")
EU_ONLY = tier("us-east", "regional", region="us-east", residency=("us",))


# --------------------------------------------------------------------------------------------
# An in-memory world: carries plans out, makes Deployments Ready on request


@dataclass
class World:
    """Tiers, the service's children and status, as the apiserver would hold them."""

    svc: InferenceService
    views: dict[str, TierView]
    children: dict[ChildKey, Obj] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    now: float = NOW
    ready_tiers: set[str] = field(default_factory=set)
    """Tiers whose Deployments become Ready when a reconcile looks at them."""
    log: list[Plan] = field(default_factory=list)
    waiting: dict[tuple[str, str, str], tuple[int, float]] = field(default_factory=dict)
    """Placements whose pods no node took yet: (replicas bound, creation of the oldest
    waiting pod). Once a Deployment has no more replicas than are bound, none waits."""

    def view(self) -> ServiceView:
        reachable = {n for n, v in self.views.items() if v.reachable}
        current = []
        for (tier_name, kind, _, _), obj in self.children.items():
            if kind == "Deployment":
                labels = obj["metadata"]["labels"]
                slot = (tier_name, labels["tierra.dev/pool"], labels["tierra.dev/variant"])
                replicas = obj["spec"]["replicas"]
                bound, since = self.waiting.get(slot, (replicas, 0.0))
                current.append(
                    CurrentPlacement(
                        *slot,
                        replicas,
                        scheduled=min(bound, replicas),
                        pending_since=since if bound < replicas else None,
                    )
                )
        return ServiceView(
            tiers=list(self.views.values()),
            current=current,
            children=self.children,
            settled=frozenset(reachable),
            now=self.now,
        )

    def ready_capacity(self) -> int:
        """Ready replicas over every reachable Deployment of the service."""
        return sum(
            int((obj.get("status") or {}).get("readyReplicas", 0))
            for (tier_name, kind, _, _), obj in self.children.items()
            if kind == "Deployment" and self.views[tier_name].reachable
        )

    def step(self, desired: int = 2) -> tuple[Plan, Any]:
        svc = self.svc.model_copy(
            update={"status": type(self.svc.status).model_validate(self.status)}
        )
        done = plan(svc, self.view(), desired, has_finalizer=True)
        stamp = datetime.datetime.fromtimestamp(self.now, datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        said = report(svc, done, previous_status=self.status, last_summary="", now=stamp)
        for tier_name, manifest in done.applies:
            meta = manifest["metadata"]
            key = (tier_name, manifest["kind"], meta["namespace"], meta["name"])
            live = copy.deepcopy(manifest)
            live["metadata"]["resourceVersion"] = "1"
            old = self.children.get(key)
            live["status"] = copy.deepcopy((old or {}).get("status") or {})
            self.children[key] = live
        for tier_name, kind, obj in done.deletes:
            meta = obj["metadata"]
            del self.children[(tier_name, kind, meta["namespace"], meta["name"])]
        for (tier_name, kind, _, _), obj in self.children.items():
            if kind == "Deployment" and tier_name in self.ready_tiers:
                obj["status"] = {"readyReplicas": obj["spec"]["replicas"]}
        if said.status is not None:
            self.status = merge_patched(self.status, said.status)
        self.log.append(done)
        return done, said

    def settle(self, desired: int = 2, steps: int = 6) -> None:
        for _ in range(steps):
            self.step(desired)

    def tiers_running(self) -> set[str]:
        return {k[0] for k in self.children if k[1] == "Deployment"}


def world(*tiers: Tier | TierView, svc: InferenceService | None = None) -> World:
    views = {}
    for t in tiers:
        v = t if isinstance(t, TierView) else tier_view(t)
        views[v.name] = v
    return World(svc or service(placement={"levels": ["edge", "regional"]}), views)


def migrating(status: Mapping[str, Any]) -> tuple[str, str]:
    found = next(c for c in status["conditions"] if c["type"] == "Migrating")
    return found["status"], found["reason"]


def on_edge_then(*changes: tuple[str, Any], svc: InferenceService | None = None) -> World:
    """A service settled on the edge (cheapest), then the given tier changes."""
    w = world(EDGE, REGIONAL, svc=svc)
    w.ready_tiers = {"edge", "regional"}
    w.settle()
    assert w.tiers_running() == {"edge"}
    for name, new in changes:
        w.views[name] = new
    return w


# --------------------------------------------------------------------------------------------
# Drain (NoExecute), cordon (NoSchedule), tolerations


def test_a_drain_moves_make_before_break_and_records_the_move() -> None:
    w = on_edge_then(("edge", tier_view(tainted(EDGE, DRAIN))))
    w.ready_tiers = set()
    done, said = w.step()
    assert {t for t, _ in done.applies} == {"regional"}
    assert done.deletes == () and {t for t, _, _ in done.retiring} == {"edge"}
    assert done.move is not None and done.move.trigger == "Drain"
    assert migrating(w.status) == ("True", "Drain")
    assert [e.reason for e in said.events if e.reason.startswith("Migration")] == [
        "MigrationStarted"
    ]
    record = w.status["migrations"][-1]
    assert (record["from"], record["to"], record["outcome"]) == (
        ["edge/h100/h100"],
        ["regional/h100/h100"],
        "InProgress",
    )
    # Not Ready yet: the old placement stays however often we look.
    for _ in range(3):
        done, _ = w.step()
        assert done.deletes == () and w.ready_capacity() == 2
    w.ready_tiers = {"regional"}
    w.step()  # regional becomes Ready
    done, _ = w.step()
    assert {t for t, _, _ in done.deletes} == {"edge"}
    _, said = w.step()
    assert w.tiers_running() == {"regional"}
    assert w.status["migrations"][-1]["outcome"] == "Succeeded"
    assert migrating(w.status) == ("False", "Settled")
    assert [f.trigger for f in said.finished] == ["Drain"]


def test_a_tolerated_drain_moves_nothing() -> None:
    svc = tolerating(
        service(placement={"levels": ["edge", "regional"]}),
        Toleration(key="tierra.dev/maintenance", operator="Exists"),
    )
    w = on_edge_then(("edge", tier_view(tainted(EDGE, DRAIN))), svc=svc)
    done, _ = w.step()
    assert done.applies == () and done.retiring == () and done.move is not None
    assert done.move.trigger is None and w.tiers_running() == {"edge"}


def test_a_cordon_keeps_what_runs_but_takes_nothing_new() -> None:
    w = on_edge_then(("edge", tier_view(tainted(EDGE, CORDON))))
    done, _ = w.step(desired=4)  # scaling up on a cordoned tier: the new replicas go elsewhere
    placed = {p.tier: p.replicas for p in done.decision.placements} if done.decision else {}
    assert placed == {"edge": 2, "regional": 2}
    fresh = world(tainted(EDGE, CORDON), REGIONAL)
    done, _ = fresh.step()
    assert {t for t, _ in done.applies} == {"regional"}


def test_tolerations_match_like_pods() -> None:
    taint = Taint(key="k", value="v", effect="NoExecute")
    assert tolerates([Toleration(key="k", operator="Equal", value="v")], taint)
    assert not tolerates([Toleration(key="k", operator="Equal", value="w")], taint)
    assert tolerates([Toleration(key="k", operator="Exists", effect="NoExecute")], taint)
    assert not tolerates([Toleration(key="k", operator="Exists", effect="NoSchedule")], taint)
    assert tolerates([Toleration(operator="Exists")], taint)
    assert not tolerates([Toleration(key="other", operator="Exists")], taint)
    assert not tolerates([], taint)


# --------------------------------------------------------------------------------------------
# Lost tiers: hysteresis, replacement at once, the return


def unreachable(t: Tier, for_seconds: float) -> TierView:
    return replace(tier_view(t, reachable=False), unreachable_since=NOW - for_seconds)


def test_a_blip_moves_nothing_and_readiness_becomes_unknown() -> None:
    w = on_edge_then(("edge", unreachable(EDGE, 2)))
    done, _ = w.step()
    assert done.applies == () and done.move is not None and done.move.trigger is None
    assert done.recheck_after is not None and 7 <= done.recheck_after <= 8
    ready = next(c for c in w.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "TierUnreachable")


def test_a_lost_tier_is_replaced_at_once_and_its_copies_removed_only_after_it_returns() -> None:
    w = on_edge_then(("edge", unreachable(EDGE, 11)))
    w.ready_tiers = {"regional"}
    done, _ = w.step()
    assert done.move is not None and done.move.trigger == "TierLost"
    assert {t for t, _ in done.applies} == {"regional"} and done.deletes == ()
    w.settle()
    assert migrating(w.status) == ("False", "Settled")  # copies on a lost tier hold nothing
    assert w.status["migrations"][-1]["outcome"] == "Succeeded"
    assert ("edge", "Deployment") in {(k[0], k[1]) for k in w.children}  # unreachable: kept
    # The edge returns: its stale copies go, and the service stays where it moved.
    w.views["edge"] = tier_view(EDGE)
    w.ready_tiers = {"edge", "regional"}
    done, _ = w.step()
    assert {t for t, _, _ in done.deletes} == {"edge"} and done.applies == ()
    w.settle()
    assert w.tiers_running() == {"regional"}


def test_a_tier_is_lost_after_the_threshold_only() -> None:
    s = MigrationSettings(tier_lost_after_seconds=10)
    assert not tier_lost(unreachable(EDGE, 9.9), NOW, s)
    assert tier_lost(unreachable(EDGE, 10), NOW, s)
    assert not tier_lost(tier_view(EDGE), NOW, s)


# --------------------------------------------------------------------------------------------
# Guards: nowhere to go, manual policy, throttling, residency


def test_nowhere_to_go_keeps_the_source_and_says_why() -> None:
    full = tier_view(REGIONAL, {"h100": 0})
    w = on_edge_then(("edge", tier_view(tainted(EDGE, DRAIN))), ("regional", full))
    done, said = w.step()
    assert done.deletes == () and done.applies == () and w.tiers_running() == {"edge"}
    status, reason = migrating(w.status)
    assert (status, reason) == ("False", "NoTarget")
    message = next(c for c in w.status["conditions"] if c["type"] == "Migrating")["message"]
    assert "regional/h100" in message and "free" in message
    assert [e.reason for e in said.events if "Migration" in e.reason] == ["MigrationBlocked"]
    assert not said.placed  # looked at again on capacity changes
    _, again = w.step()
    assert [e.reason for e in again.events if "Migration" in e.reason] == []  # said once


def test_a_lost_only_tier_keeps_its_placement_and_reports_unknown() -> None:
    w = world(EDGE, svc=service(placement={"levels": ["edge"]}))
    w.ready_tiers = {"edge"}
    w.settle()
    w.views["edge"] = unreachable(EDGE, 60)
    done, _ = w.step()
    assert done.deletes == () and done.decision is not None
    assert [p.tier for p in done.decision.placements] == ["edge"]
    assert migrating(w.status) == ("False", "NoTarget")
    ready = next(c for c in w.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "Unknown"


def test_manual_policy_reports_and_stays() -> None:
    svc = with_spec(service(placement={"levels": ["edge", "regional"]}), policy="manual")
    w = on_edge_then(("edge", tier_view(tainted(EDGE, DRAIN))), svc=svc)
    done, _ = w.step()
    assert done.applies == () and done.retiring == ()
    assert migrating(w.status) == ("False", "ManualPolicy")


def test_manual_policy_still_carries_out_a_spec_change_make_before_break() -> None:
    svc = with_spec(service(placement={"levels": ["edge", "regional"]}), policy="manual")
    w = on_edge_then(svc=svc)
    w.svc = with_spec(service(placement={"levels": ["regional"]}), policy="manual")
    w.ready_tiers = set()
    done, _ = w.step()
    assert {t for t, _ in done.applies} == {"regional"} and done.deletes == ()
    w.ready_tiers = {"regional"}
    w.settle()
    assert w.tiers_running() == {"regional"}


def test_a_full_target_tier_throttles_new_moves() -> None:
    w = on_edge_then(("edge", tier_view(tainted(EDGE, DRAIN))))
    svc = w.svc.model_copy(update={"status": type(w.svc.status).model_validate(w.status)})
    limit = MigrationSettings(max_moves_per_target_tier=3)
    busy = replace(w.view(), moves_into={"regional": 3})
    done = plan(svc, busy, 2, has_finalizer=True, settings=limit)
    assert done.move is not None and done.move.blocked == "Throttled"
    assert done.applies == ()
    free = replace(w.view(), moves_into={"regional": 2})
    assert plan(svc, free, 2, has_finalizer=True, settings=limit).applies != ()


def test_residency_is_never_relaxed_by_a_move() -> None:
    svc = service(placement={"levels": ["edge", "regional"], "residency": "eu"})
    w = world(EDGE, EU_ONLY, svc=svc)
    w.ready_tiers = {"edge", "us-east"}
    w.settle()
    w.views["edge"] = unreachable(EDGE, 60)
    w.settle()
    assert "us-east" not in w.tiers_running()
    assert migrating(w.status) == ("False", "NoTarget")


# --------------------------------------------------------------------------------------------
# Records and restarts


def test_an_operator_restart_mid_move_continues_the_same_move() -> None:
    w = on_edge_then(("edge", tier_view(tainted(EDGE, DRAIN))))
    w.ready_tiers = set()
    w.step()
    lost_status = copy.deepcopy(w.status)
    # A restart: nothing in memory; the status and the children are all there is.
    w.status = lost_status
    w.ready_tiers = {"regional"}
    w.settle()
    assert w.tiers_running() == {"regional"}
    assert [r["outcome"] for r in w.status["migrations"]] == ["Succeeded"]


def test_a_restart_before_the_status_was_written_starts_the_move_again() -> None:
    w = on_edge_then(("edge", tier_view(tainted(EDGE, DRAIN))))
    before = copy.deepcopy(w.status)
    w.ready_tiers = set()
    w.step()
    w.status = before  # the status write was lost; the new children were applied
    w.ready_tiers = {"regional"}
    w.settle()
    assert w.tiers_running() == {"regional"}
    kinds = sorted(k[1] for k in w.children)
    assert kinds == ["Deployment", "Service"]  # nothing duplicated


def test_the_history_is_bounded() -> None:
    from tierra.core.migration import Move
    from tierra.core.placement import place

    svc = service()
    decision = place(svc, 1, [tier_view(REGIONAL)])
    previous = [
        {
            "trigger": "Drain",
            "from": ["a"],
            "to": [f"t{i}"],
            "started": STAMP,
            "outcome": "Succeeded",
        }
        for i in range(10)
    ]
    move = Move(decision, trigger="Drain", sources=(("edge", "h100", "h100"),))
    said = migration_report(
        move,
        previous=previous,
        previous_condition=None,
        targets_ready=0,
        need=1,
        retiring_reachable=1,
        now=LATER,
    )
    assert len(said.migrations) == 10 and said.migrations[-1]["outcome"] == "InProgress"


def test_active_placements_follow_the_record() -> None:
    from tierra.api.inference_service import PlacementStatus

    seen = [CurrentPlacement("edge", "p", "v", 2), CurrentPlacement("regional", "p", "v", 2)]
    record = [PlacementStatus(tier="regional", pool="p", variant="v", replicas=2)]
    assert active_placements(seen, record) == [seen[1]]
    assert active_placements(seen, []) == seen
    gone = [PlacementStatus(tier="central", pool="p", variant="v", replicas=3)]
    assert active_placements(seen, gone) == [CurrentPlacement("central", "p", "v", 3, scheduled=0)]


# --------------------------------------------------------------------------------------------
# Property: a planned move never lets Ready capacity drop below need


@settings(max_examples=60, deadline=None)
@given(
    desired=st.integers(min_value=1, max_value=4),
    ready_after=st.lists(st.booleans(), min_size=4, max_size=12),
    taint_edge=st.booleans(),
    cordon_regional=st.booleans(),
)
def test_ready_capacity_never_drops_below_need_during_a_planned_move(
    desired: int, ready_after: Sequence[bool], taint_edge: bool, cordon_regional: bool
) -> None:
    central = tier("central", "central")
    w = World(
        service(placement={"levels": ["edge", "regional", "central"]}),
        {t.metadata.name: tier_view(t) for t in (EDGE, REGIONAL, central)},
    )
    w.ready_tiers = {"edge", "regional", "central"}
    w.settle(desired)
    assert w.ready_capacity() == desired
    if taint_edge:
        w.views["edge"] = tier_view(tainted(EDGE, DRAIN))
    if cordon_regional:
        w.views["regional"] = tier_view(tainted(REGIONAL, CORDON))
    for ready in ready_after:  # targets become Ready at random moments
        w.ready_tiers = {"edge", "regional", "central"} if ready else set()
        w.step(desired)
        assert w.ready_capacity() >= desired
    w.ready_tiers = {"edge", "regional", "central"}
    w.settle(desired)
    assert w.ready_capacity() == desired
    if taint_edge:
        assert "edge" not in w.tiers_running()


def test_an_unreachable_tier_without_a_failure_time_is_looked_at_again() -> None:
    w = on_edge_then(("edge", tier_view(EDGE, reachable=False)))
    done, _ = w.step()
    assert done.applies == () and done.recheck_after == 10.0


# --------------------------------------------------------------------------------------------
# Optimisation: a better placement, sustained, after a dwell time


def on_the_dear_tier() -> World:
    """A service placed on the dearer tier while the cheaper one was cordoned; the cordon
    is then lifted."""
    cheap = tier("cheap", "edge", pools=[pool(price=1.0)])
    dear = tier("dear", "regional", pools=[pool(price=3.0)])
    w = world(tainted(cheap, CORDON), dear, svc=service(placement={"levels": ["edge", "regional"]}))
    w.ready_tiers = {"cheap", "dear"}
    w.settle()
    assert w.tiers_running() == {"dear"}
    w.views["cheap"] = tier_view(cheap)
    return w


def test_a_better_placement_is_taken_only_once_it_has_held_and_make_before_break() -> None:
    w = on_the_dear_tier()
    done, _ = w.step()
    assert done.applies == () and w.status["opportunity"]["to"] == ["cheap/h100/h100"]
    assert w.status["opportunity"]["gain"] >= 0.25
    assert done.recheck_after == 300.0
    w.now += 299
    w.step()
    assert w.tiers_running() == {"dear"}
    w.now += 1
    w.ready_tiers = set()
    done, _ = w.step()
    assert done.move is not None and done.move.trigger == "Optimisation"
    assert {t for t, _ in done.applies} == {"cheap"} and done.deletes == ()
    assert "opportunity" not in w.status
    w.ready_tiers = {"cheap", "dear"}
    w.settle()
    assert w.tiers_running() == {"cheap"}
    assert [m["trigger"] for m in w.status["migrations"]] == ["Optimisation"]


def test_no_optimisation_within_the_dwell_time_after_a_move() -> None:
    w = on_the_edge_then_drained_and_back()
    done, _ = w.step()
    assert done.move is not None and done.move.trigger is None
    assert w.status["opportunity"]["to"] == ["cheap/h100/h100"]
    w.now += 300  # held long enough, but the last move was only 300 s ago
    done, _ = w.step()
    assert done.applies == () and done.recheck_after == 600.0
    w.now += 600
    done, _ = w.step()
    assert done.move is not None and done.move.trigger == "Optimisation"


def on_the_edge_then_drained_and_back() -> World:
    """On the cheaper tier, drained to the dearer one (a move), then the drain is lifted."""
    cheap = tier("cheap", "edge", pools=[pool(price=1.0)])
    dear = tier("dear", "regional", pools=[pool(price=3.0)])
    w = world(cheap, dear, svc=service(placement={"levels": ["edge", "regional"]}))
    w.ready_tiers = {"cheap", "dear"}
    w.settle()
    w.views["cheap"] = tier_view(tainted(cheap, DRAIN))
    w.settle()
    assert w.tiers_running() == {"dear"}
    w.views["cheap"] = tier_view(cheap)
    return w


def test_a_small_gain_or_manual_policy_moves_nothing() -> None:
    cheap = tier("cheap", "edge", pools=[pool(price=2.9)])
    dear = tier("dear", "regional", pools=[pool(price=3.0)])
    w = world(tainted(cheap, CORDON), dear, svc=service(placement={"levels": ["edge", "regional"]}))
    w.ready_tiers = {"cheap", "dear"}
    w.settle()
    w.views["cheap"] = tier_view(cheap)
    w.step()
    assert "opportunity" not in w.status
    manual = on_the_dear_tier()
    manual.svc = with_spec(manual.svc, policy="manual")
    manual.now += 10_000
    manual.settle()
    assert manual.tiers_running() == {"dear"} and "opportunity" not in manual.status


def test_a_deleted_tier_gets_nothing_new_and_what_is_left_of_a_gone_tier_goes() -> None:
    w = world(EDGE, svc=service(placement={"levels": ["edge"]}))
    w.ready_tiers = {"edge"}
    w.settle()
    w.views["edge"] = tier_view(EDGE, deleting=True)
    done, _ = w.step()
    assert migrating(w.status) == ("False", "NoTarget") and done.deletes == ()
    w.children.clear()  # the Tier's clean-up removed them (after its timeout)
    done, _ = w.step()
    assert done.applies == ()  # not put back
    # Copies that reappeared after the Tier is gone (a write that raced its release) go.
    w.settle()
    w.step()
    left = copy.deepcopy(w.log[0].desired)
    del w.views["edge"]
    for tier_name, manifest in left:
        meta = manifest["metadata"]
        live = copy.deepcopy(manifest)
        live["metadata"]["resourceVersion"] = "1"
        w.children[(tier_name, manifest["kind"], meta["namespace"], meta["name"])] = live
    view = replace(w.view(), settled=frozenset({"edge"}))
    svc = w.svc.model_copy(update={"status": type(w.svc.status).model_validate(w.status)})
    done = plan(svc, view, 2, has_finalizer=True)
    assert sorted(k for _, k, _ in done.deletes) == ["Deployment", "Service"]


def test_a_pool_that_can_no_longer_hold_the_service_is_a_capacity_move() -> None:
    w = on_edge_then()
    w.views["edge"] = tier_view(EDGE, {"h100": (0, 0)})  # its nodes are gone
    view = replace(w.view(), current=[CurrentPlacement("edge", "h100", "h100", 2, scheduled=0)])
    svc = w.svc.model_copy(update={"status": type(w.svc.status).model_validate(w.status)})
    done = plan(svc, view, 2, has_finalizer=True)
    assert done.move is not None and done.move.trigger == "Capacity"
    assert {t for t, _ in done.applies} == {"regional"} and done.deletes == ()


# --------------------------------------------------------------------------------------------
# Capacity: replicas whose pods no node takes


ON_EDGE = ("edge", "h100", "h100")


def test_replicas_waiting_in_a_pool_with_room_move_only_after_the_threshold() -> None:
    w = on_edge_then()
    w.waiting[ON_EDGE] = (1, NOW - 5)  # one of the two waits (a taint the pool does not show)
    done, _ = w.step()
    assert done.move is not None and done.move.trigger is None and done.applies == ()
    assert done.recheck_after == 25.0  # looked at again when the threshold passes
    assert migrating(w.status) == ("False", "Settled")

    w.now = NOW + 30
    w.ready_tiers = set()
    done, said = w.step()
    assert done.move is not None and done.move.trigger == "Capacity"
    assert "edge/h100/h100: 1 of 2 replicas Pending for 35s" in done.move.message
    replicas = {t: m["spec"]["replicas"] for t, m in done.desired if m["kind"] == "Deployment"}
    assert replicas == {"edge": 1, "regional": 1}  # the bound replica stays where it serves
    assert migrating(w.status) == ("True", "Capacity")
    assert [e.reason for e in said.events if "Migration" in e.reason] == ["MigrationStarted"]

    del w.waiting[ON_EDGE]  # the ReplicaSet removed the waiting pod first
    w.ready_tiers = {"edge", "regional"}
    w.settle()
    assert w.tiers_running() == {"edge", "regional"}
    assert w.status["migrations"][-1]["outcome"] == "Succeeded"
    assert migrating(w.status) == ("False", "Settled")


def test_a_placement_none_of_whose_replicas_a_node_took_moves_whole() -> None:
    w = on_edge_then()
    w.waiting[ON_EDGE] = (0, NOW - 40)  # e.g. its pods were evicted and the scheduler is down
    done, _ = w.step()
    assert done.move is not None and done.move.trigger == "Capacity"
    assert done.move.message == (
        "edge/h100/h100: 2 of 2 replicas Pending for 40s although the pool shows room"
    )
    assert {t for t, _ in done.applies} == {"regional"} and done.deletes == ()
    assert done.retiring  # the edge child goes once regional is Ready


def test_replicas_waiting_in_a_visibly_full_pool_move_at_once_with_a_record() -> None:
    w = on_edge_then()
    # another workload took the room of one replica while it was being replaced
    w.views["edge"] = tier_view(EDGE, {"h100": (2, 2)})
    w.waiting[ON_EDGE] = (1, NOW - 1)
    done, _ = w.step()
    assert done.move is not None and done.move.trigger == "Capacity"
    assert "1 of 2 replicas Pending, the pool is full" in done.move.message
    assert {t for t, _ in done.applies} == {"edge", "regional"} and done.deletes == ()


def test_replicas_with_nowhere_else_to_go_keep_waiting_where_they_are() -> None:
    w = on_edge_then(("regional", tier_view(REGIONAL, {"h100": 0})))
    w.waiting[ON_EDGE] = (0, NOW - 60)
    done, _ = w.step()
    assert done.applies == () and done.deletes == ()
    assert done.decision is not None
    assert [(p.tier, p.replicas) for p in done.decision.placements] == [("edge", 2)]
    assert migrating(w.status) == ("False", "NoTarget")


def test_waiting_replicas_that_fit_nowhere_else_keep_waiting_even_with_some_bound() -> None:
    w = on_edge_then(("regional", tier_view(REGIONAL, {"h100": 0})))
    w.waiting[ON_EDGE] = (1, NOW - 60)  # one serves, one waits for a node that never comes
    done, _ = w.step()
    assert done.applies == () and done.deletes == ()
    assert done.decision is not None
    assert [(p.tier, p.replicas) for p in done.decision.placements] == [("edge", 2)]
    assert migrating(w.status) == ("False", "NoTarget")
    message = next(c for c in w.status["conditions"] if c["type"] == "Migrating")["message"]
    assert "1 of 2 replicas Pending for 60s" in message


def test_what_fits_elsewhere_moves_and_the_rest_keeps_waiting() -> None:
    w = on_edge_then(("regional", tier_view(REGIONAL, {"h100": 1})))
    w.settle(4)
    assert w.tiers_running() == {"edge"}
    # a foreign workload took the room of three replicas while they were being replaced
    w.views["edge"] = tier_view(EDGE, {"h100": (4, 4)})
    w.waiting[ON_EDGE] = (1, NOW - 1)
    done, _ = w.step(4)
    assert done.move is not None and done.move.trigger == "Capacity"
    replicas = {t: m["spec"]["replicas"] for t, m in done.desired if m["kind"] == "Deployment"}
    assert replicas == {"edge": 3, "regional": 1}  # 1 bound + 2 still waiting; 1 moved
    assert done.decision is not None and done.decision.satisfied


def test_a_scale_down_while_replicas_wait_is_no_move() -> None:
    w = on_edge_then()
    w.settle(4)
    w.waiting[ON_EDGE] = (3, NOW - 1)  # one of four waits for a node, a moment only
    done, _ = w.step(2)
    assert done.move is not None and done.move.trigger is None and done.move.blocked is None
    replicas = {t: m["spec"]["replicas"] for t, m in done.desired if m["kind"] == "Deployment"}
    assert replicas == {"edge": 2}
    assert migrating(w.status) == ("False", "Settled")


def test_replicas_waiting_under_manual_policy_stay() -> None:
    svc = with_spec(service(placement={"levels": ["edge", "regional"]}), policy="manual")
    w = on_edge_then(svc=svc)
    w.waiting[ON_EDGE] = (1, NOW - 60)
    done, _ = w.step()
    assert done.applies == () and migrating(w.status) == ("False", "ManualPolicy")


@settings(max_examples=150, deadline=None)
@given(
    desired=st.integers(min_value=1, max_value=6),
    bound=st.integers(min_value=0, max_value=6),
    waited=st.floats(min_value=0, max_value=120),
    others=st.integers(min_value=0, max_value=8),
    edge_units=st.integers(min_value=0, max_value=8),
    regional_free=st.integers(min_value=0, max_value=8),
)
def test_a_capacity_move_never_takes_a_bound_replica_away(
    desired: int, bound: int, waited: float, others: int, edge_units: int, regional_free: int
) -> None:
    """Whatever waits, for however long, and whatever room there is: the replicas a node
    took stay (their placement never shrinks below them), and nothing is deleted."""
    w = on_edge_then()
    bound = min(bound, desired)
    # the edge pool as observed: what its nodes carry, what its bound pods (ours and
    # others') request; allocation never exceeds the nodes' capacity
    allocated = min(edge_units, bound + others)
    w.views["edge"] = tier_view(EDGE, {"h100": (edge_units, allocated)})
    w.views["regional"] = tier_view(REGIONAL, {"h100": regional_free})
    w.settle(desired)  # (re)sized to ``desired``; the edge then keeps ``bound`` of them
    edge = [m for (t, k, _, _), m in w.children.items() if t == "edge" and k == "Deployment"]
    if not edge:
        return
    held = edge[0]["spec"]["replicas"]
    bound = min(bound, held)
    w.waiting[ON_EDGE] = (bound, NOW - waited)
    done, _ = w.step(desired)
    assert done.deletes == ()
    assert done.decision is not None
    kept = sum(p.replicas for p in done.decision.placements if p.tier == "edge")
    assert kept >= bound


def test_an_rtt_beyond_the_latency_budget_is_an_slo_move() -> None:
    near = tier("edge", "edge", latency={"eu-central": 4})
    far = tier("regional", "regional", latency={"eu-central": 18})
    svc = service(
        placement={"levels": ["edge", "regional"], "objective": "latency",
                   "userRegions": {"eu-central": 1}},
    )  # fmt: skip
    w = world(near, far, svc=svc)
    w.ready_tiers = {"edge", "regional"}
    w.settle()
    assert w.tiers_running() == {"edge"}
    w.views["edge"] = tier_view(tier("edge", "edge", latency={"eu-central": 1500}))
    done, _ = w.step()
    assert done.move is not None and done.move.trigger == "SLO"
    assert "RTT" in done.move.message
    w.settle()
    assert w.tiers_running() == {"regional"}


def test_a_move_from_a_lost_tier_holds_no_move_slot_once_its_replacement_is_ready() -> None:
    w = on_edge_then(("edge", unreachable(EDGE, 11)))
    w.ready_tiers = set()
    done, _ = w.step()
    assert done.moving_into == {"regional"}  # starting
    done, _ = w.step()
    assert done.moving_into == {"regional"}  # not Ready yet
    w.ready_tiers = {"regional"}
    w.step()
    done, _ = w.step()
    assert done.retiring and done.moving_into == frozenset()  # stale copies wait on the edge


def on_orin_at_the_edge(*more: Tier) -> World:
    """A service settled on an Orin at the edge (the nearest, for the latency objective)
    before its request size was measured."""
    orin = pool("orin", "edge-gpu", None, resource_name="nvidia.com/gpu")
    svc = service(
        variants=[
            {
                "name": "orin",
                "accelerator": {"type": "edge-gpu", "count": 1},
                "capacity": {
                    "maxConcurrency": 4,
                    "prefillTokensPerSecond": 900,
                    "decodeTokensPerSecond": 90,
                },
            },
            {
                "name": "h100",
                "accelerator": {"type": "nvidia-gpu", "model": "H100", "count": 1},
                "capacity": {
                    "maxConcurrency": 64,
                    "prefillTokensPerSecond": 24000,
                    "decodeTokensPerSecond": 2400,
                },
            },
        ],
        placement={
            "levels": ["edge", "regional"],
            "objective": "latency",
            "userRegions": {"eu-central": 1},
        },
        slo={"latencyP95Ms": 6000, "ttftP95Ms": 800},
    )
    edge = tier("edge", "edge", latency={"eu-central": 4}, pools=[orin])
    w = world(edge, *more, svc=svc)
    w.ready_tiers = {"edge", *(t.metadata.name for t in more)}
    w.settle()
    assert w.tiers_running() == {"edge"}
    return w


def test_a_measured_request_the_variant_cannot_serve_within_the_slo_is_an_slo_move() -> None:
    """800-token prompts take 889 ms to prefill on an Orin: the 800 ms TTFT goal is out of
    reach there at any count, and the service moves where it is not (make-before-break)."""
    w = on_orin_at_the_edge(tier("regional", "regional", latency={"eu-central": 18}))
    w.status["metrics"] = {"meanPromptTokens": 800.0, "meanOutputTokens": 200.0}
    done, _ = w.step()
    assert done.move is not None and done.move.trigger == "SLO"
    assert "p95 TTFT floor 893 ms > SLO 800 ms" in done.move.message
    assert "800-token prompt" in done.move.message
    assert done.deletes == ()  # (the Orin serves until the H100 is Ready)
    w.settle()
    assert w.tiers_running() == {"regional"}


def test_a_variant_out_of_reach_with_nowhere_else_to_go_keeps_serving() -> None:
    w = on_orin_at_the_edge()
    w.status["metrics"] = {"meanPromptTokens": 800.0, "meanOutputTokens": 200.0}
    done, _ = w.step()
    assert done.deletes == () and w.tiers_running() == {"edge"}
    assert migrating(w.status) == ("False", "NoTarget")
