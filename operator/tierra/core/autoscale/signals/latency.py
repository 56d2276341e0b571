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
from ..state import LatencyProbe, ScalerState, Unhelped


def _observed_goals(
    inputs: ScalingInputs, signals: Signals
) -> tuple[tuple[str, float | None, float | None], ...]:
    """(name, observed ms, SLO ms) of the p95 latency and the p95 TTFT."""
    return (
        ("p95 latency", signals.p95_latency_ms, inputs.latency_p95_ms),
        ("p95 TTFT", signals.ttft_p95_ms, inputs.ttft_p95_ms),
    )


def goal_ratios(inputs: ScalingInputs, signals: Signals) -> dict[str, float]:
    """The ratio of each observed p95 ("p95 latency", "p95 TTFT") to its SLO."""
    return {
        name: observed / goal
        for name, observed, goal in _observed_goals(inputs, signals)
        if observed is not None and goal is not None and goal > 0
    }


def worst_goal(
    inputs: ScalingInputs, signals: Signals, ignored: frozenset[str] = frozenset()
) -> tuple[float, str, str] | None:
    """(ratio, goal, what) of the observed p95 latency or TTFT furthest above its SLO (None:
    all within it, or not observed), leaving out the ``ignored`` goals."""
    ratio, name = max(
        ((r, n) for n, r in goal_ratios(inputs, signals).items() if n not in ignored),
        default=(0.0, ""),
    )
    if ratio <= 1:
        return None
    _, observed, goal = next(g for g in _observed_goals(inputs, signals) if g[0] == name)
    return ratio, name, f"{name} {observed:.0f} ms > SLO {goal:.0f} ms (x{ratio:.2f})"


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
    ignored: frozenset[str] = frozenset(),
) -> tuple[LatencyProbe | None, tuple[Unhelped, ...]]:
    """(latency probe, goals not helped by replicas) after this sample.

    The probe is the first settled sample (one the feedback would act on,
    ``_feedback_waits``) with a goal over its SLO: the replicas ready, the ratio and the
    runtime's arrival rate then. Whichever signal then adds replicas, once the replicas ready
    per request arriving are ``g >= feedback_tested_step`` times the probe's (one step, or
    several smaller ones), the p95 is judged as a floor no count removes (the requests' own
    time: a mix's long prompts, a slow network) plus queueing, which falls at least as fast
    as the replicas per request grow (far faster, in fact). So the queueing left now is at
    most what the replicas removed over ``g - 1``, and the floor at least ``ratio now -
    (ratio then - ratio now) / (g - 1)``, and at most the ratio now (a p95 that rose: none of
    it was queueing the replicas could remove; a mix turned heavier meanwhile raises its own
    time, as a long-context phase raises the TTFT). A floor over the SLO: no count meets the
    goal, and it is not chased until met for a latency window (``Unhelped``). Below it, the
    replicas helped and the next probe starts here. Arrivals that fell at the probe's count
    test nothing: no replicas were added; a count scaled down below the probe's starts the
    next probe. A goal met for a latency window ends its
    probe (one sample under it is a dip of the p95); at ``maxReplicas`` with the load
    unchanged no test comes and the goal stays chased. The ``ignored`` goals (out of a
    variant's reach) start no probe.
    """
    ratios = goal_ratios(inputs, signals)
    unhelped = _still_unhelped(state.unhelped, ratios, now, params)
    probe, ready = state.latency_probe, inputs.ready_replicas
    if probe is not None and (ratio := ratios.get(probe.goal)) is not None:
        # (also while the feedback waits: a dip there holds the replicas on trial as one does
        # after, ``on_trial``)
        met = probe.met_since if probe.met_since is not None else now
        probe = probe._replace(met_since=met if ratio <= 1 else None)
    if _feedback_waits(inputs, state, now, params):
        return probe, unhelped
    if probe is not None and ready < probe.ready:
        # (scaled down below the probe, on a dip of the p95 or by other signals: what is
        # added from here is judged against this count, the next probe)
        probe = None
    if probe is not None:
        ratio = ratios.get(probe.goal)
        if ratio is None:
            return probe, unhelped
        if probe.met_since is not None:
            # (a test goes on through a dip of the p95 under the goal: met for a window, it ends)
            if now - probe.met_since < params.latency_window_seconds:
                return probe, unhelped
        else:
            grown = ready / max(probe.ready, 1)
            if signals.arrival_rate and probe.arrival:
                grown *= probe.arrival / signals.arrival_rate
            # (replicas must have come: arrivals that fell at the same count are a burst's
            # end more often than a test, the p95 window still full of what it queued)
            if ready <= probe.ready or grown < params.feedback_tested_step:
                return probe, unhelped
            floor = min(ratio, ratio - (probe.ratio - ratio) / (grown - 1.0))
            if floor > 1:
                verdict = Unhelped(probe.goal, ratio, ready, probe.ratio, probe.ready, floor)
                unhelped = (*unhelped, verdict)
    # (no probe, or it ended here: its goal met for a window, or tested, helped or not; a goal
    # still over starts one)
    worst = worst_goal(inputs, signals, ignored | {u.goal for u in unhelped})
    if worst is None:
        return None, unhelped
    first, goal, _ = worst
    return LatencyProbe(now, ready, first, goal, signals.arrival_rate), unhelped


def on_trial(
    probe: LatencyProbe | None,
    inputs: ScalingInputs,
    signals: Signals,
    now: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> str | None:
    """Why a scale-down waits for the replicas added since a latency probe (None: none on
    trial): its goal is met now, but for less than a latency window. The p95 is a window's:
    one sample under the goal is a dip of it as often as not (the test goes on through it,
    ``tested_feedback``), and replicas removed on a dip are asked for again by the feedback
    once the p95 is back over, a settle later, again and again, never judged."""
    if probe is None or inputs.desired_replicas <= probe.ready or probe.met_since is None:
        return None
    if probe.goal not in goal_ratios(inputs, signals):
        return None
    met_for = now - probe.met_since
    if met_for >= params.latency_window_seconds:
        return None
    return (
        f"{probe.goal} met for {met_for:.0f} of {params.latency_window_seconds:g} s, over it "
        f"(x{probe.ratio:.2f}) on {probe.ready} ready: the replicas added since are on trial"
    )


def _still_unhelped(
    verdicts: tuple[Unhelped, ...], ratios: dict[str, float], now: float, params: ScalerParams
) -> tuple[Unhelped, ...]:
    """The verdicts whose goal has not been met for a whole latency window (a goal not
    observed counts as not met)."""
    kept = []
    for verdict in verdicts:
        if ratios.get(verdict.goal, 2.0) > 1:
            kept.append(verdict._replace(met_since=None))
            continue
        since = verdict.met_since if verdict.met_since is not None else now
        if now - since < params.latency_window_seconds:
            kept.append(verdict._replace(met_since=since))
    return tuple(kept)


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
