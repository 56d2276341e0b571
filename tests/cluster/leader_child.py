"""One leader-election candidate as its own process, and the parent's handle on it.

Run as a script, it campaigns for a Lease with :class:`tierra.shell.leader.LeaderElector` on the
fleet's central apiserver and, every ``--write-interval`` seconds, attempts a *gated write*: it
creates a ConfigMap labelled with its tag only when ``write_allowed()``. It reports what happens
as JSON lines on stdout (``ready``, ``started``, ``stopped``, ``write`` and ``write-failed``
with the time the request was sent, ``refused``, ``resumed`` after a freeze, ``exit``), so a
test or a benchmark can kill -9, SIGSTOP and SIGCONT it and then check, on the apiserver, that
it wrote nothing after losing the lease.

:class:`Candidate` (the parent side) starts the script and collects its events. Used by
``tests/cluster/test_leader_election.py`` and ``benchmarks/leader_election.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LABEL = "tierra.dev/leader-test"
WRITER_LABEL = "tierra.dev/leader-test-writer"


# ------------------------------------------------------------------------- the child process
async def _child(args: argparse.Namespace) -> None:
    from tierra.localfleet.runner import context_kubeconfig
    from tierra.shell.kube import KubeError, client_from_kubeconfig
    from tierra.shell.leader import LeaderElectionSettings, LeaderElector, boot_clock

    def emit(event: str, **fields: Any) -> None:
        print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)

    client = await client_from_kubeconfig(context_kubeconfig(Path(args.kubeconfig), args.context))
    settings = LeaderElectionSettings(args.lease_duration, args.renew_deadline, args.retry_period)
    elector = LeaderElector(client, args.namespace, args.lease, settings, watch=not args.no_watch)

    async def started() -> None:
        observation = elector.observation
        assert observation is not None
        emit(
            "started",
            rv=observation.resource_version,
            transitions=observation.record.transitions,
        )

    def stopped() -> None:
        emit("stopped")

    async def write_loop() -> None:
        seq = 0
        last_tick = boot_clock()
        wrote_last = False
        while True:
            await asyncio.sleep(args.write_interval)
            now = boot_clock()
            if now - last_tick > 1.0:  # we were frozen (SIGSTOP): what do we believe first?
                emit("resumed", gap=round(now - last_tick, 3), leader=elector.is_leader)
            last_tick = now
            if not elector.write_allowed():  # the gate, checked right before the write
                if wrote_last:
                    emit("refused")
                wrote_last = False
                continue
            seq += 1
            name = f"w-{args.tag}-{os.getpid()}-{seq}"
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "labels": {LABEL: args.lease, WRITER_LABEL: args.tag},
                },
                "data": {"identity": elector.identity, "t": repr(time.time())},
            }
            sent = time.time()
            try:
                created = await client.request(
                    "POST",
                    f"/api/v1/namespaces/{args.namespace}/configmaps",
                    body=body,
                    timeout=elector.write_timeout(2.0),  # capped at the term left
                )
                emit("write", name=name, sent=sent, rv=created["metadata"]["resourceVersion"])
                wrote_last = True
            except (KubeError, TimeoutError, OSError) as failure:
                # E.g. sent just before a SIGSTOP, answered after SIGCONT: whether it landed
                # (and when) is for the apiserver to say, by resourceVersion.
                emit("write-failed", name=name, sent=sent, error=repr(failure))

    emit("ready", identity=elector.identity, pid=os.getpid())
    writer = asyncio.create_task(write_loop())
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        await elector.run(started, stopped)
    except asyncio.CancelledError:
        pass
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        emit("exit", leader=elector.is_leader)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--context", default="tierra-central")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--lease", required=True)
    parser.add_argument("--tag", required=True, help="label value marking this child's writes")
    parser.add_argument("--write-interval", type=float, default=0.25)
    parser.add_argument("--lease-duration", type=float, default=15.0)
    parser.add_argument("--renew-deadline", type=float, default=10.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    parser.add_argument("--no-watch", action="store_true", help="poll the Lease only")
    args = parser.parse_args()
    asyncio.run(_child(args))


# ------------------------------------------------------------------------- the parent's handle
class Candidate:
    """A child candidate process and the events it reported (each with the parent's receive
    time ``seen``). Stop it with :meth:`stop` (always, in a finally)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        lease: str,
        tag: str,
        log_path: Path,
        settings: tuple[float, float, float] = (15.0, 10.0, 2.0),
        watch: bool = True,
    ) -> None:
        self.command = [
            sys.executable, __file__,
            "--kubeconfig", str(kubeconfig),
            "--namespace", namespace,
            "--lease", lease,
            "--tag", tag,
            "--lease-duration", str(settings[0]),
            "--renew-deadline", str(settings[1]),
            "--retry-period", str(settings[2]),
            *([] if watch else ["--no-watch"]),
        ]  # fmt: skip
        self.tag = tag
        self.log_path = log_path
        self.events: list[dict[str, Any]] = []
        self.process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        from tierra.localfleet.runner import SPAWN_LOCK, die_with_parent

        with SPAWN_LOCK, self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - see die_with_parent
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            event["seen"] = time.time()
            with self._lock:
                self.events.append(event)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def identity(self) -> str:
        return str(self.wait_for("ready", 30)["identity"])

    def send(self, signum: int) -> float:
        """Send ``signum``; return the wall time just before it was sent."""
        at = time.time()
        os.kill(self.pid, signum)
        return at

    def of(self, kind: str, after: float = 0.0) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["event"] == kind and e["t"] >= after]

    def since(self, after: float) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["t"] >= after]

    def wait_for(
        self,
        kind: str,
        timeout: float,
        after: float = 0.0,
        predicate: Callable[[dict[str, Any]], bool] = lambda _: True,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.of(kind, after):
                if predicate(event):
                    return event
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise TimeoutError(f"candidate {self.tag}: no {kind!r} event within {timeout}s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGCONT (in case it is frozen), SIGTERM, then SIGKILL after ``grace`` seconds."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def first_leader(candidates: list[Candidate], timeout: float, after: float = 0.0) -> Candidate:
    """The first candidate that reports ``started`` after ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for candidate in candidates:
            if candidate.of("started", after):
                return candidate
        time.sleep(0.05)
    raise TimeoutError(f"no candidate started leading within {timeout}s")


if __name__ == "__main__":
    main()
