"""The reconcile work queue: dedup, no concurrent processing of a key, delays."""

from __future__ import annotations

import asyncio

from tierra.shell.workqueue import WorkQueue


async def test_duplicate_adds_are_merged() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"


async def test_key_added_while_processing_is_requeued_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    assert len(queue) == 0  # not handed to a second worker
    queue.done(key)
    assert await asyncio.wait_for(queue.get(), 1) == "a"


async def test_delayed_add_waits_and_earlier_add_wins() -> None:
    queue: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    started = loop.time()
    queue.add("slow", delay=0.2)
    assert await asyncio.wait_for(queue.get(), 1) == "slow"
    assert loop.time() - started >= 0.19
    queue.add("x", delay=10)
    queue.add("x")  # an immediate add supersedes the delayed one
    assert await asyncio.wait_for(queue.get(), 1) == "x"


async def test_get_blocks_until_add() -> None:
    queue: WorkQueue[int] = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.05)
    assert not getter.done()
    queue.add(7)
    assert await asyncio.wait_for(getter, 1) == 7
