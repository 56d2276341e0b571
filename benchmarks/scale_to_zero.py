"""Scale to zero on intermittent traffic: what each idle time before zero costs and serves.

``spec.scaling.scaleToZeroIdleSeconds`` says how long a service with ``scaleToZero`` must be
idle before its last replica goes; by default ``scaleDownDelaySeconds``, and at least the
running variant's ``startupSeconds``. The suite's traces never go quiet long enough to measure
that default, so each case here replays ``intermittent_sessions`` (a development service's
sessions of a few minutes, idle gaps of ``--gaps`` minutes, by default 2-60, log-uniform,
over ``--hours``, by default four) on examples/simulate's
chat-conv service with its start-up, scale-down delay and profile error drawn from the case's
own seed (and when its scrapes fall: Prometheus' offset in the 15 s interval, the operator's
lag after each scrape, ``scrape_timing``), under these settings:

  * ``never``: ``minReplicas: 1``, no scale to zero (what it saves against);
  * ``default``: scale to zero, ``scaleToZeroIdleSeconds`` unset;
  * ``at delay``: ``scaleToZeroIdleSeconds`` = ``scaleDownDelaySeconds`` (the rule before
    the default waited a start-up);
  * ``4 start-ups``: ``scaleToZeroIdleSeconds`` = four start-ups (and at least the delay);
  * ``keda``: KEDA's Prometheus scaler with its 300 s ``cooldownPeriod``, at the cheapest
    target of the sweep reaching the default's share (its best share when none does).

Per case and setting it prints the share of requests within the SLO, the cost, and the
service's wake-ups from zero; the summary gives, per setting, the mean share, the cost over
``never`` and the wake-ups, over all cases and by start-up.

Usage: python benchmarks/scale_to_zero.py [--cases 24] [--start 0] [--jobs 2] [--gaps 2,60]
                                          [--hours 4]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

from held_out import fleet

from tierra.api.inference_service import InferenceService
from tierra.lab.simulation import (
    RunResult,
    build_policies,
    cheapest_reaching,
    parse_policies,
    policy_context,
    run_policy,
    scrape_timing,
    setup_service,
)
from tierra.lab.traces import intermittent_sessions

STARTUPS = (15, 30, 60, 120, 300, 600)
DELAYS = (0, 60, 300, 600)
SETTINGS = ("never", "default", "at delay", "4 start-ups", "keda")


def service_for(chat: InferenceService, startup: int, delay: int, setting: str) -> InferenceService:
    """chat-conv at ``startup`` and ``delay``, scaled to zero as ``setting`` says."""
    body = chat.model_dump(by_alias=True, exclude_none=True)
    for variant in body["spec"]["variants"]:
        variant["startupSeconds"] = startup
    scaling = body["spec"]["scaling"]
    scaling["scaleDownDelaySeconds"] = delay
    scaling.pop("scaleToZeroIdleSeconds", None)
    if setting == "never":
        scaling.update(minReplicas=1, scaleToZero=False)
    else:
        scaling.update(minReplicas=0, scaleToZero=True)
    if setting == "at delay":
        scaling["scaleToZeroIdleSeconds"] = delay
    elif setting == "4 start-ups":
        scaling["scaleToZeroIdleSeconds"] = max(delay, 4 * startup)
    return InferenceService.model_validate(body)


def wake_ups(result: RunResult) -> int:
    """How often the count asked for went from zero to more."""
    counts = [p.desired_replicas for p in result.timeline]
    return sum(1 for before, after in itertools.pairwise(counts) if not before and after)


def run_case(case: int, gaps: tuple[float, float], hours: float) -> dict[str, Any]:
    tiers, chat = fleet()
    rng = random.Random(f"scale-to-zero/{case}")
    seed = rng.randint(1, 999)
    startup, delay = rng.choice(STARTUPS), rng.choice(DELAYS)
    error = round(rng.uniform(-0.3, 0.3), 2)
    timing = scrape_timing(rng)
    trace = intermittent_sessions(seed, hours * 3600.0, gaps)
    row: dict[str, Any] = {
        "case": case,
        "seed": seed,
        "startup": startup,
        "delay": delay,
        "error": error,
        **timing,
    }
    default_share = 1.0
    for setting in SETTINGS:
        service = service_for(chat, startup, delay, "default" if setting == "keda" else setting)
        setup = setup_service(service, tiers, error)
        context = replace(policy_context(setup, trace), **timing)
        if setting == "keda":
            runs = [
                run_policy(setup, context, policy)
                for policy in build_policies(parse_policies("keda"), setup)
            ]
            result = cheapest_reaching(runs, "keda", default_share) or max(
                runs, key=lambda r: (r.within_slo, -r.cost)
            )
            row["keda_target"] = result.target
        else:
            result = run_policy(setup, context, build_policies(parse_policies("tierra"), setup)[0])
        if setting == "default":
            default_share = result.within_slo
        row[setting] = (result.within_slo, result.cost, wake_ups(result))
    return row


def line(row: dict[str, Any]) -> str:
    cells = "  ".join(f"{row[k][0]:7.2%} {row[k][1]:6.2f} {row[k][2]:3d}" for k in SETTINGS)
    return (
        f"{row['case']:4d} {row['seed']:4d} {row['startup']:5d}s {row['delay']:4d}s "
        f"{row['error']:+5.0%}  {cells}  (keda target {row['keda_target']:g}; scrapes "
        f"+{row['scrape_offset']:.1f}/{row['scrape_lag']:.1f} s)"
    )


def summary(rows: list[dict[str, Any]], title: str) -> None:
    cost = sum(r["never"][1] for r in rows)
    print(f"{title} ({len(rows)} cases)")
    for setting in SETTINGS:
        shares = [r[setting][0] for r in rows]
        print(
            f"  {setting:>12}: mean {statistics.mean(shares):.2%} within the SLO (worst "
            f"{min(shares):.2%}), cost {sum(r[setting][1] for r in rows) / cost:.3f}x never, "
            f"{sum(r[setting][2] for r in rows)} wake-ups"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--gaps", default="2,60", help="idle gaps between sessions: MIN,MAX minutes (log-uniform)"
    )
    parser.add_argument("--hours", type=float, default=4.0, help="each trace's length")
    args = parser.parse_args()
    low, high = (float(minutes) * 60.0 for minutes in args.gaps.split(","))
    started = time.perf_counter()
    print(
        f"{'CASE':>4} {'SEED':>4} {'START':>6} {'DELAY':>5} {'ERROR':>5}  "
        + "  ".join(f"{s.upper():>18}" for s in SETTINGS)
        + "   (share, cost, wake-ups)"
    )
    rows = []
    cases = range(args.start, args.start + args.cases)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(functools.partial(run_case, gaps=(low, high), hours=args.hours), cases):
            rows.append(row)
            print(line(row), flush=True)
    print()
    summary(rows, "all")
    for startup in STARTUPS:
        group = [r for r in rows if r["startup"] == startup]
        if group:
            summary(group, f"startupSeconds {startup}")
    print(
        f"gaps {args.gaps} min, {args.hours:g} h traces; wall time "
        f"{time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
