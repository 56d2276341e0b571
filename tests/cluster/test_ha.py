"""Two operator replicas on the local fleet: one leads, the other takes over when it dies.

Both run ``tierra run`` with leader election on (the default), exactly as two replicas of the
chart's Deployment do, with the chart ServiceAccount's credentials when the session installed
the chart.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import (
    Clients,
    OperatorProcess,
    WaitFor,
    create,
    wait_placed,
)
from kubernetes import client

from tierra.localfleet.runner import free_ports
from tierra_testing.builders import service_manifest, variant

pytestmark = pytest.mark.cluster

LEASE = "tierra-operator"


def _healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}
    except OSError:
        return 0, {}


def _leading(port: int) -> bool:
    status, body = _healthz(port)
    return status == 200 and bool(body.get("controllers", {}).get("leader"))


@pytest.fixture
def replicas(
    fleet_kubeconfig: Path,
    crds_installed: None,
    member_secrets: None,
    fleet_tiers_applied: None,
    tmp_path: Path,
) -> Iterator[list[tuple[OperatorProcess, int]]]:
    started = []
    try:
        for index in range(2):
            port = free_ports(1)[0]
            process = OperatorProcess(
                fleet_kubeconfig,
                tmp_path / f"operator-{index}.log",
                extra_args=["--liveness", f"http://127.0.0.1:{port}/healthz"],
            )
            process.start()
            started.append((process, port))
        yield started
    finally:
        for process, _ in started:
            process.stop()


@pytest.fixture
def fleet_tiers_applied(kubectl: Any, crds_installed: None) -> None:
    from cluster_helpers import REPO

    kubectl("apply", "--server-side", "-f", str(REPO / "examples/fleet/tiers.yaml"))


def test_a_standby_takes_over_when_the_leader_is_killed(
    replicas: list[tuple[OperatorProcess, int]],
    clients: Clients,
    wait_for: WaitFor,
    namespace: str,
) -> None:
    wait_for(
        lambda: sum(_leading(port) for _, port in replicas) == 1,
        timeout=60,
        what="exactly one leader",
    )
    leader = next(r for r in replicas if _leading(r[1]))
    standby = next(r for r in replicas if r is not leader)
    status, body = _healthz(standby[1])
    assert (status, body["controllers"]) == (200, {"leader": False})  # idle, and healthy
    cpu = [variant("cpu", "cpu", startup=0)]
    create(clients, service_manifest("before", namespace, cpu, placement={"levels": ["central"]}))
    wait_placed(clients, wait_for, namespace, "before")

    assert leader[0].process is not None
    os.kill(leader[0].process.pid, signal.SIGKILL)
    killed = time.monotonic()
    create(clients, service_manifest("after", namespace, cpu, placement={"levels": ["central"]}))
    wait_placed(clients, wait_for, namespace, "after", timeout=60)
    took = time.monotonic() - killed
    print(f"\nkill -9 of the leader -> the standby placed a new service in {took:.1f}s")
    # (kopf answers /healthz from a cache of up to 10 s)
    wait_for(lambda: _leading(standby[1]), timeout=30, what="the standby reporting it leads")
    lease = client.CoordinationV1Api(clients["central"]).read_namespaced_lease(
        LEASE, "tierra-system"
    )
    assert lease.spec.holder_identity
    assert (lease.spec.lease_transitions or 0) >= 1
