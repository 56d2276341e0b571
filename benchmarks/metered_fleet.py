"""What autoscaling N services costs in steady state: the operator, the apiserver, the writes.

The local fleet (real apiservers, scheduler, kwok nodes) holds ``--services`` InferenceServices
(one small replica each, in the central cluster). An exporter serves vLLM's series for every
one of them, labelled as the operator labels pods (``metrics_pass.FleetSeries``: arrivals of
0.5 to 5.25 requests/s, a few waiting), and a real Prometheus scrapes it. Every service's
profile is fast enough that one replica serves its load and its SLO is loose, so the counts
hold still: what is measured is the autoscaler's steady cost, not a scale-up.

The operator runs twice over the same services, each time measured over ``--seconds`` once
it has settled:

  * unmetered: the operator without a Prometheus; the services hold their minReplicas (the
    baseline: the operator's and the cluster's cost of keeping N services placed);
  * metered: ``TIERRA_PROMETHEUS_URL`` set, a decision for every service every
    ``--metrics-interval`` seconds (one sampling pass), each status's metrics refreshed every
    ``--status-refresh-seconds`` (the operator's default, 30 s).

Per phase: the operator's CPU, the central cluster's (its apiserver and etcd apart), the
writes the apiserver answered per second by resource, and the operator's mean autoscaling
pass. Then what metering adds, per second and per service.

Usage: python benchmarks/metered_fleet.py [--services 1000] [--seconds 90] [--scale 16]
           [--metrics-interval 5] [--scrape-interval 5] [--status-refresh-seconds 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_pass import NAMESPACE, _name  # the exporter's services
from reconcile import (  # the sibling benchmark's helpers
    GROUP,
    PLURAL,
    VERSION,
    PlacedSeen,
    fleet_cpu,
    free_port,
    install,
    proc_stat,
    quiesce,
    request_counters,
)

from tierra.localfleet.binaries import ensure_binaries
from tierra.localfleet.prometheus import PrometheusServer, ScrapeTarget
from tierra.localfleet.runner import Fleet, die_with_parent, spawn_operator, stop_process
from tierra.localfleet.topology import default_fleet
from tierra.settings import AutoscalingSettings
from tierra_testing.builders import service_manifest, variant

REPO = Path(__file__).resolve().parents[1]
WRITES = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def manifest(index: int) -> dict[str, object]:
    """Service ``index`` of the exporter: one replica serves its load (64 at once, 100,000
    prompt and 10,000 output tokens/s), a loose SLO, room for one more replica."""
    return service_manifest(
        _name(index),
        NAMESPACE,
        [variant("cpu", "cpu", concurrency=64, prefill=100000, decode=10000, startup=0)],
        model={"name": "bench"},
        placement={"levels": ["central"]},
        slo={"latencyP95Ms": 60000, "maxQueuePerReplica": 8},
        scaling={"minReplicas": 1, "maxReplicas": 2},
    )


def writes(api: client.ApiClient) -> Counter[str]:
    """The apiserver's write requests so far, by resource (and subresource)."""
    counts: Counter[str] = Counter()
    for labels, value in request_counters(api):
        if labels.get("verb") in WRITES:
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource = f"{resource}/{labels['subresource']}"
            counts[resource] += int(value)
    return counts


def operator_metric(port: int, prefix: str) -> float:
    """The sum of the operator's samples whose line starts with ``prefix``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


class Phase:
    """One phase's figures, measured over ``seconds`` of a settled operator."""

    def __init__(
        self, fleet: Fleet, api: client.ApiClient, pid: int, port: int, seconds: float
    ) -> None:
        def snapshot() -> tuple[float, Counter[str], float, Counter[str], float, float]:
            return (
                time.perf_counter(),
                fleet_cpu(fleet, "central"),
                proc_stat(pid)[0],
                writes(api),
                operator_metric(port, "tierra_autoscaling_pass_duration_seconds_sum"),
                operator_metric(port, "tierra_autoscaling_pass_duration_seconds_count"),
            )

        start = snapshot()
        time.sleep(seconds)
        end = snapshot()
        self.seconds = end[0] - start[0]
        central = end[1] - start[1]
        self.operator = (end[2] - start[2]) / self.seconds
        self.apiserver = central["kube-apiserver"] / self.seconds
        self.etcd = central["etcd"] / self.seconds
        self.central = sum(central.values()) / self.seconds
        self.writes = {k: v / self.seconds for k, v in (end[3] - start[3]).items()}
        passes = end[5] - start[5]
        self.passes = passes
        self.pass_seconds = (end[4] - start[4]) / passes if passes else None

    def line(self, label: str) -> str:
        top = sorted(self.writes.items(), key=lambda kv: -kv[1])[:4]
        passes = (
            f"{self.passes:.0f} passes of {self.pass_seconds:.2f} s on average"
            if self.pass_seconds is not None
            else "no autoscaling pass"
        )
        return (
            f"{label:<11} operator {100 * self.operator:5.1f}% of a core; central cluster "
            f"{100 * self.central:5.1f}% (apiserver {100 * self.apiserver:.1f}%, etcd "
            f"{100 * self.etcd:.1f}%); writes/s "
            + ", ".join(f"{k} {v:.2f}" for k, v in top)
            + f"; {passes}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=90.0, help="each phase's measurement")
    parser.add_argument(
        "--scale", type=int, default=16, help="fleet node multiplier (16: 1,024 cpus centrally)"
    )
    parser.add_argument("--metrics-interval", type=float, default=5.0)
    parser.add_argument("--scrape-interval", type=float, default=5.0)
    parser.add_argument(
        "--status-refresh-seconds", type=float, default=AutoscalingSettings.status_refresh_seconds
    )
    args = parser.parse_args()

    ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="tierra-bench-metered-"))
    fleet = Fleet(workdir / "fleet", default_fleet(args.scale))
    port = free_port()
    exporter = subprocess.Popen(
        [
            *(sys.executable, str(REPO / "benchmarks/metrics_pass.py")),
            *("--serve", str(args.services), "--port", str(port)),
        ],
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # noqa: PLW1509
    )
    prometheus = PrometheusServer(
        workdir / "prometheus", [ScrapeTarget(f"127.0.0.1:{port}")], args.scrape_interval
    )
    operator: subprocess.Popen[bytes] | None = None
    try:
        seconds = fleet.up(tie_to_parent=True, log=lambda _: None)
        print(f"fleet (scale {args.scale}) up in {seconds:.1f}s; logs in {workdir}")
        install(fleet)
        api = config.new_client_from_config(
            config_file=str(fleet.kubeconfig), context="tierra-central"
        )
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        custom = client.CustomObjectsApi(api)
        prometheus.start()
        prometheus.wait_for_scrapes(120.0)

        def run_operator(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
            metrics_port = free_port()
            process = spawn_operator(
                fleet.kubeconfig,
                workdir / "operator.log",
                metrics_port,
                env={"TIERRA_LOG_LEVEL": "WARNING", **env},
            )
            return process, metrics_port

        def settle(until: Callable[[], bool], limit: float) -> float:
            started = time.perf_counter()
            while not until() and time.perf_counter() - started < limit:
                time.sleep(2.0)
            return time.perf_counter() - started

        operator, metrics_port = run_operator({})
        time.sleep(5)
        idle = sum(fleet_cpu(fleet, "central").values())
        time.sleep(10)
        idle_rate = (sum(fleet_cpu(fleet, "central").values()) - idle) / 10
        placed = PlacedSeen(api, NAMESPACE)
        started = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: custom.create_namespaced_custom_object(
                        GROUP, VERSION, NAMESPACE, PLURAL, manifest(i)
                    ),
                    range(args.services),
                )
            )
        settle(lambda: len(placed.placed) >= args.services, 600.0)
        placed.stop()
        print(
            f"{len(placed.placed)} of {args.services} services placed in "
            f"{time.perf_counter() - started:.0f} s"
        )
        if len(placed.placed) < args.services:
            raise SystemExit(f"not every service was placed: is --scale {args.scale} too small?")
        quiesce(fleet, idle_rate, cluster="central")
        unmetered = Phase(fleet, api, operator.pid, metrics_port, args.seconds)
        stop_process(operator)

        operator, metrics_port = run_operator(
            {
                "TIERRA_PROMETHEUS_URL": prometheus.url,
                "TIERRA_METRICS_INTERVAL": str(args.metrics_interval),
                "TIERRA_STATUS_REFRESH_SECONDS": str(args.status_refresh_seconds),
            }
        )
        started = time.perf_counter()

        def all_stepped() -> bool:
            try:
                stepped = operator_metric(metrics_port, "tierra_autoscaling_services ")
            except OSError:
                return False
            return stepped >= args.services

        waited = settle(all_stepped, 600.0)
        # (past the first status refreshes and every service's first scrape-interval query)
        time.sleep(2 * args.status_refresh_seconds)
        print(
            f"metered: every service stepped {waited:.0f} s after the operator started; "
            f"measured from {time.perf_counter() - started:.0f} s"
        )
        metered = Phase(fleet, api, operator.pid, metrics_port, args.seconds)
    finally:
        if operator is not None:
            stop_process(operator)
        prometheus.stop()
        stop_process(exporter)
        fleet.down()

    print(
        f"{args.services} services, one replica each; Prometheus scrapes every "
        f"{args.scrape_interval:g} s, the operator decides every {args.metrics_interval:g} s; "
        f"each phase measured over {args.seconds:g} s"
    )
    print(unmetered.line("unmetered"))
    print(metered.line("metered"))
    added = {
        "operator": metered.operator - unmetered.operator,
        "apiserver": metered.apiserver - unmetered.apiserver,
        "etcd": metered.etcd - unmetered.etcd,
        "central cluster": metered.central - unmetered.central,
    }
    status = metered.writes.get("inferenceservices/status", 0.0) - unmetered.writes.get(
        "inferenceservices/status", 0.0
    )
    every = status * args.status_refresh_seconds / args.services
    print(
        "metering adds: "
        + ", ".join(f"{k} {100 * v:.1f}% of a core" for k, v in added.items())
        + f"; {status:.1f} status writes/s ({every:.2f} per service every "
        f"{args.status_refresh_seconds:g} s)"
    )
    print(
        "per service: "
        + ", ".join(f"{k} {1000 * v / args.services:.2f} ms" for k, v in added.items())
        + " of CPU per second"
    )
    if status > 0:
        server = 1000 * (added["apiserver"] + added["etcd"]) / status
        print(f"per status write: the apiserver and etcd {server:.1f} ms of CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
