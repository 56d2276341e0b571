"""Prometheus series of what every InferenceService's status says, read at scrape time from the
operator's informer cache (no API calls): conditions, replicas, placements, SLO, last decisions.

They are what the chart's dashboard and alerts are built on: a condition is one series per
status (``true``/``false``/``unknown``, value 1 for the current one, kube-state-metrics style),
so ``avg_over_time`` of the ``false`` series is the fraction of time a condition was False.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

CONDITIONS = (
    "Ready",
    "Placed",
    "SLOMet",
    "SLOReachable",
    "ScalingLimited",
    "MetricsAvailable",
    "Migrating",
)
STATUSES = ("true", "false", "unknown")
SERVICE = ["namespace", "name"]
PLACEMENT = [*SERVICE, "tier", "pool", "variant", "accelerator"]


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def service_metrics(bodies: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Metric families for these InferenceService bodies (pure: bodies in, samples out)."""
    condition = GaugeMetricFamily(
        "tierra_inferenceservice_condition",
        "1 for the current status of each of the service's conditions",
        labels=[*SERVICE, "condition", "status"],
    )
    transition = GaugeMetricFamily(
        "tierra_inferenceservice_condition_last_transition_timestamp_seconds",
        "When the condition last changed status",
        labels=[*SERVICE, "condition"],
    )
    replicas = GaugeMetricFamily(
        "tierra_inferenceservice_replicas", "Desired replicas over all placements", labels=SERVICE
    )
    ready = GaugeMetricFamily(
        "tierra_inferenceservice_ready_replicas",
        "Ready replicas over all placements",
        labels=SERVICE,
    )
    placement_replicas = GaugeMetricFamily(
        "tierra_placement_replicas", "Desired replicas of one placement", labels=PLACEMENT
    )
    placement_ready = GaugeMetricFamily(
        "tierra_placement_ready_replicas", "Ready replicas of one placement", labels=PLACEMENT
    )
    max_replicas = GaugeMetricFamily(
        "tierra_inferenceservice_max_replicas",
        "The service's maxReplicas (spec.scaling)",
        labels=SERVICE,
    )
    need = GaugeMetricFamily(
        "tierra_inferenceservice_signal_need_replicas",
        "The replicas each autoscaling signal last found the load needs (status.autoscaling)",
        labels=[*SERVICE, "signal"],
    )
    slo_target = GaugeMetricFamily(
        "tierra_inferenceservice_slo_latency_p95_seconds",
        "The service's p95 latency objective",
        labels=SERVICE,
    )
    observed = GaugeMetricFamily(
        "tierra_inferenceservice_observed_latency_p95_seconds",
        "The p95 latency the operator last observed",
        labels=SERVICE,
    )
    last_scale = GaugeMetricFamily(
        "tierra_inferenceservice_last_scale_timestamp_seconds",
        "Time of the last scale decision",
        labels=SERVICE,
    )
    last_migration = GaugeMetricFamily(
        "tierra_inferenceservice_last_migration_timestamp_seconds",
        "Time of the last migration",
        labels=SERVICE,
    )
    for body in bodies:
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        status = body.get("status") or {}
        key = [str(meta.get("namespace", "")), str(meta.get("name", ""))]
        by_type = {c.get("type"): c for c in status.get("conditions") or []}
        for type_ in CONDITIONS:
            current = by_type.get(type_)
            value = str((current or {}).get("status", "Unknown")).lower()
            for candidate in STATUSES:
                condition.add_metric([*key, type_, candidate], 1.0 if candidate == value else 0.0)
            when = _timestamp((current or {}).get("lastTransitionTime"))
            if when is not None:
                transition.add_metric([*key, type_], when)
        replicas.add_metric(key, float(status.get("replicas") or 0))
        ready.add_metric(key, float(status.get("readyReplicas") or 0))
        accelerators = {
            v.get("name"): (v.get("accelerator") or {}).get("type", "")
            for v in spec.get("variants") or []
        }
        for placement in status.get("placements") or []:
            labels = [
                *key,
                str(placement.get("tier", "")),
                str(placement.get("pool", "")),
                str(placement.get("variant", "")),
                str(accelerators.get(placement.get("variant"), "")),
            ]
            placement_replicas.add_metric(labels, float(placement.get("replicas") or 0))
            placement_ready.add_metric(labels, float(placement.get("readyReplicas") or 0))
        bound = (spec.get("scaling") or {}).get("maxReplicas")
        if isinstance(bound, (int, float)) and not isinstance(bound, bool):
            max_replicas.add_metric(key, float(bound))
        for signal, count in ((status.get("autoscaling") or {}).get("needs") or {}).items():
            if isinstance(count, (int, float)) and not isinstance(count, bool):
                need.add_metric([*key, str(signal)], float(count))
        target_ms = (spec.get("slo") or {}).get("latencyP95Ms")
        if target_ms:
            slo_target.add_metric(key, float(target_ms) / 1000)
        observed_ms = (status.get("metrics") or {}).get("p95LatencyMs")
        if observed_ms is not None:
            observed.add_metric(key, float(observed_ms) / 1000)
        for family, field in ((last_scale, "lastScale"), (last_migration, "lastMigration")):
            when = _timestamp((status.get(field) or {}).get("time"))
            if when is not None:
                family.add_metric(key, when)
    return [
        condition,
        transition,
        replicas,
        ready,
        placement_replicas,
        placement_ready,
        max_replicas,
        need,
        slo_target,
        observed,
        last_scale,
        last_migration,
    ]


class StatusCollector(Collector):
    """Collects :func:`service_metrics` of ``bodies()`` on every scrape (in the metrics
    server's thread; a copy of the cache's values is taken first, and a failure costs only
    these series, never the scrape)."""

    def __init__(self, bodies: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self._bodies = bodies

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = service_metrics(list(self._bodies()))
        except Exception:
            log.exception("InferenceService status metrics failed")
            return
        yield from metrics

    def describe(self) -> Iterator[Metric]:
        yield from service_metrics([])
