"""The scrape interval measured from the pods' sample timestamps, and which one sizes the
windows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierra.core.scrape_timing import interval_in_effect, measured_interval, timing_query
from tierra_testing.builders import service

SEL = 'tierra_dev_inference_service_namespace="team-a",tierra_dev_inference_service="chat"'


@pytest.mark.parametrize(
    ("preset", "gauge"),
    [
        ("vllm", "vllm:num_requests_waiting"),
        ("tgi", "tgi_queue_size"),
        ("triton", "nv_inference_pending_request_count"),
    ],
)
def test_the_timed_series_is_a_gauge_of_the_service_s_pods_over_ten_minutes(
    preset: str, gauge: str
) -> None:
    svc = service(runtime={"image": "x", "metricsPreset": preset})
    assert timing_query(svc) == f"{gauge}{{{SEL}}}[10m]"
    assert timing_query(svc, "edge") == f'{gauge}{{{SEL},tierra_dev_tier="edge"}}[10m]'


def test_custom_queries_have_no_timed_series() -> None:
    custom = service(
        runtime={
            "image": "x",
            "metricsPreset": "custom",
            "customQueries": {"queueDepth": "sum(q{{selector}})"},
        }
    )
    assert timing_query(custom) is None


def test_a_hostile_name_stays_inside_its_label_value() -> None:
    query = timing_query(service(name='a"}[1m]) or vector(1) #'))
    assert query is not None
    assert query.endswith('tierra_dev_inference_service="a\\"}[1m]) or vector(1) #"}[10m]')


@pytest.mark.parametrize(
    ("series", "interval"),
    [
        ([[0.0, 70.0, 140.0, 210.0]], 70.0),
        # a missed scrape (140 s) and two pods at their own offsets
        ([[0.0, 70.0, 210.0, 280.0], [35.0, 105.0, 175.0]], 70.0),
        # jitter
        ([[0.0, 15.01, 29.99, 45.0, 60.02]], pytest.approx(15.0, abs=0.02)),
        ([[5.0], [9.0]], None),
        ([], None),
        ([[3.0, 3.0]], None),
    ],
)
def test_the_interval_is_the_median_gap_within_a_series(
    series: list[list[float]], interval: float | None
) -> None:
    assert measured_interval(series) == interval


@given(
    st.floats(1.0, 300.0),
    st.floats(0.0, 1e9),
    st.lists(st.integers(2, 40), min_size=1, max_size=5),
    st.data(),
)
def test_regular_scrapes_with_one_missed_are_measured_at_their_interval(
    interval: float, start: float, lengths: list[int], data: st.DataObject
) -> None:
    """Each pod scraped every ``interval`` from its own offset, with one scrape missed in a
    series of at least four samples: the measurement is the interval."""
    series = []
    for length in lengths:
        offset = data.draw(st.floats(0.0, interval))
        times = [start + offset + k * interval for k in range(length + 2)]
        if len(times) >= 4:
            del times[data.draw(st.integers(1, len(times) - 2))]
        series.append(times)
    assert measured_interval(series) == pytest.approx(interval, rel=1e-6)


@pytest.mark.parametrize(
    ("configured", "measured", "used"),
    [
        (15.0, None, 15.0),
        (15.0, 15.4, 15.0),
        (15.0, 18.0, 15.0),
        (15.0, 30.0, 30.0),
        (15.0, 70.2, 70.0),
        (1.0, 1.4, 1.0),
        (60.0, 15.0, 60.0),
    ],
)
def test_only_an_interval_clearly_longer_than_configured_is_used(
    configured: float, measured: float | None, used: float
) -> None:
    assert interval_in_effect(configured, measured) == used
