"""The what-if simulator on the trace suite: every policy on every trace, the profile exact and
30 % off either way, one table and one plot per trace.

Traces: the shared Azure conv trace and the seeded generators of ``tierra.lab.traces``
(prefill-heavy bursts, decode-heavy, diurnal ramp, agentic fan-out; and flash crowds, on-off
phases and a shifting mix, written later to test the recommender on shapes it was not tuned
on). Services: the conv, decode-heavy, diurnal, flash-crowds, on-off and mix-shift traces run
examples/simulate's ``chat-conv`` (L4, 8 s p95, 2 s TTFT, 120 s start-up); the prefill-heavy
and agentic traces a code-completion copy of it
(``code-assist``: 5 s p95, no TTFT SLO, 60 s start-up, up to 32 replicas), the service of
issue 14.

Profile error ``e``: the spec's prefill and decode throughputs are ``1 + e`` times what the
replicas really do (+30 %: optimistic, -30 %: pessimistic). Tierra and static-peak are told the
spec; the replicas run at the truth; the clairvoyant oracle knows the truth.

Policies: tierra; static:N for N = 1..maxReplicas; HPA and KEDA over 25 per-replica targets,
each with its default 300 s scale-down window and with the service's own
``scaleDownDelaySeconds``; the oracle at full attainment, at 99 % and aimed at tierra's
attainment (the cheapest oracle run reaching it is the like-for-like floor).

Scrapes: every policy decides every 15 s on the latest scrape, taken at an offset into the
interval and read a lag after it, both drawn per trace and seed (``scrape_timing``): the
generators' bursts begin on round seconds, and scraping in step with them would show each one
whole in one scrape.

Goals (issue 14), per trace and profile error, printed PASS / MISS:
  1. tierra >= 99 % of requests within the SLO;
  2. tierra's cost <= 0.7 x the cheapest baseline setting (static, HPA or KEDA, any target or
     window) that reaches tierra's attainment;
and, for reference, the clairvoyant floor at tierra's attainment with tierra's ratio to it. A
MISS line says whether the goal is below that floor, and whether tierra's misses came in the
first five minutes, before it had seen any of the traffic (a policy that learns from what it
observes cannot know the first burst; the oracle and a static setting can). The last table sums
it up per trace, seed and profile error.

Usage: python benchmarks/simulate.py [--traces conv,prefill-heavy,...] [--errors -0.3,0,0.3]
           [--seeds 1,2,3] [--duration 3600] [--plot DIR] [--json FILE] [--cache FILE]
           [--warm-minutes N] [--burst-memory SECONDS]

``--warm-minutes N`` sizes the adaptive policies' start on the busiest of the trace's first N
minutes (5 by default; 1: on the first minute alone, before any burst that begins later).
``--burst-memory SECONDS`` sets the services' ``spec.scaling.burstMemorySeconds`` (how long a
burst seen keeps headroom; unset by default), which only tierra reads.

``--cache`` keeps the baselines' runs (they do not depend on Tierra) in a JSON file keyed by
trace, seed, duration, profile error, scrape timing and warm start, so re-running after a
recommender change only re-runs tierra. Delete the file when the simulator or the baselines change.

Trace: Azure LLM inference trace 2023 (conv), Azure Public Dataset, Patel et al., Splitwise
(ISCA 2024), CC-BY-4.0.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.lab.simulate import TRACE_ATTRIBUTION, read_fleet, read_trace
from tierra.lab.simulation import (
    BASELINES,
    COLD_START_SECONDS,
    WARM_MINUTES,
    PolicySpec,
    RunResult,
    TraceRequest,
    build_policies,
    cheapest_reaching,
    parse_policies,
    policy_context,
    run_policy,
    scrape_timing,
    setup_service,
)
from tierra.lab.traces import SUITE, generate

REPO = Path(__file__).resolve().parents[1]
ATTAINMENT = 0.99
COST_RATIO = 0.7
CODE_TRACES = ("prefill-heavy", "agentic")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def code_service(chat: InferenceService) -> InferenceService:
    """The code-completion service of issue 14: chat-conv's L4 variant with a 5 s p95 SLO, no
    TTFT SLO, a 60 s start-up and room for 32 replicas."""
    body = chat.model_dump(by_alias=True, exclude_none=True)
    body["metadata"]["name"] = "code-assist"
    body["spec"]["variants"] = [v for v in body["spec"]["variants"] if v["name"] == "l4"]
    body["spec"]["variants"][0]["startupSeconds"] = 60
    body["spec"]["slo"] = {"latencyP95Ms": 5000, "maxQueuePerReplica": 4}
    body["spec"]["scaling"]["maxReplicas"] = 32
    return InferenceService.model_validate(body)


def with_burst_memory(service: InferenceService, seconds: int | None) -> InferenceService:
    """``service`` with ``spec.scaling.burstMemorySeconds`` at ``seconds`` (None: as it is)."""
    if seconds is None:
        return service
    body = service.model_dump(by_alias=True, exclude_none=True)
    body["spec"]["scaling"]["burstMemorySeconds"] = seconds
    return InferenceService.model_validate(body)


def from_row(row: dict[str, Any]) -> RunResult:
    return RunResult(**{k: v for k, v in row.items() if k != "label"})


def to_row(run: RunResult) -> dict[str, Any]:
    row = run.to_json()
    for key in ("p95_latency_ms", "p99_latency_ms", "ttft_p95_ms"):
        if row[key] is None:
            row[key] = math.inf
    row["within_slo"] = run.within_slo
    row["cost"] = run.cost
    row["accelerator_hours"] = run.accelerator_hours
    row["mean_replicas"] = run.mean_replicas
    return row


def suite_timing(name: str, seed: int) -> dict[str, float]:
    """The scrapes of a trace of the suite at a seed (``scrape_timing``, drawn from both)."""
    return scrape_timing(random.Random(f"scrape/{name}/{seed}"))


def run_case(
    service: InferenceService,
    tiers: Sequence[Tier],
    trace: Sequence[TraceRequest],
    error: float,
    cache: dict[str, Any],
    key: str,
    timing: dict[str, float] | None = None,
    warm_minutes: int = WARM_MINUTES,
) -> list[RunResult]:
    """Tierra, every baseline setting, the oracle at 99 % and at full attainment, and the
    oracle aimed at tierra's attainment (the like-for-like floor); ``timing``: the scrapes'
    (``scrape_timing``); ``warm_minutes``: ``policy_context``'s."""
    setup = setup_service(service, tiers, error)
    context = replace(policy_context(setup, trace, warm_minutes=warm_minutes), **(timing or {}))
    delay = float(service.spec.scaling.scale_down_delay_seconds)
    tierra = run_policy(setup, context, build_policies(parse_policies("tierra"), setup)[0])
    if key in cache:
        baselines = [from_row(row) for row in cache[key]]
    else:
        specs = parse_policies("static,hpa,keda,oracle:0.99,oracle")
        baselines = [
            run_policy(setup, context, p, keep_timeline=p.name == "oracle")
            for p in build_policies(specs, setup, windows=(None, delay))
        ]
        cache[key] = [to_row(r) for r in baselines]
    results = [tierra, *baselines]
    aim = round(tierra.within_slo, 4)
    if aim < 1.0:
        floor_key = f"{key}/oracle@{aim:g}"
        if floor_key not in cache:
            oracle = build_policies([PolicySpec("oracle", aim)], setup)[0]
            cache[floor_key] = [to_row(run_policy(setup, context, oracle, keep_timeline=False))]
        results += [from_row(row) for row in cache[floor_key]]
    return results


def like_for_like_floor(results: Sequence[RunResult], attainment: float) -> RunResult | None:
    """The cheapest oracle run reaching ``attainment``: what a clairvoyant policy pays for it;
    when none does (tierra at 100 %, an oracle short of it by a request), the one that came
    closest."""
    floor = cheapest_reaching(results, "oracle", attainment)
    oracles = [r for r in results if r.policy == "oracle"]
    if floor is None and oracles:
        floor = max(oracles, key=lambda r: (r.within_slo, -r.cost))
    return floor


def cheapest_baseline(results: Sequence[RunResult], attainment: float) -> RunResult | None:
    found = [cheapest_reaching(results, name, attainment) for name in BASELINES]
    reaching = [r for r in found if r is not None]
    return min(reaching, key=lambda r: (r.cost, r.label)) if reaching else None


def best_of(results: Sequence[RunResult], policy: str) -> RunResult | None:
    runs = [r for r in results if r.policy == policy]
    return max(runs, key=lambda r: (r.within_slo, -r.cost)) if runs else None


def row(error: float, r: RunResult, note: str = "") -> str:
    return (
        f"{error:>+5.0%} {r.label[:18]:18} {r.within_slo:>8.2%} {_ms(r.p95_latency_ms):>8} "
        f"{r.accelerator_hours:>7.2f} {r.cost:>7.2f} {r.mean_replicas:>6.2f} {note}"
    )


def _ms(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else "inf"


def after_cold_start(run: RunResult, trace: Sequence[TraceRequest]) -> float:
    """The share within the SLO of the requests arriving after the first
    ``COLD_START_SECONDS``."""
    later = sum(1 for r in trace if r.arrival >= COLD_START_SECONDS)
    misses = round((1.0 - run.within_slo) * run.requests) - run.cold_start_misses
    return 1.0 - max(0, misses) / later if later else 1.0


def ceiling(
    service: InferenceService, tiers: Sequence[Tier], trace: Sequence[TraceRequest], error: float
) -> float:
    """The share of ``trace``'s requests that can meet the SLO at all, alone on a ready replica
    at the replicas' real speed with the profile ``error`` off: no policy does better."""
    setup = setup_service(service, tiers, error)
    return policy_context(setup, trace).slo.reachable_share(setup.served_profile, trace)


def report(
    cases: dict[float, list[RunResult]],
    trace: Sequence[TraceRequest],
    ceilings: dict[float, float],
) -> tuple[list[str], list[bool], list[str]]:
    """(table and verdict lines, goals met, one summary line per profile error); ``ceilings``:
    per profile error, the share no policy exceeds (``ceiling``)."""
    lines = [
        f"ERROR {'POLICY':18} {'IN SLO':>8} {'P95 MS':>8} {'ACC-H':>7} {'COST':>7} {'MEAN R':>6}"
    ]
    goals: list[bool] = []
    notes: list[str] = []
    summary: list[str] = []
    cold = f"first {COLD_START_SECONDS / 60:g} min"
    for error, results in cases.items():
        tierra = next(r for r in results if r.policy == "tierra")
        floor = like_for_like_floor(results, tierra.within_slo)
        misses = round((1.0 - tierra.within_slo) * tierra.requests)
        later = after_cold_start(tierra, trace)
        lines.append(
            row(
                error,
                tierra,
                f"{tierra.cold_start_misses} of {misses} misses in the {cold}; "
                f"{later:.2%} within the SLO after it",
            )
        )
        for baseline in BASELINES:
            best = cheapest_reaching(results, baseline, tierra.within_slo)
            if best is not None:
                lines.append(row(error, best, f"cheapest {baseline} reaching tierra's attainment"))
            else:
                top = best_of(results, baseline)
                if top is not None:
                    lines.append(
                        row(error, top, f"best {baseline}: none reaches tierra's attainment")
                    )
        oracles = sorted((r for r in results if r.policy == "oracle"), key=lambda r: r.cost)
        for oracle in oracles:
            note = "clairvoyant"
            if oracle is floor:
                note = "clairvoyant floor at tierra's attainment (cheapest oracle reaching it)"
                if oracle.within_slo < tierra.within_slo:
                    note = "clairvoyant floor (no oracle run reaches tierra's attainment)"
            lines.append(row(error, oracle, note))
        base = cheapest_baseline(results, tierra.within_slo)
        ok_slo = tierra.within_slo >= ATTAINMENT
        goals.append(ok_slo)
        line = (
            f"  {verdict(ok_slo)}  {error:+.0%}: tierra within SLO {tierra.within_slo:.2%} "
            f"(goal >= {ATTAINMENT:.0%})"
        )
        if not ok_slo and later >= ATTAINMENT:
            line += (
                f"; {tierra.cold_start_misses} of its {misses} misses came in the {cold}, "
                f"before it had seen the traffic ({later:.2%} after)"
            )
        if ceilings[error] < ATTAINMENT:
            line += (
                f"; out of any policy's reach: {ceilings[error]:.2%} of the requests can meet "
                "the SLO at all (alone on a ready replica)"
            )
        notes.append(line)
        ratio = math.nan
        if base is None:
            goals.append(True)
            notes.append(
                f"  PASS  {error:+.0%}: no static, HPA or KEDA setting reaches tierra's "
                f"{tierra.within_slo:.2%}"
            )
        else:
            ratio = tierra.cost / base.cost
            ok_cost = ratio <= COST_RATIO
            goals.append(ok_cost)
            line = (
                f"  {verdict(ok_cost)}  {error:+.0%}: tierra cost {tierra.cost:.2f} = {ratio:.2f}x "
                f"the cheapest baseline reaching {tierra.within_slo:.2%}, {base.label} "
                f"({base.within_slo:.2%}, {base.cost:.2f}) (goal <= {COST_RATIO:g}x)"
            )
            if (
                not ok_cost
                and floor is not None
                and floor.within_slo >= tierra.within_slo
                and floor.cost > COST_RATIO * base.cost
            ):
                line += (
                    f"; below the floor: the clairvoyant oracle reaching it "
                    f"({floor.within_slo:.2%}) costs {floor.cost / base.cost:.2f}x that baseline"
                )
            notes.append(line)
        to_floor = math.nan
        if floor is not None:
            to_floor = tierra.cost / floor.cost
            notes.append(
                f"        {error:+.0%}: the oracle reaching tierra's attainment "
                f"({floor.label}, {floor.within_slo:.2%}) costs {floor.cost:.2f}; "
                f"tierra / oracle = {to_floor:.2f}x"
            )
        summary.append(
            f"{error:>+5.0%} {tierra.within_slo:>8.2%} {later:>10.2%} {ratio:>9.2f} "
            f"{to_floor:>9.2f} {'' if base is None else base.label}"
        )
    return lines + notes, goals, summary


def write_plot(name: str, title: str, cases: dict[float, list[RunResult]], directory: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    exact = cases.get(0.0) or next(iter(cases.values()))
    first = next(r for r in exact if r.policy == "tierra")
    minutes = [p.time / 60 for p in first.timeline]
    axes[0].plot(minutes, [p.arrivals_per_second for p in first.timeline], color="0.4")
    axes[0].set_ylabel("arrivals (req/s, 15 s)")
    runs: list[tuple[str, RunResult]] = []
    for error, results in cases.items():
        tierra = next(r for r in results if r.policy == "tierra")
        runs.append((f"tierra, profile {error:+.0%}", tierra))
    for r in exact:
        if r.policy == "oracle" and r.target == ATTAINMENT and r.timeline:
            runs.append(("oracle 99%", r))
    for label, run in runs:
        xs = [p.time / 60 for p in run.timeline]
        axes[1].step(
            xs,
            [p.desired_replicas for p in run.timeline],
            where="post",
            label=f"{label} (${run.cost:.2f})",
        )
        axes[2].plot(
            xs,
            [
                math.nan if p.p95_latency_ms is None else p.p95_latency_ms / 1000
                for p in run.timeline
            ],
            label=f"{label} ({run.within_slo:.2%} in SLO)",
        )
    axes[1].set_ylabel("replicas (desired)")
    axes[2].axhline(first.slo_latency_ms / 1000, color="red", linestyle="--", label="SLO")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("p95 latency, last min (s)")
    axes[2].set_xlabel("minutes")
    for ax in axes[1:]:
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    axes[0].set_title(f"trace {title}: {first.service} on {first.placement}", fontsize=10)
    fig.text(0.01, 0.005, TRACE_ATTRIBUTION if name == "conv" else "", fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path = directory / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=",".join(("conv", *SUITE)))
    parser.add_argument("--errors", default="-0.3,0,0.3")
    parser.add_argument(
        "--seeds", default="1", help="seeds of the generated traces, comma-separated"
    )
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument(
        "--conv", type=Path, default=REPO.parent / "shared/traces/azure-llm-2023-conv.csv"
    )
    parser.add_argument("--fleet", type=Path, default=REPO / "examples/simulate")
    parser.add_argument("--plot", type=Path, default=REPO / "benchmarks/out/simulate")
    parser.add_argument("--json", type=Path, help="also write every run's JSON row here")
    parser.add_argument("--cache", type=Path, help="keep the baselines' runs in this file")
    parser.add_argument(
        "--warm-minutes",
        type=int,
        default=WARM_MINUTES,
        help="the adaptive policies start sized for the busiest of the first N minutes",
    )
    parser.add_argument(
        "--burst-memory",
        type=int,
        help="the services' spec.scaling.burstMemorySeconds (unset: the operator's default)",
    )
    args = parser.parse_args()
    warm_minutes = max(1, args.warm_minutes)

    started, cpu = time.perf_counter(), time.process_time()
    tiers, services = read_fleet(args.fleet)
    chat = with_burst_memory(
        next(s for s in services if s.metadata.name == "chat-conv"), args.burst_memory
    )
    code = code_service(chat)
    cache: dict[str, Any] = {}
    if args.cache and args.cache.exists():
        cache = json.loads(args.cache.read_text())
    errors = [float(e) for e in args.errors.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    all_goals: list[bool] = []
    out_of_reach = 0
    rows: list[dict[str, Any]] = []
    summary = [
        f"{'TRACE':14} {'SEED':>4} {'ERROR':>5} {'IN SLO':>8} "
        f"{f'AFTER {COLD_START_SECONDS / 60:g}MIN':>10} "
        f"{'/BASELINE':>9} {'/ORACLE':>9} CHEAPEST BASELINE AT TIERRA'S ATTAINMENT"
    ]
    for name in args.traces.split(","):
        for seed in seeds[:1] if name == "conv" else seeds:
            if name == "conv":
                trace = read_trace(args.conv, args.duration)
            else:
                trace = generate(name, seed, args.duration)
            service = code if name in CODE_TRACES else chat
            timing = suite_timing(name, seed)
            when = f"{timing['scrape_offset']:g}/{timing['scrape_lag']:g}"
            cases: dict[float, list[RunResult]] = {}
            for error in errors:
                key = f"{name}/{seed}/{args.duration:g}/{error:g}/{when}"
                if warm_minutes != WARM_MINUTES:
                    key = f"{key}/warm{warm_minutes}"
                cases[error] = run_case(
                    service, tiers, trace, error, cache, key, timing, warm_minutes
                )
                rows += [
                    {"trace": name, "seed": seed, "error": error, **r.to_json()}
                    for r in cases[error]
                ]
            slo = cases[errors[0]][0]
            label = name if name == "conv" else f"{name} (seed {seed})"
            print(
                f"== trace {label}: {len(trace)} requests; {slo.service} on {slo.placement}; "
                f"SLO p95 <= {slo.slo_latency_ms:,.0f} ms"
                + (f", TTFT <= {slo.slo_ttft_ms:,.0f} ms" if slo.slo_ttft_ms else "")
                + f"; scraped {timing['scrape_offset']:g} s into each 15 s, acted on "
                f"{timing['scrape_lag']:g} s after"
            )
            ceilings = {error: ceiling(service, tiers, trace, error) for error in errors}
            out_of_reach += sum(c < ATTAINMENT for c in ceilings.values())
            lines, goals, lines_summary = report(cases, trace, ceilings)
            all_goals += goals
            summary += [
                f"{name:14} {'-' if name == 'conv' else seed:>4} {x}" for x in lines_summary
            ]
            print("\n".join(lines))
            plot = name if name == "conv" or len(seeds) == 1 else f"{name}-{seed}"
            print(f"wrote {write_plot(plot, label, cases, args.plot)}")
            print(flush=True)
            if args.cache:
                args.cache.write_text(json.dumps(cache))
    print("\n".join(summary))
    print(
        f"goals met: {sum(all_goals)} of {len(all_goals)}; {out_of_reach} attainment goals are "
        f"out of any policy's reach (fewer than {ATTAINMENT:.0%} of the requests can meet the "
        "SLO at all)"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(
        f"wall time {time.perf_counter() - started:.1f} s (CPU {time.process_time() - cpu:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
