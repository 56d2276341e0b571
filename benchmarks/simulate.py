"""The what-if simulator on the Azure conv trace: every policy, the baselines swept.

Prints the table of ``tierra simulate`` for examples/simulate on the full trace, then the goal
lines of issue 4, measured, with PASS/MISS:

  1. tierra reaches >= 99 % of requests within the SLO;
  2. tierra's cost <= 1.15 x the oracle's (the clairvoyant floor at full attainment);
  3. tierra is >= 30 % cheaper than the cheapest HPA setting that reaches tierra's attainment
     (and the same line for KEDA, reported alongside).

Writes the plot into --plot (default benchmarks/out/simulate) and prints the wall time.

Usage: python benchmarks/simulate.py [--trace FILE] [--fleet DIR] [--plot DIR] [--json FILE]

Trace: Azure LLM inference trace 2023 (conv), Azure Public Dataset, Patel et al., Splitwise
(ISCA 2024), CC-BY-4.0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tierra.core.simulation import POLICY_NAMES, comparison, parse_policies, simulate
from tierra.simulate import format_table, read_fleet, read_trace, write_plots

REPO = Path(__file__).resolve().parents[1]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trace", type=Path, default=REPO.parent / "shared/traces/azure-llm-2023-conv.csv"
    )
    parser.add_argument("--fleet", type=Path, default=REPO / "examples/simulate")
    parser.add_argument("--plot", type=Path, default=REPO / "benchmarks/out/simulate")
    parser.add_argument("--json", type=Path, help="also write the JSON rows here")
    args = parser.parse_args()

    started, cpu = time.perf_counter(), time.process_time()
    trace = read_trace(args.trace)
    tiers, services = read_fleet(args.fleet)
    results = []
    for service in services:
        results += simulate(service, tiers, trace, parse_policies(",".join(POLICY_NAMES)))
    print(format_table(results))
    print()
    for service in dict.fromkeys(r.service for r in results):
        runs = [r for r in results if r.service == service]
        tierra = next(r for r in runs if r.policy == "tierra")
        oracle = next(r for r in runs if r.policy == "oracle")
        print(f"goals for {service} ({tierra.requests} requests):")
        print(
            f"  {verdict(tierra.within_slo >= 0.99)}  tierra within SLO "
            f"{tierra.within_slo:.2%} (goal >= 99%)"
        )
        ratio = tierra.cost / oracle.cost
        print(
            f"  {verdict(ratio <= 1.15)}  tierra cost / oracle cost = {tierra.cost:.2f} / "
            f"{oracle.cost:.2f} = {ratio:.2f}x (goal <= 1.15x; oracle at "
            f"{oracle.within_slo:.2%} within SLO)"
        )
        for name, best in comparison(runs).items():
            if best is None:
                print(
                    f"  {verdict(name != 'hpa')}  no {name} setting reaches tierra's "
                    f"{tierra.within_slo:.2%}"
                    + (" (goal: >= 30% cheaper than HPA)" if name == "hpa" else "")
                )
                continue
            saving = 1 - tierra.cost / best.cost
            goal = " (goal >= 30%)" if name == "hpa" else " (reported)"
            mark = verdict(saving >= 0.30) if name == "hpa" else "    "
            print(
                f"  {mark}  tierra vs cheapest {name} reaching {tierra.within_slo:.2%}: "
                f"{best.label} at {best.within_slo:.2%} costs {best.cost:.2f}, tierra "
                f"{tierra.cost:.2f}: {saving:.0%} cheaper{goal}"
            )
    for path in write_plots(results, args.plot):
        print(f"wrote {path}")
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    print(
        f"wall time {time.perf_counter() - started:.1f} s (CPU {time.process_time() - cpu:.1f} s) "
        f"for {len(results)} runs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
