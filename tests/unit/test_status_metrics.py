"""InferenceService status -> Prometheus series (what the dashboard and the alerts read)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from tierra.status_metrics import StatusCollector, service_metrics

BODY: dict[str, Any] = {
    "metadata": {"name": "chat", "namespace": "team-a"},
    "spec": {
        "slo": {"latencyP95Ms": 1500},
        "scaling": {"minReplicas": 1, "maxReplicas": 3},
        "variants": [
            {"name": "h100", "accelerator": {"type": "nvidia-gpu"}},
            {"name": "orin", "accelerator": {"type": "edge-gpu"}},
        ],
    },
    "status": {
        "replicas": 3,
        "readyReplicas": 2,
        "conditions": [
            {"type": "Placed", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "SLOMet", "status": "False", "lastTransitionTime": "2026-01-01T00:01:00Z"},
            {"type": "Migrating", "status": "True", "lastTransitionTime": "bad"},
        ],
        "placements": [
            {
                "tier": "central",
                "pool": "h100",
                "variant": "h100",
                "replicas": 2,
                "readyReplicas": 2,
            },
            {"tier": "edge", "pool": "orin", "variant": "orin", "replicas": 1, "readyReplicas": 0},
        ],
        "metrics": {"p95LatencyMs": 1800.0},
        "autoscaling": {"needs": {"queue": 5, "arrival": 4, "bad": "x"}},
        "lastScale": {"time": "2026-01-01T00:02:00Z", "from": "2", "to": "3", "reason": "q"},
    },
}


def samples(bodies: list[dict[str, Any]]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in service_metrics(bodies)
        for s in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float | None:
    return found.get(
        (name, tuple(sorted({"namespace": "team-a", "name": "chat", **labels}.items())))
    )


def test_conditions_are_one_series_per_status() -> None:
    found = samples([BODY])
    condition = "tierra_inferenceservice_condition"
    assert value(found, condition, condition="Placed", status="true") == 1
    assert value(found, condition, condition="Placed", status="false") == 0
    assert value(found, condition, condition="SLOMet", status="false") == 1
    # No condition yet: Unknown, so the "false" series (the SLO burn's input) stays 0.
    assert value(found, condition, condition="Ready", status="unknown") == 1
    assert value(found, condition, condition="Ready", status="false") == 0
    stamp = "tierra_inferenceservice_condition_last_transition_timestamp_seconds"
    assert value(found, stamp, condition="SLOMet") == 1767225660.0
    assert value(found, stamp, condition="Migrating") is None  # unparsable time: no sample


def test_replicas_placements_slo_and_decisions() -> None:
    found = samples([BODY])
    assert value(found, "tierra_inferenceservice_replicas") == 3
    assert value(found, "tierra_inferenceservice_ready_replicas") == 2
    edge = {"tier": "edge", "pool": "orin", "variant": "orin", "accelerator": "edge-gpu"}
    assert value(found, "tierra_placement_replicas", **edge) == 1
    assert value(found, "tierra_placement_ready_replicas", **edge) == 0
    assert value(found, "tierra_inferenceservice_slo_latency_p95_seconds") == 1.5
    assert value(found, "tierra_inferenceservice_observed_latency_p95_seconds") == 1.8
    assert value(found, "tierra_inferenceservice_last_scale_timestamp_seconds") == 1767225720.0
    assert value(found, "tierra_inferenceservice_last_migration_timestamp_seconds") is None


def test_the_signals_needs_beside_max_replicas_show_a_count_held_at_it() -> None:
    found = samples([BODY])
    assert value(found, "tierra_inferenceservice_max_replicas") == 3
    assert value(found, "tierra_inferenceservice_signal_need_replicas", signal="queue") == 5
    assert value(found, "tierra_inferenceservice_signal_need_replicas", signal="arrival") == 4
    assert value(found, "tierra_inferenceservice_signal_need_replicas", signal="bad") is None


def test_a_new_service_without_status_still_reports() -> None:
    found = samples([{"metadata": {"name": "chat", "namespace": "team-a"}, "spec": {}}])
    assert value(found, "tierra_inferenceservice_replicas") == 0
    assert value(found, "tierra_inferenceservice_condition", condition="Placed", status="unknown")


def test_the_collector_serves_the_cache_and_survives_a_bad_body() -> None:
    bodies: list[Any] = [BODY]
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: bodies))
    text = generate_latest(registry).decode()
    assert 'tierra_placement_replicas{accelerator="nvidia-gpu"' in text
    bodies.append("not a body")
    assert "tierra_placement_replicas" not in generate_latest(registry).decode()
