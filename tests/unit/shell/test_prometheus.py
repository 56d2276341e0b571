"""The Prometheus client against a real local HTTP server that mimics ``/api/v1/query``.

This tests the client's request, parsing and error handling; it is not a cluster test.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tierra.core.metrics_presets import PresetQueries, Selector, vllm
from tierra.shell.prometheus import (
    MetricSample,
    MetricsUnavailable,
    PrometheusClient,
    redact_url,
)


def vector(*values: str) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [1700000000.0, v]} for v in values],
        },
    }


#: query text -> (HTTP status, JSON body or raw text, delay in seconds)
Canned = Mapping[str, tuple[int, Any, float]]


@asynccontextmanager
async def fake_prometheus(canned: Canned) -> AsyncIterator[tuple[str, list[str]]]:
    """Serve canned answers on 127.0.0.1 (random port); yields (base URL, queries received)."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        query = request.query.get("query", "")
        seen.append(query)
        status, body, delay = canned.get(query, (200, vector(), 0.0))
        if delay:
            await asyncio.sleep(delay)
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_get("/api/v1/query", handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/", seen
    finally:
        await runner.cleanup()


async def query_one(answer: tuple[int, Any, float], timeout: float = 2.0) -> float | None:
    async with (
        fake_prometheus({"q": answer}) as (url, _),
        PrometheusClient(url, timeout_seconds=timeout) as client,
    ):
        return await client.query("q")


async def test_success_vector_and_scalar() -> None:
    assert await query_one((200, vector("42.5"), 0.0)) == 42.5
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}
    assert await query_one((200, scalar, 0.0)) == 3.0


async def test_query_is_sent_verbatim_as_a_parameter() -> None:
    promql = vllm(Selector("team-a", 'a"} or vector(1) #&x=1')).queue_depth
    assert promql is not None
    async with (
        fake_prometheus({promql: (200, vector("7"), 0.0)}) as (url, seen),
        PrometheusClient(url) as client,
    ):
        assert await client.query(promql) == 7.0
    assert seen == [promql]


async def test_empty_vector_is_none() -> None:
    assert await query_one((200, vector(), 0.0)) is None


async def test_nan_is_none_and_inf_is_kept() -> None:
    assert await query_one((200, vector("NaN"), 0.0)) is None
    assert await query_one((200, vector("+Inf"), 0.0)) == math.inf


@pytest.mark.parametrize("http_status", [200, 400, 422])
async def test_error_status_raises_with_prometheus_message(http_status: int) -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}
    with pytest.raises(MetricsUnavailable, match=r"bad_data: parse error at char 5"):
        await query_one((http_status, body, 0.0))


async def test_http_500_raises() -> None:
    with pytest.raises(MetricsUnavailable, match=r"HTTP 500.*boom"):
        await query_one((500, "boom", 0.0))


async def test_non_json_raises() -> None:
    with pytest.raises(MetricsUnavailable, match="non-JSON"):
        await query_one((200, "<html>proxy login</html>", 0.0))


async def test_several_series_raise() -> None:
    with pytest.raises(MetricsUnavailable, match="2 series"):
        await query_one((200, vector("1", "2"), 0.0))


async def test_timeout_raises() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(MetricsUnavailable, match=r"did not answer within 0\.2s"):
        await query_one((200, vector("1"), 5.0), timeout=0.2)
    assert loop.time() - started < 2.0


async def test_connection_refused_raises() -> None:
    async with fake_prometheus({}) as (url, _):
        pass  # the server is gone: its port now refuses connections
    async with PrometheusClient(url) as client:
        with pytest.raises(MetricsUnavailable, match="unreachable"):
            await client.query("q")


QUERIES = PresetQueries(
    queue_depth="queue",
    running="running",
    arrival_rate="arrivals",
    latency_p95_seconds="p95",
    ttft_p95_seconds=None,
)


async def test_sample_queries_concurrently_and_converts_to_ms() -> None:
    canned = {
        "queue": (200, vector("4"), 0.3),
        "running": (200, vector("12"), 0.3),
        "arrivals": (200, vector("2.5"), 0.3),
        "p95": (200, vector("1.25"), 0.3),
    }
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with (
        fake_prometheus(canned) as (url, seen),
        PrometheusClient(url, timeout_seconds=1.0, clock=lambda: when) as client,
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        sample = await client.sample_metrics(QUERIES)
        elapsed = loop.time() - started
    assert elapsed < 0.9  # four 0.3 s answers in parallel, not in sequence
    assert sorted(seen) == ["arrivals", "p95", "queue", "running"]  # no query for None
    assert sample == MetricSample(
        queue_depth=4.0,
        running=12.0,
        arrival_rate=2.5,
        p95_latency_ms=1250.0,
        ttft_p95_ms=None,
        observed_at=when,
    )


async def test_sample_dict_has_every_field() -> None:
    async with (
        fake_prometheus({"queue": (200, vector("1"), 0.0)}) as (url, _),
        PrometheusClient(url) as client,
    ):
        values = await client.sample(QUERIES)
    assert values == {
        "queue_depth": 1.0,
        "running": None,
        "arrival_rate": None,
        "latency_p95_seconds": None,
        "ttft_p95_seconds": None,
        "mean_prompt_tokens": None,
        "mean_output_tokens": None,
    }


async def test_sample_names_the_failed_queries() -> None:
    canned = {"queue": (200, vector("1"), 0.0), "p95": (200, vector("1"), 5.0)}
    async with (
        fake_prometheus(canned) as (url, _),
        PrometheusClient(url, timeout_seconds=0.2) as client,
    ):
        with pytest.raises(MetricsUnavailable, match=r"^latency_p95_seconds: .*did not answer"):
            await client.sample(QUERIES)


async def test_shared_session_is_not_closed() -> None:
    async with (
        fake_prometheus({"q": (200, vector("1"), 0.0)}) as (url, _),
        aiohttp.ClientSession() as session,
    ):
        async with PrometheusClient(url, session=session) as client:
            assert await client.query("q") == 1.0
        assert not session.closed


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://prometheus:9090", "http://prometheus:9090"),
        ("https://admin:hunter2@prom.example:9090/api", "https://***@prom.example:9090/api"),
        ("https://prom.example/?token=hunter2&org=1", "https://prom.example/?token=***&org=***"),
        ("http://tok@prom#frag", "http://***@prom"),
    ],
)
def test_credentials_in_a_prometheus_url_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "hunter2" not in redact_url(url)


async def test_an_unreachable_prometheus_with_credentials_is_named_without_them() -> None:
    async with PrometheusClient("http://user:hunter2@127.0.0.1:9", timeout_seconds=1) as client:
        with pytest.raises(MetricsUnavailable) as caught:
            await client.query("up")
    assert "hunter2" not in str(caught.value)
    assert "***@127.0.0.1:9" in str(caught.value)


def matrix(*series: list[float]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"pod": f"p{i}"}, "values": [[t, "1"] for t in times]}
                for i, times in enumerate(series)
            ],
        },
    }


async def times_of(answer: tuple[int, Any, float]) -> list[list[float]]:
    async with (
        fake_prometheus({"g[10m]": answer}) as (url, _),
        PrometheusClient(url) as client,
    ):
        return await client.sample_times("g[10m]")


async def test_sample_times_are_each_series_raw_sample_timestamps() -> None:
    answer = matrix([100.0, 170.0, 240.5], [130.0])
    assert await times_of((200, answer, 0.0)) == [[100.0, 170.0, 240.5], [130.0]]
    assert await times_of((200, matrix(), 0.0)) == []


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (vector("1"), "a vector for 'g\\[10m\\]'; expected a matrix"),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": [{"values": 3}]}},
            "malformed series",
        ),
        (
            {
                "status": "success",
                "data": {"resultType": "matrix", "result": [{"values": [["x", "1"]]}]},
            },
            "malformed sample",
        ),
        ({"status": "error", "errorType": "bad_data", "error": "nope"}, "bad_data: nope"),
    ],
)
async def test_sample_times_that_are_not_a_matrix_of_times_raise(body: Any, match: str) -> None:
    with pytest.raises(MetricsUnavailable, match=match):
        await times_of((200, body, 0.0))
