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
