"""List-then-watch caches of one resource in one cluster, with change callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, ItemsView, Iterator, KeysView, MutableMapping, ValuesView
from typing import Any

from tierra.shell import telemetry
from tierra.shell.kube import KubeClient, KubeError, Obj, resource_path
from tierra.shell.tasks import BackgroundTask

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
StoreListener = Callable[[Key, Obj | None], None]  # (key, object set, or None: deleted)
IndexBy = Callable[[Obj], str | None]


class Store(MutableMapping[Key, Obj]):
    """An informer's cache: a dict that reports every write, whoever makes it.

    The watch writes here, and so does the reconciler (write-through of decisions before the
    apiserver answers, and undoing them). Subscribers (the usage index) see each set and delete
    in order; an optional ``index_by`` key (e.g. the owning service) lists objects by that key
    without scanning the store.
    """

    def __init__(self, index_by: IndexBy | None = None) -> None:
        self._data: dict[Key, Obj] = {}
        self._listeners: list[StoreListener] = []
        self._index_by = index_by
        self._index: dict[str, dict[Key, None]] = {}

    def __getitem__(self, key: Key) -> Obj:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[Key]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Key, default: Any = None) -> Any:
        return self._data.get(key, default)

    def keys(self) -> KeysView[Key]:
        return self._data.keys()

    def values(self) -> ValuesView[Obj]:
        return self._data.values()

    def items(self) -> ItemsView[Key, Obj]:
        return self._data.items()

    def __setitem__(self, key: Key, obj: Obj) -> None:
        old = self._data.get(key)
        self._data[key] = obj
        if self._index_by is not None:
            self._unindex(key, old)
            value = self._index_by(obj)
            if value is not None:
                self._index.setdefault(value, {})[key] = None
        self._notify(key, obj)

    def __delitem__(self, key: Key) -> None:
        old = self._data.pop(key)
        self._unindex(key, old)
        self._notify(key, None)

    def _unindex(self, key: Key, old: Obj | None) -> None:
        if self._index_by is None or old is None:
            return
        value = self._index_by(old)
        if value is None or value not in self._index:
            return
        keys = self._index[value]
        keys.pop(key, None)
        if not keys:
            del self._index[value]

    def by_index(self, value: str) -> list[Obj]:
        """The objects whose ``index_by`` key is ``value`` (a list: safe to delete from the
        store while looping over it)."""
        return [self._data[key] for key in self._index.get(value, ())]

    def subscribe(self, listener: StoreListener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: StoreListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _notify(self, key: Key, obj: Obj | None) -> None:
        for listener in self._listeners:
            try:
                listener(key, obj)
            except Exception:  # a subscriber bug must not break the cache
                log.exception("store listener failed for %s", key)


class Informer:
    """Keeps ``store`` equal to the cluster's objects of one kind (optionally label-selected)."""

    def __init__(
        self,
        client: KubeClient,
        kind: str,
        label_selector: str | None = None,
        on_change: OnChange | None = None,
        transform: Transform = _slim,
        index_by: IndexBy | None = None,
    ) -> None:
        self.client = client
        self.kind = kind
        self.label_selector = label_selector
        self.on_change = on_change
        self.transform = transform
        self.store = Store(index_by)
        self.synced = asyncio.Event()
        self.failures = 0
        """Consecutive failed listings or watches (0 after a successful listing)."""
        self.last_error: Exception | None = None
        self.on_state: Callable[[], None] | None = None
        """Called after each listing and each failure (the cluster's health follows them)."""
        self._task = BackgroundTask(f"informer-{kind}")

    def start(self) -> None:
        if not self._task.alive():
            self._task.start(self._run())

    async def stop(self) -> None:
        await self._task.stop()

    def _notify(self, event: str, obj: Obj) -> None:
        if self.on_change is not None:
            try:
                self.on_change(event, obj)
            except Exception:  # a callback bug must not kill the watch
                log.exception("informer callback failed for %s", self.kind)

    async def _relist(self) -> str:
        listing = await self.client.list(self.kind, label_selector=self.label_selector)
        fresh = {key_of(item): self.transform(item) for item in listing.get("items", [])}
        # Update the store in place (its subscribers see each change), then tell on_change.
        old = dict(self.store)
        gone = [key for key in old if key not in fresh]
        for key in gone:
            del self.store[key]
        for key, obj in fresh.items():
            self.store[key] = obj
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
                self.last_error = None
                self._state_changed()
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
                self.last_error = error
                telemetry.WATCH_FAILURES.labels(cluster=self.client.name, kind=self.kind).inc()
                # Loud when a failure starts and now and then while it lasts, not every retry.
                loud = self.failures in (1, 3) or self.failures % 60 == 0
                expired = isinstance(error, KubeError) and error.status == 410  # routine re-list
                log.log(
                    logging.WARNING if loud and not expired else logging.DEBUG,
                    "listing/watching %ss in %s failed (%d in a row): %s",
                    self.kind,
                    self.client.name or "the management cluster",
                    self.failures,
                    error if isinstance(error, KubeError) else type(error).__name__,
                )
                self._state_changed()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _state_changed(self) -> None:
        if self.on_state is not None:
            try:
                self.on_state()
            except Exception:
                log.exception("informer state callback failed for %s", self.kind)
