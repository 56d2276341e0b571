"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Several operator replicas compete for one Lease; one leads and runs the controllers, the
others stand by. The rules are those of client-go's ``leaderelection`` package:

* The leader renews the Lease every ``retry_period``. Every write is an update carrying the
  ``resourceVersion`` it last read, so two candidates racing for a free Lease cannot both win:
  the loser gets 409 Conflict (or AlreadyExists when both try to create it).
* A standby takes the Lease over when it is free (empty ``holderIdentity``) or expired. Expiry is
  judged by *observed change*: the standby remembers, on its own monotonic clock, when it last
  saw the Lease's record change, and waits ``leaseDurationSeconds`` (as the holder advertises it)
  from then. Remote timestamps (``renewTime``) are written for people and tools, never trusted:
  clocks of different machines disagree, a local clock does not disagree with itself.
* The leader counts itself leader only while ``clock() < last successful renewal +
  renew_deadline`` (:attr:`LeaderElector.is_leader`). The renewal time is taken *before* the
  request was sent, so the leader's own window always closes at least ``lease_duration -
  renew_deadline`` before any standby may take over. A process frozen with SIGSTOP, paused by a
  long GC or cut off by a partition stops counting itself leader the instant it runs again,
  before any network call: the gate every write checks is pure arithmetic on a local clock.
* Takeover increments ``leaseTransitions``; a clean shutdown releases the Lease (empty holder,
  ``leaseDurationSeconds: 1``) so a standby takes over at once instead of after the lease
  duration.

The clock is ``CLOCK_BOOTTIME`` on Linux: monotonic like ``time.monotonic()``, and it also
counts time the machine spent suspended, so a laptop or VM that slept does not wake up believing
it still leads. A standby also watches the Lease (best effort) so it notices a renewal or a
release as it happens, not up to one ``retry_period`` later; polling alone is correct, the
watch only shortens the takeover.

Pure parts (:class:`LeaseRecord`, :func:`observe`, :func:`held_by_other`,
:func:`next_record`, :class:`LeadershipGate`) take the clock's reading as an argument or an
injected clock, and are unit-tested without a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import math
import os
import random
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import aiohttp

from tierra.shell.kube import KubeClient, KubeError, Obj

log = logging.getLogger(__name__)

LEASE_API_VERSION = "coordination.k8s.io/v1"

Clock = Callable[[], float]
StartedCallback = Callable[[], Awaitable[None]]
StoppedCallback = Callable[[], Awaitable[None] | None]


if sys.platform == "linux":

    def boot_clock() -> float:
        """Seconds on a clock that never jumps back and keeps counting through suspend."""
        return time.clock_gettime(time.CLOCK_BOOTTIME)

else:  # pragma: no cover - the operator runs on Linux

    def boot_clock() -> float:
        """Seconds on a monotonic clock (suspend is not counted off Linux)."""
        return time.monotonic()


def micro_time(moment: datetime | None = None) -> str:
    """A Kubernetes ``MicroTime`` (``2026-01-02T03:04:05.123456Z``) of ``moment`` (default now)."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """Unique per process: the hostname (a pod's name), the pid and a random suffix."""
    return f"{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(4)}"


def lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/{LEASE_API_VERSION}/namespaces/{namespace}/leases"
    return f"{path}/{name}" if name else path


# ------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class LeaderElectionSettings:
    """Timing of leader election (client-go's ``LeaderElectionConfig``; same defaults)."""

    lease_duration: float = 15.0
    """Seconds a standby waits, from the moment it last *saw* the Lease change, before it takes
    the Lease over. It bounds how long a dead or partitioned leader blocks the fleet: takeover
    after a crash takes about this long. Written to the Lease as ``leaseDurationSeconds``
    (rounded up to whole seconds); standbys honour the holder's value."""

    renew_deadline: float = 10.0
    """Seconds the leader keeps acting as leader after its last successful renewal began.
    Past it, :attr:`LeaderElector.is_leader` is False, writes are refused and the controllers
    are stopped. Must be shorter than ``lease_duration``: the difference is the margin that
    keeps the old leader's last write before a standby's first (slow requests, clock-rate
    drift)."""

    retry_period: float = 2.0
    """Seconds between the leader's renewals, and between a standby's looks at the Lease (with
    a little jitter). Must be well under ``renew_deadline`` so that one or two failed renewals
    do not cost the leadership."""

    def __post_init__(self) -> None:
        if self.retry_period <= 0:
            raise ValueError("retry_period must be positive")
        if not self.renew_deadline > 1.2 * self.retry_period:
            raise ValueError("renew_deadline must exceed 1.2 x retry_period (client-go's rule)")
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("lease_duration must exceed renew_deadline")

    @property
    def request_timeout(self) -> float:
        """Timeout of one API call: half the renew deadline, so a hung call leaves time for a
        retry before the deadline (a leader also never waits past its deadline)."""
        return self.renew_deadline / 2

    @property
    def lease_duration_seconds(self) -> int:
        return max(1, math.ceil(self.lease_duration))


# ---------------------------------------------------------------------------------- pure part
@dataclass(frozen=True)
class LeaseRecord:
    """The election record in a Lease's spec. Times stay in wire format: they are compared for
    change, never trusted as instants."""

    holder: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: Obj) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> Obj:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


@dataclass(frozen=True)
class Observation:
    """A Lease record as this process saw it, and when (on its own clock) it first saw it."""

    record: LeaseRecord
    resource_version: str
    seen_at: float

    @property
    def expires_at(self) -> float:
        """When, on the observer's clock, the holder's claim runs out unless renewed."""
        return self.seen_at + self.record.lease_duration_seconds


def observe(
    previous: Observation | None, record: LeaseRecord, resource_version: str, now: float
) -> Observation:
    """The new observation after reading ``record`` at ``now``: an unchanged record keeps the
    time it was first seen (that is what expiry counts from); a changed one restarts it."""
    if previous is not None and previous.record == record:
        return replace(previous, resource_version=resource_version)
    return Observation(record, resource_version, now)


def held_by_other(observation: Observation, identity: str, now: float) -> bool:
    """Whether another holder's claim is still valid by this observer's own clock."""
    record = observation.record
    return bool(record.holder) and record.holder != identity and now < observation.expires_at


def next_record(
    current: LeaseRecord, identity: str, wall_time: str, lease_duration_seconds: int
) -> LeaseRecord:
    """The record to write: a renewal keeps the acquire time and the transition count; a
    takeover (from another holder or from a free Lease) starts a new term and counts it."""
    if current.holder == identity:
        return replace(current, lease_duration_seconds=lease_duration_seconds, renew_time=wall_time)
    return LeaseRecord(
        holder=identity,
        lease_duration_seconds=lease_duration_seconds,
        acquire_time=wall_time,
        renew_time=wall_time,
        transitions=current.transitions + 1,
    )


def released_record(current: LeaseRecord, wall_time: str) -> LeaseRecord:
    """The record a leader writes when it steps down cleanly (client-go's release)."""
    return LeaseRecord(
        holder="",
        lease_duration_seconds=1,
        acquire_time=wall_time,
        renew_time=wall_time,
        transitions=current.transitions,
    )


class LeadershipGate:
    """Whether this process may act as leader *now*, judged on its own clock alone.

    A term opens with the first successful acquisition and stays valid until ``renew_deadline``
    after the start of the latest successful renewal; :meth:`close` ends it at once.
    """

    def __init__(self, renew_deadline: float, clock: Clock = boot_clock) -> None:
        self.renew_deadline = renew_deadline
        self.clock = clock
        self._renewed_at: float | None = None

    @property
    def in_term(self) -> bool:
        """A term is open (it may still have run out: see :meth:`is_open`)."""
        return self._renewed_at is not None

    def renewed(self, started_at: float) -> None:
        """A renewal (or the acquisition) whose request was sent at ``started_at`` succeeded."""
        if self._renewed_at is None or started_at > self._renewed_at:
            self._renewed_at = started_at

    def close(self) -> None:
        self._renewed_at = None

    def remaining(self) -> float:
        """Seconds left in the term (0 when closed or run out)."""
        if self._renewed_at is None:
            return 0.0
        return max(0.0, self._renewed_at + self.renew_deadline - self.clock())

    def is_open(self) -> bool:
        return self.remaining() > 0

    def write_timeout(self, timeout: float) -> float:
        """The timeout for a write about to be sent: ``timeout`` capped at the term left, so
        the write cannot still be waiting when the term ends. Raises :class:`NotLeaderError`
        when the gate is shut. Call it right before the request, with no await in between."""
        remaining = self.remaining()
        if remaining <= 0:
            raise NotLeaderError("not the leader: the write is refused")
        return min(timeout, remaining)


class NotLeaderError(RuntimeError):
    """A write was attempted while this process does not lead."""


class Outcome(enum.Enum):
    ACQUIRED = "acquired"  # acquired or renewed: we hold the Lease
    HELD = "held"  # another holder's claim is valid
    LOST = "lost"  # we were leading and must stop: another holder, a deleted Lease, deadline
    FAILED = "failed"  # an error or a lost race: try again


# ------------------------------------------------------------------------------------- elector
class LeaderElector:
    """Elects one leader among processes sharing ``namespace/name`` (a Lease) on ``client``.

    Use :meth:`run` with two callbacks; gate every write on :meth:`write_allowed` (or
    :attr:`is_leader`) and bound its timeout with :meth:`remaining`.
    """

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str = "tierra",
        settings: LeaderElectionSettings | None = None,
        identity: str | None = None,
        clock: Clock = boot_clock,
        watch: bool = True,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.settings = settings or LeaderElectionSettings()
        self.identity = identity or default_identity()
        self.clock = clock
        self.watch = watch
        self._gate = LeadershipGate(self.settings.renew_deadline, clock)
        self._observation: Observation | None = None
        self._wake = asyncio.Event()
        self._running = False

    # ----------------------------------------------------------------- the gate
    @property
    def is_leader(self) -> bool:
        """True only while this process's term is valid on its own clock: within
        ``renew_deadline`` of the start of its last successful renewal. No I/O."""
        return self._gate.is_open()

    def write_allowed(self) -> bool:
        """The gate for every write the controllers make (same as :attr:`is_leader`)."""
        return self._gate.is_open()

    def remaining(self) -> float:
        """Seconds of leadership left unless renewed: use it as the upper bound of a gated
        write's timeout, so no write of this term is still waiting when the term ends."""
        return self._gate.remaining()

    def write_timeout(self, timeout: float) -> float:
        """Gate and timeout in one call, for the one place writes go through::

            await client.request("PATCH", path, ..., timeout=elector.write_timeout(10.0))

        ``timeout`` capped at the leadership left; raises :class:`NotLeaderError` when this
        process does not lead."""
        return self._gate.write_timeout(timeout)

    @property
    def observation(self) -> Observation | None:
        """The Lease record as last seen (its ``resource_version`` identifies our own write
        after a successful acquisition or renewal)."""
        return self._observation

    # ------------------------------------------------------------------- running
    async def run(
        self,
        on_started_leading: StartedCallback,
        on_stopped_leading: StoppedCallback | None = None,
        *,
        rejoin: bool = True,
    ) -> None:
        """Campaign, lead, and campaign again, until cancelled.

        On acquiring the Lease, ``on_started_leading()`` runs as a task (it may run the
        controllers until cancelled, or start them and return). When the term ends (renewal
        failing past ``renew_deadline``, another holder seen, or this task cancelled) the gate
        closes first, then that task is cancelled and awaited, then ``on_stopped_leading()`` is
        called, once per term. On cancellation (clean shutdown) the Lease is released so a
        standby takes over at once. If ``on_started_leading`` raises, the Lease is released and
        the error propagates. With ``rejoin=False`` :meth:`run` returns after the first term
        (client-go's ``Run``; the caller may then exit, as controller-runtime does).
        """
        if self._running:
            raise RuntimeError("LeaderElector.run is already running")
        self._running = True
        watcher = asyncio.create_task(self._watch_lease()) if self.watch else None
        try:
            while True:
                await self._acquire()
                await self._lead(on_started_leading, on_stopped_leading)
                if not rejoin:
                    return
                await asyncio.sleep(self.settings.retry_period)
        finally:
            self._running = False
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _acquire(self) -> None:
        log.info("leader election: %s campaigns for lease %s/%s", self.identity, *self._key)
        while True:
            self._wake.clear()
            outcome = await self._try_acquire_or_renew()
            if outcome is Outcome.ACQUIRED:
                record = self._observation.record if self._observation else None
                log.info(
                    "leader election: %s leads (lease %s/%s, transitions %s)",
                    self.identity,
                    *self._key,
                    record.transitions if record else "?",
                )
                return
            delay = self.settings.retry_period * random.uniform(1.0, 1.2)
            observation = self._observation
            if outcome is Outcome.HELD and observation is not None:
                # Look again exactly when the holder's claim runs out (by our observation).
                delay = min(delay, max(0.0, observation.expires_at - self.clock()) + 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _lead(self, started: StartedCallback, stopped: StoppedCallback | None) -> None:
        task: asyncio.Task[None] = asyncio.create_task(
            _call(started), name=f"leader:{self.identity}"
        )
        release = False
        error: BaseException | None = None
        attempt_at = self.clock()
        try:
            while True:
                renew_at = attempt_at + self.settings.retry_period
                while not task.done() and (delay := renew_at - self.clock()) > 0:
                    await asyncio.wait({task}, timeout=delay)
                if task.done() and not task.cancelled() and task.exception() is not None:
                    error = task.exception()
                    release = True
                    log.error("leader election: on_started_leading failed; stepping down")
                    break
                if (delay := renew_at - self.clock()) > 0:
                    await asyncio.sleep(delay)  # it returned early and cleanly: keep leading
                if not self._gate.is_open():
                    log.warning(
                        "leader election: %s lost the lease: no renewal within %.1f s",
                        self.identity,
                        self.settings.renew_deadline,
                    )
                    break
                attempt_at = self.clock()
                outcome = await self._try_acquire_or_renew()
                if outcome is Outcome.LOST or outcome is Outcome.HELD:
                    holder = self._observation.record.holder if self._observation else ""
                    log.warning(
                        "leader election: %s lost the lease (holder now %r)",
                        self.identity,
                        holder,
                    )
                    break
        except asyncio.CancelledError:
            release = True
            raise
        finally:
            self._gate.close()  # first of all: no write passes the gate from here on
            task.cancel()
            await asyncio.wait({task}, timeout=self.settings.lease_duration)
            if not task.done():
                log.warning("leader election: on_started_leading ignores its cancellation")
            if stopped is not None:
                try:
                    result = stopped()
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("leader election: on_stopped_leading failed")
            if release:
                await self.release()
        if error is not None:
            raise error

    async def release(self) -> bool:
        """Give the Lease up if this process still holds it (by its last observation). The gate
        is closed first. True when released; False when someone else holds it now or the
        update failed (a standby then takes over after the lease duration).

        A renewal cancelled in flight (shutdown during its PUT) may still have been applied,
        leaving the ``resourceVersion`` we hold one write behind: on 409 Conflict the Lease is
        read again and, if we still hold it, released with the version just read."""
        self._gate.close()
        observation = self._observation
        for attempt in ("first", "after a conflict"):
            if observation is None or observation.record.holder != self.identity:
                return False
            record = released_record(observation.record, micro_time())
            try:
                updated = await self.client.request(
                    "PUT",
                    lease_path(self.namespace, self.name),
                    body=self._lease_body(observation.resource_version, record),
                    timeout=self.settings.request_timeout,
                )
            except KubeError as failure:
                if failure.status == 409 and attempt == "first":
                    observation = await self._read_for_release()
                    continue
                log.warning("leader election: releasing the lease failed: %s", failure)
                return False
            except (aiohttp.ClientError, TimeoutError, OSError) as failure:
                log.warning("leader election: releasing the lease failed: %r", failure)
                return False
            self._observation = Observation(
                LeaseRecord.from_lease(updated), _resource_version(updated), self.clock()
            )
            log.info("leader election: %s released lease %s/%s", self.identity, *self._key)
            return True
        return False

    async def _read_for_release(self) -> Observation | None:
        """The Lease as it is now, or None when it cannot be read (release then gives up)."""
        try:
            lease = await self.client.request(
                "GET", lease_path(self.namespace, self.name), timeout=self.settings.request_timeout
            )
        except (KubeError, aiohttp.ClientError, TimeoutError, OSError) as failure:
            log.warning("leader election: reading the lease to release it failed: %s", failure)
            return None
        self._observation = observe(
            self._observation, LeaseRecord.from_lease(lease), _resource_version(lease), self.clock()
        )
        return self._observation

    # ------------------------------------------------------------- one attempt
    @property
    def _key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def _timeout(self) -> float:
        """The timeout of the next call: never past the end of a running term."""
        timeout = self.settings.request_timeout
        if self._gate.in_term:
            timeout = min(timeout, self._gate.remaining())
        return timeout

    def _lease_body(self, resource_version: str | None, record: LeaseRecord) -> Obj:
        metadata: Obj = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": LEASE_API_VERSION,
            "kind": "Lease",
            "metadata": metadata,
            "spec": record.to_spec(),
        }

    async def _try_acquire_or_renew(self) -> Outcome:
        leading = self._gate.in_term
        timeout = self._timeout()
        if timeout <= 0.01:
            return Outcome.LOST if leading else Outcome.FAILED
        try:
            lease = await self.client.request(
                "GET", lease_path(self.namespace, self.name), timeout=timeout
            )
        except KubeError as failure:
            if failure.status != 404:
                log.warning("leader election: reading the lease failed: %s", failure)
                return Outcome.FAILED
            if leading:  # deleted under us: a standby may already be creating it
                return Outcome.LOST
            return await self._create()
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            log.warning("leader election: reading the lease failed: %r", failure)
            return Outcome.FAILED

        now = self.clock()
        observation = observe(
            self._observation, LeaseRecord.from_lease(lease), _resource_version(lease), now
        )
        self._observation = observation
        if leading and observation.record.holder != self.identity:
            return Outcome.LOST
        if held_by_other(observation, self.identity, now):
            return Outcome.HELD

        record = next_record(
            observation.record,
            self.identity,
            micro_time(),
            self.settings.lease_duration_seconds,
        )
        body = self._lease_body(observation.resource_version, record)
        # Keep what others put in the Lease's metadata and spec (labels, new fields).
        for key in ("labels", "annotations"):
            if key in (lease.get("metadata") or {}):
                body["metadata"][key] = lease["metadata"][key]
        body["spec"] = {**(lease.get("spec") or {}), **body["spec"]}
        timeout = self._timeout()
        if timeout <= 0.01:
            return Outcome.LOST if leading else Outcome.FAILED
        sent_at = self.clock()
        try:
            updated = await self.client.request(
                "PUT", lease_path(self.namespace, self.name), body=body, timeout=timeout
            )
        except KubeError as failure:
            if failure.status == 409:
                log.info("leader election: lost a race for the lease (409 Conflict)")
            else:
                log.warning("leader election: updating the lease failed: %s", failure)
            return Outcome.FAILED
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            log.warning("leader election: updating the lease failed: %r", failure)
            return Outcome.FAILED
        return self._won(updated, sent_at, leading)

    async def _create(self) -> Outcome:
        wall = micro_time()
        record = LeaseRecord(self.identity, self.settings.lease_duration_seconds, wall, wall, 0)
        sent_at = self.clock()
        try:
            created = await self.client.request(
                "POST",
                lease_path(self.namespace),
                body=self._lease_body(None, record),
                timeout=self.settings.request_timeout,
            )
        except KubeError as failure:
            if failure.status == 409:
                log.info("leader election: another candidate created the lease first")
            else:
                log.warning("leader election: creating the lease failed: %s", failure)
            return Outcome.FAILED
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            log.warning("leader election: creating the lease failed: %r", failure)
            return Outcome.FAILED
        return self._won(created, sent_at, leading=False)

    def _won(self, lease: Obj, sent_at: float, leading: bool) -> Outcome:
        self._observation = Observation(
            LeaseRecord.from_lease(lease), _resource_version(lease), sent_at
        )
        if leading and not self._gate.is_open():
            # The answer came after the term ran out: the term stays over (client-go's
            # renew deadline is a hard limit); a rejoining candidate may start a new one.
            return Outcome.LOST
        self._gate.renewed(sent_at)
        return Outcome.ACQUIRED

    # ------------------------------------------------------------------ watch
    async def _watch_lease(self) -> None:
        """Wake a waiting candidate whenever the Lease changes, so it judges a renewal or a
        release as it happens. Best effort: errors only fall back to polling."""
        selector = f"metadata.name={self.name}"
        path = lease_path(self.namespace)
        while True:
            try:
                listing = await self.client.request(
                    "GET",
                    path,
                    {"fieldSelector": selector},
                    timeout=self.settings.request_timeout,
                )
                version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
                async for event in self.client.watch(
                    f"{path}?fieldSelector=metadata.name%3D{self.name}", version
                ):
                    kind = event.get("type")
                    if kind == "ERROR":
                        break
                    obj = event.get("object") or {}
                    if kind != "BOOKMARK" and (obj.get("metadata") or {}).get("name") == self.name:
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as failure:
                log.debug("leader election: lease watch failed: %r", failure)
            await asyncio.sleep(self.settings.retry_period)


async def _call(started: StartedCallback) -> None:
    await started()


def _resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


__all__ = [
    "LeaderElectionSettings",
    "LeaderElector",
    "LeadershipGate",
    "LeaseRecord",
    "NotLeaderError",
    "Observation",
    "boot_clock",
    "default_identity",
    "held_by_other",
    "next_record",
    "observe",
    "released_record",
]
