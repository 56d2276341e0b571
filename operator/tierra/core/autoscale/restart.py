"""The recommender's state across a restart: what status keeps of it with each scale decision
(``status_signals``) and the state rebuilt from that (``restore_state``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TypeVar

from .bursts import burst_fade, burst_lead, burst_summary, rate_dispersion
from .mixes import heavier_mix_peak, mix_weighted, mix_weights
from .model import API_MAX_REPLICAS, DEFAULT_PARAMS, HUGE, ScalerParams
from .signals.headroom import fan_out
from .starting import rates_at_asks
from .state import ScalerState, Unhelped

Value = TypeVar("Value", int, float)

MAX_AGE = 86_400.0
"""A kept rate older than this (seconds) is a status edit: the burst history is shorter."""

MAX_TOKENS = 10_000_000.0
"""A kept request size beyond this many tokens is a status edit, not a measurement."""

MAX_RISES = 10_000.0
"""A kept count of rises beyond this is a status edit: one rise judged per 1 s scrape, each
halving every 30 minutes, stays under 2,600."""

MAX_DISPERSION = 10_000.0
"""A kept scatter beyond this many times Poisson's is a status edit: clusters of ten thousand
requests within a rate sample are not traffic one service serves."""

GOAL_KEYS = {"p95 latency": "latency", "p95 TTFT": "ttft"}
"""The goals' names in ``status_signals``' keys."""

UNHELPED_FIELDS = ("ratio", "ready", "probeRatio", "probeReady", "floor")
"""``state.unhelped.<goal>.<field>``: a latency feedback's verdict (``Unhelped``)."""

STEPS_KEPT = 3
"""How many steps of a staircase status keeps: of the scale-down window (``ScalerState.window``,
its needs), and of the highest and of the lowest rates of the last start-up (each rate the
highest, or lowest, of all after it). The first are kept as they are and the rest merged into
the last kept (its value, at the latest of them), so a restart holds no need for less time
than the window would have, and a fall (or rise) it splits pairs with the samples after as it
would have, or as a larger one, however late within the start-up it comes."""


def _step(i: int) -> str:
    """The key's step number: none for the first (the keys an older version wrote)."""
    return str(i) if i else ""


STATE_SIGNALS = (
    "state.speed",
    "state.burstRise",
    "state.burstPeak",
    "state.burstJump",
    "state.burstSwing",
    "state.burstShare",
    "state.burstBeyond",
    "state.dispersion",
    *(
        f"state.recent{edge}{_step(i)}{part}"
        for edge in ("High", "Low")
        for i in range(STEPS_KEPT)
        for part in ("", "At")
    ),
    "state.crowd",
    "state.mixPeak",
    "state.mixPeakAt",
    "state.risesLasted",
    "state.risesFaded",
    "state.holdBase",
    "state.meanPromptTokens",
    "state.meanOutputTokens",
    "state.sizeRequests",
    "state.askedAt",
    "state.askedRate",
    "state.backlogAt",
    "state.windowSince",
    *(f"state.window{i}{part}" for i in range(STEPS_KEPT) for part in ("At", "Need")),
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
    or a decision interval when longer, and its peak; the highest and lowest rates within that
    time before the latest sample, and when; with the replicas' ``token_rates``,
    (prefill, decode) tokens per second, a heavier mix at its weight, and the rate one came
    at, ``heavier_mix_peak``), how far recent rises lasted (``rise_trust``), the arrivals'
    scatter (``rate_dispersion``), the goals the latency feedback found replicas do not help
    (a restart would test them again with as many replicas more), the arrivals at the last
    scale-up's ask while its replicas start, when the last backlog was, and the scale-down
    window's steps. The rest is rebuilt from observations."""
    out: dict[str, float] = {}
    kept = state.restored_dispersion
    scatter = math.inf if kept is None else kept
    if state.speed_at is not None:
        out["state.speed"] = round(state.speed, 4)
    if state.rates:
        weights = mix_weights(state.mixes, *token_rates, params) if token_rates else {}
        lead = burst_lead(startup_seconds, state.rates, params)
        fade = burst_fade(state.rates[-1][0], startup_seconds, params)
        history = mix_weighted(state.rates, weights)
        scatter = rate_dispersion(history, params, scatter)
        burst = burst_summary(
            history,
            lead,
            fade,
            params,
            state.restored_burst,
            state.restored_edges,
            1.0 if math.isinf(scatter) else scatter,
        )
        latest = history[-1][0]
        recent = [
            (t, rate)
            for t, rate in (*state.restored_edges, *((t, rate) for t, rate, _ in history))
            if t >= latest - lead
        ]
        for edge, sign in (("High", 1.0), ("Low", -1.0)):
            for i, (t, rate) in enumerate(_edge_steps(recent, sign)):
                out[f"state.recent{edge}{_step(i)}"] = round(rate, 4)
                out[f"state.recent{edge}{_step(i)}At"] = round(t, 1)
        out["state.burstRise"] = round(burst.rise, 4)
        out["state.burstPeak"] = round(burst.peak, 4)
        out["state.burstJump"] = round(burst.jump, 4)
        out["state.burstSwing"] = round(burst.swing, 4)
        out["state.burstShare"] = round(burst.share, 4)
        if burst.beyond_noise > 0:
            out["state.burstBeyond"] = round(burst.beyond_noise, 4)
        out["state.dispersion"] = round(1.0 if math.isinf(scatter) else scatter, 4)
        mix_peak = heavier_mix_peak(history, weights, state.restored_mix_peak)
        if mix_peak is not None:
            out["state.mixPeakAt"] = round(mix_peak[0], 1)
            out["state.mixPeak"] = round(mix_peak[1], 4)
    # (the largest jump that was a fan-out: one taken for a burst's rate is the rise's)
    crowd, _ = fan_out(state.crowds, state.rates, scatter, params)
    if crowd > 0:
        out["state.crowd"] = round(crowd, 4)
    if any(state.rises[:2]):
        out["state.risesLasted"] = round(state.rises[0], 4)
        out["state.risesFaded"] = round(state.rises[1], 4)
    if state.hold_base is not None:
        out["state.holdBase"] = float(state.hold_base)
    asked = _asked(state)
    if asked is not None:
        out["state.askedAt"] = round(asked[0], 1)
        out["state.askedRate"] = round(asked[1], 4)
    if state.backlog_at is not None:
        # (rounded up: the latency feedback waits a little longer, never less)
        out["state.backlogAt"] = math.ceil(state.backlog_at * 10) / 10
    if state.window and state.window_since is not None:
        # (rounded up: a step kept a little longer, never shorter)
        out["state.windowSince"] = math.ceil(state.window_since * 10) / 10
        for i, (t, need) in enumerate(_kept_steps(state.window)):
            out[f"state.window{i}At"] = math.ceil(t * 10) / 10
            out[f"state.window{i}Need"] = float(need)
    if state.sizes is not None:
        prompt, output, requests, _ = state.sizes
        out["state.meanPromptTokens"] = round(prompt, 1)
        out["state.meanOutputTokens"] = round(output, 1)
        out["state.sizeRequests"] = round(requests, 1)
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
    signals_at: float | None = None,
    scale_down_delay: float | None = None,
    params: ScalerParams = DEFAULT_PARAMS,
) -> ScalerState:
    """The state after a restart, from what status says (the recommendation, the last scale
    decision, and the ``status_signals`` as of ``signals_at``: by default the decision's).

    * the recommended count is what a hold keeps;
    * the scale-down window goes on from its steps as of ``signals_at``, the time since held
      at the latest need (unseen, it is taken to have stayed), when that is less than
      ``scale_down_delay`` (the service's ``scaleDownDelaySeconds``) ago: a failover or an
      upgrade does not hold every count a whole delay more. Otherwise (older, unknown or
      absurd) the window starts now, seeded with the recommended count: a restart then never
      scales down before ``scaleDownDelaySeconds`` of fresh observations;
    * a recent scale-up still makes latency feedback wait for its replicas, which count as
      starting (``scaled_up_by`` of them) until a start-up time after it, and are kept as long
      as the arrivals at its ask, kept with it, say (``still_asked_for``);
    * the service-rate estimate continues where it was;
    * the burst history's largest jump, modest swing (and its share) and peak, and the
      largest fan-out, are held as of ``signals_at`` (``ScalerState.restored_burst``), beside
      the samples since, until they age out of the lookback, as they would have been (as
      samples, they would have paired with the first ones after the restart into a swing of
      their own); the highest and lowest rates of the last start-up before it do pair with
      them (``ScalerState.restored_edges``), so a fall that spans the restart is still seen;
    * the rate a heavier mix came at (``heavier_mix_peak``) is held whole until it is older
      than the lookback, as it would have been (the mixes of the samples are not kept);
    * how far recent rises lasted, as of ``signals_at``, fading from then;
    * the arrivals' scatter judges ramps until the samples since show their own;
    * a goal the latency feedback found replicas do not help stays unchased until met;
    * the latency feedback waits out the tail of the last backlog (``backlog_at``), as before;
    * a hold under a schedule's floor goes back to what it held when the window closes;
    * the smoothed request size goes on from what was kept.
    Rebuilt from observations: the growth probe (a backlog's growth is measured afresh from
    the first sample), idleness, the rate window's mean ready.
    """
    signals = signals or {}
    low, high = params.speed_bounds

    def value(key: str) -> float | None:
        got = signals.get(key)
        return float(got) if isinstance(got, (int, float)) and math.isfinite(got) else None

    speed = value("state.speed")
    rise, peak, crowd = value("state.burstRise"), value("state.burstPeak"), value("state.crowd")
    at = last_scale_at if last_scale_at is not None and last_scale_at <= now else None
    seen_at = signals_at if signals_at is not None else last_scale_at
    seen_at = seen_at if seen_at is not None and seen_at <= now else None
    burst = None
    if seen_at is not None and rise is not None and peak is not None and peak >= rise >= 0:
        parts = (value("state.burstJump"), value("state.burstSwing"), value("state.burstShare"))
        jump, swing, share = parts
        if jump is None or swing is None or share is None:
            # (kept by a version that held every swing whole)
            jump, swing, share = rise, 0.0, 0.0
        beyond = value("state.burstBeyond")
        # (kept by a version that judged swings only at the peak's noise, or absurd: none)
        beyond = beyond if beyond is not None and 0 <= beyond <= peak else 0.0
        if 0 <= jump <= peak and 0 <= swing <= peak and share >= 0:
            burst = (seen_at, jump, swing, share, peak, beyond)
    edges = _edges(value, seen_at)
    crowds = ((seen_at, crowd),) if seen_at is not None and crowd is not None and crowd > 0 else ()
    mix_peak, mix_peak_at = value("state.mixPeak"), value("state.mixPeakAt")
    # (a heavier mix's peak is one of the burst history's weighted samples: never above its
    # peak, nor kept from after the status was written)
    kept_mix_peak = (
        (mix_peak_at, mix_peak)
        if burst is not None
        and mix_peak is not None
        and mix_peak_at is not None
        and 0 < mix_peak <= burst[4] * (1 + params.tolerance)
        and seen_at is not None
        and seen_at - MAX_AGE <= mix_peak_at <= seen_at
        else None
    )
    window, window_since = _window(value, seen_at, now, scale_down_delay) or (
        ((now, recommended),) if recommended else (),
        now,
    )
    backlog_at = value("state.backlogAt")
    # (kept to a tenth, rounded up, with a state kept to the second)
    if backlog_at is not None and not (
        seen_at is not None and seen_at - MAX_AGE <= backlog_at <= seen_at + 1
    ):
        backlog_at = None
    base = value("state.holdBase")
    dispersion = value("state.dispersion")
    rises = _rises(value("state.risesLasted"), value("state.risesFaded"), seen_at)
    size = (
        value("state.meanPromptTokens"),
        value("state.meanOutputTokens"),
        value("state.sizeRequests"),
    )
    return ScalerState(
        last_replicas=recommended,
        last_change_at=at,
        last_scale_up_at=at if scaled_up_by > 0 else None,
        starting=((at, scaled_up_by),) if at is not None and scaled_up_by > 0 else (),
        asked_rates=_asked_rate(value, at) if scaled_up_by > 0 else (),
        window=window,
        window_since=window_since,
        restored_burst=burst,
        restored_edges=edges,
        restored_dispersion=dispersion
        if dispersion is not None and 1 <= dispersion <= MAX_DISPERSION
        else None,
        restored_mix_peak=kept_mix_peak,
        crowds=crowds,
        rises=rises,
        speed=min(high, max(low, speed)) if speed is not None else 1.0,
        speed_at=now if speed is not None else None,
        unhelped=_verdicts(value),
        hold_base=int(base) if base is not None and 0 <= base <= API_MAX_REPLICAS else None,
        backlog_at=backlog_at,
        sizes=_sizes(size, now),
    )


def _window(
    value: Callable[[str], float | None],
    seen_at: float | None,
    now: float,
    delay: float | None,
) -> tuple[tuple[tuple[float, int], ...], float] | None:
    """(window, since when observed) from the steps kept, carried on to now at the latest
    need; None when they are as old as the delay, or absurd (needs that do not fall, times
    out of order or after they were kept)."""
    since = value("state.windowSince")
    if seen_at is None or delay is None or since is None or not 0 <= now - seen_at < delay:
        return None
    steps: list[tuple[float, int]] = []
    for i in range(STEPS_KEPT):
        at, need = value(f"state.window{i}At"), value(f"state.window{i}Need")
        if at is None or need is None:
            break
        # (the state's time is kept to the second, the steps' to a tenth, rounded up)
        if not (since <= at <= seen_at + 1 and 0 <= need <= API_MAX_REPLICAS + 1):
            return None
        if need != math.floor(need):
            return None
        if steps and not (at >= steps[-1][0] and need < steps[-1][1]):
            return None
        steps.append((at, int(need)))
    if not steps:
        return None
    # (the last step, the lowest, carried to now)
    return (*steps[:-1], (now, steps[-1][1])), since


def _edge_steps(recent: list[tuple[float, float]], sign: float) -> tuple[tuple[float, float], ...]:
    """The (time, rate) of ``recent`` that are the highest (``sign`` 1) or lowest (-1) of all
    after them, the extreme first; of equal rates the latest, which pairs with the samples
    after for longest (``_kept_steps`` of them)."""
    steps: list[tuple[float, float]] = []
    for t, rate in sorted(recent, reverse=True):
        if not steps or sign * rate > sign * steps[-1][1]:
            steps.append((t, rate))
    return _kept_steps(tuple(reversed(steps)))


def _kept_steps(steps: tuple[tuple[float, Value], ...]) -> tuple[tuple[float, Value], ...]:
    """The first ``STEPS_KEPT`` (time, value) of a staircase, the last of them held until
    the latest of those after it."""
    if len(steps) <= STEPS_KEPT:
        return steps
    *first, (_, value) = steps[:STEPS_KEPT]
    return (*first, (steps[-1][0], value))


def _asked(state: ScalerState) -> tuple[float, float] | None:
    """(when, arrivals then) of the last scale-up, while its replicas are starting: the
    batch a restart restores, and the rate its keep rule (``still_asked_for``) reads."""
    at = state.last_scale_up_at
    if at is None or all(t != at for t, _ in state.starting):
        return None
    rates = rates_at_asks(state, state.rates)
    return (at, rates[at]) if at in rates else None


def _asked_rate(
    value: Callable[[str], float | None], at: float | None
) -> tuple[tuple[float, float], ...]:
    """The arrivals at the last scale-up's ask, when kept for that scale-up (at ``at``, kept
    to the second), believable."""
    asked_at, rate = value("state.askedAt"), value("state.askedRate")
    if at is None or asked_at is None or rate is None or not 0 <= rate <= HUGE:
        return ()
    return ((at, rate),) if at - 0.1 <= asked_at <= at + 1 else ()


def _edges(
    value: Callable[[str], float | None], seen_at: float | None
) -> tuple[tuple[float, float], ...]:
    """(time, rate) of the steps of the highest and lowest rates kept (``STEPS_KEPT``),
    leaving out any a status edit made absurd; none without the time they were kept."""
    if seen_at is None:
        return ()
    out = set()
    for edge in ("High", "Low"):
        for i in range(STEPS_KEPT):
            key = f"state.recent{edge}{_step(i)}"
            rate, at = value(key), value(f"{key}At")
            if rate is None or at is None or not 0 <= rate <= HUGE:
                continue
            if 0 <= seen_at - at <= MAX_AGE:
                out.add((at, rate))
    return tuple(sorted(out))


def _rises(
    lasted: float | None, faded: float | None, seen_at: float | None
) -> tuple[float, float, float]:
    """The record of recent rises kept (``rise_trust``), fading from when it was kept; none
    (a rise believed whole) when incomplete or absurd."""
    if seen_at is None or lasted is None or faded is None:
        return 0.0, 0.0, 0.0
    if not (0 <= lasted <= MAX_RISES and 0 <= faded <= MAX_RISES):
        return 0.0, 0.0, 0.0
    return lasted, faded, seen_at


def _sizes(
    kept: tuple[float | None, float | None, float | None], now: float
) -> tuple[float, float, float, float] | None:
    """The smoothed request size kept (mean prompt and output tokens, the completions they
    stand for), smoothed on from now: a restart's first minute alone is one phase of a
    shifting mix. None when any is missing or absurd."""
    prompt, output, requests = kept
    if prompt is None or output is None or requests is None:
        return None
    if not (0 <= prompt <= MAX_TOKENS and 0 <= output <= MAX_TOKENS and requests >= 0):
        return None
    return prompt, output, requests, now


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
