"""Metric values made usable: NaN, infinite and negative values are missing, huge ones capped,
and a mean token count no model has is no measurement."""

from __future__ import annotations

import math
from dataclasses import replace

from .model import HUGE, ScalingInputs, Signals


def _usable(value: float | None) -> float | None:
    """A value, or None when it is not one (a histogram quantile over no samples is NaN);
    finite values beyond ``HUGE`` are capped there."""
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return min(value, HUGE)


MAX_MEAN_TOKENS = 1e7
"""A mean request larger than this (no model's context is) is not a measurement."""


def _sanitised(signals: Signals) -> Signals:
    observed_at = signals.observed_at
    return Signals(
        queue_depth=_usable(signals.queue_depth),
        running=_usable(signals.running),
        arrival_rate=_usable(signals.arrival_rate),
        p95_latency_ms=_usable(signals.p95_latency_ms),
        ttft_p95_ms=_usable(signals.ttft_p95_ms),
        observed_at=observed_at if observed_at is not None and math.isfinite(observed_at) else None,
        prompt_tokens_rate=_usable(signals.prompt_tokens_rate),
        output_tokens_rate=_usable(signals.output_tokens_rate),
        mean_running=_usable(signals.mean_running),
        recent_completion_rate=_usable(signals.recent_completion_rate),
        scraped_at=signals.scraped_at
        if signals.scraped_at is not None and math.isfinite(signals.scraped_at)
        else None,
    )


def _tokens(value: float | None) -> float | None:
    """A mean token count, or None: a ratio of token and completion rates is +Inf or NaN in a
    window with tokens but no completion (vLLM counts tokens per iteration)."""
    usable = _usable(value)
    return usable if usable is not None and usable <= MAX_MEAN_TOKENS else None


def sanitised_inputs(inputs: ScalingInputs) -> ScalingInputs:
    return replace(
        inputs,
        signals=None if inputs.signals is None else _sanitised(inputs.signals),
        mean_prompt_tokens=_tokens(inputs.mean_prompt_tokens),
        mean_output_tokens=_tokens(inputs.mean_output_tokens),
        rtt_ms=inputs.rtt_ms if math.isfinite(inputs.rtt_ms) and inputs.rtt_ms >= 0 else 0.0,
    )
