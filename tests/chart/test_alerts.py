"""The chart's alert rules, checked and unit-tested with promtool from the Prometheus the
project already fetches (tierra.localfleet.prometheus), and embedded unchanged in the chart."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tierra.localfleet.chart import Helm
from tierra.localfleet.prometheus import ensure_promtool

from .test_chart import CHART

RULES = CHART / "files" / "alerts.yaml"
RULE_TESTS = Path(__file__).parent / "alerts_test.yaml"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return ensure_promtool()


def _run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_rules(promtool: Path) -> None:
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules(promtool: Path) -> None:
    result = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_firing_test() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    firing = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == firing
    assert {"TierraSLOBurnFast", "TierraTierUnreachable", "TierraServiceUnplaced"} <= alerts
    assert "TierraMigrationStuck" in alerts


def test_the_prometheus_rule_carries_the_tested_file(tmp_path: Path) -> None:
    objects = Helm(tmp_path).template(CHART, {"prometheusRule": {"enabled": True}})
    [rule] = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
