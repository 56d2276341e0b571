"""A de-duplicating, delay-aware work queue of reconcile keys (controller-runtime style).

A key is never processed by two workers at once; a key added while it is being processed is
processed again afterwards; a delayed add is superseded by an earlier one.
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
        self._ready: list[K] = []
        self._ready_set: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._ready_set) + len(self._due)

    def add(self, key: K, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        if delay > 0:
            due = loop.time() + delay
            if key in self._ready_set or self._due.get(key, float("inf")) <= due:
                return
            self._due[key] = due
            heapq.heappush(self._delayed, (due, next(self._counter), key))
            self._wakeup.set()
            return
        self._due.pop(key, None)
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._ready_set:
            self._ready_set.add(key)
            self._ready.append(key)
            self._wakeup.set()

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
            if self._ready:
                key = self._ready.pop(0)
                self._ready_set.discard(key)
                self._processing.add(key)
                return key
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=wait)

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)
