"""The mean request's size.

vLLM's token counters grow per iteration, so their ratio to the completions also counts the
requests in flight: ``request_sizes`` takes off what the running requests added over the rate
window (several times the size at a service's start, a quarter more in a load step), and
``smoothed_sizes`` weighs each sample by the completions it stands for (a lull's minute is a
handful of requests), and restarts from the window when its requests are heavier beyond the
sampling noise (``size_shifted``); a size standing for fewer than ``min_size_requests`` is
unknown.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .model import DEFAULT_PARAMS, EPS, HUGE, ScalerParams, ScalingInputs, mean_work
from .state import ScalerState


def running_seen_now(
    inputs: ScalingInputs, state: ScalerState, now: float, params: ScalerParams
) -> tuple[tuple[float, float], ...]:
    """``state.running_seen`` with this sample's running added when it is a new scrape."""
    signals = inputs.signals
    assert signals is not None
    at = signals.scraped_at if signals.scraped_at is not None else now
    at = min(at, now)
    seen = tuple(x for x in state.running_seen if at - params.rate_window_seconds <= x[0] <= at)
    if signals.running is not None and (not seen or at > seen[-1][0]):
        seen = (*seen, (at, signals.running))
    return seen


def request_sizes(
    inputs: ScalingInputs,
    seen: tuple[tuple[float, float], ...],
    params: ScalerParams = DEFAULT_PARAMS,
) -> ScalingInputs:
    """The mean prompt and output tokens of a request, corrected for the requests in flight.

    The mean sizes are the per-iteration token rates over the completion rate (the presets'
    ratio over ``rate_window_seconds``, ``W``). The token counters also count the requests
    still running, as far as each has got: under processor sharing they progress together,
    so about half of their tokens on average (a prompt is counted whole sooner when prefill is
    a small part of the work, but then it is a small part of the work too). So the tokens over
    the window are those of ``C + (R_end - R_start) / (2 W)`` requests for ``C`` completions
    per second, where ``R`` is what ran at either end of the window (its start is the oldest
    scrape seen within it). At a service's start or during a load step ``R`` grows, and the
    plain ratio makes the mean request up to several times its size; while a backlog drains
    it makes it smaller. The correction is bounded to a factor of 4 either way, and made only
    where the runtime's token counters are per iteration (its token rates are known: vLLM's);
    a runtime that counts a request's tokens when it completes (TGI) needs none."""
    signals = inputs.signals
    completions = signals.arrival_rate if signals is not None else None
    prompt, output = inputs.mean_prompt_tokens, inputs.mean_output_tokens
    per_iteration = signals is not None and signals.prompt_tokens_rate is not None
    if not per_iteration or not seen or not completions or prompt is None or output is None:
        return inputs
    # (with less than a window seen, the series may be younger than the window -- a new
    # service's counters start at zero with nothing in flight -- and what ran at the start of
    # what Prometheus has is taken as nothing; in a steady state ``R / W`` is small beside ``C``
    # and the correction negligible, so after a restart this costs little)
    young = seen[0][0] > seen[-1][0] - 0.9 * params.rate_window_seconds
    start, end = (0.0 if young else seen[0][1]), seen[-1][1]
    extra = (end - start) / params.rate_window_seconds

    def corrected(mean: float, share: float) -> float:
        counted = completions + share * extra
        if counted <= 0:
            return mean * 4.0
        return mean * min(4.0, max(0.25, completions / counted))

    return replace(
        inputs, mean_prompt_tokens=corrected(prompt, 0.5), mean_output_tokens=corrected(output, 0.5)
    )


def smoothed_sizes(
    inputs: ScalingInputs,
    state: ScalerState,
    now: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> tuple[ScalingInputs, tuple[float, float, float, float] | None, bool]:
    """The mean request size smoothed over ``size_time_constant_seconds``, each sample
    weighted by the completions it stands for (the completion rate times the time since the
    last; at least the window's completions not yet counted): in a lull a minute's ratio is
    that of a handful of requests, and sizing the burst headroom on it would swing with them;
    a busy minute outweighs it. The inputs with the smoothed sizes, the state to keep, and
    whether the sizes stand for ``min_size_requests`` completions or more: the arrival model
    and the burst headroom size replicas by them only then (the queue signal takes them as
    they are: it asks for more only where what is in the system shows it)."""
    prompt, output = inputs.mean_prompt_tokens, inputs.mean_output_tokens
    signals = inputs.signals
    rate = signals.arrival_rate if signals is not None else None
    before = state.sizes
    if prompt is None or output is None:
        if before is None:
            return inputs, None, False
        # A lull without completions measures nothing: the size measured before it still
        # stands (the burst headroom that holds replicas through the lull sizes by it).
        kept = replace(inputs, mean_prompt_tokens=before[0], mean_output_tokens=before[1])
        return kept, (before[0], before[1], before[2], now), before[2] >= params.min_size_requests
    tau = params.size_time_constant_seconds
    old = 0.0
    window = (rate or 0.0) * params.rate_window_seconds  # (the window's completions)
    if (
        before is None
        or not 0 <= now - before[3] <= params.staleness_seconds
        or size_shifted(inputs, before, window, params)
    ):
        mean_prompt, mean_output = prompt, output
        total = window
    else:
        dt = now - before[3]
        decay = math.exp(-dt / tau) if tau > 0 else 0.0
        old = before[2] * decay
        # (the sample stands for the completions since the last, and for at least those of
        # the window not counted yet: a series younger than the window under-reports its
        # rate, and ``rate x dt`` alone would count too few)
        count = max((rate or 0.0) * dt, window - old)
        total = old + count
        if total > EPS and math.isfinite(total):
            mean_prompt = (before[0] * old + prompt * count) / total
            mean_output = (before[1] * old + output * count) / total
        else:
            mean_prompt, mean_output, total = prompt, output, count
    total = min(total, HUGE)
    # (a mean over a handful of requests is no measurement: at a service's start the
    # in-flight requests' tokens can make it several times the size)
    known = total >= params.min_size_requests
    smoothed = replace(inputs, mean_prompt_tokens=mean_prompt, mean_output_tokens=mean_output)
    return smoothed, (mean_prompt, mean_output, total, now), known


def size_shifted(
    inputs: ScalingInputs,
    before: tuple[float, float, float, float],
    completions: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> bool:
    """Whether the window's mean request (``inputs``' sizes, over ``completions``) takes
    longer to serve than the smoothed one (``before``'s sizes) beyond what sampling noise
    explains: the mix got heavier (a client with long contexts came), and the smoothing,
    which otherwise takes minutes to follow, restarts from the window. A lighter mix is
    followed at the smoothing's pace, as a scale-down waits: a few light requests are no
    reason to shed the replicas the heavy ones need."""
    if completions < params.min_size_requests or before[2] < params.min_size_requests:
        return False
    now_work = mean_work(inputs)
    then_work = mean_work(
        replace(inputs, mean_prompt_tokens=before[0], mean_output_tokens=before[1])
    )
    if now_work is None or then_work is None:
        return False
    noise = params.change_z * params.size_cv / math.sqrt(min(completions, HUGE))
    return math.log(now_work / then_work) > noise
