"""A small async client for the Prometheus HTTP query API (``GET /api/v1/query``).

``query`` returns one number or ``None`` ("Prometheus answered, but has no value": an empty
vector, or NaN, e.g. a quantile or ratio over no requests). Anything else that keeps us from a
trustworthy answer -- connection refused, timeout, a non-200 status, ``status != "success"``, a
body we cannot parse, more than one series -- raises :class:`MetricsUnavailable` with a reason
fit for a ``MetricsAvailable=False`` condition. ``+Inf`` (e.g. a p95 in the ``+Inf`` bucket) is
returned as ``math.inf``: it is a real "very slow", not missing data.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from tierra.core.metrics_presets import PRESET_QUERY_NAMES, PresetQueries

Value = TypeVar("Value")


class MetricsUnavailable(Exception):  # noqa: N818 -- reads as a condition reason
    """Prometheus could not give an answer; ``reason`` says why, for a condition message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MetricSample:
    """One sample of a service's signals; latencies converted from seconds to milliseconds."""

    queue_depth: float | None
    running: float | None
    arrival_rate: float | None
    p95_latency_ms: float | None
    ttft_p95_ms: float | None
    observed_at: datetime
    mean_prompt_tokens: float | None = None
    mean_output_tokens: float | None = None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_value(pair: Any, promql: str) -> float | None:
    """A ``[timestamp, "value"]`` pair -> float; NaN -> None."""
    try:
        value = float(pair[1])
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise MetricsUnavailable(
            f"Prometheus returned a malformed sample {_shorten(repr(pair))} for {promql!r}"
        ) from exc
    return None if math.isnan(value) else value


def _data(body: Any, promql: str) -> dict[str, Any]:
    """The ``data`` of a successful answer; MetricsUnavailable naming what is wrong."""
    if not isinstance(body, dict):
        raise MetricsUnavailable(f"Prometheus returned an unexpected body for {promql!r}")
    if body.get("status") != "success":
        raise MetricsUnavailable(
            f"Prometheus query {promql!r} failed: "
            f"{body.get('errorType', 'error')}: {body.get('error', 'no error message')}"
        )
    data = body.get("data")
    if not isinstance(data, dict):
        raise MetricsUnavailable(f"Prometheus returned no data for {promql!r}")
    return data


def redact_url(url: str) -> str:
    """``url`` as it may be shown in a status, an Event or a log: user information and query
    values (where credentials hide in a URL) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rsplit("@", 1)[1]
        query = "&".join(
            f"{name}=***" for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        )
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<unparseable URL>"


class PrometheusClient:
    """Instant queries against one Prometheus; each request is bounded by ``timeout_seconds``.

    Pass an ``aiohttp.ClientSession`` to share one; otherwise the client opens its own on first
    use and closes it in :meth:`close` (or on leaving ``async with``).
    """

    def __init__(
        self,
        base_url: str,
        timeout_seconds: float = 2.0,
        session: aiohttp.ClientSession | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact_url(self.base_url)
        """The URL for messages: the configured one may carry credentials."""
        self.timeout_seconds = timeout_seconds
        self._session = session
        self._owns_session = session is None
        self._clock = clock or (lambda: datetime.now(UTC))

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def query(self, promql: str) -> float | None:
        """Evaluate ``promql`` now; one value, or None when there is none (empty vector, NaN)."""
        return self._parse(await self._get(promql), promql)

    async def sample_times(self, promql: str) -> list[list[float]]:
        """The timestamps (Unix seconds) of each series' raw samples that a range selector
        (``metric{...}[10m]``) evaluated now selects: when Prometheus scraped them."""
        data = _data(await self._get(promql), promql)
        result_type, result = data.get("resultType"), data.get("result")
        if result_type != "matrix" or not isinstance(result, list):
            raise MetricsUnavailable(
                f"Prometheus returned a {result_type} for {promql!r}; expected a matrix"
            )
        times: list[list[float]] = []
        for series in result:
            values = series.get("values") if isinstance(series, dict) else None
            if not isinstance(values, list):
                raise MetricsUnavailable(f"Prometheus returned a malformed series for {promql!r}")
            try:
                times.append([float(pair[0]) for pair in values])
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                raise MetricsUnavailable(
                    f"Prometheus returned a malformed sample for {promql!r}"
                ) from exc
        return times

    async def _get(self, promql: str) -> Any:
        """The decoded body of an instant query; MetricsUnavailable when there is none."""
        url = f"{self.base_url}/api/v1/query"
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        try:
            async with self._get_session().get(
                url, params={"query": promql}, timeout=timeout
            ) as resp:
                status, text = resp.status, await resp.text()
        except TimeoutError as exc:
            raise MetricsUnavailable(
                f"Prometheus at {self.shown_url} did not answer within "
                f"{self.timeout_seconds:g}s for {promql!r}"
            ) from exc
        except aiohttp.ClientError as exc:
            raise MetricsUnavailable(
                f"Prometheus at {self.shown_url} is unreachable: {exc.__class__.__name__}"
            ) from exc
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if status != 200:
            detail = _shorten(text)
            if isinstance(body, dict) and "error" in body:
                detail = f"{body.get('errorType', 'error')}: {body['error']}"
            raise MetricsUnavailable(
                f"Prometheus at {self.shown_url} answered HTTP {status} for {promql!r}: {detail}"
            )
        if body is None:
            raise MetricsUnavailable(
                f"Prometheus at {self.shown_url} returned non-JSON: {_shorten(text)}"
            )
        return body

    def _parse(self, body: Any, promql: str) -> float | None:
        data = _data(body, promql)
        result_type, result = data.get("resultType"), data.get("result")
        if result_type == "scalar":
            return _parse_value(result, promql)
        if result_type != "vector" or not isinstance(result, list):
            raise MetricsUnavailable(
                f"Prometheus returned a {result_type} for {promql!r}; expected a vector or scalar"
            )
        if not result:
            return None
        if len(result) > 1:
            raise MetricsUnavailable(
                f"Prometheus returned {len(result)} series for {promql!r}; expected one "
                "(aggregate the query, e.g. with sum())"
            )
        series = result[0]
        return _parse_value(series.get("value") if isinstance(series, dict) else None, promql)

    async def query_by_series(
        self, promql: str, labels: tuple[str, ...]
    ) -> dict[tuple[str, ...], float | None]:
        """Evaluate ``promql`` now; each series' value keyed by its ``labels``' values (a
        series without one of them is no one's and left out; NaN -> None)."""
        data = _data(await self._get(promql), promql)
        result_type, result = data.get("resultType"), data.get("result")
        if result_type != "vector" or not isinstance(result, list):
            raise MetricsUnavailable(
                f"Prometheus returned a {result_type} for {promql!r}; expected a vector"
            )
        values: dict[tuple[str, ...], float | None] = {}
        for series in result:
            metric = series.get("metric") if isinstance(series, dict) else None
            if not isinstance(metric, dict):
                raise MetricsUnavailable(f"Prometheus returned a malformed series for {promql!r}")
            key = tuple(part for label in labels if isinstance(part := metric.get(label), str))
            if len(key) == len(labels):
                values[key] = _parse_value(series.get("value"), promql)
        return values

    async def sample_series(
        self, queries: Mapping[str, str], labels: tuple[str, ...]
    ) -> dict[str, dict[tuple[str, ...], float | None]]:
        """``query_by_series`` of each of ``queries`` (name -> PromQL), concurrently.

        Raises :class:`MetricsUnavailable` if any query fails, naming each failed one.
        """
        return await _each(
            {name: self.query_by_series(query, labels) for name, query in queries.items()}
        )

    async def sample(self, queries: PresetQueries) -> dict[str, float | None]:
        """All non-None queries, concurrently; keyed by PresetQueries field (missing -> None).

        Raises :class:`MetricsUnavailable` if any query fails, naming each failed field.
        """
        values = await _each({name: self.query(q) for name, q in queries.named().items()})
        return {name: values.get(name) for name in PRESET_QUERY_NAMES}

    async def sample_metrics(self, queries: PresetQueries) -> MetricSample:
        """:meth:`sample` as a :class:`MetricSample`, latencies in milliseconds."""
        return metric_sample(await self.sample(queries), self.now())

    def now(self) -> datetime:
        """The time a sample is taken at (the clock the client was given)."""
        return self._clock()


async def _each(queries: Mapping[str, Awaitable[Value]]) -> dict[str, Value]:
    """Each of ``queries``' answers by name, asked concurrently; MetricsUnavailable naming
    every one that failed."""
    names = list(queries)
    results = await asyncio.gather(*(queries[name] for name in names), return_exceptions=True)
    values: dict[str, Value] = {}
    failures: list[str] = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, MetricsUnavailable):
            failures.append(f"{name}: {result.reason}")
        elif isinstance(result, BaseException):
            raise result
        else:
            values[name] = result
    if failures:
        raise MetricsUnavailable("; ".join(failures))
    return values


def metric_sample(values: Mapping[str, float | None], observed_at: datetime) -> MetricSample:
    """A :class:`MetricSample` of the values of ``PresetQueries``' fields (missing: None)."""
    return MetricSample(
        queue_depth=values.get("queue_depth"),
        running=values.get("running"),
        arrival_rate=values.get("arrival_rate"),
        p95_latency_ms=_ms(values.get("latency_p95_seconds")),
        ttft_p95_ms=_ms(values.get("ttft_p95_seconds")),
        observed_at=observed_at,
        mean_prompt_tokens=values.get("mean_prompt_tokens"),
        mean_output_tokens=values.get("mean_output_tokens"),
    )
