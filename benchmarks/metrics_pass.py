"""What sampling a fleet's metrics costs the autoscaler: a query per service, or one per metric.

A real Prometheus scrapes an exporter of vLLM's series for ``--services`` services (one pod
each, labelled as the operator labels pods: 2 gauges, 3 counters and 2 histograms of vLLM's
buckets, about 53 series per service, their counters growing at a rate of its own). The
autoscaler (``tierra.autoscaler.Autoscaler.step``: queries, the recommender, the status
report) then steps every service, ``CONCURRENT_SAMPLES`` at a time as the operator's loop does,
``--passes`` times:

  * per service: each step asks Prometheus for its own service (12 queries a service), as the
    operator did before its loop sampled in passes;
  * in a pass: the loop's ``sampling_pass``, one query per metric for every service.

Per pass (medians over the passes after the first, whose steps also measure each service's
scrape interval once, as the operator does every 10 minutes): the wall time, the CPU time of
the autoscaler (this process) and of Prometheus, and the queries Prometheus answered (its own
``prometheus_http_requests_total``). The two ways' samples are compared for every service at
the end: evaluated a few milliseconds apart, they must agree within 2 % (gauges exactly, unless
a scrape came between).

Usage: python benchmarks/metrics_pass.py [--services 1000] [--passes 5] [--scrape-interval 5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from autoscale import service as step_service
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from tierra.api.inference_service import InferenceService
from tierra.autoscaler import Autoscaler
from tierra.controllers.autoscaling import CONCURRENT_SAMPLES
from tierra.core.autoscale import RunningPlacement, ServiceSample
from tierra.core.metrics_presets import (
    PROM_LABEL_SERVICE,
    PROM_LABEL_SERVICE_NAMESPACE,
    PROM_LABEL_TIER,
)
from tierra.lab.twin_model import E2E_LATENCY_BUCKETS, TTFT_BUCKETS
from tierra.localfleet.prometheus import PrometheusServer, ScrapeTarget
from tierra.localfleet.runner import die_with_parent, free_ports, stop_process

NAMESPACE = "bench"
TIER = "central"


def _name(index: int) -> str:
    return f"svc-{index:04d}"


class FleetSeries:
    """vLLM's series for ``count`` services whose counters grow at rates of their own."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.started = time.time()

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        elapsed = time.time() - self.started
        keys = ["namespace", "pod", PROM_LABEL_SERVICE_NAMESPACE, PROM_LABEL_SERVICE]
        keys.append(PROM_LABEL_TIER)
        waiting = GaugeMetricFamily("vllm:num_requests_waiting", "waiting", labels=keys)
        running = GaugeMetricFamily("vllm:num_requests_running", "running", labels=keys)
        success = CounterMetricFamily("vllm:request_success", "completions", labels=keys)
        prompt = CounterMetricFamily("vllm:prompt_tokens", "prompt tokens", labels=keys)
        output = CounterMetricFamily("vllm:generation_tokens", "output tokens", labels=keys)
        e2e = HistogramMetricFamily("vllm:e2e_request_latency_seconds", "e2e", labels=keys)
        ttft = HistogramMetricFamily("vllm:time_to_first_token_seconds", "ttft", labels=keys)
        for index in range(self.count):
            rate = 0.5 + (index % 20) * 0.25  # (requests/s: 0.5 to 5.25)
            labels = [NAMESPACE, f"{_name(index)}-0", NAMESPACE, _name(index), TIER]
            done = rate * elapsed
            waiting.add_metric(labels, float(index % 3))
            running.add_metric(labels, min(8.0, rate * 0.6))
            success.add_metric(labels, done)
            prompt.add_metric(labels, done * 800.0)
            output.add_metric(labels, done * 150.0)
            for family, bounds, scale in (
                (e2e, E2E_LATENCY_BUCKETS, 2.0),
                (ttft, TTFT_BUCKETS, 0.2),
            ):
                buckets = [
                    (f"{bound:g}", done * (1.0 - math.exp(-bound / scale))) for bound in bounds
                ]
                family.add_metric(labels, [*buckets, ("+Inf", done)], done * scale)
        yield from (waiting, running, success, prompt, output, e2e, ttft)


def serve(count: int, port: int) -> None:
    """The exporter (a child process: its CPU is not the autoscaler's)."""
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(FleetSeries(count))  # type: ignore[arg-type]
    start_http_server(port, addr="127.0.0.1", registry=registry)
    while True:
        time.sleep(3600)


def services(count: int) -> list[InferenceService]:
    """``count`` services as ``autoscale.py`` steps one (H100s, a 2 s p95 goal)."""

    def manifest(index: int) -> dict[str, Any]:
        body = step_service(_name(index), max_replicas=20)
        body["metadata"].update(namespace=NAMESPACE, uid=f"uid-{index}")
        return body

    return [InferenceService.model_validate(manifest(i)) for i in range(count)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def queries_answered(url: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line
    )


async def one_pass(autoscaler: Autoscaler, fleet: list[InferenceService], batched: bool) -> None:
    limit = asyncio.Semaphore(CONCURRENT_SAMPLES)
    placements = [RunningPlacement(TIER, "h100", 2)]

    async def step(service: InferenceService) -> None:
        async with limit:
            key = f"{NAMESPACE}/{service.metadata.name}"
            await autoscaler.step(key, service, placements, 2, {})

    if batched:
        async with autoscaler.sampling_pass():
            await asyncio.gather(*(step(s) for s in fleet))
    else:
        await asyncio.gather(*(step(s) for s in fleet))


async def measure(
    url: str, pid: int, fleet: list[InferenceService], passes: int, batched: bool, idle: float
) -> dict[str, list[float]]:
    """Per pass: wall and CPU seconds, Prometheus' CPU seconds beyond its ``idle`` rate (its
    scraping, per second), the queries it answered."""
    autoscaler = Autoscaler(url, timeout_seconds=30.0)
    figures: dict[str, list[float]] = {"wall": [], "cpu": [], "prometheus": [], "queries": []}
    first: dict[str, list[float]] = {name: [] for name in figures}
    try:
        for index in range(passes):
            wall, cpu = time.perf_counter(), time.process_time()
            server, asked = cpu_seconds(pid), queries_answered(url)
            await one_pass(autoscaler, fleet, batched)
            # (each service's scrape interval is measured in its first step, then every 10 min)
            into = first if index == 0 else figures
            wall = time.perf_counter() - wall
            into["wall"].append(wall)
            into["cpu"].append(time.process_time() - cpu)
            into["prometheus"].append(max(0.0, cpu_seconds(pid) - server - idle * wall))
            into["queries"].append(queries_answered(url) - asked)
    finally:
        await autoscaler.close()
    return {**figures, **{f"first {name}": values for name, values in first.items()}}


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 0.02 * max(abs(a), abs(b)) + 1e-9


async def disagreements(url: str, fleet: list[InferenceService]) -> list[str]:
    """Services whose sample differs between the two ways (each way asked twice, until both
    of its answers agree: a scrape between two queries moves a gauge)."""
    placements = [RunningPlacement(TIER, "h100", 2)]
    autoscaler = Autoscaler(url, timeout_seconds=30.0)

    async def sample(service: InferenceService, batched: bool) -> ServiceSample | None:
        if batched:
            async with autoscaler.sampling_pass():
                found, _ = await autoscaler.observe(service, placements, {}, 5.0)
        else:
            found, _ = await autoscaler.observe(service, placements, {}, 5.0)
        return found

    wrong = []
    try:
        for service in fleet:
            for _ in range(5):
                one, other = await sample(service, False), await sample(service, True)
                if one is None or other is None:
                    continue
                a, b = one.signals, other.signals
                names = [n for n in vars(a) if n not in ("observed_at", "scraped_at")]
                if all(_close(getattr(a, n), getattr(b, n)) for n in names):
                    break
            else:
                wrong.append(service.metadata.name)
    finally:
        await autoscaler.close()
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--scrape-interval", type=float, default=5.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.port)
        return 0
    port = free_ports(1)[0]
    exporter = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(args.services), "--port", str(port)],
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # noqa: PLW1509
    )
    fleet = services(args.services)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="tierra-metrics-pass-") as directory,
            PrometheusServer(
                Path(directory), [ScrapeTarget(f"127.0.0.1:{port}")], args.scrape_interval
            ) as prometheus,
        ):
            assert prometheus.process is not None
            pid = prometheus.process.pid
            prometheus.wait_for_scrapes(60.0)
            time.sleep(2.5 * args.scrape_interval)  # (rates need two samples)
            quiet, started = cpu_seconds(pid), time.perf_counter()
            time.sleep(4 * args.scrape_interval)
            idle = (cpu_seconds(pid) - quiet) / (time.perf_counter() - started)
            results = {}
            for batched in (False, True):
                results[batched] = asyncio.run(
                    measure(prometheus.url, pid, fleet, args.passes, batched, idle)
                )
            spread = fleet[:: max(1, len(fleet) // 20)]
            wrong = asyncio.run(disagreements(prometheus.url, spread))
    finally:
        stop_process(exporter)
    print(
        f"{args.services} services (vLLM preset, one pod each), scraped every "
        f"{args.scrape_interval:g} s; median of {args.passes - 1} passes after the first"
    )
    print(
        f"Prometheus' CPU is what it spent beyond its scraping ({idle:.3f} s per second with no "
        "queries, measured first); /proc counts it in 10 ms ticks"
    )
    heading = ("wall s", "autoscaler CPU s", "Prometheus CPU s", "queries")
    print(f"{'sampling':<19} {heading[0]:>8} {heading[1]:>17} {heading[2]:>17} {heading[3]:>8}")
    medians = {}
    for batched, label in ((False, "per service"), (True, "in a pass")):
        figures = {k: statistics.median(v) for k, v in results[batched].items()}
        medians[batched] = figures
        print(
            f"{label:<19} {figures['wall']:>8.2f} {figures['cpu']:>17.2f} "
            f"{figures['prometheus']:>17.2f} {figures['queries']:>8.0f}"
        )
    for batched, label in ((False, "per service"), (True, "in a pass")):
        figures = medians[batched]
        print(
            f"{label + ', first':<19} {figures['first wall']:>8.2f} {figures['first cpu']:>17.2f} "
            f"{figures['first prometheus']:>17.2f} {figures['first queries']:>8.0f}"
            "  (the first pass: each service's scrape interval measured too)"
        )
    old, new = medians[False], medians[True]
    tick = 0.01
    server = (
        f"{new['prometheus'] / old['prometheus']:.4f}x"
        if new["prometheus"] >= tick and old["prometheus"] > 0
        else f"below {tick / max(old['prometheus'], tick):.4f}x (one tick)"
    )
    print(
        f"in a pass / per service: wall {new['wall'] / old['wall']:.3f}x, autoscaler CPU "
        f"{new['cpu'] / old['cpu']:.3f}x, Prometheus CPU {server}, queries "
        f"{new['queries'] / max(old['queries'], 1):.4f}x"
    )
    per_service_ms = 1000 * new["cpu"] / args.services
    print(
        f"in a pass: {per_service_ms:.2f} ms of autoscaler CPU per service and decision; a "
        f"pass of {args.services} takes {new['wall']:.2f} s of the operator's 5 s interval"
    )
    print(
        f"samples of {len(spread)} services compared between the two ways: "
        f"{len(spread) - len(wrong)} agree within 2 %"
        + (f"; disagree: {', '.join(wrong)}" if wrong else "")
    )
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
