"""``tierra tier connect``: give the operator least-privilege access to a member cluster.

In the member cluster: a ServiceAccount, a ClusterRole holding exactly what the operator does
there (:data:`MEMBER_RULES`) and its binding, and a token for the ServiceAccount. In the
management cluster: the Tier's kubeconfig Secret in the operator's namespace, holding the
member's server, CA and that token inline (no client certificates, exec plugins or file paths),
which is what the operator's Tier resolution reads.

The token is either a ``kubernetes.io/service-account-token`` Secret's (long-lived; revoke it
by deleting that Secret in the member) or, with ``--token-expiration``, a TokenRequest's
(expires; run ``tier connect`` again to rotate).
"""

from __future__ import annotations

import base64
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MEMBER_RULES: tuple[dict[str, Any], ...] = (
    # Rendered children: server-side apply (create + patch), the orphan sweep (delete), the
    # informers (list + watch), and `get` to check, before the first apply of a name, that no
    # object Tierra did not create holds it (never taken over).
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {
        "apiGroups": [""],
        "resources": ["services"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    # Pool capacity and allocation.
    {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list", "watch"]},
    # A placement's target namespace is created when missing.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "create"]},
)
"""What the operator does in a member cluster, and so all that ``tier connect`` grants."""

MEMBER_NAMESPACE = "tierra-system"
# "member", not "operator": connecting the management cluster itself must not touch the chart's
# ServiceAccount or ClusterRole, which are named after the release.
SERVICE_ACCOUNT = "tierra-member"
ROLE_NAME = "tierra-member"
TOKEN_SECRET = "tierra-member-token"
SECRET_KEY = "kubeconfig"
TIER_LABEL = "tierra.dev/tier"
MANAGED_BY = {"app.kubernetes.io/managed-by": "tierra", "app.kubernetes.io/part-of": "tierra"}


class ConnectError(RuntimeError):
    """The member could not be connected."""


@dataclass(frozen=True)
class Connection:
    secret_name: str
    secret_namespace: str
    server: str
    service_account: str
    token_expires: bool


def kubeconfig_for_token(context: str, server: str, ca_pem: bytes, token: str) -> dict[str, Any]:
    """A kubeconfig with only inline data: server, CA and bearer token."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }


def _context_entries(
    config: dict[str, Any], kubeconfig: Path, context: str | None
) -> tuple[str, dict[str, Any]]:
    """(context name, its cluster entry) from the kubeconfig file ``kubeconfig`` holds."""
    name = context or config.get("current-context")
    entry = next((c for c in config.get("contexts") or [] if c.get("name") == name), None)
    if entry is None:
        raise ConnectError(f"no context {name!r} in {kubeconfig}")
    cluster = next(
        (c for c in config.get("clusters") or [] if c.get("name") == entry["context"]["cluster"]),
        None,
    )
    if cluster is None:
        raise ConnectError(f"context {name!r} names a cluster missing from {kubeconfig}")
    return str(name), dict(cluster["cluster"])


def _ca_pem(cluster: dict[str, Any], base: Path) -> bytes | None:
    if cluster.get("certificate-authority-data"):
        return base64.b64decode(cluster["certificate-authority-data"])
    if cluster.get("certificate-authority"):
        path = Path(cluster["certificate-authority"]).expanduser()
        return (path if path.is_absolute() else base / path).read_bytes()
    return None


def _apply(create: Any, replace: Any, body: dict[str, Any]) -> None:
    """Create, or replace what is there (so a second connect repairs drifted RBAC)."""
    from kubernetes.client.exceptions import ApiException

    try:
        create(body)
    except ApiException as error:
        if error.status != 409:
            raise
        replace(body)


def _metadata(name: str, namespace: str | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**MANAGED_BY, **labels}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def grant(member: Any, namespace: str = MEMBER_NAMESPACE) -> None:
    """The ServiceAccount, ClusterRole and ClusterRoleBinding in the member cluster."""
    from kubernetes import client

    core = client.CoreV1Api(member)
    rbac = client.RbacAuthorizationV1Api(member)
    _apply(
        core.create_namespace,
        lambda b: core.patch_namespace(
            namespace, {"metadata": {"labels": b["metadata"]["labels"]}}
        ),
        {"metadata": _metadata(namespace)},
    )
    _apply(
        lambda b: core.create_namespaced_service_account(namespace, b),
        lambda b: core.patch_namespaced_service_account(SERVICE_ACCOUNT, namespace, b),
        {"metadata": _metadata(SERVICE_ACCOUNT, namespace)},
    )
    _apply(
        rbac.create_cluster_role,
        lambda b: rbac.replace_cluster_role(ROLE_NAME, b),
        {"metadata": _metadata(ROLE_NAME), "rules": [dict(rule) for rule in MEMBER_RULES]},
    )
    _apply(
        rbac.create_cluster_role_binding,
        lambda b: rbac.replace_cluster_role_binding(ROLE_NAME, b),
        {
            "metadata": _metadata(ROLE_NAME),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": ROLE_NAME,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
            ],
        },
    )


def request_token(member: Any, namespace: str, expiration_seconds: int) -> str:
    """A TokenRequest for the ServiceAccount: bound to it, expiring."""
    from kubernetes import client

    response = client.CoreV1Api(member).create_namespaced_service_account_token(
        SERVICE_ACCOUNT,
        namespace,
        {"spec": {"audiences": None, "expirationSeconds": expiration_seconds}},
    )
    return str(response.status.token)


def secret_token(member: Any, namespace: str, timeout: float = 60.0) -> tuple[str, bytes | None]:
    """The token (and CA) of a ``kubernetes.io/service-account-token`` Secret, which the
    member's token controller fills in."""
    from kubernetes import client

    core = client.CoreV1Api(member)
    _apply(
        lambda b: core.create_namespaced_secret(namespace, b),
        lambda b: None,  # keep the existing token: rotating is deleting this Secret
        {
            "metadata": {
                **_metadata(TOKEN_SECRET, namespace),
                "annotations": {"kubernetes.io/service-account.name": SERVICE_ACCOUNT},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = core.read_namespaced_secret(TOKEN_SECRET, namespace).data or {}
        if data.get("token"):
            ca = base64.b64decode(data["ca.crt"]) if data.get("ca.crt") else None
            return base64.b64decode(data["token"]).decode(), ca
        time.sleep(0.5)
    raise ConnectError(
        f"the member's token controller did not fill Secret {namespace}/{TOKEN_SECRET} "
        f"in {timeout:.0f}s (is kube-controller-manager running with a service account key?)"
    )


def connect(
    kubeconfig: Path,
    member_context: str,
    tier: str,
    management_context: str | None = None,
    operator_namespace: str = "tierra-system",
    secret_name: str | None = None,
    server: str | None = None,
    member_namespace: str = MEMBER_NAMESPACE,
    token_expiration: int | None = None,
) -> Connection:
    """Grant, get a token, verify it, and write the Tier's kubeconfig Secret."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from tierra.shell.kube import sync_api_client

    with contextlib.ExitStack() as files:  # the clients' certificates, in memory
        config = yaml.safe_load(kubeconfig.read_text()) or {}
        base = str(kubeconfig.parent)
        name, cluster = _context_entries(config, kubeconfig, member_context)
        member = sync_api_client(config, name, base, files)
        grant(member, member_namespace)
        ca = _ca_pem(cluster, kubeconfig.parent)
        if token_expiration:
            token = request_token(member, member_namespace, token_expiration)
        else:
            token, secret_ca = secret_token(member, member_namespace)
            ca = ca or secret_ca
        if ca is None:
            raise ConnectError(f"context {name!r} has no CA and the member provided none")
        server = server or str(cluster["server"])
        credentials = kubeconfig_for_token(f"tierra-{tier}", server, ca, token)

        # The credentials must work before the operator is pointed at them.
        probe = sync_api_client(credentials, None, "", files)
        try:
            client.CoreV1Api(probe).list_node(limit=1)
        except ApiException as error:
            raise ConnectError(f"the new credentials cannot list nodes: {error.reason}") from error

        management = sync_api_client(config, management_context, base, files)
        core = client.CoreV1Api(management)
        secret_name = secret_name or f"tier-{tier}-kubeconfig"
        body = {
            "metadata": _metadata(secret_name, operator_namespace, **{TIER_LABEL: tier}),
            "type": "Opaque",
            "data": {SECRET_KEY: base64.b64encode(yaml.safe_dump(credentials).encode()).decode()},
        }
        _apply(
            lambda b: core.create_namespaced_secret(operator_namespace, b),
            lambda b: core.replace_namespaced_secret(secret_name, operator_namespace, b),
            body,
        )
        return Connection(
            secret_name, operator_namespace, server, SERVICE_ACCOUNT, bool(token_expiration)
        )


def tier_snippet(connection: Connection) -> str:
    return (
        "spec:\n  cluster:\n    kubeconfigSecretRef:\n"
        f"      name: {connection.secret_name}\n      key: {SECRET_KEY}\n"
    )
