"""Where the latency feedback gives a goal up ("not chased: more replicas did not bring it
closer"), on the held-out services and traces: was it right, and what did it save?

The verdict reads a floor under the p95 from the replicas a test added (``tested_feedback``);
a p95 noisy by a few percent, or a mix that changed during the test, can make it wrong, and a
wrong verdict leaves a goal replicas could meet unchased. For every case of
``benchmarks/held_out.py`` (and of its ``--wide`` draws) it runs Tierra, and for each case
with a verdict:

  * Tierra again with the test switched off (``feedback_tested_step`` infinite: the feedback
    chases the goal up to ``maxReplicas``): the share within the SLO and the cost the
    verdicts changed;
  * every static fleet size: the cheapest whose p95 of that goal over the whole run is within
    it (none: no count meets the goal over the run, as the verdict says; one: replicas can
    meet it at least on average over the run, so look at the verdict's phase).

The summary gives the cases with a verdict, the share and cost the verdicts changed (a share
lost is what a wrong verdict costs) and the verdicts a static fleet contradicts over the run.

Usage: python benchmarks/latency_verdicts.py [--cases 80] [--wide-cases 60] [--jobs 2]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

from held_out import case_context, draw, fleet

from tierra.core.autoscale import DEFAULT_PARAMS, Unhelped
from tierra.lab.simulation import (
    Observation,
    PolicyContext,
    RunResult,
    TierraPolicy,
    build_policies,
    parse_policies,
    run_policy,
    setup_service,
)

UNTESTED = replace(DEFAULT_PARAMS, feedback_tested_step=math.inf)


class Watched(TierraPolicy):
    """Tierra, keeping the first verdict on each goal (whether or not a scale change said it)."""

    def start(self, context: PolicyContext) -> int:
        self.verdicts: dict[str, Unhelped] = {}
        return super().start(context)

    def decide(self, observation: Observation) -> int:
        replicas = super().decide(observation)
        for verdict in self.state.unhelped:
            self.verdicts.setdefault(verdict.goal, verdict)
        return replicas


def goal_p95(run: RunResult, metric: str) -> float:
    return run.ttft_p95_ms if metric == "p95 TTFT" else run.p95_latency_ms


def run_case(case: tuple[int, bool]) -> dict[str, Any]:
    number, wide = case
    tiers, chat = fleet()
    name, seed, service, drawn = draw(number, chat, wide)
    setup = setup_service(service, tiers, drawn["error"])
    context = case_context(setup, name, seed, drawn)
    policy = Watched(setup)
    tierra = run_policy(setup, context, policy, keep_timeline=False)
    row: dict[str, Any] = {"case": number, "wide": wide, "trace": name, "verdicts": []}
    if not policy.verdicts:
        return row
    untested = run_policy(setup, context, TierraPolicy(setup, UNTESTED), keep_timeline=False)
    statics = [
        run_policy(setup, context, p, keep_timeline=False)
        for p in build_policies(parse_policies("static"), setup)
    ]
    slo = service.spec.slo
    for metric, verdict in sorted(policy.verdicts.items()):
        goal = slo.ttft_p95_ms if metric == "p95 TTFT" else slo.latency_p95_ms
        assert goal is not None
        meeting = [s for s in statics if goal_p95(s, metric) <= goal]
        cheapest = min(meeting, key=lambda s: s.cost) if meeting else None
        best = min(goal_p95(s, metric) for s in statics)
        row["verdicts"].append(
            {
                "goal": f"{metric} {goal:,.0f} ms",
                "tested": f"x{verdict.ratio:.2f} on {verdict.ready} ready, "
                f"x{verdict.probe_ratio:.2f} on {verdict.probe_ready}: at least "
                f"x{verdict.floor:.2f}",
                "static_meeting": cheapest.label if cheapest else None,
                "best_static_ratio": best / goal,
            }
        )
    row.update(
        share=tierra.within_slo,
        cost=tierra.cost,
        untested_share=untested.within_slo,
        untested_cost=untested.cost,
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=80)
    parser.add_argument("--wide-cases", type=int, default=60)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    cases = [(c, False) for c in range(args.start, args.start + args.cases)] + [
        (c, True) for c in range(args.start, args.start + args.wide_cases)
    ]
    print(
        f"{'CASE':>9} {'TRACE':13} {'GOAL GIVEN UP':22} {'TESTED (NOW, PROBE: FLOOR)':46} "
        f"{'SHARE':>15} {'COST':>15}  STATIC MEETING THE GOAL OVER THE RUN"
    )
    rows = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(run_case, cases):
            rows.append(row)
            label = f"{'wide' if row['wide'] else 'held'} {row['case']:>3}"
            for verdict in row["verdicts"]:
                static = verdict["static_meeting"] or (
                    f"none (best x{verdict['best_static_ratio']:.2f})"
                )
                print(
                    f"{label:>9} {row['trace']:13} {verdict['goal']:22} {verdict['tested']:46} "
                    f"{row['untested_share']:6.2%}->{row['share']:6.2%} "
                    f"{row['untested_cost']:6.2f}->{row['cost']:6.2f}  {static}",
                    flush=True,
                )
    judged = [r for r in rows if r["verdicts"]]
    print()
    print(
        f"{len(rows)} cases, {len(judged)} with a goal given up (SHARE and COST: with the test "
        "switched off -> Tierra)"
    )
    if judged:
        shares = [100 * (r["share"] - r["untested_share"]) for r in judged]
        saved = sum(r["untested_cost"] - r["cost"] for r in judged)
        spent = sum(r["untested_cost"] for r in judged)
        contradicted = sum(1 for r in judged for v in r["verdicts"] if v["static_meeting"])
        print(
            f"share the verdicts changed: {min(shares):+.2f} to {max(shares):+.2f} points; "
            f"cost: {-saved:+.2f} replica-hours ({-saved / spent:+.1%} of those cases' cost "
            "without them)"
        )
        print(
            f"verdicts a static fleet contradicts over the whole run: {contradicted} of "
            f"{sum(len(r['verdicts']) for r in judged)}"
        )
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
