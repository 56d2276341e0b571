"""The latency signal: feedback from the observed p95 latency or TTFT above the SLO."""

from __future__ import annotations

from ..model import (
    DEFAULT_PARAMS,
    ScalerParams,
    ScalingInputs,
    SignalNeed,
    Signals,
    ceil_count,
)
from ..sample import Sample
from ..state import ScalerState


def over_slo(
    inputs: ScalingInputs, signals: Signals, ignored: frozenset[str] = frozenset()
) -> tuple[float, str] | None:
    """(ratio, what) of the observed p95 latency or TTFT furthest above its SLO (None: all
    within it, or not observed), leaving out the ``ignored`` ones ("p95 latency", "p95
    TTFT")."""
    worst: tuple[float, str] | None = None
    for name, observed, goal in (
        ("p95 latency", signals.p95_latency_ms, inputs.latency_p95_ms),
        ("p95 TTFT", signals.ttft_p95_ms, inputs.ttft_p95_ms),
    ):
        if observed is None or goal is None or not goal > 0 or name in ignored:
            continue
        ratio = observed / goal
        if ratio > 1.0 and (worst is None or ratio > worst[0]):
            worst = (ratio, f"{name} {observed:.0f} ms > SLO {goal:.0f} ms (x{ratio:.2f})")
    return worst


def latency_need(
    inputs: ScalingInputs,
    signals: Signals,
    state: ScalerState,
    now: float,
    params: ScalerParams = DEFAULT_PARAMS,
    ignored: frozenset[str] = frozenset(),
) -> SignalNeed | None:
    """Feedback from observed p95 latency / TTFT above the SLO (None when within it); the
    ``ignored`` goals are out of reach of some running variant, and more replicas would not
    meet them (``out_of_reach``)."""
    worst = over_slo(inputs, signals, ignored)
    if worst is None:
        return None
    ratio, what = worst
    ready = inputs.ready_replicas
    # Requests in flight when new replicas become ready stay where they are and finish up to a
    # window later; their latency then stays in the runtime's histogram window for another.
    # The same holds for a backlog's tail.
    settle = inputs.startup_seconds + 2 * params.latency_window_seconds
    settling = state.last_scale_up_at is not None and now - state.last_scale_up_at < settle
    recent_backlog = state.backlog_at is not None and (
        now - state.backlog_at < 2 * params.latency_window_seconds
    )
    if ready <= 0 or ready < inputs.desired_replicas or settling or recent_backlog:
        return None
    need = ceil_count(ready * min(ratio, params.feedback_max_step))
    return SignalNeed("latency", need, f"latency: {what} on {ready} ready -> {need}", need, need)


def from_sample(sample: Sample, params: ScalerParams = DEFAULT_PARAMS) -> SignalNeed | None:
    """``latency_need``, leaving out the goals out of reach of a running variant. (It looks at
    backlogs before this sample only, so more load never means less.)"""
    signals = sample.seen.inputs.signals
    assert signals is not None
    return latency_need(
        sample.seen.inputs, signals, sample.state, sample.now, params, sample.seen.unmeetable
    )
