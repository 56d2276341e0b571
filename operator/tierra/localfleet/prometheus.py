"""A real Prometheus server for the local fleet: install it, configure it, run it.

Install. :func:`ensure_prometheus` resolves the binary in this order:

1. ``TIERRA_PROMETHEUS_BIN`` (a path to a prometheus binary),
2. ``TIERRA_BIN_DIR/prometheus`` (the prebuilt-binaries directory of :mod:`.binaries`),
3. the versioned cache ``$TIERRA_CACHE_DIR`` (default ``~/.cache/tierra``)
   ``/bin/prometheus-<version>/prometheus``,
4. a ``prometheus`` on ``PATH``,
5. otherwise Debian's ``prometheus`` package: ``apt-get download`` (after ``apt-get update``
   when the package lists are empty and we are root) and ``dpkg-deb -x`` into a temporary
   directory; only ``usr/bin/prometheus`` and ``usr/bin/promtool`` (static Go binaries) are
   kept, in the cache. No service is installed or started.

``promtool`` (for checking and unit-testing the chart's alert rules) is looked for next to the
resolved prometheus, or at ``TIERRA_PROMTOOL_BIN``; :func:`ensure_prometheus` re-fetches the
package when a cached prometheus has no promtool beside it.

Run. :class:`PrometheusServer` starts ``prometheus`` on a loopback port with a generated
config (static scrape targets, ``honor_labels: true``) and its own storage directory, waits for
``/-/ready`` and stops it (SIGTERM, then SIGKILL). It can be stopped and started again on the
same port with the same storage. The process gets SIGTERM when the process that started it
dies (``PR_SET_PDEATHSIG``, see :func:`tierra.localfleet.runner.die_with_parent`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from tierra.localfleet.binaries import cache_root
from tierra.localfleet.runner import SPAWN_LOCK, die_with_parent, free_ports, stop_process

PROMETHEUS_VERSION = "2.42.0"
"""Upstream version of Debian 12's package; the cache directory is named after the version
actually installed, so another Debian release's candidate lands in its own directory."""
DEBIAN_PACKAGE = "prometheus"


class PrometheusError(RuntimeError):
    """Prometheus could not be installed, started or queried."""


# --------------------------------------------------------------------------------- install


def prometheus_cache_dir(version: str = PROMETHEUS_VERSION) -> Path:
    return cache_root() / "bin" / f"prometheus-{version}"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_prometheus() -> Path | None:
    """The first prometheus binary of the resolution order, without installing anything."""
    override = os.environ.get("TIERRA_PROMETHEUS_BIN")
    if override:
        return Path(override) if _executable(Path(override)) else None
    candidates: list[Path] = []
    bin_dir = os.environ.get("TIERRA_BIN_DIR")
    if bin_dir:
        candidates.append(Path(bin_dir) / "prometheus")
    candidates.append(prometheus_cache_dir() / "prometheus")
    candidates.extend(sorted((cache_root() / "bin").glob("prometheus-*/prometheus"), reverse=True))
    for candidate in candidates:
        if _executable(candidate):
            return candidate
    on_path = shutil.which("prometheus")
    return Path(on_path) if on_path else None


def _command(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


def _upstream_version(debian_version: str) -> str:
    """``2.42.0+ds-5+deb12u1`` -> ``2.42.0`` (no epoch, no repack or Debian revision)."""
    version = debian_version.split(":", 1)[-1]
    return version.split("+", 1)[0].split("-", 1)[0]


def _download_deb(workdir: Path) -> Path:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PrometheusError(
            "no prometheus binary and no apt-get/dpkg-deb to fetch Debian's package; "
            "install prometheus or set TIERRA_PROMETHEUS_BIN"
        )
    result = _command(["apt-get", "download", DEBIAN_PACKAGE], workdir)
    if result.returncode != 0 and os.geteuid() == 0:
        update = _command(["apt-get", "update"], workdir)
        if update.returncode != 0:
            raise PrometheusError(f"apt-get update failed: {update.stderr[-2000:]}")
        result = _command(["apt-get", "download", DEBIAN_PACKAGE], workdir)
    if result.returncode != 0:
        raise PrometheusError(
            f"apt-get download {DEBIAN_PACKAGE} failed (run `apt-get update` as root, or set "
            f"TIERRA_PROMETHEUS_BIN): {result.stderr[-2000:]}"
        )
    debs = sorted(workdir.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if not debs:
        raise PrometheusError(f"apt-get download left no .deb in {workdir}")
    return debs[-1]


def install_prometheus() -> Path:
    """Fetch Debian's package and keep its binary in the versioned cache; return its path."""
    workdir = Path(tempfile.mkdtemp(prefix="tierra-prometheus-"))
    try:
        deb = _download_deb(workdir)
        info = _command(["dpkg-deb", "--field", str(deb), "Version"], workdir)
        if info.returncode != 0:
            raise PrometheusError(f"dpkg-deb --field failed: {info.stderr[-2000:]}")
        tree = workdir / "tree"
        unpack = _command(["dpkg-deb", "-x", str(deb), str(tree)], workdir)
        if unpack.returncode != 0:
            raise PrometheusError(f"dpkg-deb -x failed: {unpack.stderr[-2000:]}")
        target_dir = prometheus_cache_dir(_upstream_version(info.stdout.strip()))
        target_dir.mkdir(parents=True, exist_ok=True)
        # promtool first: a prometheus in the cache means the entry is complete.
        for name in ("promtool", "prometheus"):
            binary = tree / "usr" / "bin" / name
            if not _executable(binary):
                raise PrometheusError(f"{deb.name} holds no usr/bin/{name}")
            staged = target_dir / f".{name}.{os.getpid()}"
            shutil.copy2(binary, staged)
            os.replace(staged, target_dir / name)  # atomic: never a half-written binary
        (target_dir / "package-version.txt").write_text(info.stdout.strip() + "\n")
        return target_dir / "prometheus"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def ensure_prometheus() -> Path:
    """A runnable prometheus binary, installing Debian's into the cache when none is found."""
    found = find_prometheus()
    if found is not None:
        cached = found.parent.parent == cache_root() / "bin"
        if cached and not _executable(found.parent / "promtool"):  # cached before promtool was
            return install_prometheus()
        return found
    if os.environ.get("TIERRA_PROMETHEUS_BIN"):
        raise PrometheusError(
            f"TIERRA_PROMETHEUS_BIN={os.environ['TIERRA_PROMETHEUS_BIN']} is not executable"
        )
    return install_prometheus()


def find_promtool() -> Path | None:
    """``TIERRA_PROMTOOL_BIN``, else the promtool beside the resolved prometheus, else PATH."""
    override = os.environ.get("TIERRA_PROMTOOL_BIN")
    if override:
        return Path(override) if _executable(Path(override)) else None
    prometheus = find_prometheus()
    if prometheus is not None and _executable(prometheus.parent / "promtool"):
        return prometheus.parent / "promtool"
    on_path = shutil.which("promtool")
    return Path(on_path) if on_path else None


def ensure_promtool() -> Path:
    """promtool from the same Prometheus the fleet uses, installing it when missing."""
    found = find_promtool()
    if found is not None:
        return found
    ensure_prometheus()
    found = find_promtool()
    if found is None:
        raise PrometheusError("no promtool beside prometheus; set TIERRA_PROMTOOL_BIN")
    return found


# ---------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ScrapeTarget:
    """A static scrape job: ``address`` is ``host:port``."""

    address: str
    job: str = "tierra-twin"
    metrics_path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)


def duration(seconds: float) -> str:
    """A Prometheus duration string: ``2s``, ``500ms``, ``1m30s`` is written ``90s``."""
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    millis = round(seconds * 1000)
    if millis == 0:
        raise ValueError("a duration must be at least 1ms")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def prometheus_config(
    targets: list[ScrapeTarget], scrape_interval: float = 2.0, scrape_timeout: float = 10.0
) -> dict[str, Any]:
    """The config: every target scraped every ``scrape_interval`` with ``honor_labels: true``,
    so the labels the target exports (``namespace``, ``pod``, ...) win over the scrape's own.
    Targets of the same job share one scrape config."""
    interval = duration(scrape_interval)
    timeout = duration(min(scrape_timeout, scrape_interval))
    jobs: dict[str, list[ScrapeTarget]] = {}
    for target in targets:
        jobs.setdefault(target.job, []).append(target)
    scrape_configs = []
    for job, members in jobs.items():
        paths = {m.metrics_path for m in members}
        if len(paths) != 1:
            raise ValueError(f"targets of job {job} disagree on metrics_path: {sorted(paths)}")
        static = []
        for member in members:
            entry: dict[str, Any] = {"targets": [member.address]}
            if member.labels:
                entry["labels"] = dict(member.labels)
            static.append(entry)
        scrape_configs.append(
            {
                "job_name": job,
                "honor_labels": True,
                "metrics_path": paths.pop(),
                "scrape_interval": interval,
                "scrape_timeout": timeout,
                "static_configs": static,
            }
        )
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": timeout,
            "evaluation_interval": interval,
        },
        "scrape_configs": scrape_configs,
    }


# ---------------------------------------------------------------------------------- server


class PrometheusServer:
    """A Prometheus process on ``127.0.0.1:port`` with its config and storage in ``directory``.

    ``start`` and ``stop`` may alternate any number of times; the port and the storage stay, so
    a restarted server keeps its series. Use as a context manager to always stop it.
    """

    def __init__(
        self,
        directory: Path,
        targets: list[ScrapeTarget],
        scrape_interval: float = 2.0,
        port: int | None = None,
        binary: Path | None = None,
        retention: str = "2h",
        tie_to_parent: bool = True,
    ) -> None:
        self.directory = directory.resolve()
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.port = port if port is not None else free_ports(1)[0]
        self.binary = binary
        self.retention = retention
        self.tie_to_parent = tie_to_parent
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "prometheus.yml"

    @property
    def storage_path(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "prometheus.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = prometheus_config(self.targets, self.scrape_interval)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config_path

    def argv(self, binary: Path) -> list[str]:
        return [
            str(binary),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.storage_path}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait until ready; return the seconds it took. Stops it on any failure."""
        if self.running:
            return 0.0
        binary = self.binary or ensure_prometheus()
        self.write_config()
        started = time.monotonic()
        with self.log_path.open("ab") as sink, SPAWN_LOCK:
            self.process = subprocess.Popen(
                self.argv(binary),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop it
                preexec_fn=die_with_parent if self.tie_to_parent else None,  # noqa: PLW1509
            )
        try:
            deadline = started + timeout
            while not self._ready():
                if self.process.poll() is not None:
                    raise PrometheusError(f"prometheus exited: {self.log_tail()}")
                if time.monotonic() > deadline:
                    raise PrometheusError(f"prometheus not ready after {timeout}s")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    def wait_for_scrapes(self, timeout: float = 30.0) -> float:
        """Wait until every target was scraped successfully; return the seconds waited.

        Prometheus hands targets to its scrapers a few seconds after start (its discovery
        manager batches updates every 5 s), so a fresh server has no samples at first.
        """
        started = time.monotonic()
        wanted = {target.address for target in self.targets}
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=2) as response:
                    active = json.loads(response.read())["data"]["activeTargets"]
                healthy = {
                    t["discoveredLabels"].get("__address__")
                    for t in active
                    if t.get("health") == "up"
                }
                if wanted <= healthy:
                    return time.monotonic() - started
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                pass
            if self.process is None or self.process.poll() is not None:
                raise PrometheusError(f"prometheus is not running: {self.log_tail()}")
            if time.monotonic() - started > timeout:
                raise PrometheusError(f"targets {sorted(wanted)} not scraped after {timeout}s")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; a no-op when not running."""
        process, self.process = self.process, None
        stop_process(process, grace)

    def restart(self, timeout: float = 30.0) -> float:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    # ---- queries (for tests and benchmarks; the operator has its own async client)

    def query(
        self, expr: str, timeout: float = 5.0, at: float | None = None
    ) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) of ``expr``, evaluated now or at the
        Unix time ``at``; raises on errors."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise PrometheusError(f"query {expr!r} failed: {error}") from error
        if body.get("status") != "success":
            raise PrometheusError(f"query {expr!r}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str, timeout: float = 5.0, at: float | None = None) -> float | None:
        """The single value of ``expr`` (now, or at ``at``), or None for an empty result."""
        result = self.query(expr, timeout, at)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"query {expr!r} returned {len(result)} series")
        return float(result[0]["value"][1])


if __name__ == "__main__":
    started = time.monotonic()
    path = ensure_prometheus()
    print(f"prometheus: {path} ({time.monotonic() - started:.1f}s)")
