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
from ..state import LatencyProbe, ScalerState


def goal_ratios(inputs: ScalingInputs, signals: Signals) -> dict[str, tuple[float, str]]:
    """(ratio, what) of each observed p95 ("p95 latency", "p95 TTFT") to its SLO."""
    out: dict[str, tuple[float, str]] = {}
    for name, observed, goal in (
        ("p95 latency", signals.p95_latency_ms, inputs.latency_p95_ms),
        ("p95 TTFT", signals.ttft_p95_ms, inputs.ttft_p95_ms),
    ):
        if observed is not None and goal is not None and goal > 0:
            ratio = observed / goal
            out[name] = (ratio, f"{name} {observed:.0f} ms > SLO {goal:.0f} ms (x{ratio:.2f})")
    return out


def worst_goal(
    inputs: ScalingInputs, signals: Signals, ignored: frozenset[str] = frozenset()
) -> tuple[float, str, str] | None:
    """(ratio, goal, what) of the observed p95 latency or TTFT furthest above its SLO (None:
    all within it, or not observed), leaving out the ``ignored`` goals."""
    over = [
        (ratio, name, what)
        for name, (ratio, what) in goal_ratios(inputs, signals).items()
        if ratio > 1.0 and name not in ignored
    ]
    return max(over, default=None)


def over_slo(
    inputs: ScalingInputs, signals: Signals, ignored: frozenset[str] = frozenset()
) -> tuple[float, str] | None:
    """(ratio, what) of the observed p95 latency or TTFT furthest above its SLO (None: all
    within it, or not observed), leaving out the ``ignored`` ones ("p95 latency", "p95
    TTFT")."""
    worst = worst_goal(inputs, signals, ignored)
    return None if worst is None else (worst[0], worst[2])


def _feedback_waits(
    inputs: ScalingInputs, state: ScalerState, now: float, params: ScalerParams
) -> bool:
    """Whether the p95 still shows what a scale-up or a backlog left: requests in flight when
    new replicas become ready stay where they are and finish up to a window later, and their
    latency stays in the runtime's histogram window for another; so does a backlog's tail."""
    settle = inputs.startup_seconds + 2 * params.latency_window_seconds
    settling = state.last_scale_up_at is not None and now - state.last_scale_up_at < settle
    recent_backlog = state.backlog_at is not None and (
        now - state.backlog_at < 2 * params.latency_window_seconds
    )
    return (
        inputs.ready_replicas <= 0
        or inputs.ready_replicas < inputs.desired_replicas
        or settling
        or recent_backlog
    )


def tested_feedback(
    inputs: ScalingInputs,
    signals: Signals,
    state: ScalerState,
    now: float,
    params: ScalerParams,
) -> tuple[LatencyProbe | None, tuple[tuple[str, str], ...]]:
    """(latency probe, goals not helped by replicas) after this sample.

    Queueing falls steeply with capacity: once the replicas ready per request arriving (the
    runtime's rate) are ``feedback_tested_step`` times what they were at the first latency
    scale-up for a goal (the probe: one step, or several smaller ones), a goal still above
    ``feedback_helped_share`` of its ratio then was not helped by them. The excess is not
    queueing (the slowest requests alone take that long: a mix's long prompts, a slow
    network) and more replicas do not meet it: it is not chased until met again. Judged at
    the samples the feedback would act on (``_feedback_waits``); a goal met ends its probe.
    """
    ratios = goal_ratios(inputs, signals)
    unhelped = tuple(
        (goal, seen) for goal, seen in state.unhelped if goal not in ratios or ratios[goal][0] > 1
    )
    probe = state.latency_probe
    if probe is None or _feedback_waits(inputs, state, now, params):
        return probe, unhelped
    if probe.goal not in ratios:
        return probe, unhelped
    ratio = ratios[probe.goal][0]
    if ratio <= 1:
        return None, unhelped
    ready = inputs.ready_replicas
    grown = ready / max(probe.ready, 1)
    arrival = signals.arrival_rate
    if arrival and probe.arrival:
        grown *= probe.arrival / arrival
    if grown < params.feedback_tested_step:
        return probe, unhelped
    if ratio >= params.feedback_helped_share * probe.ratio and probe.goal not in dict(unhelped):
        seen = f"x{ratio:.2f} on {ready} ready, x{probe.ratio:.2f} on {probe.ready}"
        unhelped = (*unhelped, (probe.goal, seen))
    return None, unhelped


def latency_need(
    inputs: ScalingInputs,
    signals: Signals,
    state: ScalerState,
    now: float,
    params: ScalerParams = DEFAULT_PARAMS,
    ignored: frozenset[str] = frozenset(),
) -> SignalNeed | None:
    """Feedback from observed p95 latency / TTFT above the SLO (None when within it); the
    ``ignored`` goals are out of reach of some running variant (``out_of_reach``) or were not
    helped by more replicas (``tested_feedback``), and more replicas would not meet them."""
    worst = over_slo(inputs, signals, ignored)
    if worst is None:
        return None
    ratio, what = worst
    ready = inputs.ready_replicas
    if _feedback_waits(inputs, state, now, params):
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
