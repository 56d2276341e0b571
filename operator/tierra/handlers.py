"""kopf glue: the operator's process around the controllers.

kopf provides the process lifecycle (login, start-up and clean-up, signals) and the liveness
endpoint, where :func:`controllers_health` reports whether the controllers work. The
controllers watch Tiers, InferenceServices and the member clusters with their own informers
(:mod:`tierra.controllers`); all decisions live in :mod:`tierra.core`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf
from kubernetes_asyncio.client import Configuration
from prometheus_client import REGISTRY, start_http_server

from tierra.controllers.manager import Manager
from tierra.settings import Settings
from tierra.shell.kube import KubeClient, client_from_default, operator_configuration
from tierra.shell.leader import LeaderElector
from tierra.status_metrics import StatusCollector

log = logging.getLogger(__name__)
_metrics_started = False
_status_collector: StatusCollector | None = None


class ControllersUnhealthy(Exception):  # noqa: N818 - what /healthz reports, verbatim
    """The controllers are not doing their job (the liveness probe fails)."""


_login_files = contextlib.ExitStack()


@kopf.on.login()
async def login(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf's connection: the in-cluster service account, else the kube context that
    ``tierra run --context`` names (else the current one), as the operator's own clients."""
    tierra: Settings = memo.get("settings") or Settings()
    log.info(
        "kopf logs in with %s",
        f"kube context {tierra.context!r}"
        if tierra.context
        else "the pod's service account, else the current kube context",
    )
    # kopf reads the certificate files when it next connects: hold them until the next login.
    files = contextlib.ExitStack()
    configuration = await operator_configuration(tierra.context, files)
    _login_files.close()
    _login_files.push(files)
    return await _connection(configuration, settings)


async def _connection(
    configuration: Configuration, settings: kopf.OperatorSettings
) -> kopf.ConnectionInfo:
    # The library's own call: it refreshes an exec plugin's or auth provider's token.
    header = await configuration.get_api_key_with_prefix("BearerToken") or ""
    scheme, _, token = str(header).rpartition(" ")
    return kopf.ConnectionInfo(
        server=str(configuration.host),
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        proxy_url=configuration.proxy,
        trust_env=settings.networking.trust_env,
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    tierra: Settings = memo.get("settings") or Settings()
    settings.posting.enabled = False  # the controllers post their own, meaningful Events
    settings.networking.request_timeout = 30
    # No kopf resource handlers, so nothing to discover: without this kopf would watch CRDs
    # and namespaces, which the chart's least-privilege ClusterRole does not grant.
    settings.scanning.disabled = True
    global _metrics_started  # noqa: PLW0603 - one HTTP server per process, even if startup retries
    if tierra.metrics_port and not _metrics_started:
        start_http_server(tierra.metrics_port)
        _metrics_started = True
    global _status_collector  # noqa: PLW0603 - one collector per process, like the server
    if _status_collector is None:
        _status_collector = StatusCollector(lambda: _service_bodies(memo))
        REGISTRY.register(_status_collector)
    management = await client_from_default("management", tierra.context)
    memo["management"] = management
    election = tierra.leader_election
    if not election.enabled:
        memo["manager"] = Manager(management, tierra)
        await memo["manager"].start()
        return
    # The elector has a client of its own: the Lease is the one thing a standby writes.
    elector = LeaderElector(
        await client_from_default("leader-election", tierra.context),
        tierra.namespace,
        election.lease_name,
        election.timing,
    )
    management.write_gate = elector.write_timeout  # (member clients inherit it)
    memo["elector"] = elector

    async def lead() -> None:
        log.info("leading (%s): starting the controllers", elector.identity)
        manager = Manager(management, tierra)
        memo["manager"] = manager
        await manager.start()

    async def step_down() -> None:
        manager: Manager | None = memo.pop("manager", None)
        log.warning("no longer the leader (%s): stopping the controllers", elector.identity)
        if manager is not None:
            await manager.stop()

    memo["election"] = asyncio.create_task(elector.run(lead, step_down), name="leader-election")


def _service_bodies(memo: kopf.Memo) -> list[Any]:
    manager: Manager | None = memo.get("manager")
    return list(manager.cache.bodies.values()) if manager is not None else []


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    election: asyncio.Task[None] | None = memo.get("election")
    if election is not None:
        election.cancel()  # stops the controllers (step_down), then releases the Lease
        with contextlib.suppress(asyncio.CancelledError):
            await election
        await memo["elector"].client.close()
    manager: Manager | None = memo.pop("manager", None)
    if manager is not None:
        await manager.stop()
    management: KubeClient | None = memo.get("management")
    if management is not None:
        await management.close()


@kopf.on.probe(id="controllers")
def controllers_health(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """``/healthz``: fails (HTTP 500) when the leader's controller loops or workers are dead
    (or the election itself died); otherwise reports leadership, informer sync, queue depth
    and the oldest queued key's wait. A standby is healthy: it is meant to be idle."""
    election: asyncio.Task[None] | None = memo.get("election")
    if election is not None and election.done():
        raise ControllersUnhealthy("leader election stopped")
    elector: LeaderElector | None = memo.get("elector")
    manager: Manager | None = memo.get("manager")
    leading = elector.is_leader if elector is not None else manager is not None
    if manager is None or not leading:
        return {"leader": False}
    health = manager.health()
    if not health.ok:
        raise ControllersUnhealthy("; ".join(health.problems))
    return {"leader": True, **health.details}


def configure_logging(level_name: str = "INFO") -> None:
    level = level_name.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    numeric = logging.getLevelName(level)
    logging.getLogger("kopf").setLevel(
        max(numeric, logging.WARNING) if isinstance(numeric, int) else logging.WARNING
    )
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
