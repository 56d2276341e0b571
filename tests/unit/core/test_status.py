"""Status and explanations from decisions (pure)."""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierra.core.autoscale import ScalerState, restore_state, status_signals
from tierra.core.placement import PoolCapacity, Rejection
from tierra.core.reconcile import merge_patched
from tierra.core.status import (
    ScalingReport,
    condition,
    explain_status,
    limit_verdict,
    replacing,
    scaling_status,
    service_status,
    slo_verdict,
    tier_status,
)
from tierra_testing.builders import placement_decision as decision

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


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


def test_a_name_conflict_overrides_a_satisfied_decision() -> None:
    conflict = "Deployment team-a/chat-orin-edge in tier edge already exists and was not created"
    status = service_status(decision(2, 2), {}, "sel", 1, {}, NOW, conflict=conflict)
    placed = {c["type"]: c for c in status["conditions"]}["Placed"]
    assert (placed["status"], placed["reason"], placed["message"]) == (
        "False",
        "NameConflict",
        conflict,
    )


def test_a_syncing_cluster_is_reachable_but_says_so() -> None:
    status = tier_status(True, None, {}, {}, 0, NOW, 1, {}, NOW, syncing=True)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Reachable"]["status"], conditions["Reachable"]["reason"]) == (
        "True",
        "Syncing",
    )
    assert conditions["Ready"]["status"] == "False"


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


def test_explain_status_says_which_goal_is_out_of_reach_where() -> None:
    message = "p95 TTFT floor 893 ms on orin in edge > SLO 800 ms (...)"
    status = {
        "conditions": [
            {"type": "SLOReachable", "status": "False", "reason": "OutOfReach", "message": message}
        ]
    }
    assert f"  SLO out of reach: {message}" in explain_status("a/b", {}, status).splitlines()
    status["conditions"][0]["status"] = "True"
    assert "out of reach" not in explain_status("a/b", {}, status)


def test_explain_status_says_when_the_count_is_held_at_max_replicas() -> None:
    message = "the queue signal asks for 14 replicas, held at maxReplicas 8: ..."
    status = {
        "conditions": [
            {
                "type": "ScalingLimited",
                "status": "True",
                "reason": "MaxReplicas",
                "message": message,
            }
        ]
    }
    assert f"  scaling limited: {message}" in explain_status("a/b", {}, status).splitlines()
    status["conditions"][0]["status"] = "False"
    assert "scaling limited" not in explain_status("a/b", {}, status)


def test_explain_status_says_when_the_metrics_are_missing_or_incomplete() -> None:
    def explained(status: str, reason: str) -> str:
        condition = {"type": "MetricsAvailable", "status": status, "reason": reason}
        return explain_status("a/b", {}, {"conditions": [{**condition, "message": "why"}]})

    for status, reason in (
        ("False", "PrometheusUnavailable"),
        ("True", "RatesMissing"),
        ("True", "ScrapeIntervalMeasured"),
    ):
        assert f"  metrics ({reason}): why" in explained(status, reason).splitlines()
    assert "metrics" not in explained("True", "MetricsObserved")


def test_explain_status_shows_the_migration_history_and_what_blocks_a_move() -> None:
    status = {
        "conditions": [
            {
                "type": "Migrating",
                "status": "False",
                "reason": "NoTarget",
                "message": "Drain: edge/orin/orin: taint k:NoExecute not tolerated; "
                "regional/l4: needs 1 nvidia.com/gpu per replica, 0 free of 12",
            }
        ],
        "migrations": [
            {
                "trigger": "TierLost",
                "from": ["edge/orin/orin"],
                "to": ["regional/l4/l4"],
                "started": "2026-11-30T12:00:00Z",
                "finished": "2026-11-30T12:00:14Z",
                "outcome": "Succeeded",
            }
        ],
    }
    lines = explain_status("team-b/eu", {}, status).splitlines()
    assert any(
        line.startswith("  migration blocked (NoTarget): Drain") and "0 free of 12" in line
        for line in lines
    )
    assert lines[-1] == (
        "    2026-11-30T12:00:00Z  TierLost: edge/orin/orin -> regional/l4/l4  "
        "Succeeded at 2026-11-30T12:00:14Z"
    )


# --------------------------------------------------------------------------------------------
# The autoscaler's part


def _report(**changes: object) -> ScalingReport:
    base: dict[str, object] = {
        "mode": "auto",
        "recommended": 4,
        "reason": "scale up 2 -> 4: queue",
        "metrics_available": True,
        "metrics_reason": "MetricsObserved",
        "metrics_message": "sampled",
        "signal": "queue",
        "needs": {"queue": 4, "arrival": 3},
        "keeps": 5,
        "metrics": {"p95LatencyMs": 1500.0, "ttftP95Ms": 300.0, "queueDepth": 7.0},
        "last_scale": {"time": "t", "from": "2", "to": "4", "reason": "r", "signals": {}},
        "state": {"state.speed": 0.9, "state.burstPeak": 12.0},
        "state_time": "2026-12-04T09:00:00Z",
    }
    base.update(changes)
    return ScalingReport(**base)  # type: ignore[arg-type]


def _conditions(status: dict[str, object]) -> dict[str, dict[str, object]]:
    return {c["type"]: c for c in status["conditions"]}  # type: ignore[attr-defined,index]


def test_scaling_status_reports_metrics_slo_and_the_recommendation() -> None:
    part = scaling_status(_report(), 2000, 500, 3, {}, "now")
    conditions = _conditions(part)
    assert conditions["MetricsAvailable"]["status"] == "True"
    assert conditions["SLOMet"]["status"] == "True"
    assert conditions["SLOMet"]["reason"] == "WithinSLO"
    assert part["autoscaling"] == {
        "mode": "auto",
        "recommendedReplicas": 4,
        "signal": "queue",
        "needs": {"queue": 4, "arrival": 3},
        "keeps": 5,
        "reason": "scale up 2 -> 4: queue",
        "state": {"state.speed": 0.9, "state.burstPeak": 12.0},
        "stateTime": "2026-12-04T09:00:00Z",
    }
    assert part["lastScale"]["to"] == "4"  # type: ignore[index]


def test_slo_violation_names_what_missed() -> None:
    part = scaling_status(_report(), 1000, 200, 3, {}, "now")
    slo = _conditions(part)["SLOMet"]
    assert slo["status"] == "False"
    assert slo["reason"] == "SLOViolated"
    assert "p95 latency 1500 ms > 1000 ms" in str(slo["message"])
    assert "TTFT 300 ms > 200 ms" in str(slo["message"])


def _unjudged_after(part: dict[str, Any]) -> dict[str, Any]:
    """The status after ``part``, from a report that judges neither reach nor the limit."""
    scaling = scaling_status(_report(), 2000, 500, 3, part, "now")
    return service_status(decision(2, 2), {}, "sel", 3, part, "now", scaling=scaling)


def test_a_goal_out_of_reach_is_its_own_condition_and_kept_while_not_judged() -> None:
    reach = (False, "OutOfReach", "p95 TTFT floor 893 ms on orin in edge > SLO 800 ms")
    part = scaling_status(_report(reach=reach), 2000, 500, 3, {}, "then")
    said = _conditions(part)["SLOReachable"]
    assert (said["status"], said["reason"]) == ("False", "OutOfReach")
    assert said["message"] == reach[2]
    # (manual mode, missing metrics: the autoscaler judges nothing, and the condition stays)
    later = _unjudged_after(part)
    assert _conditions(later)["SLOReachable"]["lastTransitionTime"] == "then"


def test_a_need_above_max_replicas_is_the_scaling_limited_condition() -> None:
    limited = limit_verdict("auto", 14, "queue", 8)
    assert limited is not None and limited[:2] == (True, "MaxReplicas")
    assert "the queue signal asks for 14 replicas, held at maxReplicas 8" in limited[2]
    assert limit_verdict("auto", None, "queue", 8) == (
        False,
        "WithinBounds",
        "the signals' need is within maxReplicas 8",
    )
    manual = limit_verdict("manual", None, None, 8)
    assert manual is not None and manual[:2] == (False, "ManualScaling")
    assert limit_verdict("hold", None, None, 8) is None
    part = scaling_status(_report(limit=limited), 2000, 500, 3, {}, "then")
    said = _conditions(part)["ScalingLimited"]
    assert (said["status"], said["reason"], said["message"]) == ("True", *limited[1:])
    # (a hold on missing metrics judges nothing: the condition stays as it was)
    later = _unjudged_after(part)
    assert _conditions(later)["ScalingLimited"]["status"] == "True"
    assert _conditions(later)["ScalingLimited"]["lastTransitionTime"] == "then"


def test_missing_metrics_make_slo_unknown_and_keep_the_last_metrics() -> None:
    previous = {"metrics": {"p95LatencyMs": 10.0}, "lastScale": {"to": "3"}}
    part = scaling_status(
        _report(
            mode="hold",
            metrics_available=False,
            metrics_reason="PrometheusUnavailable",
            metrics_message="Prometheus at http://x is unreachable",
            metrics=None,
            last_scale=None,
        ),
        2000,
        None,
        3,
        previous,
        "now",
    )
    conditions = _conditions(part)
    assert conditions["MetricsAvailable"]["status"] == "False"
    assert conditions["MetricsAvailable"]["reason"] == "PrometheusUnavailable"
    assert conditions["SLOMet"]["status"] == "Unknown"
    assert part["metrics"] == {"p95LatencyMs": 10.0}
    assert part["lastScale"] == {"to": "3"}


maps = st.dictionaries(st.text(max_size=12), st.floats(allow_nan=False), max_size=8)


@given(previous=maps, new=maps)
def test_a_map_written_over_another_replaces_it_whole(
    previous: dict[str, float], new: dict[str, float]
) -> None:
    """The status is merge-patched, which merges maps key by key: a map the operator owns
    is written so that what the apiserver stores is the new map, not the two merged."""
    assert merge_patched({"m": previous}, {"m": replacing(previous, new)}) == {"m": new}
    assert replacing(None, new) == new


def test_a_status_written_over_an_older_one_holds_only_the_newer_state() -> None:
    """The needs, the metrics, the last decision's signals and the recommender's kept state
    are each the last report's; a scale-down window that shrank from three steps to two is
    restored as the two (the older third step, kept beside them, would make a restart start
    the window afresh and hold the count a whole delay more)."""
    longer = ScalerState(window=((1000.0, 12), (1100.0, 8), (1200.0, 3)), window_since=400.0)
    shorter = ScalerState(window=((1250.0, 14), (1290.0, 5)), window_since=400.0)
    stored: dict[str, Any] = {}
    first_scale = {"time": "t", "from": "2", "to": "4", "reason": "r", "signals": {"need.q": 4.0}}
    reports = (
        _report(last_scale=first_scale, state=status_signals(longer, 60.0)),
        _report(
            needs={"queue": 5},
            metrics={"queueDepth": 1.0},
            last_scale={"time": "t2", "from": "4", "to": "14", "reason": "r", "signals": {}},
            state=status_signals(shorter, 60.0),
        ),
    )
    for report in reports:
        stored = merge_patched(stored, scaling_status(report, 2000, None, 3, stored, "now"))
    autoscaling = stored["autoscaling"]
    assert autoscaling["state"] == status_signals(shorter, 60.0)
    assert autoscaling["needs"] == {"queue": 5}
    assert stored["metrics"] == {"queueDepth": 1.0}
    assert stored["lastScale"]["signals"] == {}
    restored = restore_state(
        14, 1300.0, signals=autoscaling["state"], signals_at=1290.0, scale_down_delay=300.0
    )
    assert restored.window == ((1250.0, 14), (1300.0, 5))


def test_no_latency_yet_is_unknown() -> None:
    assert slo_verdict({"p95LatencyMs": None}, 2000, None)[0] is None
    assert slo_verdict(None, 2000, None)[1] == "NoMetrics"


def paris(*fields: int) -> float:
    return datetime.datetime(*fields, tzinfo=ZoneInfo("Europe/Paris")).timestamp()  # type: ignore[misc]


SCHEDULED = {
    "variants": [{"name": "l4", "startupSeconds": 60}, {"name": "h100", "startupSeconds": 300}],
    "scaling": {
        "schedules": [
            {
                "name": "peak",
                "start": "0 9 * * MON-FRI",
                "timeZone": "Europe/Paris",
                "durationSeconds": 3600,
                "minReplicas": 8,
            },
            {"name": "typo", "start": "61 * * * *", "durationSeconds": 600, "minReplicas": 2},
        ]
    },
}
ON_H100 = {"placements": [{"tier": "central", "pool": "h", "variant": "h100", "replicas": 3}]}


@pytest.mark.parametrize(
    ("now", "said"),
    [
        (
            paris(2026, 12, 4, 9, 30),
            "open 2026-12-04 09:00 to 2026-12-04 10:00",
        ),
        # (the H100 runs the most replicas: its 300 s start-up is the lead, not the L4's 60 s)
        (paris(2026, 12, 4, 8, 56), "asked for now, open 2026-12-04 09:00 to 2026-12-04 10:00"),
        (paris(2026, 12, 4, 8, 54), "next 2026-12-04 09:00 CET"),
        (paris(2026, 12, 4, 10, 0), "next 2026-12-07 09:00 CET"),
    ],
)
def test_explain_status_says_when_each_schedule_holds_its_replicas(now: float, said: str) -> None:
    lines = explain_status("a/b", SCHEDULED, ON_H100, now).splitlines()
    assert "  schedules (replicas asked for 300 s ahead of each start, the start-up):" in lines
    assert f"    peak: 8 replicas for 3600 s from '0 9 * * MON-FRI' Europe/Paris: {said}" in lines
    (typo,) = [line for line in lines if line.startswith("    typo:")]
    assert "not applied" in typo and "Bad minute" in typo, typo


def test_explain_status_names_the_autoscaler_s_reason_and_no_window_without_a_clock() -> None:
    status = {
        "autoscaling": {
            "mode": "auto",
            "recommendedReplicas": 8,
            "reason": "schedule peak holds 8 from 2026-12-04 09:00 Europe/Paris for 3600 s",
        }
    }
    lines = explain_status("a/b", SCHEDULED, status).splitlines()
    assert (
        "  autoscaling (auto, 8 recommended): schedule peak holds 8 from 2026-12-04 09:00 "
        "Europe/Paris for 3600 s"
    ) in lines
    assert not any("schedules" in line for line in lines)
