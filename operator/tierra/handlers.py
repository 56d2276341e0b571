"""kopf glue: the operator's lifecycle around the reconciler.

kopf provides the process lifecycle (login, start-up and clean-up, signals) and the liveness
endpoint; the reconciler watches Tiers, InferenceServices and the member clusters with its own
informers. All decisions live in :mod:`tierra.core` and all actions in :mod:`tierra.reconciler`
/ :mod:`tierra.shell`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
from prometheus_client import REGISTRY, start_http_server

from tierra.reconciler import Reconciler
from tierra.shell.kube import client_from_default
from tierra.status_metrics import StatusCollector

_metrics_started = False
_status_collector: StatusCollector | None = None


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # the reconciler posts its own, meaningful Events
    settings.networking.request_timeout = 30
    # No kopf resource handlers, so nothing to discover: without this kopf would watch CRDs
    # and namespaces, which the chart's least-privilege ClusterRole does not grant.
    settings.scanning.disabled = True
    metrics_port = int(os.environ.get("TIERRA_METRICS_PORT", "8080"))
    global _metrics_started  # noqa: PLW0603 - one HTTP server per process, even if startup retries
    if metrics_port and not _metrics_started:
        start_http_server(metrics_port)
        _metrics_started = True
    management = await client_from_default("management")
    reconciler = Reconciler(
        management=management,
        namespace=os.environ.get("TIERRA_NAMESPACE", "tierra-system"),
        workers=int(os.environ.get("TIERRA_WORKERS", "16")),
        prometheus_url=os.environ.get("TIERRA_PROMETHEUS_URL") or None,
        metrics_interval=float(os.environ.get("TIERRA_METRICS_INTERVAL", "5")),
    )
    await reconciler.start()
    memo["reconciler"] = reconciler
    global _status_collector  # noqa: PLW0603 - one collector per process, like the server
    if _status_collector is None:
        _status_collector = StatusCollector(lambda: list(memo["reconciler"].services.values()))
        REGISTRY.register(_status_collector)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        await reconciler.stop()
        await reconciler.management.close()


def configure_logging() -> None:
    level = os.environ.get("TIERRA_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(
        max(logging.getLevelName(level), logging.WARNING)
        if isinstance(logging.getLevelName(level), int)
        else logging.WARNING
    )
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
