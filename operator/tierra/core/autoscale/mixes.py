"""A heavier request mix in the burst history: the samples whose mean request takes much
more work than the latest's (``mix_weights``), counted in requests of the latest mix
(``mix_weighted``), and the highest rate such a phase came at (``heavier_mix_peak``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tierra.core.queue_model import solo_service_seconds

from .model import DEFAULT_PARAMS, HUGE, ScalerParams


def mix_weights(
    mixes: tuple[tuple[float, float, float], ...],
    prefill_tokens_per_second: float,
    decode_tokens_per_second: float,
    params: ScalerParams = DEFAULT_PARAMS,
) -> dict[float, float]:
    """(time -> weight) of the samples whose mean request (``mixes``: (time, prompt, output
    tokens)) takes at least ``heavier_mix_ratio`` times the latest's work on the same
    replicas: the ratio. The work of both is at the same token rates, so a change of replicas
    (a migration to faster hardware) or of the speed estimate is no change of mix."""
    if not mixes:
        return {}

    def work(prompt: float, output: float) -> float:
        return solo_service_seconds(
            prompt, output, prefill_tokens_per_second, decode_tokens_per_second
        )

    latest = work(*mixes[-1][1:])
    if not (math.isfinite(latest) and latest > 0):
        return {}
    ratios = ((t, work(p, o) / latest) for t, p, o in mixes)
    return {
        t: min(r, HUGE) for t, r in ratios if math.isfinite(r) and r >= params.heavier_mix_ratio
    }


def mix_weighted(
    rates: tuple[tuple[float, float, int], ...], weights: Mapping[float, float]
) -> tuple[tuple[float, float, int], ...]:
    """The burst history in requests of the latest mix: a sample of a much heavier mix
    (``mix_weights``) counts at ``rate x its weight``, the others as they are. A heavier phase
    of a shifting mix needs as many more replicas as a burst of requests does, and the next
    one rises as fast; a request-rate history alone saw none of it."""
    if not weights:
        return rates
    return tuple((t, min(rate * weights.get(t, 1.0), HUGE), serving) for t, rate, serving in rates)


def heavier_mix_peak(
    history: tuple[tuple[float, float, int], ...],
    weights: Mapping[float, float],
    restored: tuple[float, float] | None = None,
) -> tuple[float, float] | None:
    """(time, rate) of the highest rate a sample of a heavier mix came at (``mix_weights``),
    in requests of the latest mix (``history`` is ``mix_weighted``): that phase come back;
    or ``restored``'s, what a restart kept of it, when higher. None without either."""
    peaks = [(t, rate) for t, rate, _ in history if t in weights]
    if restored is not None:
        peaks.append(restored)
    return max(peaks, key=lambda p: (p[1], p[0]), default=None)
