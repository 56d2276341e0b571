"""Kubeconfigs from Secrets are untrusted input: vet them before any client library sees them.

Whoever can write a Secret in the operator's namespace chooses its kubeconfig. The full loader
of a Kubernetes client honours fields that run commands (``exec``, some ``auth-provider``
plugins), read local files (``tokenFile``, ``certificate-authority``, ``client-key``...) or send
traffic elsewhere (``proxy-url``), all with the operator's privileges. So a Secret's kubeconfig
is reduced to one cluster, one user and inline credentials before it is used, and anything else
is refused with a message that names the field, never its value (values may be credentials).
Nothing here performs I/O.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

ALLOWED_CLUSTER_FIELDS = frozenset(
    {"server", "certificate-authority-data", "tls-server-name", "insecure-skip-tls-verify"}
)
ALLOWED_USER_FIELDS = frozenset({"token", "client-certificate-data", "client-key-data"})
INERT_FIELDS = frozenset({"extensions", "disable-compression"})
"""Fields dropped without effect (what ``kubectl config view --raw`` commonly prints)."""
MAX_KUBECONFIG_BYTES = 256 * 1024

_WHY = {
    "exec": "exec plugins run a command inside the operator",
    "auth-provider": "auth-provider plugins can run commands and read local files",
    "tokenFile": "it reads a file of the operator's",
    "token-file": "it reads a file of the operator's",
    "client-certificate": "it reads a file of the operator's",
    "client-key": "it reads a file of the operator's",
    "certificate-authority": "it reads a file of the operator's",
    "proxy-url": "it sends the cluster's traffic through a proxy of the Secret author's choice",
    "username": "basic authentication is not supported",
    "password": "basic authentication is not supported",
    "insecure-skip-tls-verify": "it turns off TLS verification",
}


@dataclass(frozen=True)
class KubeconfigPolicy:
    """What a Secret's kubeconfig may contain beyond inline credentials."""

    allow_exec: bool = False
    """Accept ``exec`` credential plugins (they run a command of the Secret author's choice
    inside the operator, with its identity: only where every Secret writer is trusted)."""
    allow_insecure_tls: bool = False
    """Accept ``insecure-skip-tls-verify: true`` (a man in the middle can then read every
    credential and workload the operator sends to that cluster)."""


@dataclass(frozen=True)
class KubeconfigRejectedError(Exception):
    """The kubeconfig is refused; ``message`` names fields and positions, never values."""

    message: str

    def __str__(self) -> str:
        return self.message


def _hint(field: str, policy_flag: str | None) -> str:
    why = _WHY.get(field, "only inline credentials are accepted")
    flag = f"; the operator allows it only with {policy_flag}" if policy_flag else ""
    return f"{why}{flag}"


def parse_kubeconfig(raw: bytes) -> Any:
    """YAML of an untrusted Secret value. A parse error reports the position only: the
    library's message quotes the offending text, which may be a token."""
    if len(raw) > MAX_KUBECONFIG_BYTES:
        raise KubeconfigRejectedError(f"kubeconfig is larger than {MAX_KUBECONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise KubeconfigRejectedError("kubeconfig is not UTF-8 text") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KubeconfigRejectedError(f"kubeconfig is not valid YAML{where}") from None
    except yaml.YAMLError:
        raise KubeconfigRejectedError("kubeconfig is not valid YAML") from None


def _named(entries: Any, kind: str, name: Any) -> tuple[int, Mapping[str, Any]]:
    """The entry of a kubeconfig list by name: its index and its body (``cluster``, ``user``)."""
    if not isinstance(entries, list):
        raise KubeconfigRejectedError(f"{kind}s must be a list")
    for index, entry in enumerate(entries):
        if isinstance(entry, Mapping) and entry.get("name") == name:
            body = entry.get(kind)
            if not isinstance(body, Mapping):
                raise KubeconfigRejectedError(f"{kind}s[{index}].{kind} must be a mapping")
            return index, body
    raise KubeconfigRejectedError(f"the context refers to a {kind} that {kind}s does not list")


def _context(config: Mapping[str, Any]) -> tuple[int, Mapping[str, Any]]:
    contexts = config.get("contexts")
    if not isinstance(contexts, list) or not contexts:
        raise KubeconfigRejectedError("kubeconfig has no contexts")
    current = config.get("current-context")
    if current is None:
        if len(contexts) != 1:
            raise KubeconfigRejectedError(
                "kubeconfig has several contexts and no current-context to choose one"
            )
        current = contexts[0].get("name") if isinstance(contexts[0], Mapping) else None
    return _named(contexts, "context", current)


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise KubeconfigRejectedError(f"{path} must be a non-empty string")
    return value


def _base64(value: Any, path: str) -> str:
    text = _string(value, path)
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigRejectedError(f"{path} is not valid base64") from None
    return text


def _server(value: Any, path: str) -> str:
    server = _string(value, path)
    try:
        url = urllib.parse.urlsplit(server)
        valid = url.scheme in ("https", "http") and bool(url.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise KubeconfigRejectedError(f"{path} must be an http(s) URL with a host")
    if url.username is not None or url.password is not None:
        raise KubeconfigRejectedError(f"{path} must not carry credentials in the URL")
    return server


def vet_kubeconfig(config: Any, policy: KubeconfigPolicy | None = None) -> dict[str, Any]:
    """A kubeconfig with only the current context's cluster and user, holding only fields
    ``policy`` allows; :class:`KubeconfigRejectedError` naming the first refused field otherwise."""
    policy = policy or KubeconfigPolicy()
    if not isinstance(config, Mapping):
        raise KubeconfigRejectedError("kubeconfig is not a YAML mapping")
    _, context = _context(config)
    cluster_index, cluster = _named(config.get("clusters"), "cluster", context.get("cluster"))
    user_index, user = _named(config.get("users"), "user", context.get("user"))

    vetted_cluster: dict[str, Any] = {}
    for field, value in cluster.items():
        path = f"clusters[{cluster_index}].cluster.{field}"
        if field in INERT_FIELDS:
            continue
        if field == "insecure-skip-tls-verify":
            if value is True and not policy.allow_insecure_tls:
                raise KubeconfigRejectedError(
                    f"{path} is not allowed: {_hint(field, '--insecure-kubeconfig-tls')}"
                )
            if not isinstance(value, bool):
                raise KubeconfigRejectedError(f"{path} must be true or false")
            vetted_cluster[field] = value
        elif field == "server":
            vetted_cluster[field] = _server(value, path)
        elif field == "certificate-authority-data":
            vetted_cluster[field] = _base64(value, path)
        elif field == "tls-server-name":
            vetted_cluster[field] = _string(value, path)
        else:
            raise KubeconfigRejectedError(f"{path} is not allowed: {_hint(field, None)}")
    if "server" not in vetted_cluster:
        raise KubeconfigRejectedError(f"clusters[{cluster_index}].cluster.server is missing")

    vetted_user: dict[str, Any] = {}
    for field, value in user.items():
        path = f"users[{user_index}].user.{field}"
        if field in INERT_FIELDS:
            continue
        if field == "exec" and policy.allow_exec:
            if not isinstance(value, Mapping):
                raise KubeconfigRejectedError(f"{path} must be a mapping")
            vetted_user[field] = dict(value)
        elif field == "token":
            vetted_user[field] = _string(value, path)
        elif field in ("client-certificate-data", "client-key-data"):
            vetted_user[field] = _base64(value, path)
        else:
            flag = "--insecure-kubeconfig-exec" if field == "exec" else None
            raise KubeconfigRejectedError(f"{path} is not allowed: {_hint(field, flag)}")
    if ("client-certificate-data" in vetted_user) != ("client-key-data" in vetted_user):
        raise KubeconfigRejectedError(
            f"users[{user_index}].user needs both client-certificate-data and client-key-data"
        )
    if not vetted_user:
        raise KubeconfigRejectedError(
            f"users[{user_index}].user has no credentials (token or client certificate)"
        )
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "member", "cluster": vetted_cluster}],
        "users": [{"name": "member", "user": vetted_user}],
        "contexts": [{"name": "member", "context": {"cluster": "member", "user": "member"}}],
        "current-context": "member",
    }
