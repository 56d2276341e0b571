"""``tierra simulate``: replay a request trace offline against the services of a fleet directory.

The shell around ``tierra.lab.simulation``: reads the trace CSV and the Tier /
InferenceService manifests, runs the policies, prints a table or JSON and writes plots.

    tierra simulate --trace FILE --fleet DIR --policy tierra,hpa,keda,static,oracle:0.99 \
        [--output table|json] [--plot DIR]

Trace CSV: a header with an arrival column (``TIMESTAMP`` as a date-time, or seconds) and the
token columns ``ContextTokens`` / ``GeneratedTokens`` (the Azure LLM inference traces) or
``prompt_tokens`` / ``output_tokens``. Arrivals are taken relative to the first request.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.lab.simulation import (
    DEFAULT_SWEEP,
    INTERVAL_SECONDS,
    OPERATOR_SAMPLE_SECONDS,
    RunResult,
    SimulationError,
    TraceRequest,
    comparison,
    parse_policies,
    simulate,
)

TRACE_ATTRIBUTION = (
    "Trace: Azure LLM inference trace 2023 (conv), Azure Public Dataset, Patel et al., "
    "Splitwise (ISCA 2024), CC-BY-4.0"
)
"""The attribution the Azure trace's licence asks for next to derived figures."""

_ARRIVAL_COLUMNS = ("TIMESTAMP", "timestamp", "arrival", "arrival_seconds", "time")
_PROMPT_COLUMNS = ("ContextTokens", "prompt_tokens", "input_tokens")
_OUTPUT_COLUMNS = ("GeneratedTokens", "output_tokens", "generated_tokens")


# --------------------------------------------------------------------------------------------
# Inputs


def _timestamp_seconds(value: str) -> float:
    """Seconds since the epoch of a date-time (any number of fractional digits) or a number."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    whole, _, fraction = text.partition(".")
    moment = datetime.datetime.fromisoformat(whole)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    digits = "".join(c for c in fraction if c.isdigit())
    return moment.timestamp() + (float(f"0.{digits}") if digits else 0.0)


def _column(header: Sequence[str], names: Iterable[str], what: str) -> str:
    for name in names:
        if name in header:
            return name
    raise ValueError(f"trace has no {what} column (looked for {', '.join(names)})")


def read_trace(path: Path, duration: float | None = None) -> list[TraceRequest]:
    """The trace's requests, arrivals relative to the first, optionally its first ``duration``
    seconds only."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        arrival = _column(header, _ARRIVAL_COLUMNS, "arrival")
        prompt = _column(header, _PROMPT_COLUMNS, "prompt-token")
        output = _column(header, _OUTPUT_COLUMNS, "output-token")
        rows = [
            (_timestamp_seconds(row[arrival]), int(row[prompt]), int(row[output])) for row in reader
        ]
    if not rows:
        return []
    rows.sort(key=lambda r: r[0])
    start = rows[0][0]
    trace = [TraceRequest(t - start, p, o) for t, p, o in rows]
    if duration is not None:
        trace = [r for r in trace if r.arrival < duration]
    return trace


def read_fleet(directory: Path) -> tuple[list[Tier], list[InferenceService]]:
    """The Tiers and InferenceServices in the directory's YAML files (other kinds ignored)."""
    tiers: list[Tier] = []
    services: list[InferenceService] = []
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise ValueError(f"{directory}: no YAML manifests")
    for file in files:
        with file.open(encoding="utf-8") as handle:
            for document in yaml.safe_load_all(handle):
                if not isinstance(document, dict):
                    continue
                kind = document.get("kind")
                if kind == "Tier":
                    tiers.append(Tier.model_validate(document))
                elif kind == "InferenceService":
                    services.append(InferenceService.model_validate(document))
    if not tiers:
        raise ValueError(f"{directory}: no Tier manifests")
    if not services:
        raise ValueError(f"{directory}: no InferenceService manifests")
    return tiers, services


# --------------------------------------------------------------------------------------------
# Outputs


def _ms(value: float) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else "inf"


def format_table(results: Sequence[RunResult]) -> str:
    """A fixed-width table, one row per run, and per service the baselines Tierra is compared
    with."""
    header = (
        f"{'SERVICE':14} {'POLICY':12} {'REQUESTS':>8} {'IN SLO':>8} {'P95 MS':>8} "
        f"{'P99 MS':>8} {'ACC-H':>7} {'COST':>8} {'SCALES':>6} {'MEAN R':>6}"
    )
    lines = [header]
    for r in results:
        lines.append(
            f"{r.service[:14]:14} {r.label[:12]:12} {r.requests:>8} {r.within_slo:>8.2%} "
            f"{_ms(r.p95_latency_ms):>8} {_ms(r.p99_latency_ms):>8} "
            f"{r.accelerator_hours:>7.2f} {r.cost:>8.2f} {r.scale_events:>6} "
            f"{r.mean_replicas:>6.2f}"
        )
    for service in dict.fromkeys(r.service for r in results):
        runs = [r for r in results if r.service == service]
        first = runs[0]
        slo = f"SLO: latency <= {first.slo_latency_ms:,.0f} ms"
        if first.slo_ttft_ms is not None:
            slo += f", TTFT <= {first.slo_ttft_ms:,.0f} ms"
        lines.append(f"{service} on {first.placement}; {slo}")
        tierra = next((r for r in runs if r.policy == "tierra"), None)
        for name, best in comparison(runs).items():
            if tierra is None:
                continue
            if best is None:
                lines.append(f"  {name}: no setting reaches tierra's {tierra.within_slo:.2%}")
            else:
                saving = 1 - tierra.cost / best.cost if best.cost else 0.0
                lines.append(
                    f"  cheapest {name} reaching tierra's {tierra.within_slo:.2%}: {best.label} "
                    f"({best.within_slo:.2%}, cost {best.cost:.2f}); tierra is {saving:.0%} "
                    "cheaper"
                )
    return "\n".join(lines)


def plotted_runs(results: Sequence[RunResult]) -> list[RunResult]:
    """The runs worth drawing: tierra, static-peak, oracle and, per baseline, the setting
    Tierra is compared with (or the one with the best attainment when none reaches it)."""
    chosen = [r for r in results if r.policy in ("tierra", "static-peak", "oracle")]
    picks = comparison(results)
    for name in ("hpa", "keda"):
        runs = [r for r in results if r.policy == name]
        if not runs:
            continue
        best = picks.get(name) or max(runs, key=lambda r: (r.within_slo, -r.cost))
        chosen.append(best)
    return chosen


def _draw(ax: Any, panel: str, runs: Sequence[RunResult]) -> None:
    """One panel: the load (of the first run's timeline), replicas or p95 latency per run."""
    first = runs[0]
    if panel == "load":
        minutes = [p.time / 60 for p in first.timeline]
        ax.plot(minutes, [p.arrivals_per_second for p in first.timeline], color="0.4")
        ax.set_ylabel("arrivals (req/s)")
        return
    for run in runs:
        xs = [p.time / 60 for p in run.timeline]
        if panel == "replicas":
            ys: list[float] = [float(p.desired_replicas) for p in run.timeline]
            ax.step(xs, ys, where="post", label=f"{run.label} (${run.cost:.2f})")
            ax.set_ylabel("replicas (desired)")
        else:
            ys = [
                math.nan if p.p95_latency_ms is None else p.p95_latency_ms / 1000
                for p in run.timeline
            ]
            ax.plot(xs, ys, label=f"{run.label} ({run.within_slo:.1%} in SLO)")
            ax.set_ylabel("p95 latency, last min (s)")
    if panel == "latency":
        ax.axhline(first.slo_latency_ms / 1000, color="red", linestyle="--", label="SLO")
        ax.set_yscale("log")
    ax.legend(fontsize=7, loc="upper left", ncol=2)


def write_plots(results: Sequence[RunResult], directory: Path) -> list[Path]:
    """One PNG per service, ``<service>.png``: load, replicas and p95 latency vs the SLO over
    time, in three panels sharing the time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for service in dict.fromkeys(r.service for r in results):
        runs = plotted_runs([r for r in results if r.service == service])
        if not runs or not runs[0].timeline:
            continue
        first = runs[0]
        panels = ("load", "replicas", "latency")

        title = f"tierra simulate: {service} on {first.placement}"
        fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
        for ax, panel in zip(axes, panels, strict=True):
            _draw(ax, panel, runs)
        axes[-1].set_xlabel("minutes")
        axes[0].set_title(title, fontsize=10)
        fig.text(0.01, 0.005, TRACE_ATTRIBUTION, fontsize=6, color="0.4")
        fig.tight_layout(rect=(0, 0.02, 1, 1))
        path = directory / f"{service}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------------------------
# The command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", required=True, type=Path, help="request trace (CSV)")
    parser.add_argument(
        "--fleet", required=True, type=Path, help="directory of Tier and InferenceService YAML"
    )
    parser.add_argument(
        "--policy",
        default="tierra,hpa,keda,static-peak,oracle",
        help="comma-separated: tierra, hpa, keda, static, static-peak, oracle; hpa:T / keda:T "
        "run one target (per-replica concurrency), plain hpa / keda sweep the targets "
        f"{','.join(f'{t:g}' for t in DEFAULT_SWEEP)}; static:N runs N replicas, plain static "
        "sweeps 1..maxReplicas; oracle:A aims at attainment A (e.g. 0.99) instead of all "
        "requests (default: tierra,hpa,keda,static-peak,oracle)",
    )
    parser.add_argument("--output", choices=("table", "json"), default="table")
    parser.add_argument("--plot", type=Path, help="write PNG plots into this directory")
    parser.add_argument(
        "--duration", type=float, help="replay only the trace's first SECONDS (default: all)"
    )
    parser.add_argument("--service", help="simulate only the InferenceService of this name")
    parser.add_argument(
        "--scrape-lag",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="every policy decides this long after each scrape, 0 to 15 (the operator samples "
        f"every {OPERATOR_SAMPLE_SECONDS:g} s by default: {OPERATOR_SAMPLE_SECONDS / 2:g} s "
        "on average; default: 0, at the scrape)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``tierra simulate`` with parsed arguments."""
    try:
        specs = parse_policies(args.policy)
        trace = read_trace(args.trace, args.duration)
        tiers, services = read_fleet(args.fleet)
    except (OSError, ValueError, KeyError) as error:
        print(f"tierra simulate: {error}", file=sys.stderr)
        return 2
    if args.service:
        services = [s for s in services if s.metadata.name == args.service]
        if not services:
            print(f"tierra simulate: no InferenceService {args.service!r}", file=sys.stderr)
            return 2
    if not trace:
        print("tierra simulate: the trace has no requests", file=sys.stderr)
        return 2
    if not 0.0 <= args.scrape_lag < INTERVAL_SECONDS:
        print(
            f"tierra simulate: --scrape-lag {args.scrape_lag:g} is outside 0 to "
            f"{INTERVAL_SECONDS:g} s (the scrape interval)",
            file=sys.stderr,
        )
        return 2
    results: list[RunResult] = []
    try:
        for service in services:
            results += simulate(
                service,
                tiers,
                trace,
                specs,
                keep_timeline=args.plot is not None,
                scrape_lag=args.scrape_lag,
            )
    except SimulationError as error:
        print(f"tierra simulate: {error}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print(format_table(results))
    if args.plot is not None:
        for path in write_plots(results, args.plot):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tierra simulate", description="replay a request trace against scaling policies"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
