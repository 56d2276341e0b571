"""The guard against implausible samples: one absurd sample is set aside, a non-finite
request size is none, and no metric value raises or jumps to max replicas (properties over
arbitrary floats)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tierra.core.autoscale import (
    LatencyProbe,
    ScalerState,
    ScalingInputs,
    Signals,
    Unhelped,
    recommend,
)
from tierra.core.slo_reach import ServingProfile
from tierra_testing.autoscale import (
    STEP,
    inputs,
    steady,
)


def settled() -> tuple[ScalingInputs, ScalerState]:
    """Four replicas serving 5 req/s, seen for a few minutes."""
    state = ScalerState()
    for i in range(12):
        rec = recommend(inputs(signals=steady(i * STEP, 5.0, 1.9)), state, i * STEP)
        state = rec.state
    return inputs(desired_replicas=rec.replicas, ready_replicas=rec.replicas), state


def test_one_absurd_sample_is_set_aside_and_a_confirmed_one_is_believed() -> None:
    base, state = settled()
    now = 12 * STEP
    absurd = steady(now, 5.0, 1.9, recent_completion_rate=1e7)
    first = recommend(replace(base, signals=absurd), state, now)
    assert first.replicas == base.desired_replicas
    assert "implausible sample is set aside" in first.reason
    normal = recommend(replace(base, signals=steady(now + STEP, 5.0, 1.9)), first.state, now + STEP)
    assert normal.replicas == base.desired_replicas and normal.state.suspect_at is None
    # two in a row: believed
    again = steady(now + STEP, 5e3, 1.9, recent_completion_rate=5e3)
    second = recommend(replace(base, signals=again), first.state, now + STEP)
    assert second.replicas == base.max_replicas


def test_a_token_ratio_of_inf_or_nan_is_no_request_size() -> None:
    """A non-finite, negative or absurd mean size is no measurement: the size measured before
    stands (and with none before, the arrival model is skipped)."""
    base, state = settled()
    now = 12 * STEP
    good = recommend(replace(base, signals=steady(now, 5.0, 1.9)), state, now)
    for bad in (math.inf, math.nan, -1.0, 1e12):
        rec = recommend(
            replace(base, signals=steady(now, 5.0, 1.9), mean_prompt_tokens=bad), state, now
        )
        assert rec.needs["arrival"] == good.needs["arrival"]
        assert state.sizes is not None and rec.state.sizes == (*state.sizes[:3], now)
        assert rec.replicas == base.desired_replicas
        fresh = recommend(
            replace(base, signals=steady(0.0, 5.0, 1.9), mean_prompt_tokens=bad), ScalerState(), 0
        )
        assert "arrival" not in fresh.needs


ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.none()


ABSURD = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 1e9, 1e18, 1e300])


FIELDS = (
    "queue_depth",
    "running",
    "arrival_rate",
    "p95_latency_ms",
    "ttft_p95_ms",
    "prompt_tokens_rate",
    "output_tokens_rate",
    "mean_running",
    "recent_completion_rate",
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.fixed_dictionaries({name: ANY_FLOAT for name in FIELDS}),
    prompt=ANY_FLOAT,
    output=ANY_FLOAT,
    observed=ANY_FLOAT,
    scraped=ANY_FLOAT,
    now=st.floats(allow_nan=True, allow_infinity=True),
)
def test_no_metric_value_raises(
    values: dict[str, float | None],
    prompt: float | None,
    output: float | None,
    observed: float | None,
    scraped: float | None,
    now: float,
) -> None:
    base, state = settled()
    # (an edge variant beside the one sized: the reach check sees the same sizes)
    base = replace(base, serving=(ServingProfile("orin", "edge", 900.0, 90.0, 4.0),))
    signals = Signals(observed_at=observed, scraped_at=scraped, **values)
    # (and a latency scale-up being judged, beside a goal already found not helped)
    judged = replace(
        state,
        latency_probe=LatencyProbe(0.0, 2, 1.5, "p95 TTFT", 5.0),
        unhelped=(Unhelped("p95 latency", 1.2, 4, 1.25, 2, 1.1),),
    )
    for s in (ScalerState(), state, judged):
        rec = recommend(
            replace(base, signals=signals, mean_prompt_tokens=prompt, mean_output_tokens=output),
            s,
            now,
        )
        assert 0 <= rec.replicas <= base.max_replicas
        json.dumps(rec.state.to_dict(), allow_nan=True)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(FIELDS), value=ABSURD)
def test_one_absurd_sample_never_jumps_to_max_replicas(field: str, value: float) -> None:
    base, state = settled()
    now = 12 * STEP
    sample = replace(steady(now, 5.0, 1.9), **{field: value})
    rec = recommend(replace(base, signals=sample), state, now)
    assert rec.replicas < base.max_replicas
    assert rec.replicas <= 2 * base.desired_replicas
