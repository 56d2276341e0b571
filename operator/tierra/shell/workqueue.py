"""A de-duplicating, delay-aware work queue of reconcile keys (controller-runtime style).

A key is never processed by two workers at once; a key added while it is being processed is
processed again afterwards; a delayed add is superseded by an earlier one.

Two priorities, as controller-runtime's priority queue has: a key added as ``background``
(bookkeeping: a child's readiness to report, another look for a service waiting on capacity,
the services listed at start-up) is handed out only when no urgent key is ready, so that under
load new and changed services are placed first. A key keeps the highest priority it was added
with.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        # Insertion-ordered sets: FIFO within a priority, O(1) promotion.
        self._urgent: dict[K, None] = {}
        self._background: dict[K, None] = {}
        self._processing: set[K] = set()
        self._dirty: dict[K, bool] = {}
        """Keys added while being processed -> whether every such add was background."""
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()
        self._ready_since: dict[K, float] = {}
        """When each ready key became ready (the health probe reports the oldest)."""

    def __len__(self) -> int:
        return len(self._urgent) + len(self._background) + len(self._due)

    def add(self, key: K, delay: float = 0.0, background: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if delay > 0:
            due = loop.time() + delay
            queued = key in self._urgent or key in self._background
            if queued or self._due.get(key, float("inf")) <= due:
                return
            self._due[key] = due
            heapq.heappush(self._delayed, (due, next(self._counter), key))
            self._wakeup.set()
            return
        self._due.pop(key, None)
        if key in self._processing:
            self._dirty[key] = background and self._dirty.get(key, True)
            return
        if key in self._urgent or (background and key in self._background):
            return
        self._background.pop(key, None)  # promoted: an urgent add wins
        (self._background if background else self._urgent)[key] = None
        self._ready_since.setdefault(key, loop.time())
        self._wakeup.set()

    def ready_count(self) -> int:
        """Keys ready to be handed out now (not delayed, not being processed)."""
        return len(self._urgent) + len(self._background)

    def oldest_wait(self) -> float:
        """Seconds the longest-waiting ready key has waited (0 when none waits)."""
        if not self._ready_since:
            return 0.0
        return asyncio.get_running_loop().time() - min(self._ready_since.values())

    def _promote_due(self) -> float | None:
        """Move due delayed keys to ready; return seconds until the next one."""
        now = asyncio.get_running_loop().time()
        while self._delayed:
            due, _, key = self._delayed[0]
            if self._due.get(key) != due:
                heapq.heappop(self._delayed)  # superseded
                continue
            if due > now:
                return due - now
            heapq.heappop(self._delayed)
            del self._due[key]
            self.add(key)
        return None

    async def get(self) -> K:
        while True:
            wait = self._promote_due()
            ready = self._urgent or self._background
            if ready:
                key = next(iter(ready))
                del ready[key]
                self._ready_since.pop(key, None)
                self._processing.add(key)
                return key
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=wait)

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self.add(key, background=self._dirty.pop(key))
