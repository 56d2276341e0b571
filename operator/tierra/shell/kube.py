"""A lean async Kubernetes client over raw JSON, for any number of clusters.

It reuses ``kubernetes_asyncio`` for what it does well (kubeconfig parsing, TLS, auth) and
speaks plain dicts on the wire: rendered manifests go out as server-side apply patches and
list/watch results stay dicts, which keeps informers of thousands of objects cheap.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient

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


async def client_from_kubeconfig(
    config: Obj, name: str = "", context: str | None = None
) -> KubeClient:
    api_client = await kube_config.new_client_from_config_dict(config, context=context)
    return KubeClient(api_client, name)


async def client_from_default(name: str = "") -> KubeClient:
    """The operator's own cluster: in-cluster config, else the current kube context."""
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
        api_client = ApiClient()
    except kube_config.ConfigException:
        # KUBECONFIG is read now, not at import time (the library freezes it on import).
        path = os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
        api_client = await kube_config.new_client_from_config(config_file=os.path.expanduser(path))
    return KubeClient(api_client, name)
