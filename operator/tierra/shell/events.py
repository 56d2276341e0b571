"""Kubernetes Events about Tierra's objects, posted off the reconcile path."""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid

from tierra.shell.kube import KubeClient, KubeError, Obj

log = logging.getLogger(__name__)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Posts Events to the management cluster, at most ``concurrency`` at once."""

    def __init__(self, client: KubeClient, concurrency: int = 8) -> None:
        self.client = client
        self._limit = asyncio.Semaphore(concurrency)
        self._pending: set[asyncio.Task[None]] = set()

    def emit(self, body: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        """Post an Event in the background (``drain`` waits for those in flight)."""

        async def post() -> None:
            async with self._limit:
                await self.post(body, reason, message, type_)

        task = asyncio.create_task(post(), name=f"event-{reason}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the Events being posted (cancelling what is left after ``timeout``)."""
        pending = set(self._pending)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d Events not posted before shutdown", len(late))
            await asyncio.wait(late)

    async def post(self, body: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        meta = body["metadata"]
        stamp = now_rfc3339()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:12]}",
                "namespace": meta.get("namespace") or "default",
            },
            "involvedObject": {
                "apiVersion": body.get("apiVersion", "tierra.dev/v1alpha1"),
                "kind": body.get("kind", "InferenceService"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": "tierra"},
            "reportingComponent": "tierra",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.client.create(event)
        except KubeError as error:
            log.warning("could not post event %s: %s", reason, error)
