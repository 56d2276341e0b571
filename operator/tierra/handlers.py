"""kopf glue: the operator's process around the controllers.

kopf provides the process lifecycle (login, start-up and clean-up, signals) and the liveness
endpoint, where :func:`controllers_health` reports whether the controllers work. The
controllers watch Tiers, InferenceServices and the member clusters with their own informers
(:mod:`tierra.controllers`); all decisions live in :mod:`tierra.core`.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from prometheus_client import REGISTRY, start_http_server

from tierra.controllers.manager import Manager
from tierra.settings import Settings
from tierra.shell.kube import client_from_default
from tierra.status_metrics import StatusCollector

_metrics_started = False
_status_collector: StatusCollector | None = None


class ControllersUnhealthy(Exception):  # noqa: N818 - what /healthz reports, verbatim
    """The controllers are not doing their job (the liveness probe fails)."""


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
    management = await client_from_default("management")
    manager = Manager(management, tierra)
    memo["manager"] = manager
    await manager.start()
    global _status_collector  # noqa: PLW0603 - one collector per process, like the server
    if _status_collector is None:
        _status_collector = StatusCollector(lambda: list(memo["manager"].cache.bodies.values()))
        REGISTRY.register(_status_collector)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    manager: Manager | None = memo.get("manager")
    if manager is not None:
        await manager.stop()
        await manager.management.close()


@kopf.on.probe(id="controllers")
def controllers_health(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """``/healthz``: fails (HTTP 500) when a controller loop or the workers are dead;
    otherwise reports informer sync, queue depth and the oldest queued key's wait."""
    manager: Manager | None = memo.get("manager")
    if manager is None:
        return {"started": False}
    health = manager.health()
    if not health.ok:
        raise ControllersUnhealthy("; ".join(health.problems))
    return health.details


def configure_logging(level_name: str = "INFO") -> None:
    level = level_name.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    numeric = logging.getLevelName(level)
    logging.getLogger("kopf").setLevel(
        max(numeric, logging.WARNING) if isinstance(numeric, int) else logging.WARNING
    )
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
