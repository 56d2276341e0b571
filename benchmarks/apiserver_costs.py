"""What one request costs a cluster of the local fleet, by kind, on this machine.

The bulk goal of ``benchmarks/reconcile.py`` is CPU-bound on the fleet (see its section 5).
This prints where a placement's writes spend that CPU: for each kind of request the operator
(or its users) make, the CPU the central cluster uses per request -- its apiserver alone, and
all its components, the controllers' answers included (the ReplicaSet a Deployment gets, a
Service's EndpointSlice and Endpoints) -- and, for the InferenceService's own requests, the
same request against a ConfigMap of the same bytes, with their ratio. No operator runs; the
fleet is the smallest one (scale 1); Deployments have no replicas, so no pods.

Each kind runs ``--rounds`` rounds of ``--requests`` requests, 8 at a time, each round timed
until the cluster is quiet again; the figure is the median round, with the cluster's idle CPU
(measured first) taken off.

Usage: python benchmarks/apiserver_costs.py [--requests 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconcile import (  # the sibling benchmark's helpers
    GROUP,
    PLURAL,
    REPO,
    VERSION,
    fleet_cpu,
    quiesce,
    raw_patch,
    server_side_apply,
    service,
)

from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.core.placement import PlannedPlacement
from tierra.core.render import owner_of, render
from tierra.demo import Demo
from tierra.localfleet.binaries import ensure_binaries
from tierra.localfleet.runner import Fleet
from tierra.localfleet.topology import default_fleet

NAMESPACE = "costs"
STATUS: dict[str, Any] = {
    # A status of the size and shape the operator writes for a bulk service.
    "observedGeneration": 1,
    "conditions": [
        {
            "type": t,
            "status": s,
            "reason": r,
            "message": m,
            "observedGeneration": 1,
            "lastTransitionTime": "2026-11-22T12:00:00Z",
        }
        for t, s, r, m in (
            ("Placed", "True", "Placed", "1 replica on central/cpu (cpu): cheapest per token"),
            ("Ready", "False", "ReplicasNotReady", "0/1 replicas ready"),
            ("MetricsAvailable", "False", "NoMetricsSource", "no Prometheus for tier(s) central"),
        )
    ],
    "placements": [
        {
            "tier": "central",
            "pool": "cpu",
            "variant": "cpu",
            "replicas": 1,
            "readyReplicas": 0,
            "reason": "cheapest price per token among 2 candidates; latency within the SLO",
        }
    ],
    "rejected": [
        {"tier": "regional", "pool": "cpu", "variant": "cpu", "reason": "costs more per token"},
        {"tier": "central", "pool": "h100", "variant": "", "reason": "no nvidia-gpu variant"},
    ],
    "replicas": 1,
    "readyReplicas": 0,
    "selector": "tierra.dev/inference-service=s",
    "tiers": "central",
    "variant": "cpu",
}


def measure(
    fleet: Fleet, idle: Counter[str], requests: int, call: Callable[[int], Any]
) -> dict[str, float]:
    """CPU ms per request beyond idle, per component of the central cluster, for
    ``requests`` calls 8 at a time, including what the controllers do in answer (until the
    cluster is quiet again)."""
    before, started = fleet_cpu(fleet, "central"), time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(call, range(requests)))
    quiesce(fleet, sum(idle.values()), window=0.5, cluster="central")
    after, wall = fleet_cpu(fleet, "central"), time.perf_counter() - started
    return {k: 1000 * (after[k] - before[k] - idle[k] * wall) / requests for k in before}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.requests

    ensure_binaries()
    fleet = Fleet(Path(tempfile.mkdtemp(prefix="tierra-costs-")) / "fleet", default_fleet(1))
    try:
        fleet.up(tie_to_parent=True, log=lambda _: None)
        Demo(REPO, fleet).install()
        api = config.new_client_from_config(
            config_file=str(fleet.kubeconfig), context="tierra-central"
        )
        api.configuration.connection_pool_maxsize = 16
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        tier = next(
            Tier.model_validate(t)
            for t in yaml.safe_load_all((REPO / "examples/fleet/tiers.yaml").read_text())
            if t["metadata"]["name"] == "central"
        )
        time.sleep(3)
        before = fleet_cpu(fleet, "central")
        time.sleep(10)
        idle = Counter({k: v / 10 for k, v in (fleet_cpu(fleet, "central") - before).items()})
        print(
            "central cluster idle, % of a core: "
            + ", ".join(f"{k} {100 * v:.1f}" for k, v in idle.items())
        )

        def rendered(name: str) -> list[dict[str, Any]]:
            body = service(name, NAMESPACE, ["central"])
            body["metadata"].update(uid=f"00000000-0000-0000-0000-{abs(hash(name)) % 10**12:012d}")
            typed = InferenceService.model_validate(body)
            plan = PlannedPlacement("central", "cpu", "cpu", 0, "")  # no pods: the request alone
            return render(typed, plan, tier, owner_of(typed), same_cluster=False)

        def status_patch(name: str, value: int) -> None:
            status = copy.deepcopy(STATUS)
            status["readyReplicas"] = value
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, NAMESPACE, PLURAL, name, {"status": status}
            )

        def config_map(name: str) -> dict[str, Any]:
            # the same bytes as the InferenceService with its status, as one data value
            inner = service(name, NAMESPACE, ["central"])
            return {"metadata": {"name": name}, "data": {"body": str({**inner, "status": STATUS})}}

        # (kind, the call for round r and request i, the ConfigMap call it is compared with)
        kinds: list[tuple[str, Callable[[int, int], Any], Callable[[int, int], Any] | None]] = [
            (
                "create",
                lambda r, i: custom.create_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURAL, service(f"s{r}-{i}", NAMESPACE, ["central"])
                ),
                lambda r, i: core.create_namespaced_config_map(NAMESPACE, config_map(f"c{r}-{i}")),
            ),
            (
                "status patch (merge)",
                lambda r, i: status_patch(f"s{r}-{i}", r + 1),
                lambda r, i: core.patch_namespaced_config_map(
                    f"c{r}-{i}", NAMESPACE, {"data": {"status": str(r)}}
                ),
            ),
            (
                "metadata patch (label)",
                lambda r, i: raw_patch(
                    api,
                    f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/s{r}-{i}",
                    {"metadata": {"labels": {"round": str(r)}}},
                    "application/merge-patch+json",
                ),
                lambda r, i: core.patch_namespaced_config_map(
                    f"c{r}-{i}", NAMESPACE, {"metadata": {"labels": {"round": str(r)}}}
                ),
            ),
            (
                "get",
                lambda r, i: custom.get_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, PLURAL, f"s{r}-{i}"
                ),
                lambda r, i: core.read_namespaced_config_map(f"c{r}-{i}", NAMESPACE),
            ),
            (
                "Event create",
                lambda r, i: core.create_namespaced_event(
                    NAMESPACE,
                    {
                        "metadata": {"name": f"s{r}-{i}.placed"},
                        "involvedObject": {
                            "apiVersion": f"{GROUP}/{VERSION}",
                            "kind": "InferenceService",
                            "name": f"s{r}-{i}",
                            "namespace": NAMESPACE,
                        },
                        "reason": "Placed",
                        "message": STATUS["conditions"][0]["message"],
                        "type": "Normal",
                    },
                ),
                None,
            ),
            (
                "Deployment apply (0 replicas)",
                lambda r, i: server_side_apply(api, rendered(f"s{r}-{i}")[0]),
                None,
            ),
            (
                "Service apply (ClusterIP)",
                lambda r, i: server_side_apply(api, rendered(f"s{r}-{i}")[1]),
                None,
            ),
        ]
        print(
            f"CPU per request beyond idle (ms; median of {args.rounds} rounds of {n}, "
            f"8 at a time; central cluster, no operator):"
        )
        print(
            f"  {'':30s} {'InferenceService':>13s}   {'ConfigMap, same bytes':>13s}"
            f"\n  {'request':30s} {'apisrv':>6s} {'all':>6s}   {'apisrv':>6s} {'all':>6s}   ratio"
        )
        totals: dict[str, float] = {}
        for kind, call, baseline in kinds:
            ours: list[dict[str, float]] = []
            theirs: list[dict[str, float]] = []
            for r in range(args.rounds):
                ours.append(measure(fleet, idle, n, functools.partial(call, r)))
                if baseline is not None:
                    theirs.append(measure(fleet, idle, n, functools.partial(baseline, r)))

            def median(rows: list[dict[str, float]], key: str) -> float:
                return statistics.median(row[key] for row in rows)

            def total(rows: list[dict[str, float]]) -> float:
                return statistics.median(sum(row.values()) for row in rows)

            a, t = median(ours, "kube-apiserver"), total(ours)
            totals[kind] = t
            line = f"  {kind:30s} {a:6.2f} {t:6.2f}"
            if theirs:
                ba, bt = median(theirs, "kube-apiserver"), total(theirs)
                line += f"   {ba:6.2f} {bt:6.2f}   {t / bt:4.1f}x"
            print(line, flush=True)
        per_placement = sum(
            totals[kind]
            for kind in (
                "create",
                "status patch (merge)",
                "Event create",
                "Deployment apply (0 replicas)",
                "Service apply (ClusterIP)",
            )
        )
        print(
            f"one placement's writes (create, status, Event, Deployment and Service applies), "
            f"before any pod: {per_placement:.0f} ms of the cluster's CPU; 1,000 of them "
            f"{per_placement:.0f} CPU-s, {per_placement / (os.cpu_count() or 1):.0f} s of "
            f"this machine's {os.cpu_count()} cores"
        )
        print(
            "  (apisrv: the apiserver; all: every central component, controllers' answers "
            "included. The Event and the applies are the operator's other writes for a "
            "placement, shown for scale)"
        )
    finally:
        fleet.down(quiet=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
