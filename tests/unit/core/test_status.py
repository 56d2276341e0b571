"""Status and explanations from decisions (pure)."""

from __future__ import annotations

from tierra.core.placement import PlacementDecision, PlannedPlacement, PoolCapacity, Rejection
from tierra.core.status import condition, explain_status, service_status, tier_status

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def decision(
    replicas: int, desired: int, rejected: tuple[Rejection, ...] = ()
) -> PlacementDecision:
    placements = (
        (PlannedPlacement("edge", "orin", "orin", replicas, "best by latency"),)
        if (replicas)
        else ()
    )
    return PlacementDecision(
        service="team-a/chat",
        objective="latency",
        desired=desired,
        min_tiers=1,
        placements=placements,
        rejected=rejected,
        ranked=(),
        dropped=(),
        satisfied=replicas >= desired,
        unplaced=max(0, desired - replicas),
        spread_ok=True,
        summary=f"{replicas}/{desired} replicas",
    )


def test_condition_keeps_transition_time_while_status_holds() -> None:
    first = condition("Placed", True, "Placed", "ok", 1, [], NOW)
    again = condition("Placed", True, "Placed", "still ok", 2, [first], LATER)
    flipped = condition("Placed", False, "NoFeasiblePlacement", "no", 3, [again], LATER)
    assert again["lastTransitionTime"] == NOW
    assert flipped["lastTransitionTime"] == LATER


def test_service_status_reports_placement_readiness_and_scale_fields() -> None:
    status = service_status(decision(2, 2), {("edge", "orin", "orin"): 1}, "sel", 4, {}, NOW)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Placed"]["status"] == "True"
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["message"] == "1/2 replicas ready"
    assert (status["replicas"], status["readyReplicas"], status["selector"]) == (2, 1, "sel")
    assert (status["tiers"], status["variant"], status["observedGeneration"]) == ("edge", "orin", 4)


def test_unsatisfied_status_names_the_reasons_and_keeps_foreign_conditions() -> None:
    miss = Rejection(
        "central", "h100", "h100", "needs 8 nvidia.com/gpu per replica, 0 free", "capacity"
    )
    previous = {"conditions": [{"type": "MetricsAvailable", "status": "True"}]}
    status = service_status(decision(0, 3, (miss,)), {}, "sel", 1, previous, NOW)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Placed"]["reason"] == "NoFeasiblePlacement"
    assert "0 free" in conditions["Placed"]["message"]
    assert conditions["MetricsAvailable"]["status"] == "True"
    assert status["rejected"][0]["reason"].startswith("needs 8")


def test_tier_status_with_a_connection_problem() -> None:
    status = tier_status(False, ("SecretNotFound", "no secret"), {}, {}, 0, NOW, 1, {}, NOW)
    reachable = status["conditions"][0]
    assert (reachable["status"], reachable["reason"]) == ("False", "SecretNotFound")
    ok = tier_status(
        True, None, {"cpu": PoolCapacity("t", "cpu", 64, 4)}, {"cpu": 2}, 0, NOW, 1, {}, NOW
    )
    assert ok["pools"] == [{"name": "cpu", "capacity": 64, "allocated": 4, "free": 60, "nodes": 2}]


def test_explain_status_is_short_and_puts_non_candidates_last() -> None:
    status = {
        "conditions": [
            {"type": "Placed", "status": "True", "reason": "Placed", "message": "1/1 on regional"}
        ],
        "placements": [
            {
                "tier": "regional",
                "pool": "l4",
                "variant": "l4",
                "replicas": 1,
                "readyReplicas": 1,
                "reason": "best by cost",
            }
        ],
        "rejected": [
            {"tier": "regional", "pool": "cpu", "reason": "no variant runs on cpu"},
            {"tier": "central", "pool": "h100", "reason": "residency eu required"},
        ],
    }
    text = explain_status("team-b/eu", {"placement": {"residency": "eu"}}, status)
    lines = text.splitlines()
    assert len(lines) < 12
    assert "residency eu" in lines[0]
    assert lines[-1] == "  no matching accelerator: regional/cpu"
    assert "    central/h100: residency eu required" in lines
