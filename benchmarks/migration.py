"""Migration on the local fleet: failover of a lost edge cluster, and planned moves.

Starts its own fleet (central, regional and edge: real etcd, kube-apiserver, scheduler,
controller-manager and kwok nodes; the edge gets one Orin node per service and regional enough
cpu cores for all of them), the CRDs, the example Tiers and `tierra run` with its defaults
(a tier is lost after 10 s of failing probes; 25 moves into one tier at a time). Then:

  1. ``stop``: N services run at the edge; the edge's kube-apiserver is killed. Prints the
     seconds from the kill until every service is Ready on regional (detection included), when
     the first move started, and the moves per second regional absorbed. The edge is then
     resumed and the time until its stale copies are gone is printed.
  2. ``freeze``: the same with the edge's apiserver frozen (SIGSTOP: connections stay open,
     nothing answers) and resumed with SIGCONT.
  3. ``planned``: M services at the edge, a NoExecute taint on the edge Tier. Ready replicas of
     every service are sampled from the member clusters every 0.25 s; prints the minimum ratio of
     Ready replicas to need over all samples and services (goal >= 1.0) and the time to drain.

Goals (issue 13): lost edge, 100 services, all Ready elsewhere within 30 s, for a stopped and a
frozen apiserver; planned moves never below need (ratio >= 1.0).

Every process it starts is stopped on the way out (also on Ctrl-C or SIGTERM).

Usage: python benchmarks/migration.py [--services 100] [--planned 20] [--phases stop,freeze,planned]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tierra.core.render import LABEL_MANAGED_BY, MANAGED_BY
from tierra.localfleet.binaries import ensure_binaries, find_binary
from tierra.localfleet.runner import (
    Fleet,
    free_ports,
    kubeconfig_secret,
    spawn_operator,
    stop_process,
)
from tierra.localfleet.topology import ClusterSpec, default_fleet
from tierra_testing.builders import service_manifest, variant

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "migration-bench"
OPERATOR_NAMESPACE = "tierra-system"
GROUP, VERSION, PLURAL = "tierra.dev", "v1alpha1", "inferenceservices"
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def bench_fleet(services: int) -> tuple[ClusterSpec, ...]:
    """The default fleet with an Orin node per service at the edge and cpu for all of them
    (plus room) in regional."""
    out = []
    for spec in default_fleet():
        pools = []
        for pool in spec.pools:
            nodes = pool.nodes
            if spec.name == "edge" and pool.name == "orin":
                nodes = services + 2
            if spec.name == "regional" and pool.name == "cpu":
                nodes = services // 32 + 2
            pools.append(dataclasses.replace(pool, nodes=nodes))
        out.append(dataclasses.replace(spec, pools=tuple(pools)))
    return tuple(out)


def movable(name: str) -> dict[str, Any]:
    return service_manifest(
        name,
        NAMESPACE,
        [variant("orin", "edge-gpu", startup=0), variant("cpu", "cpu", startup=0)],
        model={"name": name, "uri": f"hf://example/{name}"},
        placement={
            "levels": ["edge", "regional"],
            "objective": "latency",
            "userRegions": {"eu-central": 1},
        },
        migration={"drainSeconds": 0},
        replicas=1,
    )


def _wait(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(every)
    raise TimeoutError(f"{what} not within {timeout:.0f}s")


class Bench:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.api = {
            name: config.new_client_from_config(
                config_file=str(fleet.kubeconfig), context=f"tierra-{name}"
            )
            for name in ("central", "regional", "edge")
        }
        self.custom = client.CustomObjectsApi(self.api["central"])
        self.round = 0

    def ready(self, cluster: str) -> dict[tuple[str, str], int] | None:
        """Ready replicas per (service, tier) of the bench's Deployments in one cluster."""
        try:  # raw JSON: the client's model classes would make a sample take ~3x longer
            answer = client.AppsV1Api(self.api[cluster]).list_namespaced_deployment(
                NAMESPACE, label_selector=SELECTOR, _request_timeout=2, _preload_content=False
            )
            found = json.loads(answer.data)["items"]
        except Exception:  # stopped or frozen
            return None
        out: dict[tuple[str, str], int] = {}
        for d in found:
            labels = d["metadata"]["labels"]
            key = (labels["tierra.dev/inference-service"], labels["tierra.dev/tier"])
            out[key] = out.get(key, 0) + int((d.get("status") or {}).get("readyReplicas", 0))
        return out

    def services(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL
        )["items"]
        return items

    def create(self, count: int) -> list[str]:
        self.round += 1
        names = [f"r{self.round}-svc-{i:03}" for i in range(count)]
        for name in names:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, movable(name)
            )
        _wait(lambda: self._all_on(names, "edge"), 180, f"{count} services Ready at the edge")
        return names

    def _all_on(self, names: list[str], tier: str) -> bool:
        cluster = "regional" if tier == "regional" else "edge"
        ready = self.ready(cluster) or {}
        return all(ready.get((n, tier), 0) >= 1 for n in names)

    def delete_all(self) -> None:
        for item in self.services():
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, item["metadata"]["name"]
            )
        _wait(lambda: not self.services(), 180, "services deleted", every=1)

    def edge_orin_free(self) -> int:
        core = client.CoreV1Api(self.api["edge"])
        nodes = {
            n.metadata.name for n in core.list_node(label_selector="tierra.dev/pool=orin").items
        }
        used = sum(
            1
            for p in core.list_pod_for_all_namespaces().items
            if p.spec.node_name in nodes and p.status.phase not in ("Succeeded", "Failed")
        )
        return len(nodes) - used

    # ------------------------------------------------------------------------------ phases
    def lose(self, how: str, count: int) -> dict[str, float]:
        _wait(lambda: self.edge_orin_free() >= count, 240, f"{count} Orin free", every=1)
        names = self.create(count)
        started = time.monotonic()
        if how == "stop":
            self.fleet.stop_apiserver("edge")
        else:
            self.fleet.freeze_apiserver("edge")
        arrived: dict[str, float] = {}
        first_move: float | None = None
        while len(arrived) < len(names) and time.monotonic() - started < 180:
            ready = self.ready("regional") or {}
            now = time.monotonic() - started
            if first_move is None and any(k[1] == "regional" for k in ready):
                first_move = now
            for name in names:
                if name not in arrived and ready.get((name, "regional"), 0) >= 1:
                    arrived[name] = now
            time.sleep(0.2)
        if len(arrived) < len(names):
            raise TimeoutError(f"only {len(arrived)}/{len(names)} Ready on regional after 180s")
        all_ready = max(arrived.values())
        spread = all_ready - min(arrived.values())
        self.fleet.resume_apiserver("edge", log=lambda _: None)

        def stale_gone() -> bool:
            edge = self.ready("edge")
            return edge is not None and not any(k[1] == "edge" for k in edge)

        cleaned = _wait(stale_gone, 180, "stale copies removed from the edge", every=0.5)
        still = self.ready("regional") or {}
        assert all(still.get((n, "regional"), 0) >= 1 for n in names), "a replacement was lost"
        self.delete_all()
        return {
            "all Ready elsewhere (s)": all_ready,
            "first replacement Ready (s)": first_move or 0.0,
            "moves/s absorbed by regional": len(names) / spread if spread > 0 else float("inf"),
            "stale copies gone after return (s)": cleaned,
        }

    def planned(self, count: int) -> dict[str, float]:
        _wait(lambda: self.edge_orin_free() >= count, 240, f"{count} Orin free", every=1)
        names = self.create(count)
        minimum = float("inf")
        samples = 0
        gaps: list[float] = []
        last = time.monotonic()
        self.custom.patch_cluster_custom_object(
            GROUP, VERSION, "tiers", "edge",
            {"spec": {"taints": [{"key": "tierra.dev/maintenance", "effect": "NoExecute"}]}},
        )  # fmt: skip
        started = time.monotonic()
        try:
            while time.monotonic() - started < 180:
                edge, regional = self.ready("edge") or {}, self.ready("regional") or {}
                now = time.monotonic()
                gaps.append(now - last)
                last = now
                samples += 1
                per = {
                    n: edge.get((n, "edge"), 0) + regional.get((n, "regional"), 0) for n in names
                }
                minimum = min(minimum, *per.values())
                if all(regional.get((n, "regional"), 0) >= 1 for n in names) and not edge:
                    break
                time.sleep(max(0.0, 0.25 - (time.monotonic() - now)))
            drained = time.monotonic() - started
        finally:
            self.custom.patch_cluster_custom_object(
                GROUP, VERSION, "tiers", "edge", {"spec": {"taints": None}}
            )

        def succeeded() -> int:
            return sum(
                1
                for item in self.services()
                if any(
                    m.get("outcome") == "Succeeded"
                    for m in (item.get("status") or {}).get("migrations") or []
                )
            )

        with_record = 0.0
        with contextlib.suppress(TimeoutError):
            with_record = _wait(lambda: succeeded() == count, 30, "every move recorded", every=0.5)
        moved = succeeded()
        self.delete_all()
        gaps.sort()
        return {
            "migrations": float(moved),
            "min Ready/need": minimum / 1.0,
            "samples": float(samples),
            "median sample gap (s)": gaps[len(gaps) // 2],
            "drained in (s)": drained,
            "recorded Succeeded after (s)": drained + with_record,
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--planned", type=int, default=20)
    parser.add_argument("--phases", default="stop,freeze,planned")
    args = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="tierra-bench-migration-"))
    fleet = Fleet(workdir / "fleet", bench_fleet(max(args.services, args.planned)))
    operator: subprocess.Popen[bytes] | None = None
    try:
        print(f"fleet up in {fleet.up(tie_to_parent=True, log=lambda _: None):.1f}s ({workdir})")
        kubectl = [str(find_binary("kubectl")), f"--kubeconfig={fleet.kubeconfig}"]
        kubectl += ["--context=tierra-central"]
        run = lambda *a, data=None: subprocess.run(  # noqa: E731
            [*kubectl, *a], input=data, check=True, capture_output=True
        )
        run("apply", "--server-side", "-f", str(REPO / "crds"))
        run("wait", "--for=condition=Established", "--timeout=60s",
            "crd/tiers.tierra.dev", "crd/inferenceservices.tierra.dev")  # fmt: skip
        bench = Bench(fleet)
        core = client.CoreV1Api(bench.api["central"])
        for namespace in (OPERATOR_NAMESPACE, NAMESPACE):
            core.create_namespace({"metadata": {"name": namespace}})
        for cluster in ("regional", "edge"):
            secret = kubeconfig_secret(
                fleet.kubeconfig, f"tierra-{cluster}", f"tier-{cluster}-kubeconfig",
                OPERATOR_NAMESPACE,
            )  # fmt: skip
            core.create_namespaced_secret(OPERATOR_NAMESPACE, secret)
        tiers = list(yaml.safe_load_all((REPO / "examples/fleet/tiers.yaml").read_text()))
        run("apply", "-f", "-", data=json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": tiers}).encode())  # fmt: skip
        (metrics_port,) = free_ports(1)
        operator = spawn_operator(fleet.kubeconfig, workdir / "operator.log", metrics_port)

        def reachable() -> bool:
            try:
                items = bench.custom.list_cluster_custom_object(GROUP, VERSION, "tiers")["items"]
            except ApiException:
                return False
            return len(items) == 3 and all(
                any(c["type"] == "Reachable" and c["status"] == "True"
                    for c in (t.get("status") or {}).get("conditions") or [])
                for t in items
            )  # fmt: skip

        _wait(reachable, 90, "three Tiers Reachable")
        results: dict[str, dict[str, float]] = {}
        for phase in args.phases.split(","):
            if phase in ("stop", "freeze"):
                results[f"{phase}: {args.services} services"] = bench.lose(phase, args.services)
            elif phase == "planned":
                results[f"planned: {args.planned} services"] = bench.planned(args.planned)
            else:
                raise SystemExit(f"unknown phase {phase}")
            print(f"{phase}: {json.dumps(results[next(reversed(results))])}")
        print()
        print(f"{'phase':28} {'figure':38} {'value':>10}  goal")
        goals = {
            "all Ready elsewhere (s)": ("<= 30", lambda v: v <= 30),
            "min Ready/need": (">= 1.0", lambda v: v >= 1.0),
        }
        for phase, figures in results.items():
            for name, value in figures.items():
                goal, ok = goals.get(name, ("", None))
                verdict = "" if ok is None else (" met" if ok(value) else " NOT met")
                print(f"{phase:28} {name:38} {value:>10.2f}  {goal}{verdict}")
        print(f"logs in {workdir}")
        return 0
    finally:
        if operator is not None:
            stop_process(operator, grace=15)
        fleet.down(quiet=True)


if __name__ == "__main__":
    raise SystemExit(main())
