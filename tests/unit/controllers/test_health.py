"""/healthz: it fails as soon as a controller loop or the workers are dead, not before."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf
import pytest

from tierra.controllers.manager import Manager
from tierra.handlers import ControllersUnhealthy, controllers_health
from tierra.settings import Settings
from tierra.shell.kube import KubeClient


async def _forever() -> None:
    await asyncio.Event().wait()


def _manager(workers_alive: bool) -> Manager:
    manager = Manager(cast(KubeClient, object()), Settings())
    running = [asyncio.create_task(_forever()) for _ in range(4)]
    manager.services._tasks = running[:2]
    manager.tiers.task._task, manager.autoscaling.task._task = running[2], running[3]
    manager.sweep.task._task = asyncio.create_task(_forever())
    if not workers_alive:
        manager.services._tasks[1].cancel()
    return manager


async def test_a_healthy_leader_reports_its_queue_and_sync() -> None:
    memo = kopf.Memo(manager=_manager(workers_alive=True))
    await asyncio.sleep(0)
    report: dict[str, Any] = controllers_health(memo=memo)
    assert report["leader"] is True
    assert report["queueDepth"] == 0 and report["oldestQueuedSeconds"] == 0
    assert report["tiersSynced"] is False  # nothing listed yet


async def test_dead_workers_fail_the_probe() -> None:
    manager = _manager(workers_alive=False)
    await asyncio.sleep(0)  # let the cancellation land
    with pytest.raises(ControllersUnhealthy, match="service workers"):
        controllers_health(memo=kopf.Memo(manager=manager))
    manager.sweep.task._task.cancel()  # type: ignore[union-attr]
    await asyncio.sleep(0)
    with pytest.raises(ControllersUnhealthy, match="orphan sweep"):
        controllers_health(memo=kopf.Memo(manager=manager))


async def test_a_standby_is_healthy_and_idle() -> None:
    assert controllers_health(memo=kopf.Memo()) == {"leader": False}
