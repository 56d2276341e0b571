"""PromQL presets: label names, escaping of hostile names, each runtime's queries, dispatch."""

from __future__ import annotations

import dataclasses

import pytest

from tierra.core.metrics_presets import (
    PROM_LABEL_SERVICE,
    PROM_LABEL_SERVICE_NAMESPACE,
    PROM_LABEL_TIER,
    EveryService,
    PresetQueries,
    RateQueries,
    Selector,
    custom,
    escape,
    every_service_queries,
    queries_for,
    rate_queries_for,
    rate_window,
    service_key,
    tgi,
    triton,
    vllm,
    vllm_rates,
)
from tierra_testing.builders import service

SEL = 'tierra_dev_inference_service_namespace="team-a",tierra_dev_inference_service="chat"'


def test_label_names_follow_labelmap_sanitising() -> None:
    assert PROM_LABEL_SERVICE == "tierra_dev_inference_service"
    assert PROM_LABEL_SERVICE_NAMESPACE == "tierra_dev_inference_service_namespace"
    assert PROM_LABEL_TIER == "tierra_dev_tier"


def test_matcher_with_and_without_tier() -> None:
    assert Selector("team-a", "chat").matcher() == SEL
    assert Selector("team-a", "chat", "edge-1").matcher() == SEL + ',tierra_dev_tier="edge-1"'


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ('a"b', 'a\\"b'),
        ("a\\b", "a\\\\b"),
        ("a\nb", "a\\nb"),
        ("a\rb", "a\\rb"),
        ('\\"', '\\\\\\"'),  # a backslash cannot un-escape the quote that follows it
    ],
)
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def _parse_matchers(matcher: str) -> list[tuple[str, str]]:
    """Read ``name="value",...`` back the way PromQL's lexer would (Go string escapes)."""
    pairs, i = [], 0
    unescape = {"\\": "\\", '"': '"', "n": "\n", "r": "\r"}
    while i < len(matcher):
        eq = matcher.index("=", i)
        name = matcher[i:eq]
        assert matcher[eq + 1] == '"'
        i, value = eq + 2, []
        while matcher[i] != '"':
            if matcher[i] == "\\":
                value.append(unescape[matcher[i + 1]])
                i += 2
            else:
                value.append(matcher[i])
                i += 1
        pairs.append((name, "".join(value)))
        i += 1
        if i < len(matcher):
            assert matcher[i] == ","
            i += 1
    return pairs


@pytest.mark.parametrize(
    "hostile",
    ['a"} or vector(1) #', 'x\\"} or vector(1) #', "evil\n} or vector(1)", 'q",other="1', "\\"],
)
def test_hostile_names_cannot_inject(hostile: str) -> None:
    matcher = Selector(hostile, hostile, hostile).matcher()
    assert "\n" not in matcher
    # Lexed back, there are exactly the three matchers we wrote, each holding the hostile text.
    assert _parse_matchers(matcher) == [
        (PROM_LABEL_SERVICE_NAMESPACE, hostile),
        (PROM_LABEL_SERVICE, hostile),
        (PROM_LABEL_TIER, hostile),
    ]
    query = vllm(Selector("team-a", hostile)).queue_depth
    assert query == f"sum(vllm:num_requests_waiting{{{Selector('team-a', hostile).matcher()}}})"


def test_vllm_queries() -> None:
    q = vllm(Selector("team-a", "chat"))
    assert q == PresetQueries(
        queue_depth=f"sum(vllm:num_requests_waiting{{{SEL}}})",
        running=f"sum(vllm:num_requests_running{{{SEL}}})",
        arrival_rate=f"sum(rate(vllm:request_success_total{{{SEL}}}[1m]))",
        latency_p95_seconds="histogram_quantile(0.95, sum by (le) "
        f"(rate(vllm:e2e_request_latency_seconds_bucket{{{SEL}}}[1m])))",
        ttft_p95_seconds="histogram_quantile(0.95, sum by (le) "
        f"(rate(vllm:time_to_first_token_seconds_bucket{{{SEL}}}[1m])))",
        latency_statistic="p95",
        mean_prompt_tokens=f"sum(rate(vllm:prompt_tokens_total{{{SEL}}}[1m])) / "
        f"sum(rate(vllm:request_success_total{{{SEL}}}[1m]))",
        mean_output_tokens=f"sum(rate(vllm:generation_tokens_total{{{SEL}}}[1m])) / "
        f"sum(rate(vllm:request_success_total{{{SEL}}}[1m]))",
    )


def test_vllm_rate_queries_count_tokens_per_iteration() -> None:
    assert vllm_rates(Selector("team-a", "chat")) == RateQueries(
        prompt_tokens_rate=f"sum(rate(vllm:prompt_tokens_total{{{SEL}}}[1m]))",
        output_tokens_rate=f"sum(rate(vllm:generation_tokens_total{{{SEL}}}[1m]))",
        mean_running=f"avg_over_time(sum(vllm:num_requests_running{{{SEL}}})[1m:5s])",
        recent_completion_rate=f"sum(irate(vllm:request_success_total{{{SEL}}}[1m]))",
        scraped_at=f"max(timestamp(vllm:num_requests_running{{{SEL}}}))",
    )


def test_tgi_queries_have_no_ttft() -> None:
    q = tgi(Selector("team-a", "chat"))
    assert q.queue_depth == f"sum(tgi_queue_size{{{SEL}}})"
    assert q.running == f"sum(tgi_batch_current_size{{{SEL}}})"
    assert q.arrival_rate == f"sum(rate(tgi_request_count{{{SEL}}}[1m]))"
    assert q.latency_p95_seconds == (
        f"histogram_quantile(0.95, sum by (le) (rate(tgi_request_duration_bucket{{{SEL}}}[1m])))"
    )
    assert q.ttft_p95_seconds is None
    assert q.latency_statistic == "p95"


def test_triton_latency_is_a_mean_in_seconds() -> None:
    q = triton(Selector("team-a", "chat"))
    assert q.queue_depth == f"sum(nv_inference_pending_request_count{{{SEL}}})"
    assert q.running is None
    assert q.arrival_rate == f"sum(rate(nv_inference_request_success{{{SEL}}}[1m]))"
    assert q.latency_p95_seconds == (
        f"sum(rate(nv_inference_request_duration_us{{{SEL}}}[1m])) / "
        f"sum(rate(nv_inference_request_success{{{SEL}}}[1m])) / 1e6"
    )
    assert q.latency_statistic == "mean"
    assert q.ttft_p95_seconds is None


def test_a_preset_names_the_queries_its_runtime_has_and_only_queries() -> None:
    """What is sampled: a Triton service asks no running nor TTFT query, and its latency
    statistic ("mean") is no query."""
    sel = Selector("team-a", "chat")
    assert triton(sel).named() == {
        "queue_depth": triton(sel).queue_depth,
        "arrival_rate": triton(sel).arrival_rate,
        "latency_p95_seconds": triton(sel).latency_p95_seconds,
    }
    assert set(vllm(sel).named()) == {
        f.name for f in dataclasses.fields(PresetQueries) if f.name != "latency_statistic"
    }
    assert vllm_rates(sel).named() == dataclasses.asdict(vllm_rates(sel))
    assert RateQueries().named() == {}


def test_presets_are_frozen() -> None:
    q = vllm(Selector("team-a", "chat"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.queue_depth = "1"  # type: ignore[misc]


def test_queries_for_dispatches_on_preset_and_tier() -> None:
    assert queries_for(service()) == vllm(Selector("team-a", "chat"))
    tgi_svc = service(runtime={"image": "tgi", "metricsPreset": "tgi"})
    assert queries_for(tgi_svc, "edge-1") == tgi(Selector("team-a", "chat", "edge-1"))
    triton_svc = service(runtime={"image": "triton", "metricsPreset": "triton"})
    assert queries_for(triton_svc) == triton(Selector("team-a", "chat"))


@pytest.mark.parametrize(
    ("scrape", "window"), [(1, "1m"), (15, "1m"), (20, "80s"), (30, "2m"), (60, "4m"), (300, "20m")]
)
def test_rate_windows_hold_four_scrapes_and_at_least_a_minute(scrape: float, window: str) -> None:
    assert rate_window(scrape) == window


def test_every_windowed_query_is_sized_for_the_tier_s_scrape_interval() -> None:
    """At 60 s scrapes a 1 m window holds one sample, and rate() over it is empty: every
    windowed query, the rate signals' too, takes four scrapes."""
    presets = [
        queries_for(service(runtime={"image": "x", "metricsPreset": p}), "edge", 60)
        for p in ("vllm", "tgi", "triton")
    ]
    rates = rate_queries_for(service(), "edge", 60)
    queries = [
        q
        for group in (*presets, rates)
        for q in dataclasses.astuple(group)
        if isinstance(q, str) and ("rate(" in q or "avg_over_time" in q)
    ]
    assert len(queries) >= 12
    assert all("[4m" in q and "[1m" not in q for q in queries), queries
    assert queries_for(service(), "edge", 15) == vllm(Selector("team-a", "chat", "edge"))


def test_custom_preset_substitutes_escaped_selector() -> None:
    svc = service(
        name="chat",
        runtime={
            "image": "mine",
            "metricsPreset": "custom",
            "customQueries": {
                "queueDepth": 'sum(my_queue{{selector},job="llm"})',
                "latencyP95Seconds": "max(my_p95{{selector}}) and on() vector(1) > {selector_x}",
            },
        },
    )
    q = queries_for(svc, "t1")
    sel = SEL + ',tierra_dev_tier="t1"'
    assert q.queue_depth == f'sum(my_queue{{{sel},job="llm"}})'
    # Only the exact placeholder is replaced; other braces are left alone.
    assert q.latency_p95_seconds == f"max(my_p95{{{sel}}}) and on() vector(1) > {{selector_x}}"
    assert q.running is None
    assert q.arrival_rate is None
    assert q.ttft_p95_seconds is None


def test_custom_preset_escapes_hostile_values() -> None:
    from tierra.api.inference_service import CustomQueries

    q = custom(
        Selector("ns", 'a"} or vector(1) #'),
        CustomQueries.model_validate({"queueDepth": "sum(q{{selector}})"}),
    )
    assert q.queue_depth == (
        'sum(q{tierra_dev_inference_service_namespace="ns",'
        'tierra_dev_inference_service="a\\"} or vector(1) #"})'
    )


def test_custom_without_queries_is_rejected() -> None:
    svc = service(runtime={"image": "mine", "metricsPreset": "vllm"})
    broken = svc.model_copy(
        update={
            "spec": svc.spec.model_copy(
                update={"runtime": svc.spec.runtime.model_copy(update={"metrics_preset": "custom"})}
            )
        }
    )
    with pytest.raises(ValueError, match="customQueries"):
        queries_for(broken)


EVERY = 'tierra_dev_inference_service!=""'
BY = "tierra_dev_inference_service_namespace, tierra_dev_inference_service"


def test_every_service_s_queries_are_one_s_grouped_by_the_service_labels() -> None:
    """The same PromQL as one service's, over every pod with a service label, one series per
    service: what a pass samples a fleet with."""
    queries, rates = every_service_queries("vllm", by_tier=False, scrape_interval=15.0)
    assert queries.queue_depth == f"sum by ({BY})(vllm:num_requests_waiting{{{EVERY}}})"
    assert queries.latency_p95_seconds == (
        f"histogram_quantile(0.95, sum by (le, {BY}) "
        f"(rate(vllm:e2e_request_latency_seconds_bucket{{{EVERY}}}[1m])))"
    )
    assert queries.mean_prompt_tokens == (
        f"sum by ({BY})(rate(vllm:prompt_tokens_total{{{EVERY}}}[1m])) / "
        f"sum by ({BY})(rate(vllm:request_success_total{{{EVERY}}}[1m]))"
    )
    assert rates.mean_running == (
        f"avg_over_time(sum by ({BY})(vllm:num_requests_running{{{EVERY}}})[1m:5s])"
    )
    assert rates.scraped_at == f"max by ({BY})(timestamp(vllm:num_requests_running{{{EVERY}}}))"
    one = vllm(Selector("team-a", "chat"))
    for field in dataclasses.fields(PresetQueries):
        if field.name != "latency_statistic":
            every = getattr(queries, field.name)
            alone = every.replace(f" by ({BY})", "").replace(f", {BY}", "").replace(EVERY, SEL)
            assert alone == getattr(one, field.name), field.name


def test_every_service_s_queries_by_tier_and_each_preset_s_windows() -> None:
    queries, rates = every_service_queries("tgi", by_tier=True, scrape_interval=70.0)
    assert queries.arrival_rate == (
        f"sum by ({BY}, tierra_dev_tier)(rate(tgi_request_count{{{EVERY}}}[280s]))"
    )
    assert rates == RateQueries()  # (no rate signals but vLLM's)
    triton_queries, _ = every_service_queries("triton", by_tier=False, scrape_interval=15.0)
    assert triton_queries.latency_p95_seconds == (
        f"sum by ({BY})(rate(nv_inference_request_duration_us{{{EVERY}}}[1m])) / "
        f"sum by ({BY})(rate(nv_inference_request_success{{{EVERY}}}[1m])) / 1e6"
    )
    assert EveryService(by_tier=True).labels == (
        PROM_LABEL_SERVICE_NAMESPACE,
        PROM_LABEL_SERVICE,
        PROM_LABEL_TIER,
    )
    assert service_key("team-a", "chat", None) == ("team-a", "chat")
    assert service_key("team-a", "chat", "edge") == ("team-a", "chat", "edge")


def test_custom_queries_are_never_asked_for_every_service() -> None:
    """A user's PromQL is one service's: it may not aggregate by the service labels."""
    assert every_service_queries("custom", by_tier=False, scrape_interval=15.0) is None
