"""Fixtures for tests on the local fleet: real kube-apiservers, never mocks.

The fleet starts once per test session (and is always stopped, even on failure or Ctrl-C; its
processes also die with the test process). Set ``TIERRA_TEST_KUBECONFIG`` to the kubeconfig of
an already-running fleet (``tierra fleet up``) to reuse it instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parent))  # cluster_helpers, under importlib mode
from cluster_helpers import (
    GROUP,
    OPERATOR_NAMESPACE,
    PLURAL,
    VERSION,
    Clients,
    Kubectl,
    OperatorProcess,
    WaitFor,
    condition,
    running_operator,
)

from tierra.localfleet.binaries import ensure_binaries, find_binary
from tierra.localfleet.runner import STATE_FILE, Fleet

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


CHART = REPO / "charts" / "tierra"
RELEASE = "tierra"  # the chart's ServiceAccount is then named "tierra"


@pytest.fixture(scope="session")
def operator_credentials(
    fleet_kubeconfig: Path,
    crds_installed: None,
    api_clients: dict[str, client.ApiClient],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The chart installed with helm into the operator's namespace, and a kubeconfig holding a
    TokenRequest token of its ServiceAccount (inline token and CA): every operator the tests
    start runs with the chart's RBAC, not as an administrator.

    replicaCount 0: the operator runs as a local process (the image is not built here), so
    the chart's own Deployment must not put a pod on the fleet's nodes."""
    from tierra.localfleet.chart import Helm
    from tierra.onboarding import kubeconfig_for_token

    home = tmp_path_factory.mktemp("operator-helm")
    helm = Helm(home, fleet_kubeconfig, f"tierra-{MANAGEMENT}")
    helm.run(
        "upgrade", "--install", RELEASE, str(CHART), "-n", OPERATOR_NAMESPACE,
        "--create-namespace", "--set", "replicaCount=0",
    )  # fmt: skip
    token = (
        client.CoreV1Api(api_clients[MANAGEMENT])
        .create_namespaced_service_account_token(
            RELEASE, OPERATOR_NAMESPACE, {"spec": {"expirationSeconds": 6 * 3600}}
        )
        .status.token
    )
    import base64

    import yaml

    config = yaml.safe_load(fleet_kubeconfig.read_text())
    context = f"tierra-{MANAGEMENT}"
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context)
    credentials = kubeconfig_for_token(
        context,
        cluster["server"],
        base64.b64decode(cluster["certificate-authority-data"]),
        token,
    )
    path = home / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(credentials))
    path.chmod(0o600)
    _wait_until_accepted(path, context)
    OperatorProcess.service_account_kubeconfig = path
    return path


def _wait_until_accepted(kubeconfig: Path, context: str, timeout: float = 30.0) -> None:
    """Until the apiserver accepts the token: it authenticates a new ServiceAccount's token
    against its cache of ServiceAccounts, which may lag the chart's install by a moment (and
    kopf gives up on credentials that were once rejected)."""
    from kubernetes.client.exceptions import ApiException

    api = config.new_client_from_config(config_file=str(kubeconfig), context=context)
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.AuthenticationV1Api(api).create_self_subject_review(review)
            return
        except ApiException as error:
            if error.status != 401 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@pytest.fixture(scope="session")
def member_secrets(fleet_kubeconfig: Path, operator_credentials: Path) -> None:
    """Kubeconfig Secrets (``tier-<cluster>-kubeconfig``) in the operator's namespace, made by
    ``tierra tier connect``: a least-privilege ServiceAccount in each member cluster and its
    token, never the fleet's admin credentials."""
    for cluster in CLUSTERS:
        result = subprocess.run(
            [
                sys.executable, "-m", "tierra.cli", "tier", "connect",
                "--kubeconfig", str(fleet_kubeconfig),
                "--context", f"tierra-{cluster}",
                "--name", cluster,
                "--management-context", f"tierra-{MANAGEMENT}",
                "--namespace", OPERATOR_NAMESPACE,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr + result.stdout


@pytest.fixture(scope="module")
def operator(
    fleet_kubeconfig: Path,
    crds_installed: None,
    member_secrets: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    with running_operator(fleet_kubeconfig, tmp_path_factory.mktemp("operator")) as process:
        yield process


@pytest.fixture(scope="module")
def fleet_tiers(operator: Any, kubectl: Kubectl, clients: Clients, wait_for: WaitFor) -> None:
    kubectl("apply", "--server-side", "-f", str(REPO / "examples/fleet/tiers.yaml"))
    custom = client.CustomObjectsApi(clients["central"])

    def reachable() -> bool:
        tiers = custom.list_cluster_custom_object(GROUP, VERSION, "tiers")["items"]
        return (
            all(condition(t, "Reachable").get("status") == "True" for t in tiers)
            and len(tiers) >= 3
        )

    wait_for(reachable, timeout=60, what="three Tiers Reachable")


@pytest.fixture
def outage_fleet(fleet_kubeconfig: Path) -> Iterator[Fleet]:
    """The session's fleet, for a test that stops or freezes the edge's apiserver: the edge
    is always resumed afterwards, also on failure, so that later tests find the fleet whole."""
    fleet = Fleet(fleet_kubeconfig.parent)
    if not (fleet.directory / STATE_FILE).exists():
        pytest.fail(f"{fleet_kubeconfig} is not in a `tierra fleet up` directory")
    try:
        yield fleet
    finally:
        fleet.resume_apiserver("edge", log=lambda _: None)


@pytest.fixture(scope="module")
def clients(api_clients: Clients) -> Clients:
    return api_clients


@pytest.fixture
def namespace(clients: Clients) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(clients["central"]).create_namespace({"metadata": {"name": name}})
    yield name
    custom = client.CustomObjectsApi(clients["central"])
    for item in custom.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"]:
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, name, PLURAL, item["metadata"]["name"]
        )
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and custom.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"]
    ):
        time.sleep(0.5)
    client.CoreV1Api(clients["central"]).delete_namespace(name)
