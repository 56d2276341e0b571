"""One sample read: the request size, the replicas' speed and the goals in reach (``observe``).

Implausible samples
-------------------
NaN, infinite and negative values are missing, and so is a mean token count above
``MAX_MEAN_TOKENS`` (``sanitise``).
A sample that implies more than ``absurd_factor`` times what ``maxReplicas`` can serve (or a
request that much larger than the last) is set aside, keeping the count, until the next sample
confirms it: one absurd sample never jumps to ``maxReplicas``, a real overload waits one sample.
"""

from __future__ import annotations

from dataclasses import replace

from tierra.core.slo_reach import OutOfReach, out_of_reach

from .model import ScalerParams, ScalingInputs, mean_work, replica_floor
from .sample import Observed
from .signals.latency import tested_feedback
from .sizes import request_sizes, running_seen_now, smoothed_sizes
from .speed import update_speed
from .starting import starting_count
from .state import Recommendation, ScalerState


def _implausible(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    work: float | None,
    params: ScalerParams,
) -> str | None:
    """Why this sample cannot be real (None when it can): it implies more than
    ``absurd_factor`` times what ``maxReplicas`` can serve, or a request that much larger than
    the last one believed. A real burst that large is believed one sample later."""
    signals = inputs.signals
    assert signals is not None
    factor = params.absurd_factor
    if work is not None and state.work is not None and work > factor * state.work:
        return f"the mean request's work jumped from {state.work:.3g} s to {work:.3g} s"
    known = work if work is not None else state.work
    top = max(1, inputs.max_replicas)
    if signals.running is not None and signals.running > factor * top * inputs.max_concurrency:
        return f"{signals.running:.3g} running is beyond {top} x {inputs.max_concurrency} slots"
    if signals.prompt_tokens_rate is not None or signals.output_tokens_rate is not None:
        busy = (signals.prompt_tokens_rate or 0.0) / inputs.prefill_tokens_per_second + (
            signals.output_tokens_rate or 0.0
        ) / inputs.decode_tokens_per_second
        if busy > factor * top * params.speed_bounds[1]:
            return f"token rates of {busy:.3g} replicas' work"
    if known is None:
        return None
    capacity = top / known  # requests/s maxReplicas serve
    rates = [
        ("arrival rate", signals.arrival_rate),
        ("completion rate", signals.recent_completion_rate),
    ]
    probe = state.backlog_probe
    if probe is not None and now - probe[0] >= params.growth_min_seconds:
        in_system = (signals.queue_depth or 0.0) + (signals.running or 0.0)
        rates.append(("growth", (in_system - probe[1]) / (now - probe[0])))
    elif signals.queue_depth is not None and state.last_replicas is not None:
        rates.append(("waiting", signals.queue_depth / max(1.0, inputs.startup_seconds)))
    for name, value in rates:
        if value is not None and value > factor * capacity:
            return f"{name} {value:.3g}/s > {factor:g} x the {capacity:.3g}/s {top} replicas serve"
    return None


def _out_of_reach(
    inputs: ScalingInputs, state: ScalerState, known: bool, params: ScalerParams
) -> tuple[OutOfReach, ...] | None:
    """The goals out of reach of a running variant for the (smoothed) mean request; the last
    verdict while the size is unknown or nothing runs."""
    prompt, output = inputs.mean_prompt_tokens, inputs.mean_output_tokens
    if not known or prompt is None or output is None or not inputs.serving:
        return state.out_of_reach
    return out_of_reach(
        inputs.serving,
        prompt,
        output,
        inputs.latency_p95_ms,
        inputs.ttft_p95_ms,
        state.out_of_reach or (),
        params.tolerance,
    )


def observe(
    inputs: ScalingInputs, state: ScalerState, now: float, params: ScalerParams
) -> Observed | Recommendation:
    """The request size, the replicas' speed and the goals in reach, from one sample (a
    Recommendation instead when the sample is implausible and set aside)."""
    # The request size from per-iteration token counters, less what requests still in flight
    # added to them (a filling system over-counts, by far at a start).
    seen = running_seen_now(inputs, state, now, params)
    inputs = request_sizes(inputs, seen, params)
    # The replicas' real speed, learnt online, scales the profile everything below uses.
    # (replicas serve once started: a scale-up's are counted from ``startupSeconds`` on)
    serving = max(
        0,
        min(
            inputs.ready_replicas,
            inputs.desired_replicas - starting_count(inputs, state, now, params),
        ),
    )
    # (a series younger than the rate window under-reports its rates: Prometheus divides the
    # increase by the whole window; so the speed waits for a full window of observations)
    since = state.window_since if state.window_since is not None else now
    speed = (
        update_speed(inputs, state, now, params, serving)
        if now - since >= params.rate_window_seconds or state.speed_at is None
        else state.speed
    )
    profile_work = mean_work(inputs)
    why_not = _implausible(inputs, state, now, profile_work, params)
    if why_not is not None and state.suspect_at is None:
        held = min(
            max(inputs.desired_replicas, replica_floor(inputs, active=True)), inputs.max_replicas
        )
        return Recommendation(
            replicas=held,
            reason=f"keep {held}: an implausible sample is set aside until the next "
            f"confirms it ({why_not})",
            mode="auto",
            metrics_available=True,
            state=replace(state, suspect_at=now),
        )
    inputs, sizes, known = smoothed_sizes(inputs, state, now, params)
    unreachable = _out_of_reach(inputs, state, known, params)
    inputs = replace(
        inputs,
        prefill_tokens_per_second=inputs.prefill_tokens_per_second * speed,
        decode_tokens_per_second=inputs.decode_tokens_per_second * speed,
    )
    # (a size standing for a handful of requests sizes no replicas by the arrival model)
    sized = inputs if known else replace(inputs, mean_prompt_tokens=None, mean_output_tokens=None)
    assert inputs.signals is not None
    unreachable_goals = frozenset(o.metric for o in unreachable or ())
    probe, unhelped = tested_feedback(inputs, inputs.signals, state, now, params, unreachable_goals)
    return Observed(
        inputs=inputs,
        sized=sized,
        running_seen=seen,
        serving=serving,
        speed=speed,
        profile_work=profile_work,
        sizes=sizes,
        unreachable=unreachable,
        unmeetable=unreachable_goals | {u.goal for u in unhelped},
        latency_probe=probe,
        unhelped=unhelped,
    )
