"""Outage rehearsal on a real kube-apiserver of the session fleet: `stop` refuses clients,
`freeze` lets them time out, `resume` brings the same cluster (same etcd) back.

The edge cluster's apiserver is always resumed afterwards, also when a check fails, so that
later tests find the fleet whole."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request
import uuid

import pytest
from kubernetes import client

from tierra.localfleet.runner import Fleet

pytestmark = pytest.mark.cluster

CLUSTER = "edge"


def _probe(url: str, ctx: ssl.SSLContext, timeout: float) -> str:
    """ok, refused or timeout (anything else is raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as response:
            return "ok" if response.status == 200 else f"status {response.status}"
    except urllib.error.URLError as error:
        reason = error.reason
    except OSError as error:
        reason = error
    if isinstance(reason, ConnectionRefusedError):
        return "refused"
    if isinstance(reason, TimeoutError):
        return "timeout"
    raise AssertionError(f"unexpected failure: {reason!r}")


def _states(fleet: Fleet) -> dict[str, str]:
    return {row["component"]: row["state"] for row in fleet.status() if row["cluster"] == CLUSTER}


def test_stop_freeze_and_resume_an_apiserver(
    outage_fleet: Fleet, api_clients: dict[str, client.ApiClient]
) -> None:
    fleet = outage_fleet
    state = fleet.load_state()[CLUSTER]
    pki = fleet.directory / CLUSTER / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    readyz = f"{state.server}/readyz"
    core = client.CoreV1Api(api_clients[CLUSTER])
    name = f"outage-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": "v"})
    )
    quiet = lambda _: None  # noqa: E731
    try:
        # stop: the port is closed, so clients are refused at once.
        fleet.stop_apiserver(CLUSTER, log=quiet)
        started = time.monotonic()
        assert _probe(readyz, ctx, timeout=2) == "refused"
        assert time.monotonic() - started < 1
        states = _states(fleet)
        assert states["kube-apiserver"] == "stopped"
        assert states["etcd"] == "healthy"
        assert all(states[c] != "stopped" for c in ("kube-controller-manager", "kwok"))

        assert fleet.resume_apiserver(CLUSTER, timeout=60, log=quiet) == "stopped"
        assert fleet.load_state()[CLUSTER].ports == state.ports  # same port, same server
        assert _probe(readyz, ctx, timeout=5) == "ok"
        assert core.read_namespaced_config_map(name, "default").data == {"k": "v"}

        # freeze: the kernel still accepts connections, but nothing answers.
        fleet.freeze_apiserver(CLUSTER, log=quiet)
        with socket.create_connection(("127.0.0.1", state.ports["kube-apiserver"]), timeout=2):
            pass
        started = time.monotonic()
        assert _probe(readyz, ctx, timeout=2) == "timeout"
        assert 1.5 < time.monotonic() - started < 5
        assert _states(fleet)["kube-apiserver"] == "frozen"

        assert fleet.resume_apiserver(CLUSTER, timeout=60, log=quiet) == "frozen"
        assert _probe(readyz, ctx, timeout=5) == "ok"
        assert core.read_namespaced_config_map(name, "default").data == {"k": "v"}
        assert _states(fleet)["kube-apiserver"] == "healthy"
        assert fleet.resume_apiserver(CLUSTER, log=quiet) == "running"  # a no-op now
    finally:
        fleet.resume_apiserver(CLUSTER, log=quiet)
        core.delete_namespaced_config_map(name, "default")
