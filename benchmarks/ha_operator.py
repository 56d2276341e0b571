"""Two `tierra run` replicas on the local fleet: how fast a standby takes over, and whether the
old leader writes anything after it lost the Lease.

Starts its own one-cluster fleet (central: real etcd, kube-apiserver, scheduler,
controller-manager, kwok nodes), the CRDs and the central Tier, then two operator processes with
leader election at its defaults (lease 15 s, renew deadline 10 s, retry 2 s). Each trial waits
2-4 s (so the signal falls anywhere in the renewal cycle), then

  * ``kill -9``: SIGKILL to the leader (a new replica is started as the next standby), or
  * ``SIGSTOP``: the leader is frozen, and resumed with SIGCONT once the standby leads,

and creates a new InferenceService at once. It prints the takeover time (signal -> the standby
holds the Lease; goal <= 15 s), the time until the new service is Placed by
the new leader, and the writes the old leader sent after the signal (its
``tierra_api_writes_total``, read from its /metrics once resumed; goal 0).

Every process it starts is stopped on the way out (also on Ctrl-C or SIGTERM).

Usage: python benchmarks/ha_operator.py [--kills 3] [--freezes 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tierra.localfleet.binaries import ensure_binaries, find_binary
from tierra.localfleet.runner import Fleet, free_ports, spawn_operator, stop_process
from tierra.localfleet.topology import default_fleet
from tierra_testing.builders import service_manifest, variant

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "ha-bench"
GROUP, VERSION, PLURAL = "tierra.dev", "v1alpha1", "inferenceservices"


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Replica:
    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.health_port, self.metrics_port = free_ports(2)
        self.process = spawn_operator(
            kubeconfig,
            log,
            self.metrics_port,
            extra_args=["--liveness", f"http://127.0.0.1:{self.health_port}/healthz"],
        )

    def leading(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as answer:
                body: dict[str, Any] = json.loads(answer.read() or b"{}")
            return bool(body.get("controllers", {}).get("leader"))
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def writes(self) -> float | None:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return None
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("tierra_api_writes_total{")
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a frozen one must be able to exit
        stop_process(self.process, grace=15)


def _wait(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"{what} not within {timeout:.0f}s")


def _service(name: str) -> dict[str, Any]:
    cpu = variant("cpu", "cpu", concurrency=8, prefill=800, decode=80, startup=None)
    return service_manifest(
        name,
        NAMESPACE,
        [cpu],
        model={"name": name, "uri": f"hf://example/{name}"},
        placement={"levels": ["central"]},
        slo={"latencyP95Ms": 5000},
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--freezes", type=int, default=3)
    args = parser.parse_args()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="tierra-bench-ha-"))
    central = tuple(spec for spec in default_fleet() if spec.name == "central")
    fleet = Fleet(workdir / "fleet", central)
    replicas: list[Replica] = []
    try:
        print(f"fleet (central only) up in {fleet.up(tie_to_parent=True, log=lambda _: None):.1f}s")
        kubectl = [str(find_binary("kubectl")), f"--kubeconfig={fleet.kubeconfig}"]
        kubectl += ["--context=tierra-central"]
        subprocess.run([*kubectl, "apply", "--server-side", "-f", str(REPO / "crds")], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run([*kubectl, "wait", "--for=condition=Established", "--timeout=60s",
                        "crd/tiers.tierra.dev", "crd/inferenceservices.tierra.dev"],
                       check=True, capture_output=True)  # fmt: skip
        tiers = list(yaml.safe_load_all((REPO / "examples/fleet/tiers.yaml").read_text()))
        central_tier = next(t for t in tiers if t["metadata"]["name"] == "central")
        subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(central_tier).encode(),
                       check=True, capture_output=True)  # fmt: skip
        api = config.new_client_from_config(
            config_file=str(fleet.kubeconfig), context="tierra-central"
        )
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        for namespace in ("tierra-system", NAMESPACE):
            core.create_namespace({"metadata": {"name": namespace}})

        def placed(name: str) -> bool:
            try:
                body = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
            except ApiException:
                return False
            conditions = (body.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Placed" and c["status"] == "True" for c in conditions)

        leases = client.CoordinationV1Api(api)

        def lease_holder() -> str:
            lease = leases.read_namespaced_lease("tierra-operator", "tierra-system")
            return str(lease.spec.holder_identity or "")

        serial = 0

        def spawn() -> Replica:
            nonlocal serial
            serial += 1
            replica = Replica(fleet.kubeconfig, workdir / f"operator-{serial}.log")
            replicas.append(replica)
            return replica

        live = [spawn(), spawn()]
        rows: dict[str, list[dict[str, float]]] = {"kill -9": [], "SIGSTOP": []}
        plan = ["kill -9"] * args.kills + ["SIGSTOP"] * args.freezes
        print(f"two replicas; logs in {workdir}")
        for number, kind in enumerate(plan, 1):
            _wait(lambda pair=live: sum(r.leading() for r in pair) == 1, 60, "one leader")
            leader = next(r for r in live if r.leading())
            standby = next(r for r in live if r is not leader)
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, _service(f"before-{number}")
            )
            _wait(lambda n=number: placed(f"before-{n}"), 60, "placed by the leader")
            time.sleep(random.uniform(2, 4))
            writes_before = leader.writes() or 0.0
            holder = lease_holder()
            os.kill(leader.process.pid, signal.SIGKILL if kind == "kill -9" else signal.SIGSTOP)
            signalled = time.monotonic()
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, _service(f"after-{number}")
            )
            # (/healthz answers from a cache of up to 10 s: the Lease itself says who leads)
            takeover = _wait(lambda h=holder: lease_holder() not in ("", h), 60, "a new holder")
            _wait(lambda n=number: placed(f"after-{n}"), 60, "placed by the standby")
            row = {"takeover": takeover, "placed": time.monotonic() - signalled}
            late = 0.0
            if kind == "SIGSTOP":
                os.kill(leader.process.pid, signal.SIGCONT)
                time.sleep(5)  # let it run: it must find it no longer leads, and write nothing
                after = leader.writes()
                late = (after - writes_before) if after is not None else float("nan")
                row["resumed_leading"] = float(leader.leading())
                live = [standby, leader]
            else:
                live = [standby, spawn()]
            row["late_writes"] = late
            rows[kind].append(row)
            print(
                f"  {number:2d}. {kind:8s} takeover {row['takeover']:5.1f} s, new service "
                f"placed {row['placed']:5.1f} s after the signal, old leader's writes after "
                f"the signal: {late:g}",
                flush=True,
            )
        print()
        for kind, results in rows.items():
            if not results:
                continue
            takeovers = [r["takeover"] for r in results]
            placements = [r["placed"] for r in results]
            late = sum(r["late_writes"] for r in results)
            ok = max(takeovers) <= 15.0 and late == 0
            print(
                f"{kind:8s} n={len(results)}: takeover median {statistics.median(takeovers):.1f}"
                f" s, max {max(takeovers):.1f} s (goal <= 15 s); new service placed median "
                f"{statistics.median(placements):.1f} s; old leader's writes after the signal: "
                f"{late:g} (goal 0): {'PASS' if ok else 'MISS'}"
            )
        return 0
    except KeyboardInterrupt:
        print("interrupted: stopping every process started", file=sys.stderr)
        return 130
    finally:
        for replica in replicas:
            replica.stop()
        fleet.down(quiet=True)


if __name__ == "__main__":
    raise SystemExit(main())
