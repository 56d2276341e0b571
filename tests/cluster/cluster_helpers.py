"""Helpers shared by the cluster tests: reads, waits, the operator process (real apiservers
only). The objects they create come from ``tierra_testing.builders``."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tierra.localfleet.runner import free_ports
from tierra_testing.builders import service_manifest  # noqa: F401 (test_autoscaling's import)

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "tierra.dev", "v1alpha1", "inferenceservices"
Clients = dict[str, client.ApiClient]
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
WaitFor = Callable[..., Any]


# ----------------------------------------------------------------------------------- helpers
def get_service(clients: Clients, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = client.CustomObjectsApi(
            clients["central"]
        ).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return body
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def condition(body: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for item in ((body or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


def children(clients: Clients, cluster: str, name: str, kind: str = "deployments") -> list[Any]:
    selector = f"tierra.dev/inference-service={name}"
    if kind == "deployments":
        return list(
            client.AppsV1Api(clients[cluster])
            .list_deployment_for_all_namespaces(label_selector=selector)
            .items
        )
    return list(
        client.CoreV1Api(clients[cluster])
        .list_service_for_all_namespaces(label_selector=selector)
        .items
    )


def running_pods(clients: Clients, cluster: str, name: str) -> list[Any]:
    pods = (
        client.CoreV1Api(clients[cluster])
        .list_pod_for_all_namespaces(label_selector=f"tierra.dev/inference-service={name}")
        .items
    )
    return [p for p in pods if p.status.phase == "Running"]


def node_pool(clients: Clients, cluster: str, node: str) -> str:
    labels = client.CoreV1Api(clients[cluster]).read_node(node).metadata.labels
    return str(labels["tierra.dev/pool"])


def wait_placed(
    clients: Clients,
    wait_for: WaitFor,
    namespace: str,
    name: str,
    status: str = "True",
    timeout: float = 60,
) -> dict[str, Any]:
    body: dict[str, Any] = wait_for(
        lambda: (
            (b := get_service(clients, namespace, name)) is not None
            and condition(b, "Placed").get("status") == status
            and b["status"].get("observedGeneration") == b["metadata"]["generation"]
            and b
        ),
        timeout=timeout,
        what=f"{namespace}/{name} Placed={status}",
    )
    return body


def wait_condition(
    clients: Clients,
    wait_for: WaitFor,
    namespace: str,
    name: str,
    type_: str,
    timeout: float = 30,
    **expected: str,
) -> dict[str, Any]:
    """Wait until the service's condition ``type_`` has the ``expected`` fields (status=...,
    reason=...); return the service."""
    wanted = ", ".join(f"{k}={v}" for k, v in expected.items())
    body: dict[str, Any] = wait_for(
        lambda: (
            (b := get_service(clients, namespace, name)) is not None
            and all(condition(b, type_).get(k) == v for k, v in expected.items())
            and b
        ),
        timeout=timeout,
        what=f"{namespace}/{name} {type_} {wanted}",
    )
    return body


def events(clients: Clients, namespace: str, name: str) -> list[Any]:
    """The Events about the object ``name`` in ``namespace`` (on the central cluster)."""
    return [
        e
        for e in client.CoreV1Api(clients["central"]).list_namespaced_event(namespace).items
        if e.involved_object.name == name
    ]


def wait_event(
    clients: Clients,
    wait_for: WaitFor,
    namespace: str,
    name: str,
    reason: str,
    type_: str | None = None,
    message: str = "",
    timeout: float = 15.0,
) -> list[Any]:
    """The object's Events once one has ``reason`` (and ``type_``, and ``message`` in its
    message). The operator posts its Events beside the status writes a test waits on, not
    before them, so a single read can fall between the two."""

    def said() -> list[Any]:
        found = events(clients, namespace, name)
        matched = any(
            e.reason == reason
            and (type_ is None or e.type == type_)
            and message in (e.message or "")
            for e in found
        )
        return found if matched else []

    kind = f"{type_} " if type_ else ""
    found: list[Any] = wait_for(
        said, timeout=timeout, what=f"a {kind}{reason} Event about {namespace}/{name}"
    )
    return found


def all_children(clients: Clients, name: str) -> dict[str, list[Any]]:
    return {
        cluster: children(clients, cluster, name) + children(clients, cluster, name, "services")
        for cluster in ("central", "regional", "edge")
    }


def wait_pool_free(clients: Clients, wait_for: WaitFor, tier: str, pool: str, units: int) -> None:
    """Wait until the Tier's status shows ``units`` free (earlier tests' pods are gone)."""
    custom = client.CustomObjectsApi(clients["central"])

    def free() -> bool:
        body = custom.get_cluster_custom_object(GROUP, VERSION, "tiers", tier)
        pools = {p["name"]: p for p in (body.get("status") or {}).get("pools") or []}
        return pools.get(pool, {}).get("free", -1) >= units

    wait_for(free, timeout=60, what=f"{units} units free in {tier}/{pool}")


def create(clients: Clients, manifest: dict[str, Any]) -> None:
    client.CustomObjectsApi(clients["central"]).create_namespaced_custom_object(
        GROUP, VERSION, manifest["metadata"]["namespace"], PLURAL, manifest
    )


OPERATOR_NAMESPACE = "tierra-system"


class OperatorProcess:
    """``tierra run`` as a real process against the fleet's management cluster (central).

    Once the session installed the chart (the ``operator_credentials`` fixture, which
    ``member_secrets`` brings in), it runs with the chart ServiceAccount's token instead of
    the ``kubeconfig`` given: the operator's tests are then also the proof that the chart's
    RBAC is enough."""

    service_account_kubeconfig: Path | None = None

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.extra_args = list(extra_args)
        self.kubeconfig = OperatorProcess.service_account_kubeconfig or kubeconfig
        self.log_path = log_path
        self.env = dict(env or {})
        if "TMPDIR" not in self.env:
            # (its temporary files, if any, stay beside its log: a kill -9 leaves them in the
            # test's directory, not in /tmp)
            private = log_path.parent / "tmp"
            private.mkdir(parents=True, exist_ok=True)
            self.env["TMPDIR"] = str(private)
        self.metrics_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from tierra.localfleet.runner import spawn_operator

        self.process = spawn_operator(
            self.kubeconfig,
            self.log_path,
            self.metrics_port,
            OPERATOR_NAMESPACE,
            env={"TIERRA_LOG_LEVEL": "INFO", **self.env},
            extra_args=self.extra_args,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"operator exited: {self.log_tail()}")
            if self.metric("tierra_reconcile_total") is not None:
                return
            time.sleep(0.2)
        pytest.fail(f"operator did not start: {self.log_tail()}")

    def stop(self) -> None:
        from tierra.localfleet.runner import stop_process

        stop_process(self.process, grace=20)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def metric(self, name: str) -> float | None:
        """Sum of a metric's samples from the operator's /metrics, or None if unreachable."""
        import urllib.request

        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
            ) as response:
                text = response.read().decode()
        except OSError:
            return None
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        ]
        return sum(values)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def _free_port() -> int:
    return free_ports(1)[0]


@contextlib.contextmanager
def running_operator(
    kubeconfig: Path, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[OperatorProcess]:
    """An operator process for a test module: always stopped, its log's tail printed."""
    process = OperatorProcess(kubeconfig, log_dir / "log", env=env)
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print("\n--- operator log tail ---\n" + process.log_tail(3000))
