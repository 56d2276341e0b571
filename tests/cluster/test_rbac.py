"""What the operator's identities may and may not do, asked of real apiservers with
``kubectl auth can-i`` using the identities' own tokens: the chart's ServiceAccount on the
management cluster, and the ServiceAccount ``tierra tier connect`` made in a member cluster.

That the allowed column is *enough* is shown by the operator's end-to-end tests, which run
with exactly these credentials (see ``operator_credentials`` and ``member_secrets``)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import yaml
from cluster_helpers import Clients

from tierra.localfleet.binaries import find_binary

pytestmark = pytest.mark.cluster

NS = "team-rbac"  # any user namespace
OPS = "tierra-system"  # the operator's namespace

# (verb, resource, namespace or None for cluster scope / all namespaces)
SHARED_ALLOWED = [
    ("get", "deployments.apps", NS),  # a name is free before the first apply
    ("list", "deployments.apps", NS),
    ("watch", "deployments.apps", None),
    ("create", "deployments.apps", NS),
    ("patch", "deployments.apps", NS),
    ("delete", "deployments.apps", NS),
    ("get", "services", NS),
    ("list", "services", None),
    ("create", "services", NS),
    ("patch", "services", NS),
    ("delete", "services", NS),
    ("list", "nodes", None),
    ("watch", "pods", None),
    ("get", "namespaces", None),
    ("create", "namespaces", None),
]
SHARED_DENIED = [
    # Secrets anywhere but (for the management identity) one get in its own namespace.
    ("get", "secrets", "kube-system"),
    ("get", "secrets", NS),
    ("list", "secrets", None),
    ("watch", "secrets", OPS),
    # Nodes are read, never written.
    ("create", "nodes", None),
    ("patch", "nodes", None),
    ("delete", "nodes", None),
    ("patch", "nodes/status", None),
    # No RBAC writes, so no way to grant itself more.
    ("create", "clusterroles.rbac.authorization.k8s.io", None),
    ("patch", "clusterroles.rbac.authorization.k8s.io", None),
    ("bind", "clusterroles.rbac.authorization.k8s.io", None),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", None),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("create", "roles.rbac.authorization.k8s.io", OPS),
    ("create", "rolebindings.rbac.authorization.k8s.io", OPS),
    # No CRD writes (nor reads: the operator does not discover resources).
    ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", None),
    # Verbs the code never uses.
    ("update", "deployments.apps", NS),
    ("patch", "deployments.apps/scale", NS),
    ("delete", "namespaces", None),
    ("create", "pods", NS),
    ("delete", "pods", NS),
    ("create", "pods/exec", NS),
    ("create", "serviceaccounts/token", OPS),
    ("impersonate", "users", None),
    ("impersonate", "serviceaccounts", OPS),
]

MANAGEMENT_ALLOWED = [
    *SHARED_ALLOWED,
    ("get", "secrets", OPS),
    ("get", "tiers.tierra.dev", None),
    ("list", "tiers.tierra.dev", None),
    ("watch", "tiers.tierra.dev", None),
    ("patch", "tiers.tierra.dev", None),  # its finalizer
    ("patch", "tiers.tierra.dev/status", None),
    ("update", "leases.coordination.k8s.io", OPS),  # leader election
    ("create", "leases.coordination.k8s.io", OPS),
    ("get", "inferenceservices.tierra.dev", NS),
    ("list", "inferenceservices.tierra.dev", None),
    ("watch", "inferenceservices.tierra.dev", None),
    ("patch", "inferenceservices.tierra.dev", NS),  # its finalizer
    ("patch", "inferenceservices.tierra.dev/status", NS),
    ("update", "inferenceservices.tierra.dev/finalizers", NS),  # blockOwnerDeletion
    ("create", "events", NS),
]
MANAGEMENT_DENIED = [
    *SHARED_DENIED,
    ("list", "secrets", OPS),
    ("create", "secrets", OPS),
    ("patch", "secrets", OPS),
    ("create", "inferenceservices.tierra.dev", NS),
    ("update", "inferenceservices.tierra.dev", NS),  # never rewrites a user's spec
    ("delete", "inferenceservices.tierra.dev", NS),
    ("patch", "inferenceservices.tierra.dev/scale", NS),
    ("update", "tiers.tierra.dev", None),  # never rewrites a Tier's spec
    ("delete", "tiers.tierra.dev", None),
    ("update", "leases.coordination.k8s.io", NS),  # only its own namespace's Lease
    ("get", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("patch", "events", NS),
]
MEMBER_ALLOWED = SHARED_ALLOWED
MEMBER_DENIED = [
    *SHARED_DENIED,
    ("get", "secrets", OPS),
    ("create", "events", NS),
    ("list", "inferenceservices.tierra.dev", None),
]


def _can_i(kubeconfig: Path, verb: str, resource: str, namespace: str | None) -> bool:
    kubectl = find_binary("kubectl")
    assert kubectl is not None
    resource, _, subresource = resource.partition("/")
    argv = [str(kubectl), f"--kubeconfig={kubeconfig}", "auth", "can-i", verb, resource]
    if subresource:
        argv.append(f"--subresource={subresource}")
    argv += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def _matrix(
    kubeconfig: Path,
    allowed: list[tuple[str, str, str | None]],
    denied: list[tuple[str, str, str | None]],
) -> None:
    wrong = [
        f"{'denied' if expected else 'ALLOWED'}: {verb} {resource} in {namespace or 'cluster'}"
        for expected, rows in ((True, allowed), (False, denied))
        for verb, resource, namespace in rows
        if _can_i(kubeconfig, verb, resource, namespace) != expected
    ]
    assert wrong == []


def test_chart_service_account_on_the_management_cluster(operator_credentials: Path) -> None:
    _matrix(operator_credentials, MANAGEMENT_ALLOWED, MANAGEMENT_DENIED)


def test_tier_connect_service_account_in_a_member_cluster(
    member_secrets: None, clients: Clients, tmp_path: Path
) -> None:
    from kubernetes import client

    secret = client.CoreV1Api(clients["central"]).read_namespaced_secret(
        "tier-regional-kubeconfig", OPS
    )
    kubeconfig = base64.b64decode(secret.data["kubeconfig"]).decode()
    config = yaml.safe_load(kubeconfig)
    # Inline token and CA only: no client certificates, exec plugins or file paths.
    assert [set(u["user"]) for u in config["users"]] == [{"token"}]
    assert [set(c["cluster"]) for c in config["clusters"]] == [
        {"server", "certificate-authority-data"}
    ]
    path = tmp_path / "member.kubeconfig"
    path.write_text(kubeconfig)
    _matrix(path, MEMBER_ALLOWED, MEMBER_DENIED)


def test_tier_connect_with_an_expiring_token(
    member_secrets: None, fleet_kubeconfig: Path, clients: Clients, tmp_path: Path
) -> None:
    """--token-expiration: a TokenRequest token that expires when asked, with the same rights."""
    import json
    import sys

    from kubernetes import client

    secret_name = "tier-edge-expiring-kubeconfig"
    result = subprocess.run(
        [
            sys.executable, "-m", "tierra.cli", "tier", "connect",
            "--kubeconfig", str(fleet_kubeconfig), "--context", "tierra-edge",
            "--name", "edge", "--management-context", "tierra-central",
            "--secret-name", secret_name, "--token-expiration", "900",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "expiring token" in result.stdout and f"name: {secret_name}" in result.stdout
    core = client.CoreV1Api(clients["central"])
    try:
        secret = core.read_namespaced_secret(secret_name, OPS)
        kubeconfig = base64.b64decode(secret.data["kubeconfig"]).decode()
        token = yaml.safe_load(kubeconfig)["users"][0]["user"]["token"]
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["exp"] - claims["iat"] == 900
        assert claims["sub"] == "system:serviceaccount:tierra-system:tierra-member"
        path = tmp_path / "expiring.kubeconfig"
        path.write_text(kubeconfig)
        assert _can_i(path, "list", "nodes", None)
        assert not _can_i(path, "get", "secrets", OPS)
    finally:
        core.delete_namespaced_secret(secret_name, OPS)


def test_tier_connect_names_a_missing_context(fleet_kubeconfig: Path) -> None:
    import sys

    result = subprocess.run(
        [
            sys.executable, "-m", "tierra.cli", "tier", "connect",
            "--kubeconfig", str(fleet_kubeconfig), "--context", "nowhere", "--name", "x",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no context 'nowhere'" in result.stderr
