"""The seeded trace suite: reproducible, and each generator has the shape it is named for."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from tierra.lab.traces import SUITE, generate

DURATION = 1200.0


def per_window(trace: list, seconds: float) -> list[int]:
    counts = Counter(int(r.arrival // seconds) for r in trace)
    return [counts.get(i, 0) for i in range(int(DURATION // seconds))]


@pytest.mark.parametrize("name", list(SUITE))
def test_a_seed_gives_the_same_trace_and_another_seed_another(name: str) -> None:
    first = generate(name, 1, DURATION)
    assert first == generate(name, 1, DURATION)
    assert first != generate(name, 2, DURATION)
    assert first == sorted(first, key=lambda r: r.arrival)
    assert all(0 <= r.arrival < DURATION and r.prompt_tokens > 0 for r in first)


def test_prefill_heavy_bursts_go_from_quiet_to_tens_per_second() -> None:
    trace = generate("prefill-heavy", 1, DURATION)
    assert statistics.mean(r.prompt_tokens for r in trace) > 1500
    assert statistics.mean(r.output_tokens for r in trace) < 100
    rates = [n / 5 for n in per_window(trace, 5.0)]
    assert max(rates) >= 15  # bursts of 15-30 req/s
    assert statistics.median(rates) <= 1  # quiet most of the time


def test_decode_heavy_answers_are_long() -> None:
    trace = generate("decode-heavy", 1, DURATION)
    assert statistics.mean(r.output_tokens for r in trace) > 2 * statistics.mean(
        r.prompt_tokens for r in trace
    )


def test_the_diurnal_ramp_rises_from_a_trough_to_a_peak() -> None:
    trace = generate("diurnal", 1, DURATION)
    minutes = per_window(trace, 60.0)
    assert minutes[len(minutes) // 2] > 8 * max(1, minutes[0])


def test_agentic_fanout_brings_dozens_within_a_second() -> None:
    trace = generate("agentic", 1, DURATION)
    assert max(per_window(trace, 1.0)) >= 10
    assert statistics.mean(r.prompt_tokens for r in trace) > 2000
