"""The load step of ``benchmarks/autoscale.py`` in miniature (``step_response``): the twin's
queue model, Prometheus's scrapes and rates, the recommender every half second. Issue 14's
goals for the step, and the start-up transient, on seeded runs."""

from __future__ import annotations

import statistics

from tierra.lab.step_response import step_response
from tierra_testing.builders import step_benchmark_inputs

BENCHMARK = step_benchmark_inputs(max_replicas=40)
"""benchmarks/autoscale.py's service (500-token prompts, 100-token answers: 0.31 s alone),
with room to show the count it wants (its maxReplicas 12 would clamp it)."""


def test_after_a_step_the_first_decision_asks_for_the_settled_count_at_once() -> None:
    """1 -> 12 req/s, scrapes every 2 s: the settled count is asked for within two scrape
    intervals + 1 s of the step, and the first decision asks for at least 90 % of it (the
    medians of ten seeded runs, as the benchmark takes medians of its trials)."""
    runs = [
        step_response(BENCHMARK, before_rate=1.0, after_rate=12.0, prompt_tokens=500,
                      output_tokens=100, seed=seed)
        for seed in range(10)
    ]  # fmt: skip
    assert all(r.decision_seconds is not None for r in runs)
    assert statistics.median(r.settled_seconds or 0.0 for r in runs) <= 2 * 2.0 + 1.0
    assert statistics.median(r.first_share for r in runs) >= 0.9
    # the count is what 12 req/s and the backlog of a 5 s start-up need, not maxReplicas
    assert statistics.median(r.settled for r in runs) < BENCHMARK.max_replicas / 2


def test_a_steady_request_a_second_asks_for_no_more_than_two_replicas() -> None:
    """The start-up transient: a new service's first samples hold a handful of requests
    (and tokens of the requests in flight): at 1 req/s, 1 to 2 replicas suffice."""
    for seed in range(10):
        run = step_response(
            BENCHMARK, before_rate=1.0, after_rate=1.0, prompt_tokens=500, output_tokens=100,
            seed=seed, settle_seconds=60.0, follow_seconds=1.0,
        )  # fmt: skip
        assert run.peak_before <= 2, seed


def test_the_step_response_is_deterministic_for_a_seed() -> None:
    def once() -> object:
        return step_response(
            BENCHMARK, before_rate=1.0, after_rate=12.0, prompt_tokens=500, output_tokens=100,
            seed=3, follow_seconds=10.0,
        )  # fmt: skip

    assert once() == once()
