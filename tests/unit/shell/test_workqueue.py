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


async def test_urgent_keys_are_handed_out_before_background_ones() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("ready-1", background=True)
    queue.add("new-1")
    queue.add("ready-2", background=True)
    queue.add("new-2")
    assert len(queue) == 4
    assert [await queue.get() for _ in range(4)] == ["new-1", "new-2", "ready-1", "ready-2"]


async def test_a_key_keeps_the_highest_priority_it_was_added_with() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("b", background=True)
    queue.add("b")  # promoted
    queue.add("a", background=True)  # stays urgent
    queue.add("c")
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_a_key_added_while_processing_keeps_its_highest_priority() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a", background=True)
    queue.add("a")  # urgent wins over the background add
    queue.add("b")
    queue.done(key)
    assert [await queue.get() for _ in range(2)] == ["b", "a"]  # FIFO among urgent keys
    queue.done("b")
    queue.done("a")
    queue.add("z")
    key = await queue.get()
    queue.add("z", background=True)
    queue.add("y", background=True)
    queue.add("x")
    queue.done(key)
    assert [await queue.get() for _ in range(3)] == ["x", "y", "z"]  # z requeued as background
