"""benchmarks/metrics_pass.py on a real Prometheus, small: a pass samples every service with
one query per metric, and each service's sample is what its own queries give."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "metrics_pass.py"


def test_a_pass_asks_twelve_queries_for_forty_services_and_each_gets_its_own_values() -> None:
    small = ["--services", "40", "--passes", "3", "--scrape-interval", "1"]
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), *small],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    rows = dict(re.findall(r"^(per service|in a pass) +[\d. ]+ (\d+)$", done.stdout, re.M))
    assert rows == {"per service": "480", "in a pass": "12"}, done.stdout
    assert "20 agree within 2 %" in done.stdout, done.stdout
