"""The burst history as the signals read it: in requests of the latest mix with the arrivals'
scatter (``weighted_history``), and the rate a ramp under way will have reached when a replica
asked now serves (``ramp_to``: the headroom holds it, and the queue foresees what piles up
while it rises)."""

from __future__ import annotations

import math

from ..bursts import rate_dispersion
from ..mixes import mix_weighted, mix_weights
from ..model import DEFAULT_PARAMS, ScalerParams, ScalingInputs, scrape_age
from ..ramp import ramp_held
from ..sample import Sample


def ramp_end(
    inputs: ScalingInputs, rates: tuple[tuple[float, float, int], ...], params: ScalerParams
) -> float:
    """When a replica asked now serves, on the burst history's clock: a start-up after the
    scrape the latest sample is of plus the time since it (``scrape_age``)."""
    return rates[-1][0] + scrape_age(inputs, rates[-1][0], params) + inputs.startup_seconds


def weighted_history(
    sample: Sample, params: ScalerParams = DEFAULT_PARAMS
) -> tuple[tuple[tuple[float, float, int], ...], dict[float, float], float]:
    """(the burst history in requests of the latest mix, ``mix_weighted``; the weights of its
    heavier samples; the arrivals' scatter, ``rate_dispersion``, with what a restart kept,
    infinite while unknown)."""
    load, sized = sample.load, sample.seen.sized
    weights = mix_weights(
        load.mixes, sized.prefill_tokens_per_second, sized.decode_tokens_per_second, params
    )
    history = mix_weighted(load.rates, weights)
    kept = sample.state.restored_dispersion
    return history, weights, rate_dispersion(history, params, math.inf if kept is None else kept)


def ramp_to(sample: Sample, params: ScalerParams = DEFAULT_PARAMS) -> float:
    """The arrival rate, in requests of the latest mix, a ramp under way will have reached when
    a replica asked now serves (``ramp_held``, the line the headroom holds too, but believed
    only ``ramp_believed_spans`` times as far ahead as it was seen: what piles up is the
    line's integral); 0 without one."""
    inputs = sample.seen.sized
    if sample.load.arrival is None or inputs.startup_seconds <= 0:
        return 0.0
    history, _, dispersion = weighted_history(sample, params)
    if not history:
        return 0.0
    # (unknown scatter is Poisson's for a ramp)
    scatter = 1.0 if math.isinf(dispersion) else dispersion
    line, _ = ramp_held(
        history,
        ramp_end(inputs, history, params),
        inputs.startup_seconds,
        params,
        scatter,
        as_far_as_seen=True,
    )
    return line
