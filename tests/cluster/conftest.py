"""Fixtures for tests on the local fleet: real kube-apiservers, never mocks.

The fleet starts once per test session (and is always stopped, even on failure or Ctrl-C; its
processes also die with the test process). Set ``TIERRA_TEST_KUBECONFIG`` to the kubeconfig of
an already-running fleet (``tierra fleet up``) to reuse it instead.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tierra.fleet.binaries import ensure_binaries, find_binary
from tierra.fleet.runner import Fleet

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = ("central", "regional", "edge")
MANAGEMENT = "central"


@pytest.fixture(scope="session")
def fleet_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    existing = os.environ.get("TIERRA_TEST_KUBECONFIG")
    if existing:
        yield Path(existing)
        return
    ensure_binaries()
    fleet = Fleet(tmp_path_factory.mktemp("fleet"))
    seconds = fleet.up(tie_to_parent=True, log=lambda _: None)
    print(f"\nfleet up in {seconds:.1f}s")
    try:
        yield fleet.kubeconfig
    finally:
        fleet.down(quiet=True)


@pytest.fixture(scope="session")
def api_clients(fleet_kubeconfig: Path) -> dict[str, client.ApiClient]:
    return {
        name: config.new_client_from_config(
            config_file=str(fleet_kubeconfig), context=f"tierra-{name}"
        )
        for name in CLUSTERS
    }


@pytest.fixture(scope="session")
def kubectl(fleet_kubeconfig: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = find_binary("kubectl")
    assert binary is not None

    def run(
        *args: str, context: str = MANAGEMENT, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary), f"--kubeconfig={fleet_kubeconfig}", f"--context=tierra-{context}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    return run


@pytest.fixture(scope="session")
def crds_installed(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/tiers.tierra.dev",
        "crd/inferenceservices.tierra.dev",
    )


def _wait_for(
    predicate: Callable[[], Any],
    timeout: float = 60.0,
    interval: float = 0.25,
    what: str = "condition",
) -> Any:
    """Poll until ``predicate`` returns a truthy value; return it, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Any]:
    return _wait_for


# ---------------------------------------------------------------------------------- operator
OPERATOR_NAMESPACE = "tierra-system"


class OperatorProcess:
    """``tierra run`` as a real process against the fleet's management cluster (central)."""

    def __init__(self, kubeconfig: Path, log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.metrics_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from tierra.fleet.runner import spawn_operator

        self.process = spawn_operator(
            self.kubeconfig,
            self.log_path,
            self.metrics_port,
            OPERATOR_NAMESPACE,
            env={"TIERRA_LOG_LEVEL": "INFO"},
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
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
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
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def member_secrets(fleet_kubeconfig: Path, api_clients: dict[str, client.ApiClient]) -> None:
    """Kubeconfig Secrets for the regional and edge clusters in the operator's namespace."""
    from tierra.fleet.runner import kubeconfig_secret

    core = client.CoreV1Api(api_clients[MANAGEMENT])
    _create_or_ignore(lambda: core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE}}))
    for cluster in CLUSTERS:
        secret = kubeconfig_secret(
            fleet_kubeconfig, f"tierra-{cluster}", f"tier-{cluster}-kubeconfig", OPERATOR_NAMESPACE
        )
        _create_or_ignore(lambda s=secret: core.create_namespaced_secret(OPERATOR_NAMESPACE, s))


def _create_or_ignore(create: Callable[[], Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        create()
    except ApiException as error:
        if error.status != 409:
            raise


@pytest.fixture(scope="module")
def operator(
    fleet_kubeconfig: Path,
    crds_installed: None,
    member_secrets: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(fleet_kubeconfig, tmp_path_factory.mktemp("operator") / "log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print("\n--- operator log tail ---\n" + process.log_tail(3000))
