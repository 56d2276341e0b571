"""The recommender's state across a restart: what status keeps of it with each scale decision
(``status_signals``) and the state rebuilt from that (``restore_state``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from .model import API_MAX_REPLICAS, DEFAULT_PARAMS, EPS, ScalerParams
from .signals.headroom import (
    burst_fade,
    burst_lead,
    burst_shares,
    burst_swing,
    mix_weighted,
    mix_weights,
)
from .state import ScalerState, Unhelped

GOAL_KEYS = {"p95 latency": "latency", "p95 TTFT": "ttft"}
"""The goals' names in ``status_signals``' keys."""

UNHELPED_FIELDS = ("ratio", "ready", "probeRatio", "probeReady", "floor")
"""``state.unhelped.<goal>.<field>``: a latency feedback's verdict (``Unhelped``)."""

STATE_SIGNALS = (
    "state.speed",
    "state.burstRise",
    "state.burstPeak",
    "state.burstJump",
    "state.burstShare",
    "state.crowd",
    "state.holdBase",
    *(f"state.unhelped.{goal}.{f}" for goal in GOAL_KEYS.values() for f in UNHELPED_FIELDS),
)
"""Keys under which ``status_signals`` writes what a restart needs into the last scale
decision's ``signals`` (``status.lastScale``)."""


def status_signals(
    state: ScalerState,
    startup_seconds: float,
    params: ScalerParams = DEFAULT_PARAMS,
    token_rates: tuple[float, float] | None = None,
) -> dict[str, float]:
    """What of the state the status keeps with each scale decision, for ``restore_state``:
    the service-rate estimate and the burst history (its largest rise within a start-up time,
    or a decision interval when longer, and its peak; with the replicas' ``token_rates``,
    (prefill, decode) tokens per second, a heavier mix at its weight), and the goals the
    latency feedback found replicas do not help (a restart would test them again with as many
    replicas more). The rest is rebuilt from observations."""
    out: dict[str, float] = {}
    if state.speed_at is not None:
        out["state.speed"] = round(state.speed, 4)
    if state.rates:
        weights = mix_weights(state.mixes, *token_rates, params) if token_rates else {}
        lead = burst_lead(startup_seconds, state.rates, params)
        fade = burst_fade(state.rates[-1][0], startup_seconds, params)
        history = mix_weighted(state.rates, weights)
        rise, peak = burst_swing(history, lead, fade)
        jump, _, share_of = burst_shares(history, lead, fade, params.modest_swing)
        out["state.burstRise"] = round(rise, 4)
        out["state.burstPeak"] = round(peak, 4)
        out["state.burstJump"] = round(jump, 4)
        out["state.burstShare"] = round(share_of, 4)
    if state.crowds:
        out["state.crowd"] = round(state.crowds[0][1], 4)
    if state.hold_base is not None:
        out["state.holdBase"] = float(state.hold_base)
    for verdict in state.unhelped:
        key = f"state.unhelped.{GOAL_KEYS.get(verdict.goal, 'latency')}"
        values = (
            verdict.ratio,
            verdict.ready,
            verdict.probe_ratio,
            verdict.probe_ready,
            verdict.floor,
        )
        out.update(
            {f"{key}.{f}": round(float(v), 4) for f, v in zip(UNHELPED_FIELDS, values, strict=True)}
        )
    return out


def restore_state(
    recommended: int | None,
    now: float,
    *,
    last_scale_at: float | None = None,
    scaled_up_by: int = 0,
    signals: Mapping[str, float] | None = None,
    params: ScalerParams = DEFAULT_PARAMS,
) -> ScalerState:
    """The state after a restart, from what status says (the recommendation, the last scale
    decision and its ``status_signals``).

    * the recommended count is what a hold keeps, and the scale-down window starts now, seeded
      with it: a restart never scales down before ``scaleDownDelaySeconds`` of fresh
      observations;
    * a recent scale-up still makes latency feedback wait for its replicas, which count as
      starting (``scaled_up_by`` of them) until a start-up time after it;
    * the service-rate estimate continues where it was;
    * the burst history is seeded with its rise and peak at the time of the last decision (its
      largest jump and its largest modest swing apart, when kept, as each is held apart; the
      jump half a lookback before), so
      the headroom is held until that ages out of the lookback, as it would have been;
    * a goal the latency feedback found replicas do not help stays unchased until met;
    * a hold under a schedule's floor goes back to what it held when the window closes.
    Rebuilt from observations: the growth probe, idleness, the rate window's mean ready.
    """
    signals = signals or {}
    low, high = params.speed_bounds

    def value(key: str) -> float | None:
        got = signals.get(key)
        return float(got) if isinstance(got, (int, float)) and math.isfinite(got) else None

    speed = value("state.speed")
    rise, peak, crowd = value("state.burstRise"), value("state.burstPeak"), value("state.crowd")
    rates: tuple[tuple[float, float, int], ...] = ()
    at = last_scale_at if last_scale_at is not None and last_scale_at <= now else None
    if at is not None and rise is not None and peak is not None and peak >= rise >= 0:
        kept = (value("state.burstJump"), value("state.burstShare"))
        rates = _burst_history(at, rise, peak, kept, recommended or 0, params)
    crowds = ((at, crowd),) if at is not None and crowd is not None and crowd > 0 else ()
    base = value("state.holdBase")
    return ScalerState(
        last_replicas=recommended,
        last_change_at=at,
        last_scale_up_at=at if scaled_up_by > 0 else None,
        starting=((at, scaled_up_by),) if at is not None and scaled_up_by > 0 else (),
        window=((now, recommended),) if recommended else (),
        window_since=now,
        rates=rates,
        crowds=crowds,
        speed=min(high, max(low, speed)) if speed is not None else 1.0,
        speed_at=now if speed is not None else None,
        unhelped=_verdicts(value),
        hold_base=int(base) if base is not None and 0 <= base <= API_MAX_REPLICAS else None,
    )


def _burst_history(
    at: float,
    rise: float,
    peak: float,
    kept: tuple[float | None, float | None],
    ready: int,
    params: ScalerParams,
) -> tuple[tuple[float, float, int], ...]:
    """Samples up to ``at`` whose largest swing is ``rise`` and peak ``peak``; with the largest
    jump and modest share ``kept``, two pairs half a lookback apart, so that no start-up of up
    to that long joins them into one swing: a jump from nothing, then a swing by the share to
    the peak at ``at`` (the decision interval after the restart is measured from it)."""
    jump, share = kept
    if jump is None or share is None or not (0 <= jump <= peak and share >= 0):
        return ((at - EPS, peak - rise, ready), (at, peak, ready))
    apart = params.headroom_lookback_seconds / 2
    return (
        (at - apart - EPS, 0.0, ready),
        (at - apart, jump, ready),
        (at - EPS, peak / (1 + share), ready),
        (at, peak, ready),
    )


def _verdicts(value: Callable[[str], float | None]) -> tuple[Unhelped, ...]:
    """The latency feedback's verdicts ``status_signals`` kept (``value``: a key's finite
    value), leaving out any a status edit made absurd."""
    out = []
    for goal, key in GOAL_KEYS.items():
        ratio, ready, probe_ratio, probe_ready, floor = (
            value(f"state.unhelped.{key}.{f}") for f in UNHELPED_FIELDS
        )
        if ratio is None or ready is None or probe_ratio is None or probe_ready is None:
            continue
        counts = (ready, probe_ready)
        if floor is None or not (ratio > 1 and probe_ratio > 1 and floor > 1):
            continue
        if all(1 <= n <= API_MAX_REPLICAS for n in counts):
            out.append(Unhelped(goal, ratio, int(ready), probe_ratio, int(probe_ready), floor))
    return tuple(out)
