"""What the controllers know of InferenceServices: the watched bodies, our own last writes,
and per-service bookkeeping that can always be re-derived."""

from __future__ import annotations

from dataclasses import dataclass, field

from tierra.api.inference_service import InferenceService
from tierra.core.autoscale import RunningPlacement
from tierra.shell.kube import Obj


def resource_version(body: Obj | None) -> int:
    try:
        return int(((body or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class ServiceState:
    """What is remembered per service between reconciles (all re-derivable)."""

    attempts: int = 0
    last_summary: str = ""
    deleting_since: float | None = None
    placed: bool = False
    running: list[RunningPlacement] = field(default_factory=list)
    """Where the last reconcile placed it (the autoscaler's current replicas)."""
    ready: int = 0
    running_known: bool = False
    """A reconcile has set ``running`` and ``ready``. Before that (a new service, or any
    service just after an operator restart) the autoscaler has no current count to scale
    from: stepped on none, it would read a service at 8 replicas as one at 0 and "activate"
    it to what the load needs, a scale-down that skipped scaleDownDelaySeconds."""
    written: Obj | None = None
    """The service as our last write of it (finalizer or status patch) returned it, while the
    watch has not caught up with that write: reconciles that run before our own write's event
    arrives see it rather than the older cached body (no re-adding the finalizer, no rewriting
    the same status)."""


class ServiceCache:
    """InferenceServices by ``namespace/name``, as watched and as last written by us."""

    def __init__(self) -> None:
        self.bodies: dict[str, Obj] = {}
        self.states: dict[str, ServiceState] = {}
        # the typed spec of each service by resourceVersion (reconciles and autoscaling passes
        # of an unchanged service share one validation)
        self._validated: dict[str, tuple[str | None, InferenceService]] = {}

    def state(self, key: str) -> ServiceState:
        return self.states.setdefault(key, ServiceState())

    def watched(self, key: str, body: Obj) -> Obj | None:
        """Record a watch event's body; return the previous one."""
        before = self.bodies.get(key)
        self.bodies[key] = body
        state = self.states.get(key)
        if (
            state is not None
            and state.written is not None
            and resource_version(body) >= resource_version(state.written)
        ):
            state.written = None  # the watch has caught up with our last write
        return before

    def deleted(self, key: str) -> None:
        self.bodies.pop(key, None)
        self.states.pop(key, None)
        self._validated.pop(key, None)

    def latest(self, key: str) -> Obj | None:
        """The newest version of the service we know: the watch's, or our last write's."""
        body = self.bodies.get(key)
        if body is None:
            return None
        state = self.states.get(key)
        written = state.written if state is not None else None
        if written is not None and resource_version(written) > resource_version(body):
            return written
        return body

    def wrote(self, key: str, obj: Obj) -> None:
        """Remember what the apiserver returned for our write of the service."""
        state = self.states.get(key)
        if state is None or resource_version(obj) <= max(
            resource_version(state.written), resource_version(self.bodies.get(key))
        ):
            return
        obj.get("metadata", {}).pop("managedFields", None)
        state.written = obj

    def validate(self, key: str, body: Obj) -> InferenceService:
        """The typed service, validated once per resourceVersion (raises ValidationError)."""
        version = body["metadata"].get("resourceVersion")
        cached = self._validated.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        service = InferenceService.model_validate(body)
        self._validated[key] = (version, service)
        return service

    def prune_validated(self) -> None:
        for key in [k for k in self._validated if k not in self.bodies]:
            del self._validated[key]
