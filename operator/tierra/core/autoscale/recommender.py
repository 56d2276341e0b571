"""``recommend``: the replicas to run now, from the signals' needs, within the bounds.

Behaviour
---------
* **One-step scale-up** to the need, clamped to ``[minReplicas, maxReplicas]``.
* **Scale-down** only after ``scaleDownDelaySeconds`` of observed, sustained lower need: the
  target is the max need over that window (and so never below the current SLO-safe count). A
  gap in the metrics restarts the observation. Never while the observed p95 latency or TTFT
  is above the SLO (``over_slo``): the signals that find the count too high are wrong for now
  (unless more replicas were seen not to bring it closer: ``tested_feedback``), nor, once
  replicas were added for it, before it has been met for a latency window (``on_trial``: a
  dip of the p95 is not the replicas' verdict). Never below
  the replicas still starting whose load is still here (``still_asked_for``), whatever the
  delay: removed, they would be asked for again a whole start-up later.
* **Deadband (hysteresis), in load space**, ``tolerance`` = 10 %: the count goes up only when
  the need at 90 % of the observed load exceeds it (a smaller excess is absorbed by the queue
  model's headroom), and comes down to the need at 110 % of the load (its max over the
  window; the burst headroom keeps its own need, held above the load already), and then only
  by at least 10 % of the count (at least one replica). So a count is
  kept while the load moves within about +-10 % of what it was sized for, and a count set at
  the top of noisy load is not trimmed and re-grown. Latency feedback, an observed violation,
  is exempt. With fewer than ten replicas the band is at least one whole replica. For the
  signals sized by the arrival rate the band is at least the rate estimate's own Poisson noise
  (``deadband``: 26 % at 1 request/s), so a low, steady rate at the edge between two counts
  does not move the count up on one noisy sample and down after the delay, again and again.
* **Not-ready capacity**: needs are compared with the *desired* replicas (starting included),
  so load that starting replicas will absorb does not add more: the queue that builds up while
  they start does not raise the count (the arrival signal still answers a higher rate), and
  feedback scales from the *ready* replicas, the ones whose latency was observed, and only once
  none is starting.
* **Scale to zero** (``scaleToZero``): to 0 after ``idle_before_zero`` with nothing
  waiting, running or arriving (``scaleToZeroIdleSeconds``, by default
  ``scaleDownDelaySeconds`` and at least a start-up time; until then at least one replica);
  at 0 and idle it stays at 0 (``minReplicas`` applies while active). Activation: any
  waiting, running or arriving request wakes it to at least ``max(1, minReplicas)`` at once.
  With no replicas there are no runtime series: at 0 desired replicas a missing value counts
  as 0, so the shell must fill at least one load signal (e.g. the gateway's arrival rate) for
  activation.
* **Missing or stale metrics** (no ``Signals``, no or stale ``observed_at``, or, with replicas
  asked for, none of waiting/running/arrival): hold the last good recommendation (or the
  current replicas if higher: never scale down on missing data, but for a schedule's floor
  raised and lowered while holding), ``metrics_available`` False, mode ``hold``. Automatic
  decisions resume with the first fresh observation.
* **Schedules** (``spec.scaling.schedules``): an open window raises the floor to its
  ``minReplicas`` (``scheduled_floor``, applied by ``scaling_inputs``), also over missing
  metrics and at zero; the reason names the schedule when it is what holds the count.
* **Manual**: ``spec.replicas`` (the scale subresource) wins, clamped only by the API's bounds;
  mode ``manual``.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .bursts import burst_lookback, burst_memory
from .load import observe_load, slide_max
from .model import (
    API_MAX_REPLICAS,
    DEFAULT_PARAMS,
    EPS,
    ScalerParams,
    ScalingInputs,
    SignalNeed,
    idle_before_zero,
    replica_floor,
)
from .observe import observe
from .sample import Load, Observed, Sample
from .sanitise import sanitised_inputs
from .signals import SCALERS
from .signals.arrival import deadband
from .signals.latency import on_trial, over_slo, worst_goal
from .starting import cancelled_by, forecast_asks, starting_after, still_asked_for
from .state import Recommendation, ScalerState


def _missing_reason(inputs: ScalingInputs, now: float, params: ScalerParams) -> str | None:
    s = inputs.signals
    if s is None:
        return "no metrics"
    if s.observed_at is None:
        return "metrics carry no observation time"
    age = now - s.observed_at
    if age > params.staleness_seconds:
        return f"metrics stale: observed {age:.0f} s ago (> {params.staleness_seconds:g} s)"
    if inputs.desired_replicas > 0 and (
        s.queue_depth is None and s.running is None and s.arrival_rate is None
    ):
        return "metrics have no waiting, running or arrival data"
    return None


def _manual(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    available: bool,
    params: ScalerParams = DEFAULT_PARAMS,
) -> Recommendation:
    manual = inputs.manual_replicas
    assert manual is not None
    replicas = min(max(manual, 0), API_MAX_REPLICAS)
    changed = replicas != inputs.desired_replicas
    return Recommendation(
        replicas=replicas,
        reason=f"manual: spec.replicas={manual} (set through the scale subresource) overrides "
        "the autoscaler",
        mode="manual",
        metrics_available=available,
        state=ScalerState(
            last_replicas=replicas,
            last_change_at=now if changed else state.last_change_at,
            last_scale_up_at=now if replicas > inputs.desired_replicas else state.last_scale_up_at,
            starting=(starting := starting_after(inputs, state, now, replicas, params)),
            asked_rates=_asked_rates(state, starting),
            metrics_missing_since=None if available else (state.metrics_missing_since or now),
            rates=state.rates,
            restored_burst=state.restored_burst,
            restored_edges=state.restored_edges,
            restored_dispersion=state.restored_dispersion,
            restored_mix_peak=state.restored_mix_peak,
            speed=state.speed,
            speed_at=state.speed_at,
            work=state.work,
            out_of_reach=state.out_of_reach,
        ),
    )


def _hold(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    why: str,
    params: ScalerParams = DEFAULT_PARAMS,
) -> Recommendation:
    current = inputs.desired_replicas
    last = state.last_replicas
    # (what the hold keeps under a floor that moves: a schedule's window that opens and closes
    # while nothing is measured goes back to it, not to the window's count)
    held = state.hold_base
    if held is None:
        held = current if last is None else max(last, current)
    lower = 0 if inputs.scale_to_zero and held == 0 else replica_floor(inputs, active=True)
    replicas = min(max(held, lower), inputs.max_replicas)
    if replicas > held and inputs.floor_reason is not None:
        why = f"{why}; {inputs.floor_reason}"
    since = state.metrics_missing_since if state.metrics_missing_since is not None else now
    return Recommendation(
        replicas=replicas,
        # (no duration in the reason: it goes to status, which should not change by itself)
        reason=f"hold {replicas}: {why}; never scaling down on missing data",
        mode="hold",
        metrics_available=False,
        state=replace(
            state,
            last_change_at=now if replicas != current else state.last_change_at,
            last_scale_up_at=now if replicas > current else state.last_scale_up_at,
            starting=starting_after(inputs, state, now, replicas, params),
            window=(),
            window_since=None,
            idle_since=None,
            metrics_missing_since=since,
            hold_base=held,
            backlog_probe=None,
            backlog_growth=None,
            segment=(),
            interval_rate=None,
            interval_rise=0.0,
            intervals=(),
            rise_pending=None,
        ),
    )


def _asked_rates(
    state: ScalerState, starting: tuple[tuple[float, int], ...]
) -> tuple[tuple[float, float], ...]:
    """The restored rates of the asks of the batches still starting."""
    asked = {t for t, _ in starting}
    return tuple(a for a in state.asked_rates if a[0] in asked)


def _signal_needs(sample: Sample, params: ScalerParams) -> list[SignalNeed]:
    """What each signal finds the load needs (``signals.SCALERS``, in their order)."""
    return [need for scaler in SCALERS if (need := scaler(sample, params)) is not None]


def _why(winner: SignalNeed | None, seen: Observed, load: Load) -> str:
    """The winning signal's reason, with what the arrivals and the speed it used came from."""
    if winner is None:
        return "no usable signal"
    why = winner.reason
    growth, rise = load.implied.growth, load.implied.rise
    if growth is not None and winner.signal == "arrival":
        # (the completions between the last scrapes when the runtime exports them, else the
        # ready replicas' at saturation during a backlog)
        if load.implied.estimate is not None:
            source = "completions between scrapes + the growth of what is in the system"
        else:
            source = "completions at saturation + the backlog's growth"
        why = f"{why} ({source}, {growth:+.3g} req/s)"
    if rise > 0 and winner.signal in ("arrival", "queue", "headroom"):
        trust = load.implied.trust
        believed = "" if trust > 0.995 else f", {trust:.0%} of it: as far as recent rises lasted"
        why = (
            f"{why} (the arrivals rose within the last scrape interval: +{rise:.3g} "
            f"req/s extrapolated to now{believed})"
        )
    if abs(seen.speed - 1.0) >= 0.05:
        why = f"{why}; replicas measured at {seen.speed:.2f}x the profile's speed"
    signals = seen.inputs.signals
    assert signals is not None
    unchased = worst_goal(seen.inputs, signals)
    if unchased is not None and over_slo(seen.inputs, signals, seen.unmeetable) is None:
        _, goal, what = unchased
        where = ", ".join(
            dict.fromkeys(o.variant for o in seen.unreachable or () if o.metric == goal)
        )
        tested = next((u.seen for u in seen.unhelped if u.goal == goal), None)
        if where or tested is None:
            why = f"{why}; {what} not chased: out of reach on {where} at any count"
        else:
            why = f"{why}; {what} not chased: more replicas did not bring it closer ({tested})"
    return why


def _starting_kept(replicas: int) -> str:
    """Why a scale-down keeps ``replicas`` still starting (``still_asked_for``)."""
    return (
        f"{replicas} still starting were asked for at arrivals that have not fallen back "
        "since (removed, they would be asked for again a start-up later)"
    )


def _count(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    params: ScalerParams,
    found: list[SignalNeed],
    load: Load,
    why: str,
    held: str | None,
    window: tuple[tuple[float, int], ...],
    idle_since: float | None,
) -> tuple[int, str]:
    """(replicas, why): the count the needs ask for, within the bounds. A scale-up beyond the
    deadband is at once; a scale-down waits for ``scaleDownDelaySeconds`` of observations, goes
    to the highest need of that window, never while a goal the replicas can meet is missed or
    the replicas added for it are on trial (``held``: why), and never below the replicas still
    starting whose load is still here."""
    current = inputs.desired_replicas
    raw = max((n.replicas for n in found), default=current)
    idle_needed = idle_before_zero(inputs)
    idle_for = now - idle_since if idle_since is not None else None
    to_zero = (
        inputs.scale_to_zero and idle_for is not None and (current == 0 or idle_for >= idle_needed)
    )
    # (a running service keeps a replica through a lull until it is idle long enough)
    floor = replica_floor(inputs, load.active or not to_zero)
    upper = inputs.max_replicas
    target = min(max(raw, floor), upper)
    delay = inputs.scale_down_delay_seconds
    window_since = state.window_since if state.window_since is not None else now
    replicas = current
    if to_zero:
        replicas = 0
        why = "idle at zero" if current == 0 else f"idle for {idle_for or 0.0:.0f} s: scale to zero"
        if current > 0 and idle_needed < inputs.startup_seconds:
            why = (
                f"{why} (the next request waits startupSeconds {inputs.startup_seconds:g}: "
                f"longer than the {idle_needed:g} s idle that scaled to zero)"
            )
    elif current == 0 and load.active:
        replicas = max(target, 1)
        why = f"activation: {why}"
    elif target > current:
        if current == 0 or any(n.low > current for n in found):
            replicas = target
        else:
            band = max(params.tolerance, deadband(load.arrival, params))
            why = f"{why} (within the {band:.0%} deadband of {current}: keep)"
    elif target < current:
        lowest = min(max(window[0][1], floor), upper)
        observed = now - window_since
        # (a ReplicaSet removes unready pods first: keeping some of them keeps the ready ones)
        asked = still_asked_for(inputs, state, now, load.rates, params)
        unready = max(current - inputs.ready_replicas, 0)
        kept_starting = min(current, current - unready + asked) if asked else 0
        if held is not None:
            # (a count that the other signals find too high while requests miss the SLO is
            # a model that is wrong for now: a new request mix, a slower replica)
            why = f"{why} (scale-down waits: {held})"
        elif observed < delay:
            why = f"{why} (scale-down waits: metrics observed for {observed:.0f} of {delay:g} s)"
        elif lowest >= current:
            why = (
                f"{why} (scale-down waits: {window[0][1]} needed with {params.tolerance:.0%} "
                f"headroom within the last {delay:g} s)"
            )
        elif current - lowest < params.tolerance * current - EPS:
            why = f"{why} (scale-down to {lowest} is within {params.tolerance:.0%}: keep)"
        elif kept_starting >= current:
            why = f"{why} (scale-down waits: {_starting_kept(asked)})"
        else:
            replicas = max(lowest, kept_starting)
            why = (
                f"{why}; {window[0][1]} needed with {params.tolerance:.0%} headroom over the "
                f"last {delay:g} s"
            )
            if kept_starting > lowest:
                why = f"{why}; not below {kept_starting}: {_starting_kept(asked)}"
    bounded = min(max(replicas, 0 if replicas == 0 and inputs.scale_to_zero else floor), upper)
    if raw > upper and bounded == upper:
        why = f"{why} (held at maxReplicas {upper}: {raw} asked for)"
    elif bounded > replicas and inputs.floor_reason is not None:
        why = f"{inputs.floor_reason} (the signals: {why})"
    elif bounded != replicas:
        why = f"{why} (bounds [{floor}, {upper}])"
    return bounded, why


def recommend(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> Recommendation:
    """The replicas to run now, the reason, and the state to pass to the next call.

    Never raises on what the metrics say: NaN, infinite, negative and absurdly large values
    are missing or set aside for one sample (``observe``)."""
    inputs = sanitised_inputs(inputs)
    if not math.isfinite(now):
        return _hold(inputs, state, state.last_change_at or 0.0, "the clock is not a number")
    missing = _missing_reason(inputs, now, params)
    if inputs.manual_replicas is not None:
        return _manual(inputs, state, now, available=missing is None, params=params)
    if missing is not None:
        return _hold(inputs, state, now, missing, params)
    seen = observe(inputs, state, now, params)
    if isinstance(seen, Recommendation):
        return seen
    inputs, signals = seen.inputs, seen.inputs.signals
    assert signals is not None
    load = observe_load(seen, state, now, params)
    found = _signal_needs(Sample(seen, load, state, now), params)
    winner = max(found, key=lambda n: n.replicas) if found else None
    # (the goals over the SLO that the replicas can meet: what holds a scale-down)
    over = over_slo(inputs, signals, seen.unmeetable)
    trial = on_trial(seen.latency_probe, inputs, signals, now, params)
    held = over[1] if over is not None else trial
    current = inputs.desired_replicas
    keep = max((n.high for n in found), default=current)
    window = slide_max(
        state.window,
        now,
        min(keep, inputs.max_replicas + 1),
        since=now - inputs.scale_down_delay_seconds,
    )
    idle_since = (
        None if load.active else (state.idle_since if state.idle_since is not None else now)
    )
    replicas, why = _count(
        inputs, state, now, params, found, load, _why(winner, seen, load), held, window, idle_since
    )
    cancels = 0
    if replicas > current:
        reason = f"scale up {current} -> {replicas}: {why}"
    elif replicas < current:
        reason = f"scale down {current} -> {replicas}: {why}"
        cancels = cancelled_by(inputs, state, now, replicas, params)
        if cancels:
            reason = f"{reason}; {cancels} of the replicas removed are still starting"
            if inputs.scale_down_delay_seconds < inputs.startup_seconds:
                reason = (
                    f"{reason} (scaleDownDelaySeconds {inputs.scale_down_delay_seconds:g} < "
                    f"startupSeconds {inputs.startup_seconds:g}: a need that returns waits a "
                    "whole start-up again)"
                )
    else:
        reason = f"keep {current}: {why}"
    implied = load.implied
    return Recommendation(
        replicas=replicas,
        reason=reason,
        mode="auto",
        metrics_available=True,
        needs={n.signal: n.replicas for n in found},
        signal=winner.signal if winner is not None else None,
        keeps=keep if found else None,
        cancels=cancels,
        beyond_max=(
            winner.replicas
            if winner is not None and winner.replicas > inputs.max_replicas
            else None
        ),
        state=ScalerState(
            last_replicas=replicas,
            last_change_at=now if replicas != current else state.last_change_at,
            last_scale_up_at=now if replicas > current else state.last_scale_up_at,
            starting=(starting := starting_after(inputs, state, now, replicas, params)),
            asked_rates=_asked_rates(state, starting),
            forecast_asks=forecast_asks(state, starting, now, replicas > current, found),
            window=window,
            window_since=state.window_since if state.window_since is not None else now,
            idle_since=idle_since,
            metrics_missing_since=None,
            backlog_at=now if load.backlogged else state.backlog_at,
            backlog_probe=implied.probe,
            backlog_growth=implied.growth,
            segment=implied.segment,
            running_seen=seen.running_seen,
            sizes=seen.sizes,
            interval_rate=implied.estimate,
            interval_rise=implied.rise,
            intervals=implied.intervals,
            rise_pending=implied.rise_pending,
            rises=implied.rises,
            rates=load.rates,
            # (until it has faded out of the burst history's memory)
            restored_burst=state.restored_burst
            if state.restored_burst is not None
            and now - state.restored_burst[0] <= burst_memory(inputs.startup_seconds, params)
            else None,
            restored_edges=tuple(
                (t, rate)
                for t, rate in state.restored_edges
                if now - t <= burst_memory(inputs.startup_seconds, params)
            ),
            restored_dispersion=state.restored_dispersion,
            restored_mix_peak=state.restored_mix_peak
            if state.restored_mix_peak is not None
            and now - state.restored_mix_peak[0] <= burst_lookback(inputs.startup_seconds, params)
            else None,
            crowds=load.crowds,
            mixes=load.mixes,
            speed=seen.speed,
            speed_at=now,
            work=seen.profile_work if seen.profile_work is not None else state.work,
            suspect_at=None,
            out_of_reach=seen.unreachable,
            latency_probe=seen.latency_probe,
            unhelped=seen.unhelped,
        ),
    )
