"""A lean async Kubernetes client over raw JSON, for any number of clusters.

It reuses ``kubernetes_asyncio`` for what it does well (kubeconfig parsing, TLS, auth) and
speaks plain dicts on the wire: rendered manifests go out as server-side apply patches and
list/watch results stay dicts, which keeps informers of thousands of objects cheap.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.kube_config import KubeConfigLoader

from tierra.shell import telemetry

FIELD_MANAGER = "tierra"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

Obj = dict[str, Any]

# kind -> (API path prefix, plural, namespaced)
_RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "Service": ("/api/v1", "services", True),
    "Namespace": ("/api/v1", "namespaces", False),
    "Event": ("/api/v1", "events", True),
    "Secret": ("/api/v1", "secrets", True),
    "Pod": ("/api/v1", "pods", True),
    "Node": ("/api/v1", "nodes", False),
    "InferenceService": ("/apis/tierra.dev/v1alpha1", "inferenceservices", True),
    "Tier": ("/apis/tierra.dev/v1alpha1", "tiers", False),
}


LIST_PAGE_SIZE = 500
PROBE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class ProbeResult:
    """One reachability probe: its outcome, a CamelCase reason and a message (no secrets)."""

    ok: bool
    reason: str
    message: str


class KubeError(Exception):
    """A non-2xx answer from an apiserver."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def resource_path(
    kind: str, namespace: str | None = None, name: str | None = None, subresource: str | None = None
) -> str:
    prefix, plural, namespaced = _RESOURCES[kind]
    path = prefix
    if namespaced and namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class KubeClient:
    """One cluster. Create with :func:`client_from_kubeconfig` or :func:`client_from_default`."""

    def __init__(self, api_client: ApiClient, name: str = "") -> None:
        self.api_client = api_client
        self.name = name
        self.write_gate: Callable[[float], float] | None = None
        """Called before every non-GET request with its timeout: returns the timeout to use,
        or raises to refuse the write (leader election's gate)."""
        self.host = str(api_client.configuration.host).rstrip("/")
        # The library's session trusts the environment: every request then looks up proxy
        # variables and parses ~/.netrc in a thread, which cost the operator about a tenth of
        # its CPU when placing 1,000 services. The same connection pool gets a session
        # without; a proxy is the kubeconfig's ``proxy-url``.
        self.proxy: str | None = getattr(api_client.configuration, "proxy", None) or None
        rest = api_client.rest_client
        library_session: aiohttp.ClientSession = rest.pool_manager
        rest.pool_manager = aiohttp.ClientSession(
            connector=library_session.connector,
            trust_env=False,
            read_bufsize=2**21,  # watch events of large objects (as the library sets)
        )
        library_session.detach()

    @property
    def _session(self) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = self.api_client.rest_client.pool_manager
        return session

    async def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        settings = await self.api_client.configuration.auth_settings()
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float = 10.0,
    ) -> Obj:
        if method != "GET":
            if self.write_gate is not None:
                # Right before the request, with no await in between: a process that lost (or
                # could not renew) its leadership makes no write, and no write of its term is
                # still in flight when the term ends.
                timeout = self.write_gate(timeout)
            telemetry.WRITES.labels(cluster=self.name or "management").inc()
        data = None if body is None else orjson.dumps(body)
        if data is not None and content_type is None:
            content_type = "application/json"
        async with self._session.request(
            method,
            self.host + path,
            proxy=self.proxy,
            params=dict(params or {}),
            data=data,
            headers=await self._headers(content_type),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            payload = await response.read()
            if response.status >= 400:
                try:
                    status = orjson.loads(payload)
                    raise KubeError(
                        response.status, status.get("message", ""), status.get("reason", "")
                    )
                except (ValueError, AttributeError):
                    raise KubeError(response.status, payload.decode(errors="replace")) from None
            result: Obj = orjson.loads(payload) if payload else {}
            return result

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return await self.request("GET", resource_path(kind, namespace, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> Obj:
        """Every object of ``kind``, read in pages of ``page_size`` (``limit``/``continue``) so
        that no single answer holds a whole large cluster. The result has the shape of one
        list answer: the last page's metadata (its resourceVersion is the consistent snapshot
        all pages come from) and every page's items. An expired continue token (410) starts
        the listing over."""
        for _ in range(3):
            params = {"limit": str(page_size)}
            if label_selector:
                params["labelSelector"] = label_selector
            items: list[Obj] = []
            try:
                while True:
                    page = await self.request(
                        "GET", resource_path(kind, namespace), params, timeout=60.0
                    )
                    items.extend(page.get("items") or [])
                    token = (page.get("metadata") or {}).get("continue")
                    if not token:
                        page["items"] = items
                        return page
                    params["continue"] = token
            except KubeError as error:
                if error.status != 410:
                    raise
        raise KubeError(410, f"listing {kind} kept expiring between pages", "Expired")

    async def apply(self, manifest: Obj, subresource: str | None = None) -> Obj:
        """Server-side apply with the ``tierra`` field manager (force: Tierra owns its fields)."""
        meta = manifest["metadata"]
        path = resource_path(manifest["kind"], meta.get("namespace"), meta["name"], subresource)
        return await self.request(
            "PATCH", path, {"fieldManager": FIELD_MANAGER, "force": "true"}, manifest, APPLY_PATCH
        )

    async def patch(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        patch: Any,
        content_type: str = MERGE_PATCH,
        subresource: str | None = None,
    ) -> Obj:
        return await self.request(
            "PATCH",
            resource_path(kind, namespace, name, subresource),
            {"fieldManager": FIELD_MANAGER},
            patch,
            content_type,
        )

    async def create(self, manifest: Obj) -> Obj:
        meta = manifest["metadata"]
        return await self.request(
            "POST",
            resource_path(manifest["kind"], meta.get("namespace")),
            {"fieldManager": FIELD_MANAGER},
            manifest,
        )

    async def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (background propagation); False when it was already gone."""
        try:
            await self.request(
                "DELETE",
                resource_path(kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def probe(self) -> ProbeResult:
        """Whether the cluster answers *and accepts our credentials*: a SelfSubjectReview is
        authenticated (``/readyz`` also answers anonymous requests, so expired or revoked
        credentials would look healthy) and allowed to every authenticated user."""
        try:
            await self.request(
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                timeout=PROBE_TIMEOUT_SECONDS,
            )
        except KubeError as error:
            if error.status == 401:
                return ProbeResult(False, "Unauthorized", "the cluster rejects the credentials")
            if error.status == 403:
                return ProbeResult(False, "Forbidden", "the credentials may not review themselves")
            return ProbeResult(False, "ProbeFailed", f"the apiserver answered HTTP {error.status}")
        except TimeoutError:
            return ProbeResult(
                False, "ProbeTimeout", f"no answer within {PROBE_TIMEOUT_SECONDS:g}s"
            )
        except (aiohttp.ClientError, OSError) as error:
            return ProbeResult(False, "ProbeFailed", f"cannot connect: {type(error).__name__}")
        return ProbeResult(True, "ProbeSucceeded", "the apiserver accepts the credentials")

    async def watch(
        self,
        path: str,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[Obj]:
        """Yield watch events (dicts with ``type`` and ``object``) until the server closes."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        async with self._session.get(
            self.host + path,
            proxy=self.proxy,
            params=params,
            headers=await self._headers(),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
        ) as response:
            if response.status >= 400:
                raise KubeError(response.status, (await response.read()).decode(errors="replace"))
            async for line in response.content:
                if line.strip():
                    yield orjson.loads(line)

    async def close(self) -> None:
        await self.api_client.close()


class KubeconfigContextError(Exception):
    """The operator's kubeconfig has no such context (or none at all)."""


@dataclass(frozen=True)
class OperatorKubeconfig:
    """The operator's own kubeconfig: trusted (its admin wrote it), read once per login."""

    config: Obj
    base_path: str
    """Directory that relative certificate paths in ``config`` are relative to."""


def operator_kubeconfig(context: str | None = None) -> OperatorKubeconfig:
    """The first file of ``KUBECONFIG`` (else ``~/.kube/config``), with ``context`` current."""
    first = os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
    path = Path(os.path.expanduser(first))
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        problem = type(error).__name__
        raise KubeconfigContextError(f"cannot read kubeconfig {path}: {problem}") from None
    if context is not None:
        names = {c.get("name") for c in config.get("contexts") or [] if isinstance(c, Mapping)}
        if context not in names:
            raise KubeconfigContextError(f"no context {context!r} in {path}")
        config["current-context"] = context
    return OperatorKubeconfig(config, str(path.parent))


_EMBEDDED = {
    "clusters": ("cluster", {"certificate-authority-data": "certificate-authority"}),
    "users": (
        "user",
        {"client-certificate-data": "client-certificate", "client-key-data": "client-key"},
    ),
}


def credentials_in_memory(config: Obj, files: contextlib.ExitStack) -> Obj:
    """``config`` with each embedded certificate and key moved to an anonymous in-memory file
    that ``files`` closes.

    Python's TLS loads a client key only from a path, so the client library writes embedded
    ones to temporary files that it removes at exit: a kill -9 leaves the key on disk. An
    in-memory file (Linux's memfd) goes with the process whatever ends it. Elsewhere the
    config is returned unchanged.
    """
    if not hasattr(os, "memfd_create"):
        return config
    moved = dict(config)
    for section, (key, fields) in _EMBEDDED.items():
        entries = []
        for entry in config.get(section) or []:
            inner = entry.get(key) if isinstance(entry, Mapping) else None
            if not isinstance(inner, Mapping) or not any(f in inner for f in fields):
                entries.append(entry)
                continue
            inner = dict(inner)
            for data_field, path_field in fields.items():
                if data_field in inner:
                    content = base64.b64decode(inner.pop(data_field))
                    inner[path_field] = _memory_file(content, files)
            entries.append({**entry, key: inner})
        if section in config:
            moved[section] = entries
    return moved


def _memory_file(content: bytes, files: contextlib.ExitStack) -> str:
    descriptor = os.memfd_create("tierra-credential", os.MFD_CLOEXEC)
    files.callback(os.close, descriptor)
    os.write(descriptor, content)
    return f"/proc/self/fd/{descriptor}"


async def client_configuration(
    config: Obj, context: str | None, base_path: str, files: contextlib.ExitStack
) -> Configuration:
    """The client library's configuration for ``config``; its certificate and key paths are
    valid until ``files`` closes."""
    configuration = Configuration()
    loader = KubeConfigLoader(
        config_dict=credentials_in_memory(config, files),
        active_context=context,
        config_base_path=base_path,
    )
    await loader.load_and_set(configuration)
    return configuration


async def client_from_kubeconfig(
    config: Obj, name: str = "", context: str | None = None, base_path: str = ""
) -> KubeClient:
    with contextlib.ExitStack() as files:
        configuration = await client_configuration(config, context, base_path, files)
        api_client = ApiClient(configuration)  # reads the certificates: TLS is set up here
    return KubeClient(api_client, name)


def sync_api_client(
    config: Obj, context: str | None, base_path: str, files: contextlib.ExitStack
) -> Any:
    """A client of the synchronous library (``kubernetes``) for ``config``'s ``context``, for
    the short-lived commands. Its HTTP pool reads the certificate and key paths at each new
    connection, so ``files`` must stay open for as long as the client is used."""
    from kubernetes import client
    from kubernetes.config.kube_config import KubeConfigLoader as SyncKubeConfigLoader

    configuration = client.Configuration()
    SyncKubeConfigLoader(
        config_dict=credentials_in_memory(config, files),
        active_context=context,
        config_base_path=base_path,
    ).load_and_set(configuration)
    return client.ApiClient(configuration)


async def operator_configuration(context: str | None, files: contextlib.ExitStack) -> Configuration:
    """The operator's own cluster: the pod's service account when in one and no ``context``
    is named, else the kubeconfig's ``context`` (or its current one); certificate and key
    paths are valid until ``files`` closes."""
    if context is None:
        configuration = Configuration()
        try:
            kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return configuration
        except kube_config.ConfigException:
            pass
    own = operator_kubeconfig(context)
    return await client_configuration(own.config, None, own.base_path, files)


async def client_from_default(name: str = "", context: str | None = None) -> KubeClient:
    """A client of the operator's own cluster (``operator_configuration``)."""
    with contextlib.ExitStack() as files:
        api_client = ApiClient(await operator_configuration(context, files))
    return KubeClient(api_client, name)
