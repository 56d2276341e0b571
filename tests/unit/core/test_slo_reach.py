"""Goals a running variant cannot meet for the observed mean request, at any replica count."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierra.core.slo_reach import (
    OutOfReach,
    ServingProfile,
    floors_ms,
    out_of_reach,
    reach_verdict,
)

ORIN = ServingProfile("orin", "edge-berlin", 900.0, 90.0, rtt_ms=4.0)
L4 = ServingProfile("l4", "regional", 6500.0, 750.0, rtt_ms=18.0)


def test_a_floor_is_the_request_alone_plus_the_round_trip() -> None:
    ttft, latency = floors_ms(ORIN, 900.0, 90.0)
    assert ttft == pytest.approx(4.0 + 1000.0)
    assert latency == pytest.approx(4.0 + 1000.0 + 1000.0)


@pytest.mark.parametrize(
    ("prompt", "output", "latency_slo", "ttft_slo", "expected"),
    [
        # an 800-token prompt prefills in 889 ms on an Orin: an 800 ms TTFT is out of reach
        (800.0, 200.0, 6000.0, 800.0, {("p95 TTFT", "orin", "edge-berlin")}),
        # and within reach for a 600-token one (671 ms)
        (600.0, 200.0, 6000.0, 800.0, set()),
        # 500 output tokens decode in 5.6 s there: a 5 s latency goal is out of reach too
        (
            800.0,
            500.0,
            5000.0,
            800.0,
            {("p95 TTFT", "orin", "edge-berlin"), ("p95 latency", "orin", "edge-berlin")},
        ),
        # no TTFT goal: nothing to check it against
        (800.0, 200.0, 6000.0, None, set()),
        # a goal the L4 misses too (a 10,000-token prompt: 1.56 s on an L4)
        (
            10000.0,
            10.0,
            60000.0,
            1500.0,
            {("p95 TTFT", "orin", "edge-berlin"), ("p95 TTFT", "l4", "regional")},
        ),
    ],
)
def test_goals_out_of_reach(
    prompt: float,
    output: float,
    latency_slo: float,
    ttft_slo: float | None,
    expected: set[tuple[str, str, str]],
) -> None:
    found = out_of_reach([ORIN, L4], prompt, output, latency_slo, ttft_slo)
    assert {o.key for o in found} == expected


def test_a_flagged_goal_clears_only_below_the_margin() -> None:
    """A mean prompt that wanders about the edge does not turn the verdict back and forth."""
    flagged = out_of_reach([ORIN], 800.0, 200.0, 6000.0, 800.0)
    assert flagged
    # 700 tokens: 782 ms, below the goal but within 10 % of it: still out of reach
    assert out_of_reach([ORIN], 700.0, 200.0, 6000.0, 800.0, flagged, 0.1)
    assert not out_of_reach([ORIN], 700.0, 200.0, 6000.0, 800.0)
    # 600 tokens: 671 ms, more than 10 % below: within reach again
    assert not out_of_reach([ORIN], 600.0, 200.0, 6000.0, 800.0, flagged, 0.1)


def test_the_message_says_where_what_and_why() -> None:
    (found,) = out_of_reach([ORIN], 800.0, 200.0, 6000.0, 800.0)
    text = found.describe()
    assert "p95 TTFT floor 893 ms on orin in edge-berlin > SLO 800 ms" in text
    assert "800-token prompt" in text and "4 ms round trip" in text
    ok, reason, message = reach_verdict((found,))
    assert (ok, reason) == (False, "OutOfReach")
    assert text in message and "does not add replicas" in message
    assert reach_verdict(())[:2] == (True, "WithinReach")
    assert reach_verdict(None)[:2] == (None, "RequestSizeUnknown")


profiles = st.lists(
    st.builds(
        ServingProfile,
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["x", "y"]),
        st.floats(1.0, 1e6),
        st.floats(1.0, 1e6),
        st.floats(0.0, 500.0),
    ),
    max_size=4,
)
sizes = st.floats(0.0, 1e7) | st.sampled_from([math.nan, math.inf])


@given(
    profiles=profiles,
    prompt=sizes,
    output=sizes,
    latency_slo=st.floats(1.0, 1e5),
    ttft_slo=st.none() | st.floats(1.0, 1e5),
)
def test_out_of_reach_exactly_where_a_floor_is_above_its_goal(
    profiles: list[ServingProfile],
    prompt: float,
    output: float,
    latency_slo: float,
    ttft_slo: float | None,
) -> None:
    found = out_of_reach(profiles, prompt, output, latency_slo, ttft_slo)
    if not (math.isfinite(prompt) and math.isfinite(output)):
        assert found == ()
        return
    expected = set()
    for p in profiles:
        ttft, latency = floors_ms(p, prompt, output)
        if latency > latency_slo:
            expected.add(("p95 latency", p.variant, p.tier))
        if ttft_slo is not None and ttft > ttft_slo:
            expected.add(("p95 TTFT", p.variant, p.tier))
    assert {o.key for o in found} == expected
    assert all(o.floor_ms > o.slo_ms for o in found)
    # what was flagged before stays flagged at least as long
    again = out_of_reach(profiles, prompt, output, latency_slo, ttft_slo, found, 0.1)
    assert {o.key for o in again} >= {o.key for o in found}
    assert isinstance(found, tuple) and all(isinstance(o, OutOfReach) for o in found)


def test_within_the_margin_the_message_says_what_the_floor_was_held_to() -> None:
    """Flagged at 889 ms, then 782 ms: still out of reach (within 10 % of the goal), and the
    message does not claim the floor is above the goal itself."""
    flagged = out_of_reach([ORIN], 800.0, 200.0, 6000.0, 800.0)
    (held,) = out_of_reach([ORIN], 700.0, 200.0, 6000.0, 800.0, flagged, 0.1)
    assert "p95 TTFT floor 782 ms on orin in edge-berlin > 90% of the SLO 800 ms" in held.describe()
    assert "> SLO 800 ms" in flagged[0].describe()


def test_a_floor_still_above_the_goal_says_so_when_flagged_again() -> None:
    """Flagged at 889 ms, then a larger mean prompt: the floor is above the goal itself, and
    the message says that, not the margin it is also above."""
    flagged = out_of_reach([ORIN], 800.0, 200.0, 6000.0, 800.0)
    (again,) = out_of_reach([ORIN], 1600.0, 200.0, 6000.0, 800.0, flagged, 0.1)
    assert again.share == 0.9
    assert "on orin in edge-berlin > SLO 800 ms" in again.describe()
    assert "90%" not in again.describe()
