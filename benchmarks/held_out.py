"""Tierra on services and traces it was not tuned on: random draws of the service's start-up
time, SLO, scale-down delay and profile error, on the suite's generators at seeds the suite
does not use, against every static fleet size.

The trace suite (``benchmarks/simulate.py``) fixes two services and seeds 1-3: a recommender
tuned on it can hold there and fail a platform team whose replicas take five minutes to start
or whose SLO is tighter. Each case here draws, from its own seed (so case ``k`` is the same
case in every run):

  * a trace of the suite (``tierra.lab.traces``) at a seed in 4..99;
  * its service (examples/simulate's chat-conv, or the code-assist copy of
    ``benchmarks/simulate.py`` for the prefill-heavy and agentic traces) with
    ``startupSeconds`` in {30, 60, 120, 300}, its latency and TTFT goals times {0.6, 1, 1.5},
    ``scaleDownDelaySeconds`` in {60, 120, 300};
  * a profile error uniform in [-30 %, +30 %] (the replicas run at the truth);
  * when Prometheus scrapes within its 15 s interval, and how long after a scrape the operator
    acts on it, within its 5 s sampling interval (``scrape_timing``): the generators' bursts
    begin on round seconds, and a benchmark that scrapes in step with them sees each one whole.

Per case it prints Tierra's share of requests within the SLO, its CEILING (the share of the
requests that can meet the SLO at all, alone on a ready replica at the replicas' real speed:
the most any policy reaches, below 99 % where the sizes are heavy-tailed), its cost, the
share of its misses among the requests of the first five minutes (before it has seen the
traffic), the cheapest static fleet reaching Tierra's share (and Tierra's cost over it), and
the best share a static fleet reaches at no more than Tierra's cost. A case is *dominated*
when that static fleet is more than 2 points above Tierra: replicas spent at the wrong
moments. The summary gives the share's quantiles, the cases at 99 % or more (and how many
could reach it), those within a point of their ceiling, the dominated ones and the five
worst.

A static fleet is whole from the first second, while Tierra starts sized for the first
minutes' rate and learns the traffic's bursts as they come: an hour holds one such cold start,
a service's life one (its history survives restarts). So each case is also compared from the
time it has *settled* on (``settled_after``: 10 minutes, or two start-ups when longer): Tierra's
share and cost of the requests and replicas from then on against every static fleet's over the
same span (SETTLED; ``SETTLED DOMINATED`` when a static fleet is more than 2 points above it
there too). The whole-hour figures stay the benchmark; the settled ones tell the misses of a
first burst from replicas spent at the wrong moments once the traffic is known.

``--wide`` draws from wider ranges (its own cases, from their own seeds), beyond what the
suite's services look like: ``startupSeconds`` in {15, 30, 120, 600}, goals times {0.4, 0.7,
1, 3}, ``scaleDownDelaySeconds`` in {0, 30, 120, 600}, a profile error in [-50 %, +50 %],
``maxConcurrency`` in {4, 8, 32, 128}, ``maxQueuePerReplica`` in {0, 1, 4, 16},
``minReplicas`` in {0 (with scale to zero), 1, 3} and ``maxReplicas`` in {12, 24, 64}.

``--more`` draws the trace from the five shapes written after the recommender was tuned
(``tierra.lab.traces.MORE``: level switching, cron spikes, heavy-tailed sizes, a launch's
growth, Pareto on/off), on examples/simulate's chat-conv service, its own cases from their
own seeds, the rest as above (with ``--wide`` too).

``--scrapes N`` draws the scrape timing again (stream ``N``), the rest of each case as it is.
The recommender has been tuned on these cases: a change that gains on them by the luck of
when the scrapes fell should show it on another draw, which it will not.

``--warm-minutes N`` sizes the adaptive policies' start on the busiest of the trace's first N
minutes (5 by default, ``WARM_MINUTES``; 1: on the first minute alone, before any burst that
begins later in the first five).

``--burst-memory SECONDS`` sets every case's ``spec.scaling.burstMemorySeconds`` (unset by
default).

Usage: python benchmarks/held_out.py [--cases 40] [--start 0] [--jobs 2] [--json FILE] [--wide]
           [--more] [--scrapes N] [--warm-minutes N] [--burst-memory SECONDS]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from simulate import CODE_TRACES, REPO, code_service, with_burst_memory

from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.lab.simulate import read_fleet
from tierra.lab.simulation import (
    COLD_START_SECONDS,
    SETTLED_SECONDS,
    WARM_MINUTES,
    PolicyContext,
    RunResult,
    ServiceSetup,
    build_policies,
    cheapest_reaching,
    parse_policies,
    policy_context,
    run_policy,
    scrape_timing,
    settled_after,
    setup_service,
)
from tierra.lab.traces import MORE, SUITE, generate

STARTUPS = (30, 60, 120, 300)
SLO_FACTORS = (0.6, 1.0, 1.5)
DELAYS = (60, 120, 300)
DOMINATED_POINTS = 0.02
CEILING_POINTS = 0.01
"""A case within this many points of its ceiling is as good as the requests' sizes allow."""


WIDE_STARTUPS = (15, 30, 120, 600)
WIDE_SLO_FACTORS = (0.4, 0.7, 1.0, 3.0)
WIDE_DELAYS = (0, 30, 120, 600)
WIDE_CONCURRENCY = (4, 8, 32, 128)
WIDE_QUEUE = (0, 1, 4, 16)
WIDE_MIN_REPLICAS = (0, 1, 1, 3)
WIDE_MAX_REPLICAS = (12, 24, 64)


def draw(
    case: int, chat: InferenceService, wide: bool = False, scrapes: int = 0, more: bool = False
) -> tuple[str, int, InferenceService, dict[str, Any]]:
    """(trace name, trace seed, service, what was drawn) of case ``case``; ``scrapes`` > 0:
    its scrape timing from that other draw; ``more``: a trace of ``MORE``."""
    prefix = f"held-out{'-wide' if wide else ''}{'-more' if more else ''}/{case}"
    rng = random.Random(prefix)
    name = rng.choice(sorted(MORE if more else SUITE))
    seed = rng.randint(100, 999) if wide else rng.randint(4, 99)
    startup = rng.choice(WIDE_STARTUPS if wide else STARTUPS)
    factor = rng.choice(WIDE_SLO_FACTORS if wide else SLO_FACTORS)
    delay = rng.choice(WIDE_DELAYS if wide else DELAYS)
    error = round(rng.uniform(-0.5, 0.5) if wide else rng.uniform(-0.3, 0.3), 2)
    body = (code_service(chat) if name in CODE_TRACES else chat).model_dump(
        by_alias=True, exclude_none=True
    )
    for variant in body["spec"]["variants"]:
        variant["startupSeconds"] = startup
    slo = body["spec"]["slo"]
    for goal in ("latencyP95Ms", "ttftP95Ms"):
        if goal in slo:
            slo[goal] = round(slo[goal] * factor)
    scaling = body["spec"]["scaling"]
    scaling["scaleDownDelaySeconds"] = delay
    drawn: dict[str, Any] = {"startup": startup, "slo": factor, "delay": delay, "error": error}
    if wide:
        concurrency, queue = rng.choice(WIDE_CONCURRENCY), rng.choice(WIDE_QUEUE)
        low, high = rng.choice(WIDE_MIN_REPLICAS), rng.choice(WIDE_MAX_REPLICAS)
        for variant in body["spec"]["variants"]:
            variant["capacity"]["maxConcurrency"] = concurrency
        slo["maxQueuePerReplica"] = queue
        scaling.update(minReplicas=low, maxReplicas=high, scaleToZero=low == 0)
        drawn.update(concurrency=concurrency, queue=queue, min=low, max=high)
    drawn.update(scrape_timing(rng if scrapes == 0 else random.Random(f"{prefix}/{scrapes}")))
    return name, seed, InferenceService.model_validate(body), drawn


@functools.cache
def fleet() -> tuple[list[Tier], InferenceService]:
    """examples/simulate's tiers and its chat-conv service (read once per worker process)."""
    tiers, services = read_fleet(REPO / "examples/simulate")
    return list(tiers), next(s for s in services if s.metadata.name == "chat-conv")


def case_context(
    setup: ServiceSetup,
    name: str,
    seed: int,
    drawn: dict[str, Any],
    warm_minutes: int = WARM_MINUTES,
) -> PolicyContext:
    """The policies' context for a drawn case: its trace, scraped as drawn."""
    return replace(
        policy_context(setup, generate(name, seed), warm_minutes=warm_minutes),
        scrape_offset=drawn["scrape_offset"],
        scrape_lag=drawn["scrape_lag"],
    )


def run_case(
    case: int,
    wide: bool = False,
    scrapes: int = 0,
    more: bool = False,
    warm_minutes: int = WARM_MINUTES,
    burst_memory: int | None = None,
) -> dict[str, Any]:
    tiers, chat = fleet()
    name, seed, service, drawn = draw(case, chat, wide, scrapes, more)
    service = with_burst_memory(service, burst_memory)
    setup = setup_service(service, tiers, drawn["error"])
    context = case_context(setup, name, seed, drawn, warm_minutes)
    policy = build_policies(parse_policies("tierra"), setup)[0]
    settled = settled_after(setup)
    tierra = run_policy(setup, context, policy, keep_timeline=False, settled=settled)
    statics = [
        run_policy(setup, context, static, keep_timeline=False, settled=settled)
        for static in build_policies(parse_policies("static"), setup)
    ]
    misses = (1.0 - tierra.within_slo) * tierra.requests
    return {
        "case": case,
        "trace": name,
        "seed": seed,
        **drawn,
        "within_slo": tierra.within_slo,
        "ceiling": context.slo.reachable_share(setup.served_profile, context.trace),
        "cost": tierra.cost,
        "cold_share": tierra.cold_start_misses / misses if misses > 0.5 else 0.0,
        **against_statics(tierra, statics),
        "settled_from": tierra.settled_from,
        "settled": _settled_row(tierra, statics),
        "cancelled": getattr(policy, "cancelled", 0),
    }


def against_statics(tierra: RunResult, statics: list[RunResult]) -> dict[str, Any]:
    """Tierra's run against the static fleets': the cheapest reaching its share (and Tierra's
    cost over it), and the best share at no more than its cost."""
    reaching = cheapest_reaching(statics, "static", tierra.within_slo)
    affordable = [r for r in statics if r.cost <= tierra.cost + 1e-9]
    best = max(affordable, key=lambda r: r.within_slo, default=None)
    return {
        "static_reaching": reaching.label if reaching else None,
        "cost_ratio": tierra.cost / reaching.cost if reaching else None,
        "static_at_cost": best.label if best else None,
        "static_at_cost_share": best.within_slo if best else None,
    }


def _settled_row(tierra: RunResult, statics: list[RunResult]) -> dict[str, Any] | None:
    """The settled span's share and cost, and ``against_statics`` over that span."""
    settled = _settled(tierra)
    if settled is None:
        return None
    spans = [s for s in map(_settled, statics) if s is not None]
    return {
        "within_slo": settled.within_slo,
        "cost": settled.cost,
        **against_statics(settled, spans),
    }


def _settled(run: RunResult) -> RunResult | None:
    """``run`` with its settled span's share and cost as its own (None without one)."""
    if run.settled_within_slo is None or run.settled_cost is None:
        return None
    return replace(run, within_slo=run.settled_within_slo, cost=run.settled_cost)


def line(row: dict[str, Any]) -> str:
    ratio = f"{row['cost_ratio']:.2f}x {row['static_reaching']}" if row["cost_ratio"] else "-"
    at_cost = (
        f"{row['static_at_cost']} {row['static_at_cost_share']:.2%}"
        if row["static_at_cost"]
        else "-"
    )
    settled = row.get("settled")
    flags = [
        label
        for label, hit in (
            ("DOMINATED", is_dominated(row)),
            ("SETTLED DOMINATED", settled is not None and is_dominated(settled)),
        )
        if hit
    ]
    dominated = f" {', '.join(flags)}" if flags else ""
    after = f"{settled['within_slo']:8.2%}" if settled else f"{'-':>8}"
    wide = (
        f" c{row['concurrency']:<3d} q{row['queue']:<2d} {row['min']}-{row['max']:<2d}"
        if "concurrency" in row
        else ""
    )
    return (
        f"{row['case']:4d} {row['trace']:15} {row['seed']:3d} {row['startup']:5d}s "
        f"x{row['slo']:<4g} {row['delay']:4d}s {row['error']:+5.0%}{wide}  "
        f"{row['within_slo']:7.2%} {row['ceiling']:7.2%} {row['cost']:7.2f} "
        f"{row['cold_share']:6.0%} {after}  "
        f"{ratio:18} {at_cost}{dominated}"
    )


def is_dominated(row: dict[str, Any]) -> bool:
    share = row["static_at_cost_share"]
    return share is not None and share > row["within_slo"] + DOMINATED_POINTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write every case's row here")
    parser.add_argument(
        "--wide",
        action="store_true",
        help="services drawn from wider ranges (start-up, goals, delay, profile error, "
        "concurrency, queue, bounds)",
    )
    parser.add_argument(
        "--more",
        action="store_true",
        help="traces of the shapes written after the recommender was tuned (traces.MORE)",
    )
    parser.add_argument(
        "--scrapes",
        type=int,
        default=0,
        help="the scrape timing from another draw (0: the benchmark's own)",
    )
    parser.add_argument(
        "--warm-minutes",
        type=int,
        default=WARM_MINUTES,
        help="the adaptive policies start sized for the busiest of the first N minutes",
    )
    parser.add_argument(
        "--burst-memory",
        type=int,
        help="every case's spec.scaling.burstMemorySeconds (unset: the operator's default)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"{'CASE':>4} {'TRACE':15} {'SEED':>3} {'START':>6} {'SLO':5} {'DELAY':>5} {'ERROR':>5}"
        + (f" {'CONC QUEUE MIN-MAX':18}" if args.wide else "")
        + f"  {'IN SLO':>7} {'CEILING':>7} {'COST':>7} {'COLD':>6} {'SETTLED':>8}  "
        f"{'/CHEAPEST STATIC':18} "
        "BEST STATIC AT ITS COST"
    )
    cases = range(args.start, args.start + args.cases)
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        run = functools.partial(
            run_case,
            wide=args.wide,
            scrapes=args.scrapes,
            more=args.more,
            warm_minutes=max(1, args.warm_minutes),
            burst_memory=args.burst_memory,
        )
        for row in pool.map(run, cases):
            rows.append(row)
            print(line(row), flush=True)
    shares = sorted(r["within_slo"] for r in rows)
    ratios = [r["cost_ratio"] for r in rows if r["cost_ratio"] is not None]
    dominated = [r for r in rows if is_dominated(r)]
    print()
    print(
        f"{len(rows)} cases (start {args.start}), COLD: share of the misses in the first "
        f"{COLD_START_SECONDS / 60:g} min; SETTLED: share within the SLO from "
        f"{SETTLED_SECONDS / 60:g} min on (two start-ups when longer); CEILING: share of "
        "the requests that can meet the SLO at all (alone on a ready replica)"
    )
    if len(shares) >= 2:
        q = statistics.quantiles(shares, n=10, method="inclusive")
        print(
            f"within the SLO: min {shares[0]:.2%}, p10 {q[0]:.2%}, median "
            f"{statistics.median(shares):.2%}, max {shares[-1]:.2%}"
        )
    print(f"at >= 99 %: {sum(s >= 0.99 for s in shares)} of {len(rows)}")
    reachable = [r for r in rows if r["ceiling"] >= 0.99]
    print(
        f"ceiling below 99 % (no policy reaches 99 %) in {len(rows) - len(reachable)} of "
        f"{len(rows)}; of the others, {sum(r['within_slo'] >= 0.99 for r in reachable)} at "
        f">= 99 %; within {CEILING_POINTS * 100:g} point of the ceiling: "
        f"{sum(r['within_slo'] >= r['ceiling'] - CEILING_POINTS for r in rows)} of {len(rows)}"
    )
    if ratios:
        print(
            f"cost / the cheapest static fleet reaching the same share: median "
            f"{statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}"
        )
    print(
        f"dominated (a static fleet at no more than Tierra's cost is > "
        f"{DOMINATED_POINTS:.0%} points above it): {len(dominated)} of {len(rows)}"
    )
    settled = [r["settled"] for r in rows if r["settled"] is not None]
    if settled:
        settled_ratios = [r["cost_ratio"] for r in settled if r["cost_ratio"] is not None]
        print(
            f"settled (the same, over the requests from then on and the replicas' cost from "
            f"then on, against the static fleets' there): {len(settled)} cases, median "
            f"{statistics.median(r['within_slo'] for r in settled):.2%}, at >= 99 %: "
            f"{sum(r['within_slo'] >= 0.99 for r in settled)}, cost / the cheapest static "
            f"fleet reaching the share: median "
            f"{statistics.median(settled_ratios) if settled_ratios else math.nan:.2f}, "
            f"dominated {sum(is_dominated(r) for r in settled)}"
        )
    cancelling = [r for r in rows if r["cancelled"]]
    print(
        f"scale-downs removed replicas still starting in {len(cancelling)} of {len(rows)} "
        f"cases ({sum(r['cancelled'] for r in rows)} replicas; "
        f"{sum(r['delay'] < r['startup'] for r in cancelling)} of those cases have a "
        "scale-down delay shorter than the start-up)"
    )
    print("worst five:")
    for row in sorted(rows, key=lambda r: r["within_slo"])[:5]:
        print(line(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
