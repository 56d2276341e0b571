"""The burst history as the signals read it, computed once per sample (``burst_history``): in
requests of the latest mix, with the arrivals' scatter and the lines a ramp under way shows
(the headroom holds where a line will be when a replica asked now serves, and the queue
foresees what piles up while it rises, ``ramp_to``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .bursts import rate_dispersion
from .mixes import mix_weighted, mix_weights
from .model import DEFAULT_PARAMS, ScalerParams, ScalingInputs
from .ramp import RampFits, ramp_end, ramp_fits, ramp_held


@dataclass(frozen=True)
class BurstHistory:
    """The burst history of one sample as the signals read it (``burst_history``)."""

    rates: tuple[tuple[float, float, int], ...]
    """The arrival-rate samples in requests of the latest mix (``mix_weighted``)."""
    weights: dict[float, float]
    """The weights of its heavier samples (``mix_weights``)."""
    dispersion: float
    """The arrivals' scatter (``rate_dispersion``) with what a restart kept; infinite while
    unknown."""
    ramps: RampFits
    """The lines a ramp under way shows (``ramp_fits``), at the scatter (Poisson's while it is
    unknown)."""

    @property
    def scatter(self) -> float:
        """The scatter a ramp's slope is judged at (``judged_scatter``)."""
        return judged_scatter(self.dispersion)


def judged_scatter(dispersion: float) -> float:
    """The scatter a ramp's slope is judged at: ``dispersion``, Poisson's while unknown."""
    return 1.0 if math.isinf(dispersion) else dispersion


def burst_history(
    sized: ScalingInputs,
    rates: tuple[tuple[float, float, int], ...],
    mixes: tuple[tuple[float, float, float], ...],
    restored_dispersion: float | None,
    params: ScalerParams = DEFAULT_PARAMS,
) -> BurstHistory:
    """The arrival-rate samples ``rates`` in requests of the latest of ``mixes``, their
    scatter with what a restart kept, and their ramp fits over ``sized``'s start-up."""
    weights = mix_weights(
        mixes, sized.prefill_tokens_per_second, sized.decode_tokens_per_second, params
    )
    history = mix_weighted(rates, weights)
    kept = math.inf if restored_dispersion is None else restored_dispersion
    dispersion = rate_dispersion(history, params, kept)
    return BurstHistory(
        history,
        weights,
        dispersion,
        ramp_fits(history, sized.startup_seconds, params, judged_scatter(dispersion)),
    )


def ramp_to(
    history: BurstHistory, sized: ScalingInputs, params: ScalerParams = DEFAULT_PARAMS
) -> float:
    """The arrival rate, in requests of the latest mix, a ramp under way will have reached when
    a replica asked now serves (``ramp_held``, the line the headroom holds too, but believed
    only ``ramp_believed_spans`` times as far ahead as it was seen: what piles up is the
    line's integral); 0 without one."""
    if sized.startup_seconds <= 0 or not history.rates:
        return 0.0
    line, _ = ramp_held(
        history.rates,
        ramp_end(sized, history.rates, params),
        sized.startup_seconds,
        params,
        as_far_as_seen=True,
        fits=history.ramps,
    )
    return line
