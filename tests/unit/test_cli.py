"""``tierra run``'s numeric flags take their defaults from ``$TIERRA_<FLAG>`` when set."""

from __future__ import annotations

import os

import pytest

from tierra.cli import build_parser, settings_from
from tierra.settings import Settings


def test_an_environment_value_is_the_flags_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERRA_PENDING_AFTER", "45")
    monkeypatch.setenv("TIERRA_MAX_MOVES_PER_TIER", "3")
    monkeypatch.setenv("TIERRA_PROMETHEUS_SCRAPE_INTERVAL", "60")
    args = build_parser().parse_args(["run"])
    assert args.pending_after == 45.0
    assert args.prometheus_scrape_interval == 60.0
    assert args.max_moves_per_tier == 3
    assert args.tier_lost_after == 10.0


def test_the_status_refresh_reaches_the_autoscaling_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = settings_from(build_parser().parse_args(["run"]))
    assert default.autoscaling.status_refresh_seconds == 30.0
    monkeypatch.setenv("TIERRA_STATUS_REFRESH_SECONDS", "120")
    settings = settings_from(build_parser().parse_args(["run"]))
    assert settings.autoscaling.status_refresh_seconds == 120.0


def test_the_flags_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flags repeat the settings' defaults (the parser may not import the settings, which
    load the client libraries before ``KUBECONFIG`` is set): they must not drift apart."""
    for variable in [v for v in os.environ if v.startswith("TIERRA_")]:
        monkeypatch.delenv(variable)
    assert settings_from(build_parser().parse_args(["run"])) == Settings()


def test_the_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERRA_METRICS_INTERVAL", "9")
    args = build_parser().parse_args(["run", "--metrics-interval", "2"])
    assert args.metrics_interval == 2.0


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TIERRA_WORKERS", "many"), ("TIERRA_WORKERS", "2.5"), ("TIERRA_TIER_LOST_AFTER", "")],
)
def test_a_malformed_environment_value_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["run"])
    assert exited.value.code == 2
    flag = "--" + variable.removeprefix("TIERRA_").lower().replace("_", "-")
    assert f"argument {flag}: invalid" in capsys.readouterr().err
