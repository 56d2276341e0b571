"""Reconcile speed and footprint of the operator on the local fleet (real apiservers).

Prints:
  0. the fleet's own idle CPU (node heartbeats, leases, controllers), which every figure pays;
  1. apply -> Deployment exists in the member cluster: p50/p99 over N sequential services
     (goal <= 150 ms / <= 1 s), against a baseline measured in the same run: the same
     Deployment created directly in the member cluster and seen by a watch there.
  2. time to place 1,000 InferenceServices over the three clusters (goal <= 60 s; "placed" is
     the moment a watch sees the last one report Placed=True) and the operator's peak RSS
     (VmHWM; goal <= 250 MB), with the CPU each fleet component used meanwhile and the
     operator's writes to the management apiserver (from the apiserver's own request
     counters): InferenceService status and finalizer patches by response code, and Events;
  3. the operator's idle CPU after they settle;
  4. the fleet's floor: the same member objects created directly, with the operator stopped;
  5. the placements' writes made directly, with the operator stopped: per service, the writes
     the operator makes until it reports Placed (the InferenceService create, server-side
     applies of the Deployment and Service it renders, the finalizer where children are
     remote, the status patch, the Event), 16 at a time like its workers. What an operator
     that spent no CPU of its own, kept no watches and never waited would take here.

Usage: python benchmarks/reconcile.py [--services 1000] [--latency-samples 40] [--scale 12]
                                     [--workers 16] [--profile operator.pstats] [--no-floors]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.controllers.finalizer import FINALIZER
from tierra.core.placement import PlannedPlacement
from tierra.core.render import owner_of, render
from tierra.demo import Demo
from tierra.localfleet.binaries import ensure_binaries
from tierra.localfleet.runner import Fleet, die_with_parent, spawn_operator, stop_process
from tierra.localfleet.topology import default_fleet
from tierra_testing.builders import deployment, service_manifest, variant

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "tierra.dev", "v1alpha1", "inferenceservices"
NAMESPACE_OPERATOR = "tierra-system"


BENCH_VARIANT = variant("cpu", "cpu", concurrency=4, prefill=500, decode=50, startup=0)


def service(name: str, namespace: str, levels: list[str]) -> dict[str, Any]:
    """The benchmarks' service: one small cpu replica, in the tiers of ``levels``."""
    return service_manifest(
        name,
        namespace,
        [BENCH_VARIANT],
        model={"name": "bench"},
        placement={"levels": levels},
        slo={"latencyP95Ms": 5000},
    )


def install(fleet: Fleet) -> None:
    """kubectl, the CRDs, the operator's namespace and Secrets, and the example tiers."""
    setup = Demo(REPO, fleet)
    setup.install()
    setup.kubectl("apply", "-f", str(REPO / "examples/fleet/tiers.yaml"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class DeploymentSeen:
    """Watches Deployments in one cluster and records when each name first appears."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._api = api
        self._namespace = namespace
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.5)

    def _run(self) -> None:
        apps = client.AppsV1Api(self._api)
        while not self._stop.is_set():
            stream = watch.Watch()
            for event in stream.stream(
                apps.list_namespaced_deployment, self._namespace, timeout_seconds=5
            ):
                name = event["object"].metadata.name
                self.seen.setdefault(name, time.perf_counter())
                if self._stop.is_set():
                    stream.stop()

    def wait(self, name: str, timeout: float = 20.0) -> float | None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if name in self.seen:
                return self.seen[name]
            time.sleep(0.002)
        return None

    def stop(self) -> None:
        self._stop.set()


class PlacedSeen:
    """Watches InferenceServices in one namespace and records when each first reports
    ``Placed=True`` (a watch rather than polling lists of 1,000 objects, which would load the
    apiserver and this machine's CPUs under test)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.placed: dict[str, float] = {}
        self._stop = threading.Event()
        self._custom = client.CustomObjectsApi(api)
        self._namespace = namespace
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        time.sleep(0.5)

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self._namespace,
                    PLURAL,
                    resource_version=version,
                    timeout_seconds=5,
                ):
                    body = event["object"]
                    version = body["metadata"]["resourceVersion"]
                    conditions = (body.get("status") or {}).get("conditions") or []
                    if any(
                        c.get("type") == "Placed" and c.get("status") == "True" for c in conditions
                    ):
                        self.placed.setdefault(body["metadata"]["name"], time.perf_counter())
                    if self._stop.is_set():
                        stream.stop()
            except client.ApiException:
                version = ""  # expired: list again

    def count(self, prefix: str) -> int:
        return sum(1 for name in list(self.placed) if name.startswith(prefix))

    def stop(self) -> None:
        self._stop.set()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def reconciles(port: int) -> float:
    """The operator's tierra_reconcile_total, summed over results."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tierra_reconcile_total{")
    )


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used, peak RSS bytes) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return cpu, peak


def fleet_cpu(fleet: Fleet, cluster: str | None = None) -> Counter[str]:
    """CPU seconds used so far by each kind of fleet component, summed over the clusters (or
    of one ``cluster``)."""
    used: Counter[str] = Counter()
    for name, state in fleet.load_state().items():
        if cluster is not None and name != cluster:
            continue
        for component, pid in state.pids.items():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                used[component] += proc_stat(pid)[0]
    return used


def by_component(used: Counter[str]) -> str:
    """``used`` (CPU seconds per fleet component), busiest first."""
    return ", ".join(f"{k} {v:.1f}" for k, v in used.most_common())


def quiesce(
    fleet: Fleet,
    idle_rate: float,
    limit: float = 180.0,
    window: float = 5.0,
    cluster: str | None = None,
) -> float:
    """Wait until the fleet's (or one ``cluster``'s) CPU use is back near its idle rate (the
    previous phase's cascade of ReplicaSets, Pods and status updates has run out): seconds
    waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        before = sum(fleet_cpu(fleet, cluster).values())
        time.sleep(window)
        if (sum(fleet_cpu(fleet, cluster).values()) - before) / window <= 1.5 * idle_rate + 0.05:
            break
    return time.perf_counter() - started


def cpu_bound(cpu_seconds: float, idle_rate: float) -> float:
    """Least wall time for ``cpu_seconds`` of work on this machine's cores, next to the fleet's
    idle background (``idle_rate`` cores)."""
    return cpu_seconds / ((os.cpu_count() or 1) - idle_rate)


def request_counters(api: client.ApiClient) -> Iterator[tuple[dict[str, str], float]]:
    """The apiserver's ``apiserver_request_total`` samples: (labels, count)."""
    response = api.call_api(
        "/metrics",
        "GET",
        auth_settings=["BearerToken"],
        response_type="str",
        _preload_content=False,
        _return_http_data_only=True,
    )
    for line in response.data.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(
            part.split("=", 1) for part in labels_text.replace('"', "").split(",") if "=" in part
        )
        yield labels, float(value)


def apiserver_requests(api: client.ApiClient) -> Counter[tuple[str, str, str, str]]:
    """The apiserver's request counters for InferenceServices:
    (verb, subresource, code) -> count."""
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for labels, value in request_counters(api):
        if labels.get("resource") == "inferenceservices":
            key = (
                labels.get("verb", ""),
                labels.get("resource", ""),
                labels.get("subresource", ""),
                labels.get("code", ""),
            )
            counts[key] += int(value)
    return counts


def tierra_events(api: client.ApiClient, namespace: str, prefix: str) -> Counter[str]:
    """Events the operator posted about services whose name starts with ``prefix``."""
    items = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return Counter(
        e.reason
        for e in items
        if e.reporting_component == "tierra" and e.involved_object.name.startswith(prefix)
    )


def print_writes(
    label: str,
    before: Counter[tuple[str, str, str, str]],
    after: Counter[tuple[str, str, str, str]],
    events: Counter[str],
) -> None:
    delta = after - before
    status = {k[3]: v for k, v in delta.items() if k[0] == "PATCH" and k[2] == "status"}
    finalizers = {k[3]: v for k, v in delta.items() if k[0] == "PATCH" and k[2] == ""}
    print(
        f"  {label}: status patches {sum(status.values())} {dict(sorted(status.items()))}; "
        f"finalizer patches {sum(finalizers.values())} {dict(sorted(finalizers.items()))}; "
        f"events {sum(events.values())} {dict(sorted(events.items()))}"
    )


def raw_patch(
    api: client.ApiClient,
    path: str,
    body: Any,
    content_type: str,
    query: tuple[tuple[str, str], ...] = (),
) -> None:
    """PATCH with an explicit content type (this client's typed methods pick their own)."""
    api.call_api(
        path,
        "PATCH",
        query_params=list(query),
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
        _preload_content=False,
    )


def server_side_apply(api: client.ApiClient, manifest: dict[str, Any]) -> None:
    """Server-side apply of ``manifest`` by field manager ``tierra``, as the operator does."""
    meta = manifest["metadata"]
    group = "/api/v1" if manifest["apiVersion"] == "v1" else f"/apis/{manifest['apiVersion']}"
    plural = {"Deployment": "deployments", "Service": "services"}[manifest["kind"]]
    raw_patch(
        api,
        f"{group}/namespaces/{meta['namespace']}/{plural}/{meta['name']}",
        manifest,
        "application/apply-patch+yaml",
        (("fieldManager", "tierra"), ("force", "true")),
    )


def writes_only(
    fleet: Fleet, clients: dict[str, client.ApiClient], services: int, idle_rate: float
) -> tuple[float, float]:
    """Section 5: for each bulk service ``svc-N``, an ``ideal-N`` with the same spec and the
    placement the operator chose for ``svc-N``, written the way the operator writes it."""
    central = clients["central"]
    custom = client.CustomObjectsApi(central)
    tiers = {
        t["metadata"]["name"]: Tier.model_validate(t)
        for t in custom.list_cluster_custom_object(GROUP, VERSION, "tiers")["items"]
    }
    placed = {
        s["metadata"]["name"]: s
        for s in custom.list_namespaced_custom_object(GROUP, VERSION, "bench", PLURAL)["items"]
    }
    for api in clients.values():
        api.configuration.connection_pool_maxsize = 32  # 16 threads, no connection churn
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "ideal"}})

    finalized: list[str] = []

    def place_directly(index: int) -> None:
        template = placed[f"svc-{index:04d}"]
        name = f"ideal-{index:04d}"
        body = service(name, "ideal", template["spec"]["placement"]["levels"])
        created = custom.create_namespaced_custom_object(GROUP, VERSION, "ideal", PLURAL, body)
        typed = InferenceService.model_validate(created)
        remote = False
        for chosen in template["status"]["placements"]:
            tier = tiers[chosen["tier"]]
            same_cluster = tier.spec.cluster.kubeconfig_secret_ref is None
            remote = remote or not same_cluster
            api = clients["central" if same_cluster else chosen["tier"]]
            plan = PlannedPlacement(
                chosen["tier"], chosen["pool"], chosen["variant"], chosen["replicas"], ""
            )
            for manifest in render(typed, plan, tier, owner_of(typed), same_cluster):
                if manifest["kind"] == "Deployment":
                    for container in manifest["spec"]["template"]["spec"]["containers"]:
                        container["resources"]["requests"]["cpu"] = "1m"  # as the floor's
                server_side_apply(api, manifest)
        if remote:
            finalized.append(name)
            raw_patch(
                central,
                f"/apis/{GROUP}/{VERSION}/namespaces/ideal/{PLURAL}/{name}",
                [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}],
                "application/json-patch+json",
            )
        status = {k: v for k, v in template["status"].items() if k != "autoscaling"}
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, "ideal", PLURAL, name, {"status": status}
        )
        client.CoreV1Api(central).create_namespaced_event(
            "ideal",
            {
                "metadata": {"name": f"{name}.placed", "namespace": "ideal"},
                "involvedObject": {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "InferenceService",
                    "name": name,
                    "namespace": "ideal",
                    "uid": created["metadata"]["uid"],
                },
                "reason": "Placed",
                "message": status["conditions"][0]["message"],
                "type": "Normal",
                "source": {"component": "tierra"},
                "reportingComponent": "tierra",
                "count": 1,
            },
        )

    own_before = proc_stat(os.getpid())[0]
    fleet_before = fleet_cpu(fleet)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(place_directly, range(services)))
    took = time.perf_counter() - started
    print(
        f"placements' writes made directly (no operator): {services} services in {took:.1f}s "
        f"(16 at a time: create, apply Deployment + Service, finalizer where remote "
        f"({len(finalized)}), status, Event)"
    )
    fleet_used = fleet_cpu(fleet) - fleet_before
    print(
        f"  fleet CPU meanwhile (s, all clusters): {by_component(fleet_used)}; "
        f"this benchmark's client {proc_stat(os.getpid())[0] - own_before:.1f}"
    )
    fleet_work = sum(fleet_used.values()) - idle_rate * took
    print(
        f"  fleet work beyond its idle background {fleet_work:.0f} CPU-s: even with a client "
        f"that cost no CPU, {os.cpu_count()} cores need at least "
        f"{cpu_bound(fleet_work, idle_rate):.1f}s for these writes (goal for the operator: 60 s)"
    )
    return took, cpu_bound(fleet_work, idle_rate)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--latency-samples", type=int, default=40)
    parser.add_argument("--scale", type=int, default=12, help="fleet node multiplier")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument(
        "--no-floors", action="store_true", help="stop after the operator's figures (A/B runs)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="the operator's TIERRA_WORKERS (default: its own)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the operator under cProfile and write its stats here (slows it down)",
    )
    args = parser.parse_args()

    ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="tierra-bench-"))
    fleet = Fleet(workdir / "fleet", default_fleet(args.scale))
    operator: subprocess.Popen[bytes] | None = None
    try:
        seconds = fleet.up(tie_to_parent=True, log=lambda _: None)
        print(f"fleet (scale {args.scale}) up in {seconds:.1f}s; operator log in {workdir}")
        install(fleet)
        kc = str(fleet.kubeconfig)
        clients = {
            c: config.new_client_from_config(config_file=kc, context=f"tierra-{c}")
            for c in ("central", "regional")
        }
        for api in clients.values():
            client.CoreV1Api(api).create_namespace({"metadata": {"name": "bench"}})
        custom = client.CustomObjectsApi(clients["central"])

        metrics_port = free_port()
        log = workdir / "operator.log"
        env = {"TIERRA_LOG_LEVEL": "WARNING"}
        if args.workers is not None:
            env["TIERRA_WORKERS"] = str(args.workers)
        if args.profile is None:
            operator = spawn_operator(fleet.kubeconfig, log, metrics_port, env=env)
        else:
            with log.open("ab") as sink:
                operator = subprocess.Popen(
                    [
                        *(sys.executable, "-m", "cProfile", "-o", str(args.profile.resolve())),
                        *("-m", "tierra.cli", "run", "--kubeconfig", str(fleet.kubeconfig)),
                        *("--context", "tierra-central", "--namespace", NAMESPACE_OPERATOR),
                        *("--metrics-port", str(metrics_port)),
                    ],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                    preexec_fn=die_with_parent,  # noqa: PLW1509 - see die_with_parent
                )
        time.sleep(5)  # operator start-up: login, informers, tier probes
        # The fleet's own background work (node heartbeats, leases, controllers' resyncs),
        # which every figure below pays for on the same CPUs.
        fleet_before, operator_before = fleet_cpu(fleet), proc_stat(operator.pid)[0]
        time.sleep(10)
        idle_fleet = fleet_cpu(fleet) - fleet_before
        idle_rate = sum(idle_fleet.values()) / 10  # cores
        print(
            f"fleet idle CPU: {100 * sum(idle_fleet.values()) / 10:.0f}% of one core "
            f"(CPU s over 10 s: {by_component(idle_fleet)}); "
            f"operator {100 * (proc_stat(operator.pid)[0] - operator_before) / 10:.0f}%"
        )

        # 1. Latency: baseline (direct create in the member) vs through the operator.
        watcher = DeploymentSeen(clients["regional"], "bench")
        apps = client.AppsV1Api(clients["regional"])
        baseline, through = [], []
        for index in range(args.latency_samples):
            name = f"direct-{index}"
            body = deployment(name, 0, container="c", image="x")
            started = time.perf_counter()
            apps.create_namespaced_deployment("bench", body)
            seen = watcher.wait(name)
            if seen is not None:
                baseline.append(seen - started)
        for index in range(args.latency_samples):
            name = f"lat-{index}"
            started = time.perf_counter()
            custom.create_namespaced_custom_object(
                GROUP, VERSION, "bench", PLURAL, service(name, "bench", ["regional"])
            )
            seen = watcher.wait(f"{name}-cpu-regional")
            if seen is not None:
                through.append(seen - started)
        watcher.stop()
        missing = args.latency_samples - len(through)
        p50, p99 = percentile(through, 0.5) * 1000, percentile(through, 0.99) * 1000
        b50 = statistics.median(baseline) * 1000
        print(
            f"apply -> Deployment in member cluster: p50 {p50:.0f} ms, p99 {p99:.0f} ms "
            f"(n={len(through)}, missing {missing}; goal <= 150 ms / <= 1000 ms)"
        )
        print(
            f"  baseline, direct create seen by a watch: p50 {b50:.1f} ms; "
            f"operator p50 / baseline p50 = {p50 / b50:.1f}x"
        )

        # 2. Bulk: N services over the fleet.
        names = [f"svc-{index:04d}" for index in range(args.services)]
        cpu_before, _ = proc_stat(operator.pid)
        own_before = proc_stat(os.getpid())[0]
        fleet_before = fleet_cpu(fleet)
        load_before = os.getloadavg()[0]
        requests_before = apiserver_requests(clients["central"])
        reconciles_before = reconciles(metrics_port)
        placed_seen = PlacedSeen(clients["central"], "bench")
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(
                pool.map(
                    lambda n: custom.create_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        "bench",
                        PLURAL,
                        service(n, "bench", ["central", "regional"]),
                    ),
                    names,
                )
            )
        created = time.perf_counter() - started
        while placed_seen.count("svc-") < args.services and time.perf_counter() - started < 300:
            time.sleep(0.2)
        placed = placed_seen.count("svc-")
        placed_seen.stop()
        elapsed = (
            max(t for n, t in placed_seen.placed.items() if n.startswith("svc-")) - started
            if placed >= args.services
            else time.perf_counter() - started
        )
        cpu_after, peak = proc_stat(operator.pid)
        print(
            f"{placed}/{args.services} InferenceServices placed in {elapsed:.1f}s "
            f"(creates took {created:.1f}s; goal <= 60 s)"
        )
        print(
            f"  operator CPU meanwhile: {cpu_after - cpu_before:.1f}s "
            f"({100 * (cpu_after - cpu_before) / elapsed:.0f}% of one core); machine load "
            f"average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        fleet_used = fleet_cpu(fleet) - fleet_before
        own_used = proc_stat(os.getpid())[0] - own_before
        print(
            f"  fleet CPU meanwhile (s, all clusters): {by_component(fleet_used)}; "
            f"this benchmark's client {own_used:.1f}"
        )
        fleet_work = sum(fleet_used.values()) - idle_rate * elapsed
        print(
            f"  fleet work beyond its idle background {fleet_work:.0f} CPU-s; with the "
            f"operator's and this client's CPU, {os.cpu_count()} cores need at least "
            f"{cpu_bound(fleet_work + cpu_after - cpu_before + own_used, idle_rate):.1f}s"
        )
        apiserver_peak = sum(
            proc_stat(state.pids["kube-apiserver"])[1] for state in fleet.load_state().values()
        )
        print(f"  the three apiservers' peak RSS, summed: {apiserver_peak / 2**20:.0f} MB")
        print(f"operator peak RSS (VmHWM): {peak / 2**20:.0f} MB (goal <= 250 MB)")
        print(
            f"operator writes to the management apiserver while placing "
            f"({reconciles(metrics_port) - reconciles_before:.0f} reconciles):"
        )
        print_writes(
            "until placed",
            requests_before,
            apiserver_requests(clients["central"]),
            tierra_events(clients["central"], "bench", "svc-"),
        )

        # 3. Idle CPU once settled: no reconcile for 10 s (pods Ready, statuses written).
        settle_started = time.perf_counter()
        last, quiet_since = reconciles(metrics_port), time.perf_counter()
        while time.perf_counter() - quiet_since < 10 and time.perf_counter() - settle_started < 600:
            time.sleep(2)
            now_count = reconciles(metrics_port)
            if now_count != last:
                last, quiet_since = now_count, time.perf_counter()
        print(
            f"settled (no reconcile for 10 s) {time.perf_counter() - started:.0f}s after the "
            f"first create; {last:.0f} reconciles in all "
            f"({last - reconciles_before:.0f} since the bulk run started)"
        )
        print_writes(
            "until settled",
            requests_before,
            apiserver_requests(clients["central"]),
            tierra_events(clients["central"], "bench", "svc-"),
        )
        cpu0, _ = proc_stat(operator.pid)
        count0 = reconciles(metrics_port)
        time.sleep(args.idle_seconds)
        cpu1, peak = proc_stat(operator.pid)
        count1 = reconciles(metrics_port)
        print(
            f"operator idle CPU over {args.idle_seconds:.0f}s with {placed + len(through)} "
            f"services: {100 * (cpu1 - cpu0) / args.idle_seconds:.1f}% of one core, "
            f"{count1 - count0:.0f} reconciles; peak RSS now {peak / 2**20:.0f} MB"
        )

        if args.no_floors:
            return 0
        # 4. The fleet's floor for the bulk goal, with the operator stopped: the same member
        #    objects (a Deployment of one replica and a Service per service) created directly,
        #    8 at a time, half in central and half in regional, timed until all exist.
        stop_process(operator, grace=30)
        operator = None
        for api in clients.values():
            client.CoreV1Api(api).create_namespace({"metadata": {"name": "floor"}})

        def create_direct(index: int) -> None:
            api = clients["central" if index % 2 == 0 else "regional"]
            name = f"floor-{index:04d}"
            labels = {"app": name}
            # (a token request: the operator's services have filled the cpu pools, and the
            # floor's pods must run, as theirs do, not pend)
            client.AppsV1Api(api).create_namespaced_deployment(
                "floor",
                deployment(
                    name, 1, requests={"cpu": "1m"}, node_selector={"tierra.dev/pool": "cpu"}
                ),
            )
            client.CoreV1Api(api).create_namespaced_service(
                "floor",
                {
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"selector": labels, "ports": [{"port": 8000}]},
                },
            )

        print(f"(fleet quiet again after {quiesce(fleet, idle_rate):.0f}s)")
        fleet_before = fleet_cpu(fleet)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create_direct, range(args.services)))
        floor = time.perf_counter() - started
        fleet_used = fleet_cpu(fleet) - fleet_before
        print(
            f"floor: {args.services} Deployments + Services created directly in the members in "
            f"{floor:.1f}s (8 at a time; the operator's bulk figure above also includes its "
            "status, finalizer and Event writes and the watch round trips)"
        )
        print(f"  fleet CPU meanwhile (s, all clusters): {by_component(fleet_used)}")

        # 5. The placements' writes, made directly (see the docstring).
        print(f"(fleet quiet again after {quiesce(fleet, idle_rate):.0f}s)")
        floor_wall, floor_cpu = writes_only(fleet, clients, args.services, idle_rate)
        print(
            f"bulk placement against the write floor measured in this run: {elapsed:.1f}s / "
            f"{floor_wall:.1f}s = {elapsed / floor_wall:.2f}x (goal <= 1.15x); against its "
            f"CPU-bound minimum {floor_cpu:.1f}s: {elapsed / floor_cpu:.2f}x"
        )
        return 0
    finally:
        stop_process(operator, grace=30)
        fleet.down(quiet=True)


if __name__ == "__main__":
    sys.exit(main())
