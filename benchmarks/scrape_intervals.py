"""Tierra when Prometheus scrapes more or less often than every 15 s: the held-out services
(``held_out.py``'s draws) with the pods scraped every 2, 5, 15, 30 and 60 s.

The recommender was tuned at 15 s scrapes and the presets' 1 m ``rate()`` windows. Many
Prometheus set-ups scrape every 30 s (kube-prometheus' ServiceMonitors) or every minute
(Prometheus' own default, several managed services). Each case runs Tierra:

  * at 15 s with 1 m windows: the baseline, what the recommender was tuned on;
  * at 5 s and at 2 s (1 m windows), where Prometheus sees bursts of a few seconds that a
    15 s scrape averages out: several intervals make one arrival sample of 15 s;
  * at 30 s and at 60 s with the windows sized for the scrape interval
    (``Tier.spec.metrics.scrapeIntervalSeconds``: four scrapes, at least 1 m, and the
    recommender's arrival samples one scrape apart);
  * at 30 s and at 60 s with 1 m windows and the 15 s params, what the operator did before
    the field existed. At 60 s a 1 m window holds fewer than two scrapes and Prometheus
    answers nothing for it (``PolicyContext.rate_window``): the arrival rate, request sizes,
    token rates and p95 latencies are all missing, and only the queue gauges are left.

Decisions come once per scrape (nothing new is seen in between). The scrapes fall at the case's
drawn offset and the operator reads them after its drawn lag (``held_out.py``'s), both at the
same fraction of each interval (``scaled_timing``). It prints each case's share of requests
within the SLO and cost per setting, then per setting the mean and median share, the cases at
99 % or more and the total cost over the baseline's.

``--wide`` draws ``held_out.py --wide``'s services instead (start-ups to 600 s, tight goals,
no scale-down delay, scale to zero, ...).

Usage: python benchmarks/scrape_intervals.py [--cases 40] [--start 0] [--jobs 2] [--wide]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from held_out import draw, fleet  # (benchmarks/)

from tierra.core.autoscale import DEFAULT_PARAMS
from tierra.core.metrics_presets import rate_window_seconds
from tierra.lab.simulation import (
    INTERVAL_SECONDS,
    OPERATOR_SAMPLE_SECONDS,
    TierraPolicy,
    policy_context,
    run_policy,
    setup_service,
)
from tierra.lab.traces import generate

SETTINGS: tuple[tuple[str, float, bool], ...] = (
    ("15s", 15.0, True),
    ("5s", 5.0, True),
    ("2s", 2.0, True),
    ("30s sized", 30.0, True),
    ("30s 1m", 30.0, False),
    ("60s sized", 60.0, True),
    ("60s 1m", 60.0, False),
)
"""(label, scrape interval, windows sized for it); the first is the baseline."""


def scaled_timing(drawn: dict[str, float], scrape: float) -> dict[str, float]:
    """The case's drawn scrape timing (``held_out.draw``, for 15 s scrapes) at another scrape
    interval: the offset at the same fraction of the interval, the operator's lag at the same
    fraction of its sampling interval (or of the scrape interval, when that is shorter)."""
    return {
        "scrape_offset": drawn["scrape_offset"] * scrape / INTERVAL_SECONDS,
        "scrape_lag": drawn["scrape_lag"]
        * min(OPERATOR_SAMPLE_SECONDS, scrape)
        / OPERATOR_SAMPLE_SECONDS,
    }


def run_case(case: int, wide: bool = False) -> dict[str, object]:
    tiers, chat = fleet()
    name, seed, service, drawn = draw(case, chat, wide)
    setup = setup_service(service, tiers, drawn["error"])
    trace = generate(name, seed)
    results: dict[str, tuple[float, float]] = {}
    for label, scrape, sized in SETTINGS:
        window = rate_window_seconds(scrape) if sized else 60.0
        params = DEFAULT_PARAMS.for_scrapes(scrape, window) if sized else DEFAULT_PARAMS
        context = replace(
            policy_context(setup, trace, interval=scrape),
            rate_window=window,
            **scaled_timing(drawn, scrape),
        )
        run = run_policy(setup, context, TierraPolicy(setup, params), keep_timeline=False)
        results[label] = (run.within_slo, run.cost)
    return {"case": case, "trace": name, "startup": drawn["startup"], "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--wide", action="store_true", help="held_out.py's --wide services")
    args = parser.parse_args()
    started = time.perf_counter()
    labels = [label for label, _, _ in SETTINGS]
    print(f"{'CASE':>4} {'TRACE':14} {'START':>5}  " + "  ".join(f"{x:>16}" for x in labels))
    rows = []
    cases = range(args.start, args.start + args.cases)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(functools.partial(run_case, wide=args.wide), cases):
            rows.append(row)
            results = row["results"]
            assert isinstance(results, dict)
            cells = "  ".join(f"{results[x][0]:7.2%} {results[x][1]:8.2f}" for x in labels)
            print(f"{row['case']:4d} {row['trace']:14} {row['startup']:4d}s  {cells}", flush=True)
    base_cost = sum(r["results"][labels[0]][1] for r in rows)  # type: ignore[index]
    print(f"\n{'SETTING':10} {'MEAN':>7} {'MEDIAN':>7} {'>=99%':>6} {'COST':>8} {'/15s':>6}")
    for label in labels:
        shares = [r["results"][label][0] for r in rows]  # type: ignore[index]
        cost = sum(r["results"][label][1] for r in rows)  # type: ignore[index]
        print(
            f"{label:10} {statistics.mean(shares):7.2%} {statistics.median(shares):7.2%} "
            f"{sum(s >= 0.99 for s in shares):6d} {cost:8.1f} {cost / base_cost:6.3f}"
        )
    print(f"{len(rows)} cases in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
