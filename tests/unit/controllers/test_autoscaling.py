"""The autoscaling loop steps a service only once a reconcile has said where it runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

from tierra.autoscaler import Autoscaler
from tierra.controllers.manager import Manager
from tierra.core.autoscale import RunningPlacement
from tierra.settings import Settings
from tierra.shell.kube import KubeClient
from tierra_testing.builders import service_manifest


class RecordingAutoscaler:
    """Records the placements each step was given; recommends nothing."""

    def __init__(self) -> None:
        self.stepped: list[tuple[str, list[RunningPlacement]]] = []

    @contextlib.asynccontextmanager
    async def sampling_pass(self) -> AsyncIterator[None]:
        yield

    async def step(
        self, key: str, service: Any, placements: list[RunningPlacement], *_: Any
    ) -> Any:
        self.stepped.append((key, placements))
        return SimpleNamespace(events=(), reconcile=False, report_only=False)


async def test_a_service_is_stepped_only_once_a_reconcile_said_where_it_runs() -> None:
    """After an operator restart the watch brings every service at once, before their
    reconciles: stepped then, a service at 8 replicas was one at 0 to the recommender, which
    "activated" it to 3 (a scale-down that skipped scaleDownDelaySeconds)."""
    loop = Manager(cast(KubeClient, object()), Settings()).autoscaling
    recorder = RecordingAutoscaler()
    loop.autoscaler = cast(Autoscaler, recorder)
    key = "team-a/chat"
    loop.cache.bodies[key] = {
        **service_manifest(uid="uid-chat"),
        "metadata": {"name": "chat", "namespace": "team-a", "resourceVersion": "7"},
    }
    state = loop.cache.state(key)  # (a reconcile began, and has not placed it yet)

    await loop.step_all()
    assert recorder.stepped == []

    eight = [RunningPlacement("central", "h100", 8)]
    state.running, state.ready, state.running_known = eight, 8, True
    await loop.step_all()
    assert recorder.stepped == [(key, eight)]
