"""The load twin: simulated vLLM model servers for the pods kwok runs as nothing.

It watches InferenceServices in the management cluster and the Deployments Tierra wrote
(``app.kubernetes.io/managed-by=tierra``) in every member cluster, keeps one simulated pool per
Deployment whose replicas follow the Deployment's ready replicas, generates load, and serves
vLLM-format metrics for a real Prometheus to scrape. What it simulates and how is in
:mod:`tierra.lab.twin_model`; this module is the I/O around it.

HTTP API (one aiohttp server)::

    GET    /metrics                      vLLM metrics, Prometheus text format
    GET    /state                        JSON: every pool (waiting, running, ready, starting,
                                         desired, p95 latency/TTFT of the last minute), loads
    GET    /healthz                      200 once the cluster caches are synced, else 503
    PUT    /load/{namespace}/{name}      {"rate": 12.0, "promptTokens": 800, "outputTokens": 200}
                                         Poisson arrivals at ``rate``/s (seeded)
    PUT    /trace/{namespace}/{name}     {"speed": 10.0, "skip": 0, "loop": false, "path": ...}
                                         replay a request trace (default: the Azure conv trace)
    DELETE /load/{namespace}/{name}      stop the service's load

Run it with ``python -m tierra.lab.twin --kubeconfig FILE --port N``, in-process with
``async with running_twin(kubeconfig, port) as twin``, or as a child process with
:class:`TwinProcess` / :func:`spawn_twin`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from tierra.api.inference_service import InferenceService
from tierra.core.render import LABEL_MANAGED_BY, MANAGED_BY
from tierra.lab.twin_model import (
    DeploymentView,
    Family,
    ServiceKey,
    TraceRequest,
    TwinModel,
    deployment_view,
    parse_trace,
)
from tierra.localfleet.runner import SPAWN_LOCK, die_with_parent, free_ports, stop_process
from tierra.shell.informer import Informer
from tierra.shell.kube import KubeClient, client_from_kubeconfig

log = logging.getLogger("tierra.lab.twin")

DEFAULT_PORT = 9400
MANAGEMENT_CONTEXT = "tierra-central"
DEPLOYMENT_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
TRACE_NAME = "azure-llm-2023-conv.csv"


def default_trace() -> Path:
    """``$TIERRA_TRACE``, else the shared conv trace next to the repository."""
    configured = os.environ.get("TIERRA_TRACE")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "shared" / "traces" / TRACE_NAME


# ---------------------------------------------------------------------------------- metrics


class VllmCollector:
    """A prometheus_client collector exporting the model's families at scrape time."""

    def __init__(self, model: TwinModel) -> None:
        self.model = model

    def collect(self) -> Iterator[Metric]:
        for family in self.model.families():
            yield to_metric(family)


def to_metric(family: Family) -> Metric:
    """One :class:`Family` as a prometheus_client metric family. Label names are the union over
    its series; a series lacking one has it empty, which Prometheus treats as absent."""
    label_sets = [s.labels for s in family.series] + [h.labels for h in family.histograms]
    names = sorted({name for labels in label_sets for name in labels})
    metric: GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily
    if family.kind == "histogram":
        metric = HistogramMetricFamily(family.name, family.documentation, labels=names)
        for hist in family.histograms:
            buckets = [
                ("+Inf" if math.isinf(bound) else repr(float(bound)), float(count))
                for bound, count in hist.buckets
            ]
            metric.add_metric([hist.labels.get(n, "") for n in names], buckets, hist.sum)
        return metric
    if family.kind == "counter":
        metric = CounterMetricFamily(family.name, family.documentation, labels=names)
    else:
        metric = GaugeMetricFamily(family.name, family.documentation, labels=names)
    for series in family.series:
        metric.add_metric([series.labels.get(n, "") for n in names], series.value)
    return metric


# ---------------------------------------------------------------------------------- the twin


class Twin:
    """The twin in this process: cluster caches, the model ticking in real time, HTTP."""

    def __init__(
        self,
        members: dict[str, KubeClient],
        management: KubeClient,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        seed: int = 0,
        tick_seconds: float = 0.1,
        startup_factor: float = 1.0,
    ) -> None:
        self.members = members
        self.management = management
        self.host = host
        self.port = port
        self.tick_seconds = tick_seconds
        self.model = TwinModel(seed=seed, startup_factor=startup_factor)
        self.services = Informer(management, "InferenceService")
        self.deployments = {
            name: Informer(client, "Deployment", label_selector=DEPLOYMENT_SELECTOR)
            for name, client in members.items()
        }
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(VllmCollector(self.model))
        self._traces: dict[Path, list[TraceRequest]] = {}
        self._parsed: dict[ServiceKey, tuple[str, InferenceService | None]] = {}
        self._epoch = time.monotonic()
        self._ticker: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None

    # ---- lifecycle

    def now(self) -> float:
        return time.monotonic() - self._epoch

    @property
    def synced(self) -> bool:
        informers = [self.services, *self.deployments.values()]
        return all(informer.synced.is_set() for informer in informers)

    async def start(self) -> None:
        self.services.start()
        for informer in self.deployments.values():
            informer.start()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self._ticker = asyncio.create_task(self._tick_forever(), name="twin-tick")
        log.info("twin serving on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.services.stop()
        for informer in self.deployments.values():
            await informer.stop()

    async def _tick_forever(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # one bad tick must not stop the simulation
                log.exception("twin tick failed")
            await asyncio.sleep(self.tick_seconds)

    def tick(self) -> None:
        """Bring the model to now: cluster state first (once the caches are synced), then
        arrivals and service up to now."""
        now = self.now()
        if self.synced:
            self.model.sync(now, self._views(), self._services())
        self.model.step(now)

    def _views(self) -> Iterator[DeploymentView]:
        for cluster, informer in self.deployments.items():
            for obj in informer.store.values():
                view = deployment_view(cluster, obj)
                if view is not None:
                    yield view

    def _services(self) -> dict[ServiceKey, InferenceService]:
        """The valid InferenceServices, parsed once per resourceVersion."""
        parsed: dict[ServiceKey, tuple[str, InferenceService | None]] = {}
        for key, body in self.services.store.items():
            version = str(body.get("metadata", {}).get("resourceVersion", ""))
            cached = self._parsed.get(key)
            if cached is not None and cached[0] == version:
                parsed[key] = cached
                continue
            try:
                parsed[key] = (version, InferenceService.model_validate(body))
            except ValidationError:
                log.warning("ignoring invalid InferenceService %s/%s", *key)
                parsed[key] = (version, None)
        self._parsed = parsed
        return {key: service for key, (_, service) in parsed.items() if service is not None}

    # ---- HTTP

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/state", self._state)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_put("/load/{namespace}/{name}", self._put_load)
        app.router.add_delete("/load/{namespace}/{name}", self._delete_load)
        app.router.add_put("/trace/{namespace}/{name}", self._put_trace)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        self.tick()  # a scrape sees the pools as of now, not as of the last tick
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _state(self, request: web.Request) -> web.Response:
        self.tick()
        return web.json_response({**self.model.state(), "synced": self.synced})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(
            text="ok" if self.synced else "syncing", status=200 if self.synced else 503
        )

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except ValueError as error:
            raise web.HTTPBadRequest(text=f"invalid JSON: {error}") from error
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        return body

    @staticmethod
    def _service(request: web.Request) -> ServiceKey:
        return (request.match_info["namespace"], request.match_info["name"])

    async def _put_load(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.tick()
        try:
            source = self.model.set_poisson(
                self._service(request),
                rate=float(body["rate"]),
                prompt_tokens=int(body.get("promptTokens", 512)),
                output_tokens=int(body.get("outputTokens", 128)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise web.HTTPBadRequest(text=f"invalid load: {error!r}") from error
        return web.json_response(source.describe())

    async def _delete_load(self, request: web.Request) -> web.Response:
        self.tick()
        self.model.clear_load(self._service(request))
        return web.json_response({})

    async def _put_trace(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        path = Path(body["path"]) if body.get("path") else default_trace()
        try:
            requests = self._trace(path)
        except OSError as error:
            raise web.HTTPBadRequest(text=f"cannot read trace {path}: {error}") from error
        self.tick()
        try:
            source = self.model.set_trace(
                self._service(request),
                requests,
                speed=float(body.get("speed", 1.0)),
                skip=float(body.get("skip", 0.0)),
                loop=bool(body.get("loop", False)),
            )
        except (TypeError, ValueError) as error:
            raise web.HTTPBadRequest(text=f"invalid trace replay: {error!r}") from error
        return web.json_response(source.describe())

    def _trace(self, path: Path) -> list[TraceRequest]:
        if path not in self._traces:
            with path.open() as lines:
                self._traces[path] = parse_trace(lines)
        return self._traces[path]


# ---------------------------------------------------------------------------------- process


async def clients_from_kubeconfig(
    kubeconfig: Path, contexts: Sequence[str] | None = None
) -> dict[str, KubeClient]:
    """One client per context (default: every context of the file)."""
    config = yaml.safe_load(kubeconfig.read_text())
    names = list(contexts) if contexts else [c["name"] for c in config.get("contexts", [])]
    return {name: await client_from_kubeconfig(config, name, context=name) for name in names}


@contextlib.asynccontextmanager
async def running_twin(
    kubeconfig: Path,
    port: int = DEFAULT_PORT,
    management_context: str = MANAGEMENT_CONTEXT,
    member_contexts: Sequence[str] | None = None,
    host: str = "127.0.0.1",
    seed: int = 0,
    tick_seconds: float = 0.1,
    startup_factor: float = 1.0,
) -> AsyncIterator[Twin]:
    """The twin in this event loop for the duration of an ``async with`` block."""
    members = await clients_from_kubeconfig(kubeconfig, member_contexts)
    management = members.get(management_context)
    owned_management = management is None
    if management is None:
        config = yaml.safe_load(kubeconfig.read_text())
        management = await client_from_kubeconfig(
            config, management_context, context=management_context
        )
    twin = Twin(
        members,
        management,
        host=host,
        port=port,
        seed=seed,
        tick_seconds=tick_seconds,
        startup_factor=startup_factor,
    )
    try:
        await twin.start()
        yield twin
    finally:
        await twin.stop()
        for client in members.values():
            await client.close()
        if owned_management:
            await management.close()


async def run(args: argparse.Namespace) -> None:
    """Run the twin until SIGTERM/SIGINT (or cancellation)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running_twin(
        Path(args.kubeconfig),
        port=args.port,
        management_context=args.management_context,
        member_contexts=args.member_context,
        host=args.host,
        seed=args.seed,
        tick_seconds=args.tick,
        startup_factor=args.startup_factor,
    ):
        await stop.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the fleet")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--management-context",
        default=MANAGEMENT_CONTEXT,
        help="context of the cluster holding the InferenceServices",
    )
    parser.add_argument(
        "--member-context",
        action="append",
        default=None,
        help="context of a member cluster to watch (repeatable; default: every context)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the load generators")
    parser.add_argument("--tick", type=float, default=0.1, help="simulation tick in seconds")
    parser.add_argument(
        "--startup-factor",
        type=float,
        default=1.0,
        help="multiplies every variant's startupSeconds (0: new replicas serve at once)",
    )
    parser.add_argument("--log-level", default="INFO", help="Python log level")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tierra twin", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run(args))
    return 0


def spawn_twin(
    kubeconfig: Path,
    port: int,
    log_path: Path,
    extra_args: Iterable[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``python -m tierra.lab.twin`` as a child process that dies with this one (see
    :func:`tierra.localfleet.runner.die_with_parent`: with the *thread* that spawned it)."""
    argv = [
        sys.executable,
        "-m",
        "tierra.lab.twin",
        "--kubeconfig",
        str(kubeconfig),
        "--port",
        str(port),
        *extra_args,
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as sink, SPAWN_LOCK:
        return subprocess.Popen(
            argv,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            preexec_fn=die_with_parent,  # noqa: PLW1509 - see die_with_parent
        )


class TwinProcess:
    """A twin child process with a small synchronous client of its HTTP API."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        port: int | None = None,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.port = port if port is not None else free_ports(1)[0]
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """``host:port``, a Prometheus scrape target."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> float:
        """Start it and wait until its caches are synced; return the seconds it took."""
        started = time.monotonic()
        self.process = spawn_twin(self.kubeconfig, self.port, self.log_path, self.extra_args)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"twin exited: {self.log_tail()}")
                with contextlib.suppress(OSError, RuntimeError):
                    if self._request("GET", "/healthz", timeout=1.0) == "ok":
                        return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"twin not ready after {timeout}s: {self.log_tail()}")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 10.0) -> None:
        process, self.process = self.process, None
        stop_process(process, grace)

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> str:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return str(response.read().decode())
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{method} {path}: {error.code} {error.read().decode()}") from error

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self._request("GET", "/state"))
        return result

    def metrics(self) -> str:
        return self._request("GET", "/metrics")

    def set_load(
        self,
        namespace: str,
        name: str,
        rate: float,
        prompt_tokens: int = 512,
        output_tokens: int = 128,
    ) -> dict[str, Any]:
        body = {"rate": rate, "promptTokens": prompt_tokens, "outputTokens": output_tokens}
        result: dict[str, Any] = json.loads(self._request("PUT", f"/load/{namespace}/{name}", body))
        return result

    def replay_trace(
        self,
        namespace: str,
        name: str,
        speed: float = 1.0,
        skip: float = 0.0,
        loop: bool = False,
        path: Path | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"speed": speed, "skip": skip, "loop": loop}
        if path is not None:
            body["path"] = str(path)
        result: dict[str, Any] = json.loads(
            self._request("PUT", f"/trace/{namespace}/{name}", body)
        )
        return result

    def clear_load(self, namespace: str, name: str) -> None:
        self._request("DELETE", f"/load/{namespace}/{name}")

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


if __name__ == "__main__":
    sys.exit(main())
