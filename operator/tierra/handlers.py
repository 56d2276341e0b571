"""kopf glue: watch Tiers and InferenceServices and hand them to the reconciler.

kopf provides robust watching of the management cluster, the liveness endpoint and the
operator lifecycle; all decisions live in :mod:`tierra.core` and all actions in
:mod:`tierra.reconciler` / :mod:`tierra.shell`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
from prometheus_client import start_http_server

from tierra.reconciler import Reconciler
from tierra.shell.kube import client_from_default

GROUP, VERSION = "tierra.dev", "v1alpha1"
_metrics_started = False


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # the reconciler posts its own, meaningful Events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.batching.batch_window = 0.01  # react to a spec change within milliseconds
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


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        await reconciler.stop()
        await reconciler.management.close()


@kopf.on.event(GROUP, VERSION, "inferenceservices")
async def service_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None and event.get("object"):
        reconciler.on_service_event(event.get("type"), dict(event["object"]))


def configure_logging() -> None:
    level = os.environ.get("TIERRA_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(
        max(logging.getLevelName(level), logging.WARNING)
        if isinstance(logging.getLevelName(level), int)
        else logging.WARNING
    )
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
