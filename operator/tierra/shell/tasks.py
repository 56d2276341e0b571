"""One named background task, started, stopped and checked the same way everywhere."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class BackgroundTask:
    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        if self._task is None:
            self._task = asyncio.create_task(work, name=self.name)
        else:
            work.close()  # already running: the second coroutine is never awaited

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def alive(self) -> bool:
        """Started, and neither finished nor failed."""
        return self._task is not None and not self._task.done()
