"""A ramp under way: where the line through the latest arrival-rate samples will be when a
replica asked now serves (``ramp_ahead``; ``ramp_held``, the line over the spans a fast and a
slow ramp show), or nothing where they lie on no significant line."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .bursts import spaced_samples
from .model import DEFAULT_PARAMS, ScalerParams, ScalingInputs, scrape_age


@dataclass(frozen=True)
class RampLine:
    """A line through arrival-rate samples that passed ``ramp_line``'s tests."""

    centre: float
    """The samples' weighted mean time."""
    level: float
    """The line's rate at ``centre``."""
    slope: float
    """Its rise, req/s per second."""

    def at(self, when: float) -> float:
        """The line's rate at ``when``, never below none."""
        return max(0.0, self.level + self.slope * (when - self.centre))


def ramp_line(
    rates: tuple[tuple[float, float, int], ...],
    params: ScalerParams = DEFAULT_PARAMS,
    samples: int | None = None,
    dispersion: float = 1.0,
) -> RampLine | None:
    """The ramp of the samples (None: no ramp).

    A weighted least-squares line through the last ``ramp_samples`` rates, one per
    ``rate_sample_seconds`` (each a Poisson count over that long: variance ``rate / sample``).
    It counts as a ramp when its slope is positive beyond ``change_z`` standard errors and the
    samples lie on it within their noise (chi-square within its mean + 3 standard deviations):
    a step, a spike or a fan-out fits no line and is the burst headroom's, and noise has no
    significant slope. The slope's standard error is at the traffic's ``dispersion``
    (``rate_dispersion``): clustered arrivals draw steep five-sample lines that Poisson's
    would not. The fit stays at Poisson's, the stricter test of a line for scattered samples.
    """
    sample = params.rate_sample_seconds
    wanted = max(samples if samples is not None else params.ramp_samples, 3)
    picked = spaced_samples(rates, wanted, params)
    n = len(picked)
    if n < wanted:
        return None
    # (each sample weighted by the inverse of its variance: first at its own rate, then at
    # the first fit's -- a sample's own count understates its variance when it came out low,
    # and over many samples that alone takes a ramp for a misfit)
    expected = [rate for _, rate in picked]
    for _ in range(2):
        weights = [sample / max(rate, 1.0 / sample) for rate in expected]
        total = sum(weights)
        t_mean = sum(w * t for w, (t, _) in zip(weights, picked, strict=True)) / total
        r_mean = sum(w * r for w, (_, r) in zip(weights, picked, strict=True)) / total
        spread = sum(w * (t - t_mean) ** 2 for w, (t, _) in zip(weights, picked, strict=True))
        if not spread > 0:
            return None
        slope = (
            sum(w * (t - t_mean) * (r - r_mean) for w, (t, r) in zip(weights, picked, strict=True))
            / spread
        )
        expected = [max(0.0, r_mean + slope * (t - t_mean)) for t, _ in picked]
    if slope * math.sqrt(spread / dispersion) <= params.change_z:  # (slope / its standard error)
        return None
    misfit = sum(
        w * (r - r_mean - slope * (t - t_mean)) ** 2
        for w, (t, r) in zip(weights, picked, strict=True)
    )
    dof = n - 2
    if misfit > dof + 3.0 * math.sqrt(2.0 * dof):
        return None
    return RampLine(t_mean, r_mean, slope)


def ramp_ahead(
    rates: tuple[tuple[float, float, int], ...],
    at: float,
    params: ScalerParams = DEFAULT_PARAMS,
    samples: int | None = None,
    dispersion: float = 1.0,
) -> float:
    """The arrival rate at time ``at`` if the ramp of the samples (``ramp_line``) goes on
    (0: no ramp)."""
    if not math.isfinite(at):
        return 0.0
    line = ramp_line(rates, params, samples, dispersion)
    return line.at(at) if line is not None else 0.0


def ramp_end(
    inputs: ScalingInputs, rates: tuple[tuple[float, float, int], ...], params: ScalerParams
) -> float:
    """When a replica asked now serves, on the burst history's clock: a start-up after the
    scrape the latest sample is of plus the time since it (``scrape_age``)."""
    return rates[-1][0] + scrape_age(inputs, rates[-1][0], params) + inputs.startup_seconds


RampFits = tuple[tuple[int, RampLine | None], ...]
"""(samples fitted over, the line or None) of every fit ``ramp_held`` weighs (``ramp_fits``)."""


def ramp_fits(
    rates: tuple[tuple[float, float, int], ...],
    startup: float,
    params: ScalerParams = DEFAULT_PARAMS,
    dispersion: float = 1.0,
) -> RampFits:
    """The fits ``ramp_held`` weighs: a steep ramp (a flash crowd) shows over the latest
    ``ramp_samples``, fitted with the latest sample, which completes its line a sample
    sooner, and without it (more load now never means less held, though it may fit no line).
    A slow ramp shows its slope over a start-up time before it does over a minute: fitted
    over as many samples as ``startup`` holds, when that is more, over those there are while
    the history is younger (or a slow ramp in a service's first start-up time would be seen
    only over a minute)."""
    span = round(startup / params.rate_sample_seconds)
    held_samples = len(spaced_samples(rates, span, params))
    fits = {params.ramp_samples, max(params.ramp_samples, held_samples)}
    return tuple(
        (n, ramp_line(history, params, n, dispersion))
        for n in fits
        for history in (rates, rates[:-1])
    )


def ramp_held(
    rates: tuple[tuple[float, float, int], ...],
    ahead: float,
    startup: float,
    params: ScalerParams = DEFAULT_PARAMS,
    dispersion: float = 1.0,
    as_far_as_seen: bool = False,
    fits: RampFits | None = None,
) -> tuple[float, int]:
    """(where the ramp under way will be at ``ahead``, the samples its line was fitted over):
    the highest of ``ramp_fits`` (``fits`` when the caller has them); (0, ...) without one.
    ``as_far_as_seen``: each line goes no further beyond the latest sample than
    ``ramp_believed_spans`` times the span it was fitted over (a minute's line is no
    ten-minute forecast)."""
    if fits is None:
        fits = ramp_fits(rates, startup, params, dispersion)
    sample = params.rate_sample_seconds

    def until(n: int) -> float:
        if not (as_far_as_seen and rates):
            return ahead
        return min(ahead, rates[-1][0] + params.ramp_believed_spans * n * sample)

    def held(n: int, line: RampLine | None) -> float:
        end = until(n)
        return line.at(end) if line is not None and math.isfinite(end) else 0.0

    return max((held(n, line), n) for n, line in fits)
