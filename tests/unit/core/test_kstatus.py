"""Reconciling and Stalled conditions, as kstatus (Flux, Helm 4's --wait) reads them."""

from __future__ import annotations

from typing import Any

from tierra.core.placement import PoolCapacity
from tierra.core.status import service_status, tier_status
from tierra_testing.builders import placement_decision as decision

NOW = "2026-01-01T00:00:00Z"


def kstatus(status: dict[str, Any]) -> str:
    """kstatus' generic rules for a custom resource with conditions."""
    conditions = {c["type"]: c for c in status["conditions"]}
    if any(
        c.get("observedGeneration") != status["observedGeneration"] for c in conditions.values()
    ):
        return "InProgress"
    if conditions.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if conditions.get("Stalled", {}).get("status") == "True":
        return "Failed"
    return "Current"


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_a_ready_service_is_current() -> None:
    status = service_status(decision(2, 2), {("edge", "orin", "orin"): 2}, "s", 3, {}, NOW)
    assert kstatus(status) == "Current"
    assert conditions(status)["Reconciling"]["reason"] == "Reconciled"
    assert {c["observedGeneration"] for c in status["conditions"]} == {3}


def test_replicas_on_their_way_are_reconciling() -> None:
    status = service_status(decision(2, 2), {("edge", "orin", "orin"): 1}, "s", 3, {}, NOW)
    reconciling = conditions(status)["Reconciling"]
    assert (reconciling["status"], reconciling["reason"]) == ("True", "ReplicasNotReady")
    assert reconciling["message"] == "1/2 replicas ready"
    assert kstatus(status) == "InProgress"


def test_a_migration_is_reconciling_even_when_ready() -> None:
    previous = {
        "conditions": [{"type": "Migrating", "status": "True", "message": "edge -> central"}]
    }
    status = service_status(decision(2, 2), {("edge", "orin", "orin"): 2}, "s", 3, previous, NOW)
    assert conditions(status)["Reconciling"]["reason"] == "Migrating"
    assert conditions(status)["Migrating"]["status"] == "True"  # kept, not duplicated
    assert [c["type"] for c in status["conditions"]].count("Reconciling") == 1


def test_an_unplaceable_service_is_stalled() -> None:
    status = service_status(decision(0, 3), {}, "s", 3, {}, NOW)
    stalled = conditions(status)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "NoFeasiblePlacement")
    assert conditions(status)["Reconciling"]["status"] == "False"
    assert kstatus(status) == "Failed"


def test_tier_kstatus() -> None:
    pools = {"cpu": PoolCapacity("t", "cpu", 64, 4)}
    ok = tier_status(True, None, pools, {"cpu": 2}, 0, NOW, 1, {}, NOW)
    assert kstatus(ok) == "Current"
    secret = tier_status(False, ("SecretNotFound", "no secret"), {}, {}, 0, NOW, 1, {}, NOW)
    assert (conditions(secret)["Stalled"]["reason"], kstatus(secret)) == (
        "SecretNotFound",
        "Failed",
    )
    probing = tier_status(False, None, {}, {}, 2, NOW, 1, {}, NOW)
    assert (conditions(probing)["Reconciling"]["reason"], kstatus(probing)) == (
        "Probing",
        "InProgress",
    )
