"""benchmarks/metered_fleet.py on a fleet of its own, small: with every service metered and
its decision holding, the operator writes each status about once per refresh period, not at
every decision."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "metered_fleet.py"


def test_metered_services_write_their_status_once_a_refresh_not_once_a_decision() -> None:
    small = ["--services", "20", "--seconds", "10", "--scale", "1"]
    every = ["--metrics-interval", "2", "--scrape-interval", "2", "--status-refresh-seconds", "10"]
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), *small, *every],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "20 of 20 services placed" in done.stdout, done.stdout
    found = re.search(r"([\d.]+) status writes/s \(([\d.]+) per service every 10 s\)", done.stdout)
    assert found is not None, done.stdout
    # (a decision every 2 s: writing at each would be 5 per service every 10 s)
    assert 0.4 <= float(found[2]) <= 1.3, done.stdout
    metered = next(line for line in done.stdout.splitlines() if line.startswith("metered"))
    assert "no autoscaling pass" not in metered, done.stdout
