"""The pure reconcile: (service, view, previous status) -> plan and report, case by case."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tierra.api.inference_service import InferenceService
from tierra.core.placement import CurrentPlacement
from tierra.core.reconcile import (
    ChildKey,
    Obj,
    Plan,
    Requeue,
    ServiceView,
    desired_replicas,
    merge_patched,
    plan,
    report,
)
from tierra_testing.builders import service, tier
from tierra_testing.builders import tier_view as view

NOW = "2026-11-30T12:00:00Z"
SVC = service()
CENTRAL = tier("central", "central")
REGIONAL = tier("regional", "regional", pools=None)


def applied(done: Plan, svc: InferenceService = SVC) -> dict[ChildKey, Obj]:
    """The children as the apiserver would hold them after ``done`` (with a resourceVersion
    and the given ready replicas)."""
    out = {}
    for tier_name, manifest in done.desired:
        live = copy.deepcopy(manifest)
        live["metadata"]["resourceVersion"] = "7"
        if manifest["kind"] == "Deployment":
            live["status"] = {"readyReplicas": manifest["spec"]["replicas"]}
        meta = manifest["metadata"]
        out[(tier_name, manifest["kind"], meta["namespace"], meta["name"])] = live
    return out


def running(replicas: int, tier_name: str = "central") -> CurrentPlacement:
    return CurrentPlacement(tier=tier_name, pool="h100", variant="h100", replicas=replicas)


FIRST = plan(
    SVC, ServiceView(tiers=[view(CENTRAL)], settled=frozenset({"central"})), 1, has_finalizer=False
)
FIRST_STATUS = report(SVC, FIRST, previous_status={}, last_summary="", now=NOW).status
assert FIRST_STATUS is not None
ON_REGIONAL = plan(
    SVC, ServiceView(tiers=[view(REGIONAL)], settled=frozenset({"regional"})), 1, has_finalizer=True
)
ON_REGIONAL_STATUS = report(SVC, ON_REGIONAL, previous_status={}, last_summary="", now=NOW).status
assert ON_REGIONAL_STATUS is not None
STEADY = ServiceView(
    tiers=[view(CENTRAL)],
    current=[running(1)],
    children=applied(FIRST),
    settled=frozenset({"central"}),
)
_steady = report(
    SVC, plan(SVC, STEADY, 1, has_finalizer=True), previous_status={}, last_summary="", now=NOW
).status
STEADY_STATUS = merge_patched({}, _steady)  # as the apiserver stores it (no null fields)
assert STEADY_STATUS is not None


@dataclass(frozen=True)
class Case:
    name: str
    view: ServiceView
    desired: int = 1
    has_finalizer: bool = True
    previous: dict[str, Any] = field(default_factory=dict)
    last_summary: str = ""
    conflict: str | None = None
    check: Callable[[Plan, Any], None] = lambda p, r: None


def _new_service(p: Plan, r: Any) -> None:
    assert [m["kind"] for _, m in p.applies] == ["Deployment", "Service"]
    assert p.applies[0][1]["spec"]["replicas"] == 1
    assert p.add_finalizer  # the children live in another cluster: no ownerReferences
    assert p.requeue is Requeue.NO and p.deletes == ()
    assert r.placed and [e.reason for e in r.events] == ["Placed"]
    assert {c["type"]: c["status"] for c in r.status["conditions"]}["Placed"] == "True"


def _beside_its_service(p: Plan, r: Any) -> None:
    deployment = p.applies[0][1]
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == SVC.metadata.uid
    assert not p.add_finalizer  # the garbage collector removes them


def _scaled(p: Plan, r: Any) -> None:
    assert [(m["kind"], m["spec"].get("replicas")) for _, m in p.applies] == [("Deployment", 3)]
    assert r.status["replicas"] == 3 and r.status["readyReplicas"] == 1


def _unchanged(p: Plan, r: Any) -> None:
    assert p.applies == () and p.deletes == () and not p.add_finalizer
    assert r.status is None  # nothing to write
    assert r.events == ()


def _dropped(p: Plan, r: Any) -> None:
    assert p.applies == ()
    assert sorted((t, k) for t, k, _ in p.deletes) == [
        ("central", "Deployment"),
        ("central", "Service"),
    ]


def _not_deleted_where_unknown(p: Plan, r: Any) -> None:
    assert p.deletes == ()  # central is not settled: its picture is incomplete


def _unsatisfiable(p: Plan, r: Any) -> None:
    assert p.requeue is Requeue.BACKOFF and p.applies == ()
    placed = {c["type"]: c for c in r.status["conditions"]}["Placed"]
    assert (placed["status"], placed["reason"]) == ("False", "NoFeasiblePlacement")
    assert "0 free" in placed["message"]
    assert [(e.reason, e.type) for e in r.events] == [("PlacementFailed", "Warning")]


def _syncing(p: Plan, r: Any) -> None:
    assert p.requeue is Requeue.SOON and p.decision is None
    assert p.applies == () and p.deletes == () and p.waiting_for == ("regional",)
    assert r.status is None and r.events == () and not r.placed


def _conflict(p: Plan, r: Any) -> None:
    placed = {c["type"]: c for c in r.status["conditions"]}["Placed"]
    assert (placed["status"], placed["reason"]) == ("False", "NameConflict")
    assert not r.placed
    assert [(e.reason, e.type) for e in r.events] == [("NameConflict", "Warning")]


def _deleting_tier(p: Plan, r: Any) -> None:
    assert [t for t, _ in p.applies] == ["regional", "regional"]
    assert p.deletes == ()  # make-before-break: the new placement is not Ready yet
    assert {t for t, _, _ in p.retiring} == {"central"}
    migrating = {c["type"]: c for c in r.status["conditions"]}["Migrating"]
    assert (migrating["status"], migrating["reason"]) == ("True", "TierDeleting")


SETTLED = frozenset({"central", "regional"})
CASES = [
    Case(
        "a new service is placed",
        ServiceView(tiers=[view(CENTRAL)], settled=SETTLED),
        has_finalizer=False,
        check=_new_service,
    ),
    Case(
        "children beside their service carry ownerReferences",
        ServiceView(tiers=[view(CENTRAL)], settled=SETTLED, local=frozenset({"central"})),
        has_finalizer=False,
        check=_beside_its_service,
    ),
    Case(
        "a scale-up re-applies the Deployment only",
        ServiceView(
            tiers=[view(CENTRAL)], current=[running(1)], children=applied(FIRST), settled=SETTLED
        ),
        desired=3,
        previous=dict(FIRST_STATUS),
        last_summary=FIRST.decision.summary if FIRST.decision else "",
        check=_scaled,
    ),
    Case(
        "nothing changed: no apply, no status write, no Event",
        STEADY,
        previous=dict(STEADY_STATUS),
        last_summary=FIRST.decision.summary if FIRST.decision else "",
        check=_unchanged,
    ),
    Case(
        "children no longer wanted are deleted once their replacement is Ready",
        ServiceView(
            tiers=[view(CENTRAL, deleting=True), view(REGIONAL)],
            current=[running(1), running(1, "regional")],
            children={**applied(FIRST), **applied(ON_REGIONAL)},
            settled=SETTLED,
        ),
        previous=dict(ON_REGIONAL_STATUS),
        check=_dropped,
    ),
    Case(
        "but kept where the cluster's picture is incomplete",
        ServiceView(
            tiers=[view(CENTRAL, deleting=True), view(REGIONAL)],
            current=[running(1), running(1, "regional")],
            children={**applied(FIRST), **applied(ON_REGIONAL)},
            settled=frozenset({"regional"}),
        ),
        previous=dict(ON_REGIONAL_STATUS),
        check=_not_deleted_where_unknown,
    ),
    Case(
        "an unsatisfiable spec reports why and backs off",
        ServiceView(tiers=[view(CENTRAL, {"h100": 0})], settled=SETTLED),
        check=_unsatisfiable,
    ),
    Case(
        "a member still syncing: nothing is decided",
        ServiceView(
            tiers=[view(CENTRAL)], children=applied(FIRST), settled=SETTLED, syncing=("regional",)
        ),
        check=_syncing,
    ),
    Case(
        "a name conflict is reported as not placed",
        ServiceView(tiers=[view(CENTRAL)], settled=SETTLED),
        conflict="Deployment team-a/chat-h100-central in tier central already exists",
        check=_conflict,
    ),
    Case(
        "a tier being deleted is left for another",
        ServiceView(
            tiers=[view(CENTRAL, deleting=True), view(REGIONAL)],
            current=[running(1)],
            children=applied(FIRST),
            settled=SETTLED,
        ),
        check=_deleting_tier,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan(case: Case) -> None:
    done = plan(SVC, case.view, case.desired, has_finalizer=case.has_finalizer)
    said = report(
        SVC,
        done,
        previous_status=case.previous,
        last_summary=case.last_summary,
        now=NOW,
        conflict=case.conflict,
    )
    case.check(done, said)


def test_a_plan_is_a_function_of_its_inputs() -> None:
    make = lambda: ServiceView(  # noqa: E731
        tiers=[view(CENTRAL), view(REGIONAL)], current=[running(1)], children=applied(FIRST)
    )
    assert plan(SVC, make(), 2, has_finalizer=True) == plan(SVC, make(), 2, has_finalizer=True)


def test_children_of_an_older_incarnation_are_replaced_not_deleted_by_name() -> None:
    """A child left by a deleted service of the same name (another uid) is re-applied (it is
    Tierra's), and never counted as this service's to delete."""
    old = {k: copy.deepcopy(v) for k, v in applied(FIRST).items()}
    for live in old.values():
        live["metadata"]["labels"]["tierra.dev/owner-uid"] = "older-uid"
    done = plan(
        SVC,
        ServiceView(tiers=[view(REGIONAL)], children=old, settled=SETTLED),
        1,
        has_finalizer=True,
    )
    assert done.deletes == ()


@pytest.mark.parametrize(
    ("spec", "recommended", "status", "expected"),
    [
        ({"replicas": 4}, 9, {}, 4),  # manual mode wins
        ({}, 3, {}, 3),  # the autoscaler's recommendation
        ({}, None, {"autoscaling": {"mode": "auto", "recommendedReplicas": 5}}, 5),  # restart
        (
            {},
            None,
            {"autoscaling": {"mode": "auto", "recommendedReplicas": 50}},
            10,
        ),  # bounded by maxReplicas (10)
        ({}, None, {}, 1),  # a new service starts at minReplicas
    ],
)
def test_desired_replicas(
    spec: dict[str, Any], recommended: int | None, status: dict[str, Any], expected: int
) -> None:
    body = SVC.model_dump(by_alias=True, exclude_none=True)
    body["spec"].update(spec)
    body["status"] = status
    assert desired_replicas(InferenceService.model_validate(body), recommended) == expected
