"""The burst history read once per sample: the samples in requests of the latest mix, their
scatter, and the ramp fits both the headroom and the queue read (``burst_history``)."""

from __future__ import annotations

import math
import random

import pytest

from tierra.core.autoscale import rate_dispersion
from tierra.core.autoscale.history import burst_history, ramp_to
from tierra.core.autoscale.mixes import mix_weighted, mix_weights
from tierra.core.autoscale.ramp import ramp_end, ramp_held
from tierra_testing.autoscale import TRUSTED, inputs, mix_phase_history, varying_poisson_rates


@pytest.mark.parametrize("seed", range(12))
def test_the_fits_read_once_are_those_of_the_weighted_history(seed: int) -> None:
    """Poisson arrivals on a ramp of a random slope and start, with a phase of a heavier mix:
    the history is the samples at their mix's weight, and the lines its fits hold, as far as
    the start-up or as far as seen, are those fitted afresh on it at its scatter."""
    rng = random.Random(seed)
    startup = rng.choice((60.0, 120.0, 300.0, 600.0))
    slope, rise_at = rng.uniform(0.02, 0.1), rng.uniform(1000.0, 1700.0)
    rates = varying_poisson_rates(rng, lambda t: 2.0 + slope * max(0.0, t - rise_at), 0.0, 1800.0)
    # (the heavier phase ends up to ten minutes before the latest sample: within the fits)
    _, heavier = mix_phase_history(rng.uniform(1.0, 3.0), now=rates[-1][0] + rng.uniform(0, 590))
    mixes = tuple(m for m in heavier if m[0] <= rates[-1][0])
    sized = inputs(startup_seconds=startup)
    history = burst_history(sized, rates, mixes, None, TRUSTED)
    weights = mix_weights(
        mixes, sized.prefill_tokens_per_second, sized.decode_tokens_per_second, TRUSTED
    )
    assert history.rates == mix_weighted(rates, weights)
    assert history.dispersion == rate_dispersion(history.rates, TRUSTED, math.inf)
    end = ramp_end(sized, history.rates, TRUSTED)
    for as_far_as_seen in (False, True):
        afresh = ramp_held(history.rates, end, startup, TRUSTED, history.scatter, as_far_as_seen)
        assert afresh == ramp_held(
            history.rates,
            end,
            startup,
            TRUSTED,
            history.scatter,
            as_far_as_seen,
            fits=history.ramps,
        )
    assert (
        ramp_to(history, sized, TRUSTED)
        == ramp_held(history.rates, end, startup, TRUSTED, history.scatter, as_far_as_seen=True)[0]
    )


def test_the_queue_s_ramp_is_the_line_as_far_as_it_was_seen() -> None:
    """A flash crowd's line, 0.1 req/s more every second for the last 75 s, on a 600 s
    start-up: the queue's rate is the line 150 s on (twice its span); none without a
    start-up or on a level."""
    rates = tuple((t, 1.0 + 0.1 * max(0.0, t - 600.0), 4) for t in range(0, 676, 15))
    sized = inputs(startup_seconds=600.0)
    history = burst_history(sized, rates, (), None, TRUSTED)
    assert ramp_to(history, sized, TRUSTED) == pytest.approx(1.0 + 0.1 * (75.0 + 150.0))
    none = inputs(startup_seconds=0.0)
    assert ramp_to(burst_history(none, rates, (), None, TRUSTED), none, TRUSTED) == 0.0
    level = tuple((t, 4.0, 4) for t in range(0, 676, 15))
    assert ramp_to(burst_history(sized, level, (), None, TRUSTED), sized, TRUSTED) == 0.0
