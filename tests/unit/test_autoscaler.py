"""The autoscaler's shell against a local HTTP server that answers like Prometheus's query API.

Checks what is sampled (queries per tier and Prometheus), the decisions, the Events and the
status report; the recommender itself is tested in tests/unit/core/autoscale/, and the
whole loop against a real Prometheus in tests/cluster/test_autoscaling.py.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from tierra.autoscaler import Autoscaler
from tierra.core.autoscale import RunningPlacement
from tierra.settings import AutoscalingSettings
from tierra_testing.builders import IMAGE, service, tier, variant

NOW = 1_800_000_000.0


@asynccontextmanager
async def query_api(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A local HTTP server answering Prometheus' ``/api/v1/query`` with ``handle``; its URL."""
    app = web.Application()
    app.router.add_get("/api/v1/query", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def prometheus(
    values: Mapping[str, float], scraped: Sequence[float] | None = ()
) -> AsyncIterator[tuple[str, list[str]]]:
    """Answers a query with the value of the first metric name it mentions (else empty), and a
    range selector with one series sampled at the ``scraped`` times (none when empty; HTTP 503
    when None)."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        query = request.query.get("query", "")
        seen.append(query)
        if query.endswith("[10m]") and scraped is None:
            return web.Response(status=503, text="range selectors are not served here")
        if query.endswith("[10m]"):
            series = [{"metric": {}, "values": [[t, "0"] for t in scraped]}] if scraped else []
            return web.json_response(
                {"status": "success", "data": {"resultType": "matrix", "result": series}}
            )
        for name, value in values.items():
            if name in query:
                result = [{"metric": {}, "value": [NOW, str(value)]}]
                break
        else:
            result = []
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    async with query_api(handle) as url:
        yield url, seen


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def step_once(
    values: Mapping[str, float],
    svc: Any,
    placements: list[RunningPlacement],
    ready: int,
    tiers: Mapping[str, Any],
) -> tuple[Any, Autoscaler]:
    """One step of a new autoscaler against a Prometheus answering ``values``."""
    async with prometheus(values) as (url, _):
        scaler = Autoscaler(url, clock=time.time)
        try:
            return await scaler.step("team-a/chat", svc, placements, ready, tiers), scaler
        finally:
            await scaler.close()


async def timed_steps(
    svc: Any,
    placements: list[RunningPlacement],
    ready: int,
    answers: Sequence[tuple[float, Mapping[str, float]]],
    tiers: Mapping[str, Any] | None = None,
    scrape_every: float | None = None,
    seen: list[str] | None = None,
    configured_scrape: float = 15.0,
) -> list[tuple[Any, Any]]:
    """(outcome, report) of one autoscaler's step at each (seconds from now, what Prometheus
    answers then), on a clock that jumps to each time; the pods' gauges scraped every
    ``scrape_every`` seconds over the last 10 minutes (no samples when None), while the
    operator's Prometheus is said to scrape every ``configured_scrape``."""
    metrics: dict[str, float] = {}
    scraped: list[float] = []
    start = time.time()
    clock = [start]
    steps = []
    async with prometheus(metrics, scraped) as (url, queries):
        scaler = Autoscaler(url, clock=lambda: clock[0], default_scrape_interval=configured_scrape)
        try:
            for at, values in answers:
                clock[0] = start + at
                metrics.clear()
                metrics.update({"timestamp(vllm": clock[0], **values})
                scraped.clear()
                if scrape_every is not None:
                    count = int(600 // scrape_every)
                    scraped.extend(clock[0] - k * scrape_every for k in range(count, -1, -1))
                outcome = await scaler.step(
                    "team-a/chat", svc, placements, ready, TIERS if tiers is None else tiers
                )
                steps.append((outcome, scaler.report("team-a/chat")))
        finally:
            await scaler.close()
            if seen is not None:
                seen.extend(queries)
    return steps


def posted(steps: Sequence[tuple[Any, Any]], reason: str) -> list[list[Any]]:
    """The Events of each (outcome, report) step with this reason."""
    return [[e for e in outcome.events if e.reason == reason] for outcome, _ in steps]


SLO = {"latencyP95Ms": 2000, "maxQueuePerReplica": 4}
SERVICE = service(variants=[variant("h100", model="H100")], slo=SLO)
TIERS = {"central": tier("central"), "edge": tier("edge", "edge")}
TWO = [RunningPlacement("central", "h100", 2)]
BUSY = {"num_requests_waiting": 60.0, "num_requests_running": 64.0}


async def test_a_queue_scales_up_in_one_step_with_an_event_and_a_report() -> None:
    async with prometheus(BUSY) as (url, seen):
        scaler = Autoscaler(url, clock=time.time)
        try:
            outcome = await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
        finally:
            await scaler.close()
    rec = outcome.recommendation
    assert rec.mode == "auto" and rec.signal == "queue"
    assert rec.replicas >= 4
    assert outcome.reconcile
    assert [e.reason for e in outcome.events] == ["ScaledUp"]
    assert any('tierra_dev_inference_service="chat"' in q for q in seen)
    assert not any("tierra_dev_tier" in q for q in seen)  # one Prometheus: one query for all
    report = scaler.report("team-a/chat")
    assert report is not None and report.metrics_available
    assert report.metrics is not None and report.metrics["queueDepth"] == 60.0
    assert report.last_scale is not None and report.last_scale["from"] == "2"
    assert report.last_scale["signals"]["queueDepth"] == 60.0
    assert scaler.recommended("team-a/chat") == rec.replicas


async def test_the_same_answer_again_changes_nothing() -> None:
    async with prometheus(BUSY) as (url, _):
        scaler = Autoscaler(url, clock=time.time)
        try:
            first = await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
            scaler.report("team-a/chat")
            grown = [RunningPlacement("central", "h100", first.recommendation.replicas)]
            second = await scaler.step("team-a/chat", SERVICE, grown, 2, TIERS)
        finally:
            await scaler.close()
    assert second.recommendation.replicas == first.recommendation.replicas
    assert not second.reconcile
    assert second.events == ()


async def status_writes(seconds: float, **settings: float) -> list[float]:
    """When a service whose decision holds has its status written again, decided every 5 s
    for ``seconds`` by an autoscaler made with ``settings``."""
    clock = [1_000.0]
    async with prometheus(BUSY) as (url, _):
        scaler = Autoscaler(url, clock=lambda: clock[0], **settings)
        try:
            first = await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
            scaler.report("team-a/chat")
            grown = [RunningPlacement("central", "h100", first.recommendation.replicas)]
            written = []
            for k in range(1, int(seconds / 5) + 1):
                clock[0] = 1_000.0 + 5.0 * k
                outcome = await scaler.step("team-a/chat", SERVICE, grown, 2, TIERS)
                assert outcome.recommendation.replicas == first.recommendation.replicas
                if outcome.reconcile:
                    written.append(5.0 * k)
                    scaler.report("team-a/chat")
        finally:
            await scaler.close()
    return written


async def test_a_steady_service_s_status_is_refreshed_every_30_s_not_at_every_decision() -> None:
    """A thousand metered services decided every 5 s would write as many statuses every 5 s:
    the same decision writes its status again only once its metrics are 30 s old."""
    refresh = AutoscalingSettings.status_refresh_seconds
    assert await status_writes(70.0) == [refresh, 2 * refresh]


async def test_the_status_refresh_is_a_setting() -> None:
    assert await status_writes(70.0, status_refresh_seconds=60.0) == [60.0]


async def test_unreachable_prometheus_holds_and_warns_once() -> None:
    scaler = Autoscaler(closed_port_url(), timeout_seconds=0.5, clock=time.time)
    try:
        first = await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
        second = await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
    finally:
        await scaler.close()
    assert first.recommendation.mode == "hold"
    assert first.recommendation.replicas == 2
    assert [(e.reason, e.type) for e in first.events] == [("MetricsUnavailable", "Warning")]
    assert "unreachable" in first.events[0].message
    assert second.events == ()
    report = scaler.report("team-a/chat")
    assert report is not None and not report.metrics_available
    assert report.metrics_reason == "PrometheusUnavailable"


async def test_metrics_coming_back_are_announced() -> None:
    dead = closed_port_url()
    scaler = Autoscaler(dead, timeout_seconds=0.5, clock=time.time)
    try:
        await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
        async with prometheus(BUSY) as (url, _):
            scaler.default_url = url
            back = await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
    finally:
        await scaler.close()
    assert "MetricsAvailable" in [e.reason for e in back.events]
    assert back.recommendation.mode == "auto"


async def test_no_prometheus_configured_is_a_clear_reason() -> None:
    scaler = Autoscaler(None, clock=time.time)
    outcome = await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
    assert outcome.recommendation.mode == "hold"
    assert outcome.events == ()  # a standing configuration: the condition says it, once
    report = scaler.report("team-a/chat")
    assert report is not None and report.metrics_reason == "NoMetricsSource"
    assert "prometheusURL" in report.metrics_message


async def test_a_new_reason_for_no_metrics_is_reported_without_urgency() -> None:
    """Once a service is placed, "not placed" no longer explains the missing metrics: the
    status is rewritten (no stale message), behind urgent work, and without an Event."""
    scaler = Autoscaler(None, clock=time.time)
    first = await scaler.step("team-a/chat", SERVICE, [], 0, TIERS)
    before = scaler.report("team-a/chat")
    assert first.reconcile and not first.report_only
    assert before is not None and "not placed" in before.metrics_message
    one = [RunningPlacement("central", "h100", 1)]  # the count held before placement
    placed = await scaler.step("team-a/chat", SERVICE, one, 0, TIERS)
    after = scaler.report("team-a/chat")
    assert placed.reconcile and placed.report_only and placed.events == ()
    assert after is not None and after.metrics_reason == "NoMetricsSource"
    assert "not placed" not in after.metrics_message and "central" in after.metrics_message


async def test_placing_a_service_rewords_a_missing_source_at_once() -> None:
    """The reconciler tells the autoscaler where it just placed the service: the status it
    writes then names the tiers without a Prometheus, and the next step has nothing to add."""
    scaler = Autoscaler(None, clock=time.time)
    await scaler.step("team-a/chat", SERVICE, [], 0, TIERS)
    one = [RunningPlacement("central", "h100", 1)]
    scaler.placed("team-a/chat", one, TIERS)
    report = scaler.report("team-a/chat")
    assert report is not None and report.metrics_reason == "NoMetricsSource"
    assert "not placed" not in report.metrics_message and "central" in report.metrics_message
    after = await scaler.step("team-a/chat", SERVICE, one, 0, TIERS)
    assert not after.reconcile and after.events == ()


async def test_placing_a_service_on_a_metered_tier_leaves_the_reason_to_the_next_step() -> None:
    """Whether a configured Prometheus has data is only known by asking it."""
    scaler = Autoscaler(None, clock=time.time)
    await scaler.step("team-a/chat", SERVICE, [], 0, TIERS)
    central = tier("central")
    spec = central.spec.model_copy(update={"metrics": _metrics(closed_port_url())})
    metered = {**TIERS, "central": central.model_copy(update={"spec": spec})}
    one = [RunningPlacement("central", "h100", 1)]
    scaler.placed("team-a/chat", one, metered)
    report = scaler.report("team-a/chat")
    assert report is not None and "not placed" in report.metrics_message
    try:
        after = await scaler.step("team-a/chat", SERVICE, one, 0, metered)
    finally:
        await scaler.close()
    report = scaler.report("team-a/chat")
    assert after.reconcile and report is not None
    assert report.metrics_reason == "PrometheusUnavailable"


async def test_an_unmetered_service_is_stepped_again_only_when_its_inputs_change() -> None:
    scaler = Autoscaler(None, clock=time.time)
    looks = 0
    observe = scaler.observe

    async def counting(*args: Any) -> Any:
        nonlocal looks
        looks += 1
        return await observe(*args)

    scaler.observe = counting  # type: ignore[method-assign,assignment]
    first = await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
    again = await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
    assert looks == 1 and again.recommendation == first.recommendation
    assert not again.reconcile and again.events == ()
    await scaler.step("team-a/chat", SERVICE, TWO, 1, TIERS)  # a replica went unready
    await scaler.step("team-a/chat", SERVICE, [RunningPlacement("central", "h100", 3)], 1, TIERS)
    assert looks == 3
    async with prometheus(BUSY) as (url, seen):
        central = tier("central")
        metered = central.model_copy(  # the Tier gains its own Prometheus: a new generation
            update={
                "metadata": central.metadata.model_copy(update={"generation": 2}),
                "spec": central.spec.model_copy(update={"metrics": _metrics(url)}),
            }
        )
        try:
            outcome = await scaler.step(
                "team-a/chat", SERVICE, TWO, 2, {**TIERS, "central": metered}
            )
        finally:
            await scaler.close()
    assert looks == 4 and seen and outcome.recommendation.mode == "auto"


async def step_on_central_and_edge(central_url: str, default_url: str) -> Any:
    """The report of one step of a service on a replica in central, whose Tier has its own
    Prometheus at ``central_url``, and one at the edge, sampled from the operator's."""
    central = tier("central")
    tiers: dict[str, Any] = {
        "central": central.model_copy(
            update={"spec": central.spec.model_copy(update={"metrics": _metrics(central_url)})}
        ),
        "edge": tier("edge", "edge"),
    }
    scaler = Autoscaler(default_url, clock=time.time)
    try:
        placements = [RunningPlacement("central", "h100", 1), RunningPlacement("edge", "h100", 1)]
        await scaler.step("team-a/chat", SERVICE, placements, 2, tiers)
    finally:
        await scaler.close()
    return scaler.report("team-a/chat")


async def test_tiers_with_their_own_prometheus_are_sampled_per_tier_and_added() -> None:
    async with (
        prometheus({"num_requests_waiting": 10.0, "num_requests_running": 8.0}) as (a, seen_a),
        prometheus({"num_requests_waiting": 30.0, "num_requests_running": 8.0}) as (b, seen_b),
    ):
        report = await step_on_central_and_edge(a, b)
    assert report is not None and report.metrics is not None
    assert report.metrics["queueDepth"] == 40.0
    assert all('tierra_dev_tier="central"' in q for q in seen_a)
    assert all('tierra_dev_tier="edge"' in q for q in seen_b)


async def test_the_slowest_of_a_service_s_prometheus_instances_sizes_its_windows() -> None:
    """The central tier's own Prometheus scrapes every 15 s, the operator's every 70 s: the
    edge pods' 70 s is the interval in effect, though the central ones have more samples."""
    now = time.time()
    every_15 = [now - 15 * k for k in range(40, -1, -1)]
    every_70 = [now - 70 * k for k in range(8, -1, -1)]
    async with (
        prometheus(BUSY, every_15) as (a, _),
        prometheus(BUSY, every_70) as (b, seen_b),
    ):
        report = await step_on_central_and_edge(a, b)
    assert report is not None and report.metrics_reason == "ScrapeIntervalMeasured"
    assert "every 70 s" in report.metrics_message
    assert all("[280s]" in q for q in seen_b if "rate(" in q)


def _metrics(url: str, scrape: int | None = None) -> Any:
    from tierra.api.tier import TierMetrics

    every = {} if scrape is None else {"scrapeIntervalSeconds": scrape}
    return TierMetrics.model_validate({"prometheusURL": url, **every})


async def test_a_tier_scraped_every_minute_gets_four_minute_windows() -> None:
    """The central tier's Prometheus scrapes every 60 s: a 1 m window would hold one sample,
    and rate() over it nothing; every windowed query spans four scrapes. The operator-wide
    Prometheus is taken to scrape every 15 s (1 m windows)."""
    async with prometheus(BUSY) as (url, seen):
        central = tier("central")
        tiers = {
            "central": central.model_copy(
                update={"spec": central.spec.model_copy(update={"metrics": _metrics(url, 60)})}
            )
        }
        scaler = Autoscaler(url, clock=time.time)
        try:
            outcome = await scaler.step("team-a/chat", SERVICE, TWO, 2, tiers)
            minute = len(seen)
            await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS | {"central": central})
        finally:
            await scaler.close()
    assert outcome.recommendation.mode == "auto"
    slow = [q for q in seen[:minute] if "rate(" in q or "avg_over_time" in q]
    assert len(slow) >= 6 and all("[4m" in q and "[1m" not in q for q in slow), slow
    usual = [q for q in seen[minute:] if "rate(" in q or "avg_over_time" in q]
    assert usual and all("[1m" in q for q in usual)


async def test_manual_mode_wins_and_says_so() -> None:
    manual = SERVICE.model_copy(update={"spec": SERVICE.spec.model_copy(update={"replicas": 7})})
    async with prometheus(BUSY) as (url, _):
        scaler = Autoscaler(url, clock=time.time)
        try:
            outcome = await scaler.step("team-a/chat", manual, TWO, 2, TIERS)
        finally:
            await scaler.close()
    assert outcome.recommendation.mode == "manual"
    assert outcome.recommendation.replicas == 7
    assert "ManualScaling" in [e.reason for e in outcome.events]


async def test_a_service_not_placed_yet_gets_no_scale_event() -> None:
    async with prometheus(BUSY) as (url, _):
        scaler = Autoscaler(url, clock=time.time)
        try:
            outcome = await scaler.step("team-a/chat", SERVICE, [], 0, TIERS)
        finally:
            await scaler.close()
    assert outcome.recommendation.replicas >= 1
    assert outcome.reconcile
    assert [e.reason for e in outcome.events] == []


async def test_prometheus_answering_nothing_is_no_data_and_holds() -> None:
    async with prometheus({}) as (url, _):
        scaler = Autoscaler(url, clock=time.time)
        try:
            outcome = await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
        finally:
            await scaler.close()
    assert outcome.recommendation.mode == "hold"
    assert outcome.recommendation.replicas == 2
    assert [(e.reason, e.type) for e in outcome.events] == [("MetricsUnavailable", "Warning")]
    report = scaler.report("team-a/chat")
    assert report is not None and not report.metrics_available
    assert report.metrics_reason == "NoData"


def with_status(status: dict[str, Any]) -> Any:
    body = SERVICE.model_dump(by_alias=True, exclude_none=True)
    body["status"] = status
    return type(SERVICE).model_validate(body)


def with_kept_state(state: dict[str, float], kept_at: float, **status: Any) -> Any:
    """The service recommended at 6 replicas, with ``state`` kept in status at ``kept_at``
    (epoch seconds), beside the rest of ``status``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(kept_at))
    autoscaling = {"mode": "auto", "recommendedReplicas": 6, "reason": "x"}
    return with_status(
        {"autoscaling": {**autoscaling, "state": state, "stateTime": stamp}, **status}
    )


async def test_the_rate_signals_are_sampled_and_the_state_goes_into_last_scale() -> None:
    values = {**BUSY, "irate(vllm:request_success_total": 9.0, "prompt_tokens_total": 4000.0}
    async with prometheus(values) as (url, seen):
        scaler = Autoscaler(url, clock=time.time)
        try:
            await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
        finally:
            await scaler.close()
    assert any(q.startswith("sum(irate(vllm:request_success_total") for q in seen)
    assert any(q.startswith("avg_over_time(sum(vllm:num_requests_running") for q in seen)
    report = scaler.report("team-a/chat")
    assert report is not None and report.last_scale is not None
    assert "state.speed" in report.last_scale["signals"]
    # (and with every status, not only with a scale decision)
    assert "state.speed" in report.state and report.state_time is not None


KEPT_BURST = {
    "state.speed": 0.9,
    "state.burstRise": 20.0,
    "state.burstPeak": 22.0,
    "state.burstJump": 20.0,
    "state.burstSwing": 0.0,
    "state.burstShare": 0.0,
}
"""A burst of 20 req/s (to a peak of 22) in the state status kept, with a service-rate
estimate of 0.9."""


async def first_step_after_restart(restarted: Any) -> Any:
    """The recommendation of a new autoscaler's first step for ``restarted`` on six replicas
    at a quiet load."""
    quiet = {
        "timestamp(vllm": time.time(),
        "num_requests_waiting": 0.0,
        "num_requests_running": 1.0,
        "prompt_tokens_total": 2000.0,
        "generation_tokens_total": 200.0,
        "success_total": 0.5,
    }
    six = [RunningPlacement("central", "h100", 6)]
    async with prometheus(quiet) as (url, _):
        scaler = Autoscaler(url, clock=time.time)
        try:
            outcome = await scaler.step("team-a/chat", restarted, six, 6, TIERS)
        finally:
            await scaler.close()
    return outcome.recommendation


async def test_a_restarted_autoscaler_restores_its_state_from_status() -> None:
    """After a restart, the first step starts from status: the recommended count (no
    scale-down before a full delay of fresh observations, with no scale-down window kept),
    the service-rate estimate and the burst history the last scale decision carried."""
    scaled = time.time() - 60.0
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(scaled))
    restarted = with_status(
        {
            "autoscaling": {"mode": "auto", "recommendedReplicas": 6, "reason": "x"},
            "lastScale": {
                "time": stamp,
                "from": "2",
                "to": "6",
                "reason": "x",
                "signals": {"state.speed": 0.8, "state.burstRise": 20.0, "state.burstPeak": 22.0},
            },
        }
    )
    rec = await first_step_after_restart(restarted)
    assert rec.replicas == 6  # a restart never scales down at once
    assert rec.state.speed == 0.8
    assert "headroom" in rec.needs  # the burst before the restart is still held for
    assert rec.state.last_scale_up_at is not None


@pytest.mark.parametrize("kept_ago", [20.0, 200.0])
async def test_a_restart_goes_on_with_the_scale_down_window_status_kept(kept_ago: float) -> None:
    """Status kept the scale-down window's steps 20 s ago: 6 replicas needed 130 s ago
    (beyond the service's 120 s delay by now), 2 since. The restarted operator's first step
    scales down as the window lets it, rather than holding 6 a whole delay more; kept 200 s
    ago (longer than the delay), the window starts afresh and the count is held."""
    now = time.time()
    window = {
        "state.windowSince": round(now - 900.0, 1),
        "state.window0At": round(now - 130.0, 1),
        "state.window0Need": 6.0,
        "state.window1At": round(now - kept_ago, 1),
        "state.window1Need": 2.0,
    }
    restarted = with_kept_state(window, now - kept_ago)
    assert SERVICE.spec.scaling.scale_down_delay_seconds == 120
    rec = await first_step_after_restart(restarted)
    if kept_ago < 120:
        assert rec.replicas == 2, rec.reason
        assert abs((rec.state.window_since or 0.0) - (now - 900.0)) < 1.0
    else:
        assert rec.replicas == 6, rec.reason
        assert "scale-down waits: metrics observed for 0 of 120 s" in rec.reason


@pytest.mark.parametrize("newer", ["state", "decision"])
async def test_a_restart_takes_the_newer_of_the_status_s_state_and_the_last_decision_s(
    newer: str,
) -> None:
    """The last scale decision was three hours ago; status.autoscaling.state, written with
    every status, holds what the recommender has seen since (a burst that moved no count).
    A restart takes whichever is newer: an operator of the version before wrote no state."""
    now = time.time()

    def stamp(seconds_ago: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - seconds_ago))

    kept_at = 30.0 if newer == "state" else 4 * 3600.0
    last_scale = {
        "time": stamp(3 * 3600.0),
        "from": "2",
        "to": "6",
        "reason": "x",
        "signals": {"state.speed": 0.8},
    }
    restarted = with_kept_state(KEPT_BURST, now - kept_at, lastScale=last_scale)
    rec = await first_step_after_restart(restarted)
    if newer == "state":
        assert rec.state.speed == 0.9
        assert rec.state.restored_burst is not None
        assert abs(rec.state.restored_burst[0] - (now - 30.0)) < 2.0
        assert "headroom" in rec.needs
    else:
        assert rec.state.speed == 0.8
        assert rec.state.restored_burst is None and "headroom" not in rec.needs
    assert rec.state.last_change_at is not None
    assert abs(rec.state.last_change_at - (now - 3 * 3600.0)) < 2.0


@pytest.mark.parametrize("memory", [None, 3600])
async def test_a_restart_holds_a_burst_for_the_service_s_burst_memory(memory: int | None) -> None:
    """Status kept a burst 50 minutes ago. The default lookback (30 minutes, faded out by
    45) has let it go; a service whose ``spec.scaling.burstMemorySeconds`` is an hour still
    holds headroom for it after a restart, as it would have without one."""
    now = time.time()
    body = with_kept_state(KEPT_BURST, now - 3000.0).model_dump(by_alias=True, exclude_none=True)
    if memory is not None:
        body["spec"]["scaling"]["burstMemorySeconds"] = memory
    rec = await first_step_after_restart(type(SERVICE).model_validate(body))
    assert rec.state.speed == 0.9
    if memory is None:
        assert "headroom" not in rec.needs, rec.reason
    else:
        assert rec.state.restored_burst is not None
        assert "headroom" in rec.needs, rec.reason


async def test_a_restart_that_finds_the_state_as_status_says_keeps_its_time() -> None:
    """The status a restarted operator writes is the one it found when nothing changed (its
    patch changes nothing); a state that differs is written with the time it was taken."""
    reports = []
    for status in (None, "same", "other"):
        body: dict[str, Any] = {}
        if status is not None:
            first = reports[0]
            kept = dict(first.state) if status == "same" else {"state.crowd": 0.0}
            body = {
                "autoscaling": {
                    "mode": "hold",
                    "recommendedReplicas": 2,
                    "state": kept,
                    "stateTime": "2026-12-04T09:00:00Z",
                }
            }
        async with prometheus({}) as (url, _):
            scaler = Autoscaler(url, clock=time.time)
            try:
                await scaler.step("team-a/chat", with_status(body), TWO, 2, TIERS)
            finally:
                await scaler.close()
        report = scaler.report("team-a/chat")
        assert report is not None
        reports.append(report)
    fresh, same, other = reports
    assert fresh.state and fresh.state_time is not None
    assert same.state == fresh.state and same.state_time == "2026-12-04T09:00:00Z"
    assert other.state == fresh.state and other.state_time != "2026-12-04T09:00:00Z"


def created(seconds_ago: float) -> Any:
    body = SERVICE.model_dump(by_alias=True, exclude_none=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))
    body["metadata"]["creationTimestamp"] = stamp
    return type(SERVICE).model_validate(body)


async def test_a_new_services_first_replicas_count_as_starting() -> None:
    """Load that reaches a service whose first replicas are still in their start-up waits for
    them: its latency is no overload to answer with feedback, and the queue is theirs to
    absorb. A service created long ago, never decided for, gets no such allowance."""
    slow = {
        "timestamp(vllm": time.time(),
        "num_requests_waiting": 0.0,
        "num_requests_running": 2.0,
        "e2e_request_latency_seconds": 20.0,  # ten times the SLO: requests waited for them
    }
    outcomes = {}
    for age in (10.0, 3600.0):
        async with prometheus(slow) as (url, _):
            scaler = Autoscaler(url, clock=time.time)
            try:
                outcomes[age] = await scaler.step("team-a/chat", created(age), TWO, 2, TIERS)
            finally:
                await scaler.close()
    young, old = outcomes[10.0].recommendation, outcomes[3600.0].recommendation
    assert young.state.last_scale_up_at is not None
    assert abs(young.state.last_scale_up_at - (time.time() - 10.0)) < 2.0
    assert "latency" not in young.needs and young.replicas == 2
    assert old.needs.get("latency", 0) > 2 and old.replicas > 2


EDGE_AND_CENTRAL = service(
    variants=[
        variant("orin", "edge-gpu", concurrency=4, prefill=900.0, decode=90.0),
        variant("h100", model="H100"),
    ],
    slo={"latencyP95Ms": 60000, "ttftP95Ms": 800, "maxQueuePerReplica": 4},
)
ON_BOTH = [RunningPlacement("edge", "orin", 1), RunningPlacement("central", "h100", 3)]


def long_prompts(prompt_tokens: float) -> dict[str, float]:
    return {
        "timestamp(vllm": time.time(),
        "num_requests_waiting": 0.0,
        "num_requests_running": 2.0,
        "time_to_first_token": 2.5,
        "prompt_tokens_total": prompt_tokens,
        "generation_tokens_total": 100.0,
        "success_total": 2.0,
    }


def with_condition(base: Any, type_: str, status: str) -> Any:
    """``base`` with only this condition in its status (what a restart reads)."""
    body = base.model_dump(by_alias=True, exclude_none=True)
    body["status"] = {
        "conditions": [{"type": type_, "status": status, "reason": "x", "message": "x"}]
    }
    return type(base).model_validate(body)


async def test_a_goal_out_of_reach_on_a_variant_is_a_condition_and_one_warning() -> None:
    """2,000-token prompts take 2.2 s to prefill on an Orin: the 800 ms TTFT goal is out of
    reach there. One Warning says so, the report carries the condition, and the p95 TTFT of
    2.5 s is not fed back into more replicas."""
    async with prometheus(long_prompts(2000.0)) as (url, _):
        scaler = Autoscaler(url, clock=time.time)
        try:
            first = await scaler.step("team-a/chat", EDGE_AND_CENTRAL, ON_BOTH, 4, TIERS)
            second = await scaler.step("team-a/chat", EDGE_AND_CENTRAL, ON_BOTH, 4, TIERS)
        finally:
            await scaler.close()
    warnings = [e for e in first.events if e.reason == "SLOOutOfReach"]
    assert len(warnings) == 1 and warnings[0].type == "Warning"
    # (about 2,000 tokens: the in-flight requests' share is taken off the counters' ratio)
    assert "p95 TTFT floor 2,2" in warnings[0].message
    assert "ms on orin in edge > SLO 800 ms" in warnings[0].message
    assert first.reconcile
    assert "latency" not in first.recommendation.needs
    assert "not chased: out of reach on orin" in first.recommendation.reason
    assert not [e for e in second.events if e.reason == "SLOOutOfReach"]
    report = scaler.report("team-a/chat")
    assert report is not None and report.reach is not None
    assert report.reach[:2] == (False, "OutOfReach")


async def test_a_restart_does_not_repeat_the_warning_and_a_goal_back_in_reach_is_said() -> None:
    for status, prompt, expected in (
        ("False", 2000.0, []),  # (said before the restart)
        ("False", 300.0, [("SLOWithinReach", "Normal")]),
        ("True", 2000.0, [("SLOOutOfReach", "Warning")]),
    ):
        restarted = with_condition(EDGE_AND_CENTRAL, "SLOReachable", status)
        outcome, _ = await step_once(long_prompts(prompt), restarted, ON_BOTH, 4, TIERS)
        said = [(e.reason, e.type) for e in outcome.events if e.reason.startswith("SLO")]
        assert said == expected, (status, prompt)


async def test_another_variant_going_out_of_reach_is_a_new_warning() -> None:
    """Already out of reach on the edge's Orin, the service also runs on an Orin in a second
    edge tier: that one is news, and is said; the same verdict again is not."""
    second_edge = {**TIERS, "edge-2": tier("edge-2", "edge")}
    spread = [*ON_BOTH, RunningPlacement("edge-2", "orin", 1)]
    async with prometheus(long_prompts(2000.0)) as (url, _):
        scaler = Autoscaler(url, clock=time.time)
        try:
            await scaler.step("team-a/chat", EDGE_AND_CENTRAL, ON_BOTH, 4, TIERS)
            wider = await scaler.step("team-a/chat", EDGE_AND_CENTRAL, spread, 5, second_edge)
            again = await scaler.step("team-a/chat", EDGE_AND_CENTRAL, spread, 5, second_edge)
        finally:
            await scaler.close()
    (said,) = [e for e in wider.events if e.reason == "SLOOutOfReach"]
    assert "on orin in edge-2" in said.message and "on orin in edge " in said.message
    assert wider.reconcile
    assert not [e for e in again.events if e.reason.startswith("SLO")]


async def test_a_scale_down_that_removes_replicas_still_starting_is_a_warning() -> None:
    """A 600 s start-up with no scale-down delay: the replicas a queue asked for are removed
    when it drains, before they serve, and the Event says so as a Warning."""
    hasty = service(
        variants=[variant("h100", model="H100", startup=600)],
        slo={"latencyP95Ms": 2000, "maxQueuePerReplica": 4},
        scaling={"scaleDownDelaySeconds": 0},
    )
    load = dict(BUSY)
    async with prometheus(load) as (url, _):
        scaler = Autoscaler(url, clock=time.time)
        try:
            up = await scaler.step("team-a/chat", hasty, TWO, 2, TIERS)
            asked = up.recommendation.replicas
            load.update(num_requests_waiting=0.0, num_requests_running=0.0)
            grown = [RunningPlacement("central", "h100", asked)]
            down = await scaler.step("team-a/chat", hasty, grown, 2, TIERS)
        finally:
            await scaler.close()
    assert asked > 2
    rec = down.recommendation
    assert rec.replicas < asked
    assert rec.cancels == min(asked - rec.replicas, asked - 2)
    assert [(e.reason, e.type) for e in down.events] == [("ScaledDownBeforeServing", "Warning")]
    assert "still starting" in rec.reason
    assert "scaleDownDelaySeconds 0 < startupSeconds 600" in rec.reason


CAPPED = service(
    variants=[variant("h100", model="H100")],
    slo={"latencyP95Ms": 2000, "maxQueuePerReplica": 4},
    scaling={"minReplicas": 1, "maxReplicas": 3},
)
ON_THREE = [RunningPlacement("central", "h100", 3)]
LIGHT = {"num_requests_waiting": 0.0, "num_requests_running": 2.0}


async def test_a_need_above_max_replicas_is_a_condition_and_one_warning_in_ten_minutes() -> None:
    """124 requests on 3 replicas of at most 3: the queue signal asks for more. The condition
    says how many and that the count is held at maxReplicas; one Warning says so, not one per
    sample. A need that dips under the bound for less than a minute leaves the condition True;
    one that stays under it a minute turns it False, and the need coming back above the bound
    within 10 minutes of the Warning posts none; after them, it does."""
    steps = await timed_steps(
        CAPPED,
        ON_THREE,
        3,
        [
            (0, BUSY),
            (5, BUSY),
            (10, LIGHT),
            (15, BUSY),
            (20, LIGHT),
            (50, LIGHT),
            (80, LIGHT),
            (85, BUSY),
            (605, LIGHT),
            (665, LIGHT),
            (670, BUSY),
        ],
    )
    outcomes = [o for o, _ in steps]
    capped = steps[1][1]
    after = steps[-1][1]
    first = outcomes[0]
    assert first.recommendation.replicas == 3
    beyond = first.recommendation.beyond_max
    assert beyond is not None and beyond > 3
    assert f"held at maxReplicas 3: {beyond} asked for" in first.recommendation.reason
    warned = posted(steps, "ScalingLimited")
    assert [len(w) for w in warned] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert warned[0][0].type == "Warning"
    assert f"the queue signal asks for {beyond} replicas" in warned[0][0].message
    assert capped is not None and capped.limit is not None
    assert capped.limit[:2] == (True, "MaxReplicas")
    assert "held at maxReplicas 3" in capped.limit[2]
    said = [r.limit[0] if r is not None and r.limit is not None else None for _, r in steps]
    assert said == [True, True, True, True, True, True, False, True, True, False, True]
    # (the condition turning is a status write)
    assert outcomes[2].recommendation.beyond_max is None
    assert outcomes[6].reconcile and outcomes[7].reconcile
    assert after is not None and after.limit is not None
    assert after.limit[:2] == (True, "MaxReplicas")


async def test_a_restart_while_held_at_max_replicas_does_not_repeat_the_warning() -> None:
    for status, expected in (("True", 0), ("False", 1)):
        restarted = with_condition(CAPPED, "ScalingLimited", status)
        outcome, _ = await step_once(BUSY, restarted, ON_THREE, 3, TIERS)
        said = [e for e in outcome.events if e.reason == "ScalingLimited"]
        assert len(said) == expected, status


async def test_a_need_within_max_replicas_is_not_limited() -> None:
    outcome, scaler = await step_once(LIGHT, CAPPED, ON_THREE, 3, TIERS)
    assert outcome.recommendation.beyond_max is None
    assert "maxReplicas" not in outcome.recommendation.reason
    report = scaler.report("team-a/chat")
    assert report is not None and report.limit is not None
    assert report.limit[:2] == (False, "WithinBounds")


async def test_gauges_without_rates_for_two_windows_say_the_scrape_interval_may_be_longer() -> None:
    """Prometheus answers the queue gauges but no rate() while requests run (a 1 m window over
    60 s scrapes holds one sample): after two windows the MetricsAvailable message says what to
    set, once with a Warning; rates that come back clear it."""
    outcomes = await timed_steps(
        SERVICE, TWO, 2, [(0, BUSY), (60, BUSY), (125, BUSY), (130, BUSY), (135, RATES)]
    )
    said = posted(outcomes, "MetricsIncomplete")
    assert [len(s) for s in said] == [0, 0, 1, 0, 0]
    assert said[2][0].type == "Warning"
    reasons = [r.metrics_reason for _, r in outcomes]
    assert reasons == [
        "MetricsObserved",
        "MetricsObserved",
        "RatesMissing",
        "RatesMissing",
        "MetricsObserved",
    ]
    assert all(r.metrics_available for _, r in outcomes)
    message = outcomes[2][1].metrics_message
    assert "no rate over [1m]" in message and "less often than every 30 s" in message
    assert "spec.metrics.scrapeIntervalSeconds" in message
    assert outcomes[2][0].reconcile and outcomes[4][0].reconcile


RATES = {**BUSY, "request_success_total": 8.0}
IDLE = {"num_requests_waiting": 0.0, "num_requests_running": 0.0}


async def test_missing_rates_count_from_the_first_requests_not_restarted_by_idle_scrapes() -> None:
    """Light load is idle at many scrape instants: the two windows run from the first sample
    with requests in the gauges (not from idle ones before it, whose counters may not exist
    yet), and idle samples after it do not start them again."""
    outcomes = await timed_steps(
        SERVICE,
        TWO,
        2,
        [(0, IDLE), (100, IDLE), (160, BUSY), (200, IDLE), (260, IDLE), (285, IDLE)],
    )
    said = posted(outcomes, "MetricsIncomplete")
    assert [len(s) for s in said] == [0, 0, 0, 0, 0, 1]
    assert [r.metrics_reason for _, r in outcomes][-2:] == ["MetricsObserved", "RatesMissing"]
    assert "for 125 s while requests run" in outcomes[-1][1].metrics_message


async def test_a_prometheus_scraping_less_often_than_configured_is_measured_and_windowed_for() -> (
    None
):
    """The pods' gauge samples come every 70 s while the Tier says nothing (15 s): the windows
    hold four 70 s scrapes from the first step, the message says what was measured and what to
    set, once with an Event; rates still missing over those windows blame the scrape config."""
    seen: list[str] = []
    outcomes = await timed_steps(
        SERVICE,
        TWO,
        2,
        [(0, RATES), (5, RATES), (10, BUSY), (600, BUSY)],
        scrape_every=70.0,
        seen=seen,
    )
    reasons = [r.metrics_reason for _, r in outcomes]
    assert reasons == 3 * ["ScrapeIntervalMeasured"] + ["RatesMissing"]
    said = posted(outcomes, "ScrapeIntervalMeasured")
    assert [len(s) for s in said] == [1, 0, 0, 0]
    assert said[0][0].type == "Normal"
    message = outcomes[0][1].metrics_message
    assert "every 70 s" in message and "not every 15 s as configured" in message
    assert "[280s]" in message and "scrapeIntervalSeconds" in message and "to 70 " in message
    windowed = [q for q in seen if "rate(" in q]
    assert windowed and all("[280s]" in q for q in windowed), windowed
    assert "though the pods' samples come every 70 s" in outcomes[-1][1].metrics_message
    assert sum(q.endswith("[10m]") for q in seen) == 2  # at the first step, and 10 minutes on


async def test_a_scrape_interval_as_configured_is_not_remarked() -> None:
    for configured, every in ((15.0, 15.0), (15.0, 18.0), (70.0, 70.0), (15.0, None)):
        outcomes = await timed_steps(
            SERVICE, TWO, 2, [(0, RATES)], scrape_every=every, configured_scrape=configured
        )
        assert outcomes[0][1].metrics_reason == "MetricsObserved", (configured, every)
        assert not [e for e in outcomes[0][0].events if e.reason == "ScrapeIntervalMeasured"]


async def timing_queries(scraped: Sequence[float] | None, times: Sequence[float]) -> int:
    """How many timing queries one autoscaler sends over steps at ``times`` (seconds from
    now), the pods' gauge sampled at ``scraped`` (None: the query refused)."""
    start = time.time()
    clock = [start]
    async with prometheus(RATES, None if scraped is None else [start + t for t in scraped]) as (
        url,
        seen,
    ):
        scaler = Autoscaler(url, clock=lambda: clock[0])
        try:
            for at in times:
                clock[0] = start + at
                await scaler.step("team-a/chat", SERVICE, TWO, 2, TIERS)
        finally:
            await scaler.close()
        report = scaler.report("team-a/chat")
        assert report is not None and report.metrics_reason == "MetricsObserved"
    return sum(q.endswith("[10m]") for q in seen)


async def test_a_failed_measurement_is_tried_again_after_a_minute_and_too_few_samples_sooner() -> (
    None
):
    """A Prometheus (or a proxy before it) that refuses the timing query is asked again a
    minute later, not at every 15 s retry; pods with one sample yet are timed again after
    15 s. The samples go on either way, windowed as configured."""
    times = [0, 5, 20, 40, 65]
    assert await timing_queries(None, times) == 2  # at 0 and 65
    assert await timing_queries([0], times) == 4  # at 0, 20, 40 and 65


# ------------------------------------------------------------------------ a sampling pass


@asynccontextmanager
async def fleet_prometheus(
    values: Mapping[str, Mapping[str, float]], failing: str | None = None, tier: str = "central"
) -> AsyncIterator[tuple[str, list[str]]]:
    """Answers like one Prometheus over the pods of several services in ``tier``: ``values``
    maps a service's name to (first metric name a query mentions -> value). A query grouped
    ``by`` the service labels gets one series per service (with the tier's label, when grouped
    by it), another the value of the service its matcher names; a query mentioning ``failing``
    gets HTTP 503."""
    seen: list[str] = []

    def value(name: str, query: str) -> float | None:
        return next((v for metric, v in values[name].items() if metric in query), None)

    async def handle(request: web.Request) -> web.StreamResponse:
        query = request.query.get("query", "")
        seen.append(query)
        if failing is not None and failing in query:
            return web.Response(status=503, text="overloaded")
        result = []
        if " by (" in query and "tierra_dev_inference_service" in query.split(" by (", 1)[1]:
            for name in values:
                found = value(name, query)
                labels = {
                    "tierra_dev_inference_service_namespace": "team-a",
                    "tierra_dev_inference_service": name,
                }
                if "tierra_dev_tier)" in query:
                    labels["tierra_dev_tier"] = tier
                if found is not None:
                    result.append({"metric": labels, "value": [NOW, str(found)]})
        else:
            named = next(
                (n for n in values if f'tierra_dev_inference_service="{n}"' in query), None
            )
            found = value(named, query) if named is not None else None
            if found is not None:
                result.append({"metric": {}, "value": [NOW, str(found)]})
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    async with query_api(handle) as url:
        yield url, seen


FLEET = {
    "chat": {"num_requests_waiting": 60.0, "num_requests_running": 64.0},
    "code": {"num_requests_waiting": 3.0, "num_requests_running": 5.0},
    "rag": {"num_requests_waiting": 0.0, "num_requests_running": 2.0},
}


async def step_fleet(
    url: str,
    names: Sequence[str],
    in_pass: bool,
    tiers: Mapping[str, Any] = TIERS,
    placements: list[RunningPlacement] = TWO,
    clock: Callable[[], float] = time.time,
    **spec: Any,
) -> dict[str, Any]:
    """The report of each service after one step of all of them at once."""
    scaler = Autoscaler(url, clock=clock)
    services = {
        n: service(n, uid=f"uid-{n}", variants=[variant("h100", model="H100")], slo=SLO, **spec)
        for n in names
    }

    async def steps() -> None:
        await asyncio.gather(
            *(scaler.step(f"team-a/{n}", s, placements, 2, tiers) for n, s in services.items())
        )

    try:
        if in_pass:
            async with scaler.sampling_pass():
                await steps()
        else:
            await steps()
    finally:
        await scaler.close()
    return {n: scaler.report(f"team-a/{n}") for n in names}


async def test_a_pass_samples_every_service_with_one_query_per_metric() -> None:
    started = time.time()  # (one clock for both, so observedAt cannot cross a second between them)
    async with fleet_prometheus(FLEET) as (url, seen):
        alone = await step_fleet(url, list(FLEET), in_pass=False, clock=lambda: started)
        asked_alone = len(seen)
        seen.clear()
        together = await step_fleet(url, list(FLEET), in_pass=True, clock=lambda: started)
    grouped = [q for q in seen if "[10m]" not in q]  # (not the scrape-interval measurement)
    assert asked_alone - len(FLEET) == 3 * len(grouped)  # (each service's 12, then 12 in all)
    assert len(set(grouped)) == len(grouped) == 12
    assert all(" by (" in q and 'tierra_dev_inference_service!=""' in q for q in grouped)
    for name, values in FLEET.items():
        report = together[name]
        assert report is not None and report.metrics_available, name
        assert report.metrics["queueDepth"] == values["num_requests_waiting"], name
        assert report.metrics["running"] == values["num_requests_running"], name
        assert report.metrics == alone[name].metrics, name


async def test_a_service_missing_from_a_pass_s_answer_has_no_data_as_alone() -> None:
    async with fleet_prometheus({"chat": FLEET["chat"]}) as (url, _):
        alone = await step_fleet(url, ["chat", "ghost"], in_pass=False)
        together = await step_fleet(url, ["chat", "ghost"], in_pass=True)
    for reports in (alone, together):
        assert reports["chat"].metrics_available
        assert not reports["ghost"].metrics_available
        assert reports["ghost"].metrics_reason == "NoData"


async def test_a_query_of_a_pass_that_fails_holds_every_service_and_says_which() -> None:
    async with fleet_prometheus(FLEET, failing="vllm:num_requests_waiting") as (url, seen):
        together = await step_fleet(url, list(FLEET), in_pass=True)
    sampled = [q for q in seen if "[10m]" not in q]  # (not the scrape-interval measurement)
    assert sum("vllm:num_requests_waiting" in q for q in sampled) == 1  # (once for all three)
    for name in FLEET:
        report = together[name]
        assert report.metrics_reason == "PrometheusUnavailable", name
        assert "queue_depth" in report.metrics_message and "503" in report.metrics_message


async def test_custom_queries_are_each_service_s_own_in_a_pass() -> None:
    runtime = {
        "image": IMAGE,
        "metricsPreset": "custom",
        "customQueries": {"queueDepth": "sum(my_queue{{selector}})"},
    }
    values = {"chat": {"my_queue": 7.0}, "code": {"my_queue": 1.0}}
    async with fleet_prometheus(values) as (url, seen):
        together = await step_fleet(url, list(values), in_pass=True, runtime=runtime)
    assert sorted(q for q in seen if "my_queue" in q) == [
        'sum(my_queue{tierra_dev_inference_service_namespace="team-a",'
        f'tierra_dev_inference_service="{n}"}})'
        for n in sorted(values)
    ]
    assert together["chat"].metrics["queueDepth"] == 7.0
    assert together["code"].metrics["queueDepth"] == 1.0


async def test_a_pass_over_tiers_with_their_own_prometheus_groups_by_tier() -> None:
    central = tier("central")
    async with (
        fleet_prometheus(FLEET) as (a, seen_a),
        fleet_prometheus({"chat": {"num_requests_waiting": 30.0}}, tier="edge") as (b, seen_b),
    ):
        tiers: dict[str, Any] = {
            "central": central.model_copy(
                update={"spec": central.spec.model_copy(update={"metrics": _metrics(a)})}
            ),
            "edge": tier("edge", "edge"),
        }
        placements = [RunningPlacement("central", "h100", 1), RunningPlacement("edge", "h100", 1)]
        together = await step_fleet(b, ["chat"], in_pass=True, tiers=tiers, placements=placements)
    grouped = [q for q in seen_a + seen_b if "[10m]" not in q]
    assert len(grouped) == 24 and all("tierra_dev_tier)" in q for q in grouped)
    # (central's 60 from the pass's answer for central, the edge's 30 from its own)
    assert together["chat"].metrics["queueDepth"] == 90.0
