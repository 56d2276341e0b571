"""Prometheus: config generation and binary resolution (no server, no apt)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tierra.localfleet import prometheus
from tierra.localfleet.prometheus import PrometheusServer, ScrapeTarget, duration, prometheus_config


def test_duration_strings() -> None:
    assert duration(2) == "2s"
    assert duration(0.5) == "500ms"
    assert duration(90) == "90s"
    with pytest.raises(ValueError):
        duration(0)


def test_config_scrapes_targets_with_honor_labels_and_a_valid_timeout() -> None:
    config = prometheus_config(
        [ScrapeTarget("127.0.0.1:9400"), ScrapeTarget("127.0.0.1:9401", labels={"site": "b"})],
        scrape_interval=2.0,
    )
    assert config["global"]["scrape_interval"] == "2s"
    [job] = config["scrape_configs"]
    assert job["job_name"] == "tierra-twin"
    assert job["honor_labels"] is True
    assert job["metrics_path"] == "/metrics"
    assert (job["scrape_interval"], job["scrape_timeout"]) == ("2s", "2s")  # timeout <= interval
    assert job["static_configs"] == [
        {"targets": ["127.0.0.1:9400"]},
        {"targets": ["127.0.0.1:9401"], "labels": {"site": "b"}},
    ]
    slow = prometheus_config([ScrapeTarget("h:1")], scrape_interval=30.0)
    assert slow["scrape_configs"][0]["scrape_timeout"] == "10s"


def test_one_scrape_config_per_job() -> None:
    config = prometheus_config([ScrapeTarget("a:1", job="x"), ScrapeTarget("b:2", job="y")])
    assert [job["job_name"] for job in config["scrape_configs"]] == ["x", "y"]
    with pytest.raises(ValueError):
        prometheus_config([ScrapeTarget("a:1", metrics_path="/m"), ScrapeTarget("b:2")])


def test_server_writes_its_config_and_keeps_port_and_storage(tmp_path: Path) -> None:
    server = PrometheusServer(tmp_path / "prom", [ScrapeTarget("127.0.0.1:9400")], port=19090)
    path = server.write_config()
    assert yaml.safe_load(path.read_text())["scrape_configs"][0]["honor_labels"] is True
    argv = server.argv(Path("/bin/prometheus"))
    assert "--web.listen-address=127.0.0.1:19090" in argv
    assert f"--storage.tsdb.path={tmp_path / 'prom' / 'data'}" in argv
    assert server.url == "http://127.0.0.1:19090"
    server.stop()  # not running: a no-op


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERRA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    monkeypatch.delenv("TIERRA_BIN_DIR", raising=False)
    monkeypatch.delenv("TIERRA_PROMETHEUS_BIN", raising=False)
    assert prometheus.find_prometheus() is None

    on_path = executable(tmp_path / "path" / "prometheus")
    assert prometheus.find_prometheus() == on_path
    cached = executable(prometheus.prometheus_cache_dir() / "prometheus")
    assert cached == tmp_path / "cache" / "bin" / "prometheus-2.42.0" / "prometheus"
    assert prometheus.find_prometheus() == cached
    prebuilt = executable(tmp_path / "prebuilt" / "prometheus")
    monkeypatch.setenv("TIERRA_BIN_DIR", str(tmp_path / "prebuilt"))
    assert prometheus.find_prometheus() == prebuilt
    override = executable(tmp_path / "custom" / "prom")
    monkeypatch.setenv("TIERRA_PROMETHEUS_BIN", str(override))
    assert prometheus.ensure_prometheus() == override

    monkeypatch.setenv("TIERRA_PROMETHEUS_BIN", str(tmp_path / "missing"))
    with pytest.raises(prometheus.PrometheusError):
        prometheus.ensure_prometheus()


def test_upstream_version() -> None:
    assert prometheus._upstream_version("2.42.0+ds-5+deb12u1") == "2.42.0"
    assert prometheus._upstream_version("1:2.53.1+ds1-1") == "2.53.1"
