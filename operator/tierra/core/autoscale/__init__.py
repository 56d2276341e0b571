"""Autoscaling recommendation: replicas for one placement group of a service, with a reason.

``recommend(inputs, state, now)`` is pure: the service's bounds and SLO, the chosen variant's
capacity, the observed replicas and metrics, and the state carried from the previous call go in;
a replica count, the reason for it, each signal's need and the next state come out. The clock
is injected (``now``, seconds); the state is plain data. The shell keeps it in memory; after a
restart ``restore_state`` rebuilds it from what status says (the recommendation, the last scale
decision and the ``status_signals`` written with it) and the observations that follow.

Signals (the recommendation is the max over them; the reason names the winner)
-----------------------------------------------------------------------------
* **queue**: ``ceil((waiting + running) / allowance)``; the allowance (``queue_allowance``) is
  what one replica holds within the SLO *for the observed request mix*: a replica completes a
  mean request every ``work`` seconds, so about ``latency budget / work`` requests (and
  ``maxConcurrency`` + ``TTFT budget / work`` for the TTFT), never more than ``maxConcurrency
  + maxQueuePerReplica``. Long prompts make it small. With the request size and arrival rate
  known, a backlog is work to drain, not a steady load, and a replica asked for now serves
  only ``startupSeconds`` later: the signal asks for the replicas that, from then on, serve
  the arrivals and drain within ``startupSeconds``, a minute at most (``drain_seconds``:
  every request arriving meanwhile waits behind it), the backlog there will be by then (the
  excess now plus what piles up meanwhile on the replicas serving, and on the starting ones
  once they serve), and at least hold what is running at full concurrency. So the first
  decision after a step already asks for what drains the backlog its own start-up builds,
  and those while its replicas start ask for no more. A scale-up's replicas count as
  starting for ``startupSeconds`` (+ ``ready_lag_seconds``) after it, Ready or not (a pod
  can be Ready before its model server serves).
* **arrival**: the arrival rate against per-replica capacity through the M/M/c model of
  ``queue_model``, with the headroom the latency SLO needs rather than a fixed utilisation. The
  latency budget is ``latencyP95Ms`` minus the tier's RTT. Each replica is planned at ``k``
  concurrent requests, the most (up to ``maxConcurrency``) whose service time ``k x work``
  takes at most ``service_budget_fraction`` of the budget (and of the TTFT budget for the
  prefill); the rest of the budget is the p95 queueing wait allowed. This count is the
  *SLO-safe* count: scale-down never goes below it. It needs the mean prompt and output tokens;
  without them the signal is skipped.
* **headroom** (``headroom_need``): when the replicas a scale-up asks for serve
  ``headroom_min_reaction_seconds`` or more after a burst begins (a decision interval,
  ``decision_interval``, the start-up and the ready lag), a reactive scale-up is late for a burst
  that rises faster than that. The
  recommender remembers its arrival-rate estimates of the last ``headroom_lookback_seconds``
  (or ``headroom_lookback_startups`` start-up times, when longer: ``burst_lookback``; older
  ones fade out over ``headroom_fade_lookbacks`` more, ``burst_fade``) and holds the arrival
  model's count for ``now + the largest rise seen within one start-up time``
  (at most the lookback's peak plus the deadband): the burstiness this service has shown, an
  upper envelope rather than a mean. A fan-out (dozens of requests within a second, which no
  rate sample shows) is held as the count that clears it within the SLO; a jump of what is in
  the system counts as one where arrivals come in clusters or the rate did not stay up after
  it (``fan_out``). The reason says how much was held and why.
* **latency** (feedback): when the observed p95 latency or TTFT exceeds its SLO by a ratio
  ``r``, at least ``ceil(ready x min(r, feedback_max_step))``. Below the SLO it asks for
  nothing. It corrects what the model misses (a profile that is optimistic, requests larger
  than the mean). The runtime's p95 is a windowed histogram that still shows an overload for a
  while after it is over, so feedback waits while replicas are starting, for
  ``startupSeconds`` and two latency windows after a scale-up (requests in flight when the new
  replicas become ready finish up to a window later, and stay in the histogram for another),
  and for two latency windows after a backlog (more waiting than the ready replicas' allowed
  queue, which the queue signal answers); it would otherwise compound a correction already
  made.

Modules
-------
* ``model``: the inputs (``ScalingInputs``, ``Signals``), the tuning (``ScalerParams``) and a
  signal's answer (``SignalNeed``);
* ``state``: what is carried from call to call (``ScalerState``) and the output
  (``Recommendation``); ``restart``: what status keeps of it and the state rebuilt from it;
* ``sanitise``, ``sizes``, ``speed``, ``observe``: one sample read -- values made usable, the
  mean request's size, the replicas' real speed, implausible samples set aside;
* ``load``: the arrivals now (conservation, ``interval_rate``) and the burst history;
* ``bursts``: what the burst history shows -- its largest swings within a start-up time, the
  noise of a steady rate, the arrivals' scatter; ``ramp``: a ramp under way; ``mixes``: the
  samples of a heavier request mix, at its weight;
* ``starting``: the replicas still starting, batch by batch;
* ``signals``: one module per signal, all behind one interface (``signals.Scaler``);
* ``recommender``: ``recommend``, the count the signals' needs ask for within the bounds, the
  deadband and the scale-down window;
* ``service``: a whole service's inputs over its placements and tiers.
"""

from .bursts import (
    burst_fade,
    burst_lead,
    burst_lookback,
    burst_memory,
    burst_noise,
    burst_rise,
    burst_summary,
    burst_swing,
    decision_interval,
    rate_dispersion,
    swing_noise,
)
from .load import change_threshold, interval_rate, judge_rise, rise_trust
from .mixes import heavier_mix_peak, mix_weighted, mix_weights
from .model import (
    API_MAX_REPLICAS,
    DEFAULT_PARAMS,
    ScalerParams,
    ScalingInputs,
    SignalNeed,
    Signals,
    scaling_inputs,
    scrape_age,
)
from .ramp import ramp_ahead
from .recommender import recommend
from .restart import STATE_SIGNALS, restore_state, status_signals
from .schedule import ScheduledFloor, scheduled_floor
from .service import (
    RunningPlacement,
    ServiceSample,
    TierSample,
    blended_capacity,
    combine_samples,
    primary_variant,
    service_scaling_inputs,
)
from .signals import SCALERS, Scaler
from .signals.arrival import arrival_need, deadband, planned_concurrency
from .signals.headroom import fan_out, headroom_need
from .signals.latency import latency_need, over_slo
from .signals.queue import queue_allowance, queue_need
from .sizes import request_sizes, size_shifted, smoothed_sizes
from .speed import update_speed
from .state import LatencyProbe, Mode, Recommendation, ScalerState, Unhelped

__all__ = [
    "API_MAX_REPLICAS",
    "DEFAULT_PARAMS",
    "SCALERS",
    "STATE_SIGNALS",
    "LatencyProbe",
    "Mode",
    "Recommendation",
    "RunningPlacement",
    "Scaler",
    "ScalerParams",
    "ScalerState",
    "ScalingInputs",
    "ScheduledFloor",
    "ServiceSample",
    "SignalNeed",
    "Signals",
    "TierSample",
    "Unhelped",
    "arrival_need",
    "blended_capacity",
    "burst_fade",
    "burst_lead",
    "burst_lookback",
    "burst_memory",
    "burst_noise",
    "burst_rise",
    "burst_summary",
    "burst_swing",
    "change_threshold",
    "combine_samples",
    "deadband",
    "decision_interval",
    "fan_out",
    "headroom_need",
    "heavier_mix_peak",
    "interval_rate",
    "judge_rise",
    "latency_need",
    "mix_weighted",
    "mix_weights",
    "over_slo",
    "planned_concurrency",
    "primary_variant",
    "queue_allowance",
    "queue_need",
    "ramp_ahead",
    "rate_dispersion",
    "recommend",
    "request_sizes",
    "restore_state",
    "rise_trust",
    "scaling_inputs",
    "scheduled_floor",
    "scrape_age",
    "service_scaling_inputs",
    "size_shifted",
    "smoothed_sizes",
    "status_signals",
    "swing_noise",
    "update_speed",
]
