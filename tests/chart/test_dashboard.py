"""The Grafana dashboard is generated from code and checked in; it, and the alert rules, query
only series the operator exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from tierra.localfleet import dashboard
from tierra.shell import telemetry
from tierra.status_metrics import service_metrics

from .test_chart import CHART

REPO = Path(__file__).resolve().parents[2]
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")


def exported() -> set[str]:
    """Every series name the operator's /metrics can carry."""
    assert telemetry.RECONCILES is not None  # imported: its metrics are registered
    families = [*REGISTRY.collect(), *service_metrics([])]
    return {f.name + suffix for f in families for suffix in SUFFIXES}


def _queried(text: str) -> set[str]:
    return set(re.findall(r"\btierra_[a-z0-9_]+", text))


def test_dashboard_json_is_in_sync_with_its_code() -> None:
    assert dashboard.main(["check", str(REPO)]) == 0, (
        "run python -m tierra.localfleet.dashboard generate"
    )


def test_dashboard_covers_what_operators_watch() -> None:
    model = json.loads((REPO / dashboard.DASHBOARD_FILE).read_text())
    titles = {p["title"] for p in model["panels"]}
    assert {
        "Replicas per tier and accelerator",
        "Desired vs ready replicas",
        "SLO attainment (1 h)",
        "Scale decisions",
        "Migrations",
        "Reconcile latency",
        "Reconcile errors",
        "Tier reachability",
    } <= titles
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_and_alerts_query_only_exported_series() -> None:
    names = exported()
    queried = _queried((REPO / dashboard.DASHBOARD_FILE).read_text())
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    queried |= _queried(exprs)
    assert queried and queried <= names, sorted(queried - names)
