"""Run the local fleet: per cluster etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok as real processes, plus kwok-managed accelerator Nodes.

State (ports, pids, each component's command line) lives in ``<dir>/fleet.json`` so that
``tierra fleet down``, ``status``, ``stop``, ``freeze`` and ``resume`` work from another process.

Outage rehearsal: ``Fleet.stop_apiserver`` ends a cluster's kube-apiserver (clients are
refused), ``Fleet.freeze_apiserver`` SIGSTOPs it (connections are accepted by the kernel but never
answered, so clients time out), ``Fleet.resume_apiserver`` undoes either.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tierra.localfleet.binaries import resolve_binaries
from tierra.localfleet.pki import write_pki
from tierra.localfleet.topology import FLEET_LABEL, ClusterSpec, default_fleet, node_manifests

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
STATE_FILE = "fleet.json"
KUBECONFIG_FILE = "kubeconfig"


class FleetError(RuntimeError):
    """The fleet could not be started, or a component died."""


class UnknownClusterError(FleetError):
    """A cluster name the fleet does not have."""


@dataclass
class ClusterState:
    name: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    # Each component's command line as spawned: `resume` restarts a stopped component with
    # exactly the same ports, certificates and data directory.
    argv: dict[str, list[str]] = field(default_factory=dict)
    # How `up` was asked to start the processes; `resume` starts a component the same way.
    tie_to_parent: bool = False
    # The process that ran `up` (a die-with-parent tie is only meaningful from there).
    owner_pid: int = 0

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"


FLEET_GOGC = "400"
"""The Go garbage collector's target for the fleet's components (Go's default is 100): three
control planes share the machine with the workload under test, and at 100 the apiservers spent
about a sixth of their CPU collecting garbage. At 400 placing 1,000 services took 101 s instead
of 122 s, for a few hundred MB more heap. ``TIERRA_FLEET_GOGC`` overrides it."""


def default_dir() -> Path:
    return Path(os.environ.get("TIERRA_FLEET_DIR", ".tierra/fleet")).resolve()


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free to listen on at 127.0.0.1, from below the kernel's
    ephemeral range. A port the kernel hands out (binding port 0) can be taken by any
    process's outgoing connection before the component binds it; it happened to kwok, which
    binds last, while the apiservers were opening connections to etcd ("address already in
    use"). Ports below that range are never given to outgoing connections."""
    low, _ = _ephemeral_ports()
    candidates = range(10000, low)
    sockets = []
    try:
        if len(candidates) < 1000:  # an unusual range: let the kernel choose
            for _ in range(count):
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
        else:
            for port in random.sample(candidates, min(len(candidates), 50 * count)):
                if len(sockets) == count:
                    break
                sock = socket.socket()
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:  # someone listens there
                    sock.close()
                    continue
                sockets.append(sock)
            if len(sockets) < count:
                raise FleetError(f"found only {len(sockets)} free ports of {count}")
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


COMPONENT_PORTS = (
    "etcd",
    "etcd-peer",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
)


def cluster_ports(clusters: list[str]) -> dict[str, dict[str, int]]:
    """A port for every component of every cluster, all distinct. (Drawn in one go: drawn
    cluster by cluster, a later draw could hand out a port given to an earlier cluster, whose
    components do not listen yet -- "address already in use" when both start.)"""
    drawn = free_ports(len(COMPONENT_PORTS) * len(clusters))
    n = len(COMPONENT_PORTS)
    return {
        name: dict(zip(COMPONENT_PORTS, drawn[n * i : n * (i + 1)], strict=True))
        for i, name in enumerate(clusters)
    }


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # bound before any fork
_PR_SET_PDEATHSIG = 1
SPAWN_LOCK = threading.Lock()


def die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when the process that started it dies (Linux prctl).

    It only calls a pre-bound C function (no imports, no Python locks), and spawns are
    serialised by ``SPAWN_LOCK``, which keeps preexec_fn safe alongside threads.
    """
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(process: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; a no-op when not running."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def parse_proc_state(stat: str) -> str:
    """The one-letter state in the text of ``/proc/PID/stat`` (R, S, D, T, t, Z, X, ...).

    The command name before it is in parentheses and may itself hold spaces and ")", hence
    the split at the *last* ")"."""
    try:
        return stat.rsplit(")", 1)[1].split(maxsplit=1)[0]
    except IndexError:
        raise ValueError(f"not a /proc/PID/stat line: {stat[:80]!r}") from None


def describe_proc_state(letter: str) -> str:
    """``frozen`` for a process stopped by a signal (SIGSTOP) or a tracer, ``stopped`` for a
    process that has exited (a zombie, or dead), ``running`` otherwise (also when sleeping)."""
    if letter in ("T", "t"):
        return "frozen"
    if letter in ("Z", "X", "x"):
        return "stopped"
    return "running"


def process_state(pid: int | None) -> str:
    """``running``, ``frozen`` or ``stopped`` for the process ``pid`` (None: never started)."""
    if pid is None:
        return "stopped"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "stopped"
    except PermissionError:
        return "running"
    try:
        return describe_proc_state(parse_proc_state(Path(f"/proc/{pid}/stat").read_text()))
    except (OSError, ValueError):
        return "running"


def _pid_alive(pid: int) -> bool:
    # A zombie child still answers kill(0); process_state looks at its state.
    return process_state(pid) != "stopped"


def _kubeconfig(
    clusters: list[tuple[str, str, str, str]], ca: Path, current: str
) -> dict[str, Any]:
    """clusters: (context, server, client cert, client key)."""
    ca_data = _b64(ca.read_bytes())
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": ctx, "cluster": {"server": server, "certificate-authority-data": ca_data}}
            for ctx, server, _, _ in clusters
        ],
        "users": [
            {
                "name": ctx,
                "user": {
                    "client-certificate-data": _b64(Path(cert).read_bytes()),
                    "client-key-data": _b64(Path(key).read_bytes()),
                },
            }
            for ctx, _, cert, key in clusters
        ],
        "contexts": [
            {"name": ctx, "context": {"cluster": ctx, "user": ctx}} for ctx, _, _, _ in clusters
        ],
        "current-context": current,
    }


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


class Fleet:
    """The local multi-cluster fleet rooted at ``directory``."""

    def __init__(
        self, directory: Path | None = None, clusters: tuple[ClusterSpec, ...] | None = None
    ) -> None:
        self.directory = (directory or default_dir()).resolve()
        self.clusters = clusters or default_fleet()
        self.kubeconfig = self.directory / KUBECONFIG_FILE

    # ---------------------------------------------------------------- state
    def _state_path(self) -> Path:
        return self.directory / STATE_FILE

    def load_state(self) -> dict[str, ClusterState]:
        path = self._state_path()
        if not path.exists():
            return {}
        raw = json.loads(path.read_text())
        return {name: ClusterState(**value) for name, value in raw["clusters"].items()}

    def _save_state(self, states: dict[str, ClusterState]) -> None:
        self._state_path().write_text(
            json.dumps({"clusters": {n: asdict(s) for n, s in states.items()}}, indent=2)
        )

    def is_running(self) -> bool:
        states = self.load_state()
        return bool(states) and all(
            component in state.pids and _pid_alive(state.pids[component])
            for state in states.values()
            for component in COMPONENTS
        )

    # ------------------------------------------------------------------- up
    def up(
        self,
        timeout: float = 180.0,
        tie_to_parent: bool = False,
        log: Callable[[str], None] = print,
    ) -> float:
        """Start every cluster; return seconds until all were ready. Stops all on failure."""
        if self.is_running():
            log(f"fleet already running in {self.directory}")
            return 0.0
        self.down(quiet=True)
        binaries = resolve_binaries()
        self.directory.mkdir(parents=True, exist_ok=True)
        for spec in self.clusters:  # every `up` starts fresh clusters
            shutil.rmtree(self.directory / spec.name, ignore_errors=True)
        started = time.monotonic()
        states: dict[str, ClusterState] = {}
        for name, ports in cluster_ports([spec.name for spec in self.clusters]).items():
            states[name] = ClusterState(
                name=name, tie_to_parent=tie_to_parent, owner_pid=os.getpid(), ports=ports
            )
        self._save_state(states)
        try:
            # All clusters start side by side, driven from this thread: a process's
            # die-with-parent signal fires when the *thread* that spawned it exits.
            steps = [
                self._start_cluster(spec, states, binaries, tie_to_parent, log)
                for spec in self.clusters
            ]
            _drive(steps, started + timeout)
            self._write_user_kubeconfig(states)
        except BaseException:
            self.down(quiet=True)
            raise
        return time.monotonic() - started

    def _spawn(
        self,
        state: ClusterState,
        states: dict[str, ClusterState],
        component: str,
        argv: list[str],
        tie_to_parent: bool,
    ) -> None:
        logs = self.directory / state.name / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{component}.log").open("ab") as sink, SPAWN_LOCK:
            process = subprocess.Popen(
                argv,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "GOGC": os.environ.get("TIERRA_FLEET_GOGC", FLEET_GOGC)},
                start_new_session=True,
                preexec_fn=die_with_parent if tie_to_parent else None,  # noqa: PLW1509
            )
        state.pids[component] = process.pid
        state.argv[component] = list(argv)
        self._save_state(states)

    def _start_cluster(
        self,
        spec: ClusterSpec,
        states: dict[str, ClusterState],
        binaries: dict[str, Path],
        tie: bool,
        log: Callable[[str], None],
    ) -> Iterator[_Wait]:
        """Start one cluster, yielding at every point where it waits for a component."""
        state = states[spec.name]
        root = self.directory / spec.name
        pki = root / "pki"
        write_pki(pki)
        p = state.ports
        for component, stem in (
            ("controller-manager", "controller-manager"),
            ("scheduler", "scheduler"),
            ("kwok", "kwok"),
            ("admin", "admin"),
        ):
            config = _kubeconfig(
                [
                    (
                        f"tierra-{spec.name}",
                        state.server,
                        str(pki / f"{stem}.crt"),
                        str(pki / f"{stem}.key"),
                    )
                ],
                pki / "ca.crt",
                f"tierra-{spec.name}",
            )
            (root / f"{component}.kubeconfig").write_text(yaml.safe_dump(config))

        etcd_url = f"http://127.0.0.1:{p['etcd']}"
        peer_url = f"http://127.0.0.1:{p['etcd-peer']}"
        self._spawn(
            state,
            states,
            "etcd",
            [
                str(binaries["etcd"]),
                "--name",
                spec.name,
                "--data-dir",
                str(root / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"{spec.name}={peer_url}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes",
                str(4 * 1024**3),
                "--log-level",
                "warn",
            ],
            tie,
        )
        yield _Wait(
            lambda: _http_ok(f"{etcd_url}/health"),
            f"{spec.name}: etcd healthy",
            lambda: self._check_alive(state),
        )

        self._spawn(
            state,
            states,
            "kube-apiserver",
            [
                str(binaries["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={p['kube-apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--max-requests-inflight=1000",
                "--max-mutating-requests-inflight=500",
                # pprof endpoints for looking into the apiserver under load (off by default)
                "--profiling=" + os.environ.get("TIERRA_FLEET_PROFILING", "false"),
                "--v=1",
            ],
            tie,
        )
        admin_cfg = root / "admin.kubeconfig"
        ssl_ctx = _client_ssl(pki)
        yield _Wait(
            lambda: _http_ok(f"{state.server}/readyz", ssl_ctx),
            f"{spec.name}: kube-apiserver ready",
            lambda: self._check_alive(state),
        )

        self._spawn(
            state,
            states,
            "kube-controller-manager",
            [
                str(binaries["kube-controller-manager"]),
                f"--kubeconfig={root / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={root / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={root / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p['kube-controller-manager']}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-route,-service",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=1",
            ],
            tie,
        )
        self._spawn(
            state,
            states,
            "kube-scheduler",
            [
                str(binaries["kube-scheduler"]),
                f"--kubeconfig={root / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={root / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={root / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p['kube-scheduler']}",
                "--leader-elect=false",
                "--v=1",
            ],
            tie,
        )
        self._spawn(
            state,
            states,
            "kwok",
            [
                str(binaries["kwok"]),
                f"--kubeconfig={root / 'kwok.kubeconfig'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.0.0.0/16",
                "--node-ip=10.0.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{p['kwok']}",
            ],
            tie,
        )

        client = _api_client(admin_cfg)
        _create_nodes(client, spec)
        expected = sum(pool.nodes for pool in spec.pools)
        yield _Wait(
            lambda: _ready_nodes(client) >= expected,
            f"{spec.name}: {expected} kwok nodes Ready",
            lambda: self._check_alive(state),
        )
        yield _Wait(
            lambda: _default_service_account(client),
            f"{spec.name}: controller-manager (default ServiceAccount)",
            lambda: self._check_alive(state),
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        yield _Wait(
            lambda: _http_ok(f"https://127.0.0.1:{p['kube-scheduler']}/healthz", insecure),
            f"{spec.name}: kube-scheduler healthy",
            lambda: self._check_alive(state),
        )
        log(f"cluster {spec.name} ready ({state.server})")

    def _check_alive(self, state: ClusterState) -> None:
        for component, pid in state.pids.items():
            if not _pid_alive(pid):
                logfile = self.directory / state.name / "logs" / f"{component}.log"
                tail = logfile.read_text(errors="replace")[-3000:] if logfile.exists() else ""
                raise FleetError(f"{state.name}/{component} exited; log tail:\n{tail}")

    def _write_user_kubeconfig(self, states: dict[str, ClusterState]) -> None:
        entries = [
            (
                spec.context,
                states[spec.name].server,
                str(self.directory / spec.name / "pki" / "admin.crt"),
                str(self.directory / spec.name / "pki" / "admin.key"),
            )
            for spec in self.clusters
        ]
        # Each cluster has its own CA: write per-cluster CA data.
        config = _kubeconfig(
            entries,
            self.directory / self.clusters[0].name / "pki" / "ca.crt",
            self.clusters[0].context,
        )
        for entry, spec in zip(config["clusters"], self.clusters, strict=True):
            ca = self.directory / spec.name / "pki" / "ca.crt"
            entry["cluster"]["certificate-authority-data"] = _b64(ca.read_bytes())
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    # ----------------------------------------------------------------- down
    def down(self, quiet: bool = False, grace: float = 10.0) -> list[int]:
        """Stop every process of the fleet; return the pids that were still running."""
        states = self.load_state()
        pids = [
            pid
            for state in states.values()
            for component in reversed(COMPONENTS)
            if (pid := state.pids.get(component)) is not None
        ]
        running = [pid for pid in pids if _pid_alive(pid)]
        _terminate(running, grace)
        if states:
            for state in states.values():
                state.pids.clear()
            self._save_state(states)
        if not quiet:
            print(f"stopped {len(running)} processes")
        return running

    # --------------------------------------------------------------- outage rehearsal
    def _cluster(self, cluster: str) -> tuple[dict[str, ClusterState], ClusterState]:
        states = self.load_state()
        if not states:
            raise FleetError(f"no fleet in {self.directory} (run `tierra fleet up`)")
        if cluster not in states:
            raise UnknownClusterError(
                f"unknown cluster {cluster!r}; the fleet in {self.directory} has "
                + ", ".join(sorted(states))
            )
        return states, states[cluster]

    def stop_apiserver(
        self, cluster: str, grace: float = 0.0, log: Callable[[str], None] = print
    ) -> None:
        """End ``cluster``'s kube-apiserver: clients are refused until ``resume_apiserver``.
        Its etcd and the other components keep running.

        By default it is SIGKILLed, like a crash. With ``grace`` > 0 it gets SIGTERM first and
        SIGKILL after ``grace`` seconds; it stops listening at once but (1.34, with the
        controllers' connections open) exits only after its 60 s request timeout."""
        states, state = self._cluster(cluster)
        pid = state.pids.pop("kube-apiserver", None)
        if process_state(pid) == "stopped":
            log(f"{cluster}: kube-apiserver is already stopped")
        else:
            assert pid is not None
            _terminate([pid], grace)
            # A Go process's sockets close when its last thread has gone, which can be a
            # moment after its leader is a zombie: until then a client is reset, not refused.
            port = state.ports["kube-apiserver"]
            _wait_until(lambda: not _listening(port), 5.0, f"{cluster}: port {port} closed")
            log(f"{cluster}: kube-apiserver stopped (was pid {pid})")
        # Forget the pid: should the kernel hand it to another process, `down` must not kill it.
        self._save_state(states)

    def freeze_apiserver(self, cluster: str, log: Callable[[str], None] = print) -> None:
        """SIGSTOP ``cluster``'s kube-apiserver: open connections stay open and the kernel
        still accepts new ones into the listen backlog, but nothing answers (clients time out
        instead of being refused, as with a hung or partitioned server)."""
        _, state = self._cluster(cluster)
        pid = state.pids.get("kube-apiserver")
        current = process_state(pid)
        if current == "stopped":
            raise FleetError(
                f"{cluster}: kube-apiserver is stopped; `tierra fleet resume {cluster}` first"
            )
        if current == "frozen":
            log(f"{cluster}: kube-apiserver is already frozen (pid {pid})")
            return
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        # The signal is delivered asynchronously; return once /proc shows it so that a
        # `status` right after reports "frozen".
        _wait_until(lambda: process_state(pid) != "running", 5.0, f"{cluster}: SIGSTOP")
        log(f"{cluster}: kube-apiserver frozen (pid {pid})")

    def resume_apiserver(
        self, cluster: str, timeout: float = 60.0, log: Callable[[str], None] = print
    ) -> str:
        """Undo ``freeze_apiserver`` (SIGCONT) or ``stop_apiserver`` (start it again with the
        command line recorded at ``up``: same ports, certificates and etcd), then wait until
        its /readyz answers. Returns the state it was in: running (nothing done), frozen or
        stopped.

        A restarted process is spawned like at ``up``: its own session, log appended, and
        tied to this process if ``up`` tied the fleet to its caller and this is that process
        (the tie fires when the calling *thread* exits, so call this from a long-lived one).
        """
        component = "kube-apiserver"
        states, state = self._cluster(cluster)
        pid = state.pids.get(component)
        before = process_state(pid)
        if before == "running":
            log(f"{cluster}: kube-apiserver is running (pid {pid}); nothing to resume")
            return before
        if before == "frozen":
            assert pid is not None
            os.kill(pid, signal.SIGCONT)
        else:
            if process_state(state.pids.get("etcd")) != "running":
                raise FleetError(
                    f"{cluster}: etcd is not running, so its kube-apiserver cannot be resumed "
                    "(`tierra fleet up` starts a new fleet)"
                )
            argv = state.argv.get(component)
            if not argv:
                raise FleetError(
                    f"{cluster}: no recorded kube-apiserver command line in "
                    f"{self._state_path()} (started by an older tierra?); "
                    "`tierra fleet down` and `up` again"
                )
            tie = state.tie_to_parent and state.owner_pid == os.getpid()
            if state.tie_to_parent and not tie:
                log(
                    f"note: the fleet is tied to process {state.owner_pid}; the restarted "
                    "kube-apiserver is not, and only `tierra fleet down` stops it"
                )
            self._spawn(state, states, component, argv, tie)
        self._wait_ready(state, component, timeout)
        log(f"{cluster}: kube-apiserver ready again (was {before}; pid {state.pids[component]})")
        return before

    def _wait_ready(self, state: ClusterState, component: str, timeout: float) -> None:
        ssl_ctx = _client_ssl(self.directory / state.name / "pki")
        logfile = self.directory / state.name / "logs" / f"{component}.log"
        deadline = time.monotonic() + timeout
        while not _http_ok(f"{state.server}/readyz", ssl_ctx):
            pid = state.pids.get(component)
            if process_state(pid) == "stopped":
                _reap_pids([pid] if pid else [])
                tail = logfile.read_text(errors="replace")[-3000:] if logfile.exists() else ""
                raise FleetError(f"{state.name}/{component} exited; log tail:\n{tail}")
            if time.monotonic() > deadline:
                raise FleetError(
                    f"{state.name}/{component} not ready after {timeout:.0f}s "
                    f"({state.server}/readyz); see {logfile}"
                )
            time.sleep(0.2)

    # --------------------------------------------------------------- status
    def status(self) -> list[dict[str, Any]]:
        """One row per component: cluster, component, pid, running (the process exists, also
        when frozen), healthy, and state: healthy, running (not healthy), frozen or stopped."""
        rows = []
        states = self.load_state()
        for spec in self.clusters:
            state = states.get(spec.name)
            for component in COMPONENTS:
                pid = state.pids.get(component) if state else None
                process = process_state(pid)
                # A frozen component cannot answer; asking would only wait for the timeout.
                healthy = (
                    process == "running"
                    and state is not None
                    and self._healthy(spec, state, component)
                )
                rows.append(
                    {
                        "cluster": spec.name,
                        "component": component,
                        "pid": pid,
                        "running": process != "stopped",
                        "healthy": healthy,
                        "state": "healthy" if healthy else process,
                    }
                )
        return rows

    def _healthy(self, spec: ClusterSpec, state: ClusterState, component: str) -> bool:
        p = state.ports
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        pki = self.directory / spec.name / "pki"
        checks = {
            "etcd": lambda: _http_ok(f"http://127.0.0.1:{p['etcd']}/health"),
            "kube-apiserver": lambda: _http_ok(f"{state.server}/readyz", _client_ssl(pki)),
            "kube-controller-manager": lambda: _http_ok(
                f"https://127.0.0.1:{p['kube-controller-manager']}/healthz", insecure
            ),
            "kube-scheduler": lambda: _http_ok(
                f"https://127.0.0.1:{p['kube-scheduler']}/healthz", insecure
            ),
            "kwok": lambda: _http_ok(f"http://127.0.0.1:{p['kwok']}/healthz"),
        }
        return checks[component]()


def _reap_pids(pids: Sequence[int]) -> None:
    """Collect the exit status of those of ``pids`` that are our exited children (so they do
    not linger as zombies); other children of this process are left to their owners."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _terminate(pids: Sequence[int], grace: float) -> None:
    """SIGTERM each process group (each component leads its own session), SIGKILL what is
    left after ``grace`` seconds. A frozen (SIGSTOPped) process keeps a SIGTERM pending until
    it is continued, so SIGCONT follows the SIGTERM; SIGKILL ends a frozen process anyway."""
    for pid in pids:
        for sig in (signal.SIGTERM, signal.SIGCONT) if grace > 0 else (signal.SIGKILL,):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_pid_alive(pid) for pid in pids):
        _reap_pids(pids)
        time.sleep(0.1)
    for pid in pids:
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: wait (briefly) until the processes are gone.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_pid_alive(pid) for pid in pids):
        _reap_pids(pids)
        time.sleep(0.05)
    _reap_pids(pids)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise FleetError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


def _client_ssl(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def _http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass(frozen=True)
class _Wait:
    """A point where a cluster's start-up waits: until ``ready()``; ``check()`` raises if a
    component died meanwhile."""

    ready: Callable[[], bool]
    what: str
    check: Callable[[], None]


def _drive(steps: list[Iterator[_Wait]], deadline: float) -> None:
    """Advance every cluster's start-up as far as it can go, polling what each waits for."""
    waiting: dict[int, _Wait] = {}
    active = dict(enumerate(steps))

    def advance(index: int) -> None:
        try:
            waiting[index] = next(active[index])
        except StopIteration:
            del active[index]
            waiting.pop(index, None)

    for index in list(active):
        advance(index)
    while active:
        progressed = False
        for index, wait in list(waiting.items()):
            wait.check()
            try:
                ready = wait.ready()
            except Exception:
                ready = False
            if ready:
                advance(index)
                progressed = True
        if not active:
            return
        if time.monotonic() > deadline:
            raise FleetError("timed out waiting for " + ", ".join(w.what for w in waiting.values()))
        if not progressed:
            time.sleep(0.2)


def _api_client(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def _create_nodes(core: Any, spec: ClusterSpec) -> None:
    from kubernetes.client.exceptions import ApiException

    for manifest in node_manifests(spec):
        while True:
            try:
                core.create_node(manifest)
                break
            except ApiException as error:
                if error.status == 409:
                    break
                if error.status in (403, 404, 429, 500, 503):  # RBAC bootstrap still settling
                    time.sleep(0.2)
                    continue
                raise


def _ready_nodes(core: Any) -> int:
    nodes = core.list_node(label_selector=f"{FLEET_LABEL}=true").items
    return sum(
        1
        for node in nodes
        if any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
    )


def _default_service_account(core: Any) -> bool:
    core.read_namespaced_service_account("default", "default")
    return True


@contextlib.contextmanager
def running_fleet(directory: Path, tie_to_parent: bool = True) -> Iterator[Fleet]:
    """Start a fleet for the duration of a ``with`` block; always stops it."""
    fleet = Fleet(directory)
    fleet.up(tie_to_parent=tie_to_parent)
    try:
        yield fleet
    finally:
        fleet.down(quiet=True)


def context_kubeconfig(kubeconfig: Path, context: str) -> dict[str, Any]:
    """A self-contained kubeconfig holding only ``context`` (for a Tier's kubeconfig Secret)."""
    config = yaml.safe_load(kubeconfig.read_text())
    entry = next(c for c in config["contexts"] if c["name"] == context)
    cluster = next(c for c in config["clusters"] if c["name"] == entry["context"]["cluster"])
    user = next(u for u in config["users"] if u["name"] == entry["context"]["user"])
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [user],
        "contexts": [entry],
        "current-context": context,
    }


def kubeconfig_secret(kubeconfig: Path, context: str, name: str, namespace: str) -> dict[str, Any]:
    """A Secret manifest carrying one fleet cluster's kubeconfig under the key ``kubeconfig``."""
    data = yaml.safe_dump(context_kubeconfig(kubeconfig, context)).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"kubeconfig": _b64(data)},
    }


def spawn_operator(
    kubeconfig: Path,
    log_path: Path,
    metrics_port: int = 0,
    namespace: str = "tierra-system",
    env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """``tierra run`` against the fleet's management cluster (central), as its own process
    that dies with the calling thread's process (demo, tests, benchmarks)."""
    import sys

    with log_path.open("ab") as sink:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tierra.cli",
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--context",
                "tierra-central",
                "--namespace",
                namespace,
                "--metrics-port",
                str(metrics_port),
                *extra_args,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=die_with_parent,  # noqa: PLW1509 - see die_with_parent
        )
