"""List-then-watch caches of one resource in one cluster, with change callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from tierra.shell.kube import KubeClient, KubeError, Obj, resource_path

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace or "", name)
OnChange = Callable[[str, Obj], None]  # (event type, object)


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


def _slim(obj: Obj) -> Obj:
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


Transform = Callable[[Obj], Obj]


class Informer:
    """Keeps ``store`` equal to the cluster's objects of one kind (optionally label-selected)."""

    def __init__(
        self,
        client: KubeClient,
        kind: str,
        label_selector: str | None = None,
        on_change: OnChange | None = None,
        transform: Transform = _slim,
    ) -> None:
        self.client = client
        self.kind = kind
        self.label_selector = label_selector
        self.on_change = on_change
        self.transform = transform
        self.store: dict[Key, Obj] = {}
        self.synced = asyncio.Event()
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.kind}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _notify(self, event: str, obj: Obj) -> None:
        if self.on_change is not None:
            try:
                self.on_change(event, obj)
            except Exception:  # a callback bug must not kill the watch
                log.exception("informer callback failed for %s", self.kind)

    async def _relist(self) -> str:
        listing = await self.client.list(self.kind, label_selector=self.label_selector)
        fresh = {key_of(item): self.transform(item) for item in listing.get("items", [])}
        gone = [key for key in self.store if key not in fresh]
        old = self.store
        self.store = fresh
        for key in gone:
            self._notify("DELETED", old[key])
        for key, obj in fresh.items():
            if old.get(key, {}).get("metadata", {}).get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                self._notify("ADDED" if key not in old else "MODIFIED", obj)
        self.synced.set()
        version: str = listing["metadata"]["resourceVersion"]
        return version

    async def _run(self) -> None:
        backoff = 0.2
        path = resource_path(self.kind)
        while True:
            try:
                version = await self._relist()
                self.failures = 0
                backoff = 0.2
                while True:
                    async for event in self.client.watch(path, version, self.label_selector):
                        kind = event.get("type")
                        obj: dict[str, Any] = event.get("object", {})
                        if kind == "ERROR":
                            raise KubeError(obj.get("code", 500), obj.get("message", ""))
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if kind == "BOOKMARK":
                            continue
                        key = key_of(obj)
                        if kind == "DELETED":
                            self.store.pop(key, None)
                        else:
                            obj = self.transform(obj)
                            self.store[key] = obj
                        self._notify(str(kind), obj)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.failures += 1
                log.debug("informer %s on %s: %s", self.kind, self.client.name, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
