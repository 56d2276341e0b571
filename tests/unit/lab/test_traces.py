"""The seeded trace suite: reproducible, and each generator has the shape it is named for."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter

import pytest

from tierra.lab.traces import MORE, SUITE, generate, intermittent_sessions

DURATION = 1200.0


def per_window(trace: list, seconds: float) -> list[int]:
    counts = Counter(int(r.arrival // seconds) for r in trace)
    return [counts.get(i, 0) for i in range(int(DURATION // seconds))]


@pytest.mark.parametrize("name", [*SUITE, *MORE])
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


def test_flash_crowds_ramp_up_over_minutes_and_fade() -> None:
    trace = generate("flash-crowds", 1, 3600.0)
    counts = Counter(int(r.arrival // 60.0) for r in trace)
    minutes = [counts.get(i, 0) for i in range(60)]
    assert min(minutes) <= 1.5 * 60  # (about 1 req/s between crowds)
    peak = max(range(60), key=lambda i: minutes[i])
    assert minutes[peak] >= 6 * 60
    # the crowd built up over minutes (a ramp, not a step), and fades over minutes
    assert minutes[peak - 2] < minutes[peak - 1] < minutes[peak]
    assert minutes[peak + 3] > 0.5 * minutes[peak]


def test_on_off_opens_busy_and_goes_nearly_idle() -> None:
    trace = generate("on-off", 1, 3600.0)
    counts = Counter(int(r.arrival // 60.0) for r in trace)
    minutes = [counts.get(i, 0) for i in range(60)]
    assert minutes[0] >= 6 * 60 * 0.8  # (busy from the first minute)
    assert min(minutes) <= 0.8 * 60 * 1.5  # (and nearly idle at times)


def test_the_mix_shifts_every_ten_minutes_at_a_steady_rate() -> None:
    trace = generate("mix-shift", 1, DURATION)
    chat = [r.prompt_tokens for r in trace if r.arrival < 600.0]
    long_context = [r.prompt_tokens for r in trace if 600.0 <= r.arrival < 1200.0]
    assert statistics.median(long_context) > 4 * statistics.median(chat)
    assert 0.8 < len(long_context) / len(chat) < 1.25


def test_the_more_shapes_are_no_trace_of_the_suite() -> None:
    assert not set(MORE) & set(SUITE)
    with pytest.raises(ValueError, match="level-switching"):
        generate("no-such-trace")


def minutes_of(trace: list, duration: float = 3600.0) -> list[int]:
    counts = Counter(int(r.arrival // 60.0) for r in trace)
    return [counts.get(i, 0) for i in range(int(duration // 60))]


@pytest.mark.parametrize("seed", range(5))
def test_levels_switch_between_stays_of_minutes(seed: int) -> None:
    minutes = minutes_of(generate("level-switching", seed))
    # (levels drawn apart: the busiest minute well above the quietest)
    assert max(minutes) > 1.5 * max(1, min(minutes))
    changes = sum(abs(b - a) > 60 for a, b in itertools.pairwise(minutes))
    assert 3 <= changes <= 45


@pytest.mark.parametrize("seed", range(5))
def test_cron_spikes_come_back_on_their_period(seed: int) -> None:
    trace = generate("cron-spikes", seed)
    per_10_s = Counter(int(r.arrival // 10.0) for r in trace)
    busy = sorted(k * 10.0 for k, n in per_10_s.items() if n >= 60)  # (6 req/s or more)
    starts = [t for i, t in enumerate(busy) if i == 0 or t - busy[i - 1] > 60.0]
    assert len(starts) >= 5
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert max(gaps) - min(gaps) <= 60.0 and min(gaps) >= 120.0


def test_heavy_tailed_sizes_reach_ten_times_the_median() -> None:
    trace = generate("heavy-tailed", 1)
    prompts = sorted(r.prompt_tokens for r in trace)
    assert prompts[int(0.99 * len(prompts))] > 10 * statistics.median(prompts)


@pytest.mark.parametrize("seed", range(6))
def test_a_launch_moves_from_one_level_to_the_other(seed: int) -> None:
    minutes = minutes_of(generate("launch", seed))
    first, last = sum(minutes[:5]), sum(minutes[-5:])
    assert max(first, last) > 3 * min(first, last)


def test_pareto_phases_are_mostly_short_and_sometimes_long() -> None:
    lengths = []
    for seed in range(5):
        trace = generate("pareto-on-off", seed)
        busy = [n >= 3 * 5 for n in per_window_of(trace, 5.0)]
        run = 1
        for a, b in itertools.pairwise(busy):
            if a == b:
                run += 1
            else:
                lengths.append(run * 5.0)
                run = 1
    assert statistics.median(lengths) <= 60.0 and max(lengths) >= 300.0


def per_window_of(trace: list, seconds: float, duration: float = 3600.0) -> list[int]:
    counts = Counter(int(r.arrival // seconds) for r in trace)
    return [counts.get(i, 0) for i in range(int(duration // seconds))]


@pytest.mark.parametrize("seed", range(5))
def test_intermittent_sessions_are_minutes_long_with_idle_gaps_between(seed: int) -> None:
    trace = intermittent_sessions(seed)
    assert trace == intermittent_sessions(seed) != intermittent_sessions(seed + 1)
    arrivals = [r.arrival for r in trace]
    assert arrivals == sorted(arrivals) and arrivals[0] > 0 and arrivals[-1] < 4 * 3600.0
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    idle = [gap for gap in gaps if gap >= 120.0]
    assert len(idle) >= 3  # (several sessions, each after minutes of nothing)
    assert max(idle) <= 3600.0 + 60.0
    busy = max(arrivals) - min(arrivals) - sum(idle)
    assert 60.0 * (len(idle) + 1) * 0.5 <= busy <= 600.0 * (len(idle) + 1)


def test_intermittent_sessions_idle_for_the_gaps_asked_for() -> None:
    trace = intermittent_sessions(1, 8 * 3600.0, gaps=(1800.0, 7200.0))
    arrivals = [r.arrival for r in trace]
    idle = [gap for gap in (b - a for a, b in itertools.pairwise(arrivals)) if gap >= 120.0]
    assert arrivals[0] >= 1800.0 and len(idle) >= 2
    assert all(1800.0 <= gap <= 7200.0 + 60.0 for gap in idle), idle
