"""The presets' windows against Prometheus' own query engine (promtool's PromQL unit tests,
from the Prometheus the project already fetches): scraped every 60 s, a 1 m window holds one
sample and every windowed query answers nothing; sized for the scrape interval (four
scrapes), each answers what the counters say."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import yaml

from tierra.core.metrics_presets import queries_for, rate_queries_for
from tierra.localfleet.prometheus import ensure_promtool
from tierra_testing.builders import service

POD = 'tierra_dev_inference_service_namespace="team-a",tierra_dev_inference_service="chat"'
# One request a second of 1,000 prompt and 100 output tokens, 4 running, half of them done
# within 1 s and 95 % within 5 s, for 20 minutes: each counter's increase per second.
COUNTERS = {
    "vllm:request_success_total": 1,
    "vllm:prompt_tokens_total": 1000,
    "vllm:generation_tokens_total": 100,
}
GAUGES = {"vllm:num_requests_running": 4, "vllm:num_requests_waiting": 0}
BUCKETS = {"1": 0.5, "5": 0.95, "+Inf": 1.0}
EXPECTED = {
    "arrival_rate": 1.0,
    "latency_p95_seconds": 5.0,
    "ttft_p95_seconds": 5.0,
    "mean_prompt_tokens": 1000.0,
    "mean_output_tokens": 100.0,
    "prompt_tokens_rate": 1000.0,
    "output_tokens_rate": 100.0,
    "mean_running": 4.0,
    "recent_completion_rate": 1.0,
}
# (between two scrapes, as a query is: one aligned with a scrape would see both ends)
EVAL_TIME = "10m7s"


def windowed(scrape: float) -> dict[str, str]:
    """Every windowed query of the vLLM preset for pods scraped every ``scrape`` seconds."""
    chat = service()
    groups = (queries_for(chat, None, scrape), rate_queries_for(chat, None, scrape))
    found = {
        f.name: getattr(group, f.name)
        for group in groups
        for f in dataclasses.fields(group)
        if isinstance(getattr(group, f.name), str) and "[" in getattr(group, f.name)
    }
    assert set(found) == set(EXPECTED), sorted(found)
    return found


def run(
    promtool: Path, tmp_path: Path, scraped: int, sized_for: float, answers: set[str]
) -> subprocess.CompletedProcess[str]:
    """promtool over the series scraped every ``scraped`` seconds and the queries sized for
    ``sized_for``: the ``answers`` give their value, the others nothing."""
    steps = 1200 // scraped

    def counter(per_second: float) -> str:
        return f"0+{per_second * scraped:g}x{steps}"

    series = [
        {"series": f"{name}{{{POD}}}", "values": counter(rate)} for name, rate in COUNTERS.items()
    ]
    series += [
        {"series": f"{name}{{{POD}}}", "values": f"{value}x{steps}"}
        for name, value in GAUGES.items()
    ]
    for histogram in ("vllm:e2e_request_latency_seconds", "vllm:time_to_first_token_seconds"):
        series += [
            {"series": f'{histogram}_bucket{{{POD},le="{le}"}}', "values": counter(share)}
            for le, share in BUCKETS.items()
        ]
    tests = [
        {
            # (rounded: the extrapolated rates are 1 - 1e-16)
            "expr": f"round({query}, 0.001)",
            "eval_time": EVAL_TIME,
            "exp_samples": [{"labels": "{}", "value": EXPECTED[name]}] if name in answers else [],
        }
        for name, query in windowed(sized_for).items()
    ]
    path = tmp_path / "windows_test.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "rule_files": [],
                "evaluation_interval": "1m",
                "tests": [
                    {"interval": f"{scraped}s", "input_series": series, "promql_expr_test": tests}
                ],
            }
        )
    )
    return subprocess.run(
        [str(promtool), "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def promtool() -> Path:
    return ensure_promtool()


def test_windows_sized_for_a_minute_s_scrapes_answer(promtool: Path, tmp_path: Path) -> None:
    done = run(promtool, tmp_path, scraped=60, sized_for=60.0, answers=set(EXPECTED))
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_minute_windows_over_a_minute_s_scrapes_answer_nothing(
    promtool: Path, tmp_path: Path
) -> None:
    """All but the mean of a gauge (a subquery: a gauge's last sample holds for 5 minutes)."""
    done = run(promtool, tmp_path, scraped=60, sized_for=15.0, answers={"mean_running"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_minute_windows_over_the_15_s_scrapes_they_were_made_for_answer(
    promtool: Path, tmp_path: Path
) -> None:
    done = run(promtool, tmp_path, scraped=15, sized_for=15.0, answers=set(EXPECTED))
    assert done.returncode == 0, done.stdout + done.stderr
