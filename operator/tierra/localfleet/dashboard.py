"""Tierra's Grafana dashboard, as code (Grafana Foundation SDK), rendered to the JSON the chart
ships in ``charts/tierra/files/dashboards/tierra.json``.

``python -m tierra.localfleet.dashboard generate|check`` writes or checks that file; a test keeps it
in sync. The queries read the operator's own metrics (``tierra.shell.telemetry``) and the
InferenceService status series (``tierra.status_metrics``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DataSourceRef

DASHBOARD_FILE = Path("charts") / "tierra" / "files" / "dashboards" / "tierra.json"
UID = "tierra-overview"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SERVICES = 'namespace=~"$namespace", name=~"$service"'


def _query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    return query.legend_format(legend) if legend else query


def _series(
    title: str,
    description: str,
    queries: list[tuple[str, str]],
    unit: str = "short",
    stacked: bool = False,
    width: int = 12,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(8)
        .fill_opacity(10 if not stacked else 40)
        .legend(
            common_builder.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if stacked:
        panel = panel.stacking(common_builder.StackingConfig().mode(common.StackingMode.NORMAL))
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index)))
    return panel


def _stat(title: str, description: str, expr: str, unit: str = "short") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(6)
        .height(4)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(_query(expr))
    )


def build() -> dict[str, Any]:
    """The dashboard as the JSON model Grafana imports."""
    rate = "$__rate_interval"
    board = (
        dashboard.Dashboard("Tierra")
        .uid(UID)
        .description("Placements, replicas, SLO attainment and decisions of Tierra's services")
        .tags(["tierra", "inference"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("namespace")
            .label("Namespace")
            .datasource(DATASOURCE)
            .query("label_values(tierra_inferenceservice_replicas, namespace)")
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            dashboard.QueryVariable("service")
            .label("Service")
            .datasource(DATASOURCE)
            .query('label_values(tierra_inferenceservice_replicas{namespace=~"$namespace"}, name)')
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_row(dashboard.Row("Fleet"))
        .with_panel(
            _stat(
                "Tiers reachable",
                "Tiers whose cluster the operator reaches, of all Tiers.",
                "sum(tierra_tier_reachable) / count(tierra_tier_reachable)",
                "percentunit",
            )
        )
        .with_panel(
            _stat(
                "Services unplaced",
                "Services whose Placed condition is False: no tier and pool satisfies them.",
                'sum(tierra_inferenceservice_condition{condition="Placed", status="false", '
                f"{SERVICES}}})",
            )
        )
        .with_panel(
            _stat(
                "Services meeting their SLO",
                "Share of services with a known SLOMet condition whose p95 objective is met.",
                'sum(tierra_inferenceservice_condition{condition="SLOMet", status="true", '
                f"{SERVICES}}}) / sum(tierra_inferenceservice_condition"
                f'{{condition="SLOMet", status!="unknown", {SERVICES}}})',
                "percentunit",
            )
        )
        .with_panel(
            _stat(
                "Services migrating",
                "Services whose Migrating condition is True (make-before-break in progress).",
                'sum(tierra_inferenceservice_condition{condition="Migrating", status="true", '
                f"{SERVICES}}})",
            )
        )
        .with_panel(
            _series(
                "Tier reachability",
                "1 while the operator reaches the tier's cluster, 0 when it does not.",
                [("tierra_tier_reachable", "{{tier}}")],
                width=24,
            )
        )
        .with_row(dashboard.Row("Placements and replicas"))
        .with_panel(
            _series(
                "Replicas per tier and accelerator",
                "Desired replicas of every placement, by tier and accelerator type.",
                [
                    (
                        f"sum by (tier, accelerator) (tierra_placement_replicas{{{SERVICES}}})",
                        "{{tier}} / {{accelerator}}",
                    )
                ],
                stacked=True,
            )
        )
        .with_panel(
            _series(
                "Desired vs ready replicas",
                "Replicas the operator asks for over all placements, those that are ready, "
                "what the autoscaler's largest signal finds the load needs, and maxReplicas: "
                "a need above maxReplicas is a count held at it (the ScalingLimited condition).",
                [
                    (f"sum(tierra_inferenceservice_replicas{{{SERVICES}}})", "desired"),
                    (f"sum(tierra_inferenceservice_ready_replicas{{{SERVICES}}})", "ready"),
                    (
                        "sum(max by (namespace, name) "
                        f"(tierra_inferenceservice_signal_need_replicas{{{SERVICES}}}))",
                        "needed",
                    ),
                    (f"sum(tierra_inferenceservice_max_replicas{{{SERVICES}}})", "maxReplicas"),
                ],
            )
        )
        .with_panel(
            _series(
                "Placements per tier and pool",
                "Ready replicas by tier and pool.",
                [
                    (
                        f"sum by (tier, pool) (tierra_placement_ready_replicas{{{SERVICES}}})",
                        "{{tier}}/{{pool}}",
                    )
                ],
                stacked=True,
            )
        )
        .with_panel(
            _series(
                "Placement decisions",
                "Placement decisions that changed, by outcome (Placed or PlacementFailed).",
                [
                    (
                        f"sum by (result) (rate(tierra_placement_decisions_total[{rate}]))",
                        "{{result}}",
                    )
                ],
                unit="ops",
            )
        )
        .with_row(dashboard.Row("SLO"))
        .with_panel(
            _series(
                "SLO attainment (1 h)",
                "Share of the last hour during which the service met its p95 latency objective "
                "(its SLOMet condition was not False).",
                [
                    (
                        "1 - avg_over_time(tierra_inferenceservice_condition"
                        f'{{condition="SLOMet", status="false", {SERVICES}}}[1h])',
                        "{{namespace}}/{{name}}",
                    )
                ],
                unit="percentunit",
            )
        )
        .with_panel(
            _series(
                "p95 latency: observed vs objective",
                "The p95 latency the operator last observed, and the service's objective.",
                [
                    (
                        f"tierra_inferenceservice_observed_latency_p95_seconds{{{SERVICES}}}",
                        "{{namespace}}/{{name}} observed",
                    ),
                    (
                        f"tierra_inferenceservice_slo_latency_p95_seconds{{{SERVICES}}}",
                        "{{namespace}}/{{name}} objective",
                    ),
                ],
                unit="s",
            )
        )
        .with_row(dashboard.Row("Scale and migration decisions"))
        .with_panel(
            _series(
                "Scale decisions",
                "Scale decisions per service in each interval.",
                [
                    (
                        "sum by (namespace, name) (changes("
                        f"tierra_inferenceservice_last_scale_timestamp_seconds{{{SERVICES}}}"
                        f"[{rate}]))",
                        "{{namespace}}/{{name}}",
                    )
                ],
            )
        )
        .with_panel(
            _series(
                "Migrations",
                "Migrations per service in each interval.",
                [
                    (
                        "sum by (namespace, name) (changes("
                        f"tierra_inferenceservice_last_migration_timestamp_seconds{{{SERVICES}}}"
                        f"[{rate}]))",
                        "{{namespace}}/{{name}}",
                    )
                ],
            )
        )
        .with_row(dashboard.Row("Operator"))
        .with_panel(
            _series(
                "Reconciles",
                "InferenceService reconciles per second, by result.",
                [(f"sum by (result) (rate(tierra_reconcile_total[{rate}]))", "{{result}}")],
                unit="ops",
            )
        )
        .with_panel(
            _series(
                "Reconcile latency",
                "Time to reconcile one InferenceService.",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(tierra_reconcile_duration_seconds_bucket[{rate}])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
                unit="s",
            )
        )
        .with_panel(
            _series(
                "Autoscaling pass",
                "Time to sample and decide for every service once, against how often a pass "
                "starts: a pass longer than that delays the next, and every decision with it.",
                [
                    (
                        "histogram_quantile(0.9, sum by (le) "
                        f"(rate(tierra_autoscaling_pass_duration_seconds_bucket[{rate}])))",
                        "p90 pass",
                    ),
                    ("max(tierra_autoscaling_interval_seconds)", "interval"),
                ],
                unit="s",
            )
        )
        .with_panel(
            _series(
                "Reconcile errors",
                "Reconcile errors per second, by exception type.",
                [(f"sum by (kind) (rate(tierra_errors_total[{rate}]))", "{{kind}}")],
                unit="ops",
            )
        )
        .with_panel(
            _series(
                "Member cluster writes",
                "Server-side applies to member clusters per second, by kind, and children "
                "deleted because their owner is gone.",
                [
                    (f"sum by (kind) (rate(tierra_applies_total[{rate}]))", "apply {{kind}}"),
                    (f"sum(rate(tierra_orphans_deleted_total[{rate}]))", "orphans deleted"),
                ],
                unit="ops",
            )
        )
    )
    model: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number  # unique, stable ids: Grafana links and edits panels by them
    return model


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    root = Path(argv[1]) if len(argv) > 1 else Path()
    path = root / DASHBOARD_FILE
    text = render()
    if command == "generate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
        return 0
    if not path.exists() or path.read_text() != text:
        print(
            f"stale: {path} (run `python -m tierra.localfleet.dashboard generate`)", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
