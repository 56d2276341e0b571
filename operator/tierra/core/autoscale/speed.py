"""The replicas' real speed.

``update_speed`` estimates online how fast replicas really serve, as a multiple of the profile,
from the per-iteration token rates, the mean running and the ready replicas (hard bounds on
the busy time; see its docstring). It starts at ``speed_prior`` (a profile is a guess: plan as
if it were 30 % optimistic until the replicas show otherwise) and every need above is computed
at ``profile x speed``; the reason says the speed when it is not the profile's. A series
younger than the rate window under-reports its rates (Prometheus divides by the whole window),
so the estimate waits for a window of observations.
"""

from __future__ import annotations

import math

from .model import DEFAULT_PARAMS, EPS, ScalerParams, ScalingInputs
from .state import ScalerState


def update_speed(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    params: ScalerParams = DEFAULT_PARAMS,
    serving: int | None = None,
) -> float:
    """The online estimate of the replicas' service rate, as a multiple of the profile.

    Per-iteration token rates say how much work the replicas did over the rate window, in
    replica-seconds at the profile's speed: ``B = prompt tokens/s / prefill + output tokens/s /
    decode``. A replica is busy while it runs at least one request; with ``n`` running per
    replica on average (over the same window) it was busy at most ``min(1, n)`` of the time
    (a hard fact), and at least ``n / maxConcurrency`` (a hard fact, tight when the slots are
    full) or, under steady arrivals, about ``n / (1 + n)`` (processor sharing's ``E[n] = rho /
    (1 - rho)``; balanced routing keeps replicas busier than that), so the real speed lies between
    ``B / (ready x min(1, n))`` and ``B / (ready x busy at least)``: the lower bound is close at
    low load (one request per replica rarely shares), the upper one under heavy sharing and
    at saturation, where an optimistic profile shows. The estimate starts at the profile and
    moves (in log space, with time constant ``speed_time_constant_seconds``) only when it falls
    outside them: so an exact profile stays put, and one that is 30 % off either way is
    corrected as soon as the load shows it -- optimistic ones at the first saturation.
    """
    signals = inputs.signals
    if state.speed_at is None:
        return params.speed_prior
    speed = state.speed if math.isfinite(state.speed) and state.speed > 0 else params.speed_prior
    if signals is None:
        return speed
    prompt, output, running = (
        signals.prompt_tokens_rate,
        signals.output_tokens_rate,
        signals.mean_running,
    )
    window = [ready for t, _, ready in state.rates if t > now - params.rate_window_seconds] + [
        inputs.ready_replicas if serving is None else serving
    ]
    ready = sum(window) / len(window)
    if prompt is None or output is None or running is None or ready <= 0 or running <= 0:
        return speed
    work = prompt / inputs.prefill_tokens_per_second + output / inputs.decode_tokens_per_second
    if work <= 0:
        return speed
    per_replica = running / ready
    low, high = params.speed_bounds
    # busy share of a replica: at most min(1, n); at least n / maxConcurrency, and about
    # n / (1 + n) when requests share replicas (processor sharing: E[n] = rho / (1 - rho))
    if not ready * per_replica > EPS:
        return speed  # (nothing measurable ran)
    slowest = work / (ready * min(1.0, per_replica))
    busiest = per_replica / inputs.max_concurrency
    probe = state.backlog_probe
    in_system = (signals.queue_depth or 0.0) + (signals.running or 0.0)
    recent = [r for t, r, _ in state.rates if t > now - params.rate_window_seconds]
    steady = len(recent) >= 3 and max(recent) <= 1.5 * min(recent)
    if steady and (probe is None or in_system >= probe[1]):
        # (only under steady arrivals: over a window of fan-outs and lulls the mean running
        # says nothing of the busy time, and while a backlog drains replicas empty unevenly)
        busiest = max(busiest, per_replica / (1.0 + per_replica))
    fastest = work / (ready * min(1.0, busiest))
    sample = min(high, max(low, min(max(speed, slowest), fastest)))
    if sample == speed:
        return speed
    dt = min(max(0.0, now - state.speed_at), params.speed_time_constant_seconds)
    alpha = 1.0 - math.exp(-dt / params.speed_time_constant_seconds)
    moved = math.exp(math.log(speed) + alpha * (math.log(sample) - math.log(speed)))
    return min(high, max(low, moved))
