"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("tierra_reconcile_total", "InferenceService reconciles by result", ["result"])
RECONCILE_SECONDS = Histogram(
    "tierra_reconcile_duration_seconds",
    "Time to reconcile one InferenceService",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PLACEMENTS = Counter(
    "tierra_placement_decisions_total", "Placement decisions that changed", ["result"]
)
APPLIES = Counter("tierra_applies_total", "Server-side applies to member clusters", ["kind"])
ERRORS = Counter("tierra_errors_total", "Reconcile errors by exception type", ["kind"])
ORPHANS = Counter("tierra_orphans_deleted_total", "Children deleted because their owner is gone")
TIER_REACHABLE = Gauge("tierra_tier_reachable", "1 when the tier's cluster is reachable", ["tier"])
WATCH_FAILURES = Counter(
    "tierra_member_watch_failures_total",
    "Failed listings or watches of a member cluster's objects",
    ["cluster", "kind"],
)
MIGRATIONS = Counter(
    "tierra_migrations_total",
    "Moves of services between placements that ended, by trigger and outcome",
    ["reason", "outcome"],
)
MIGRATION_SECONDS = Histogram(
    "tierra_migration_duration_seconds",
    "From a move's start until its new placements were Ready and the old ones gone",
    ["reason"],
    buckets=(1, 2.5, 5, 10, 15, 20, 30, 45, 60, 120, 300, 600),
)
WRITES = Counter(
    "tierra_api_writes_total",
    "Requests that change state (anything but GET) sent to a cluster's apiserver",
    ["cluster"],
)
AUTOSCALING_PASS_SECONDS = Histogram(
    "tierra_autoscaling_pass_duration_seconds",
    "Time to sample and decide for every service once (one autoscaling pass)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
)
AUTOSCALING_INTERVAL_SECONDS = Gauge(
    "tierra_autoscaling_interval_seconds",
    "How often an autoscaling pass starts (--metrics-interval); a longer pass delays the next",
)
AUTOSCALING_SERVICES = Gauge(
    "tierra_autoscaling_services", "Services the last autoscaling pass stepped"
)
