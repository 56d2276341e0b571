"""The burst history's reading: the largest rise and swing within the start-up, the noise a
steady load shows (at its peak, at its own level, over the moving means of a long start-up),
and the arrivals' scatter (about 1 for Poisson arrivals, more for clustered ones)."""

from __future__ import annotations

import bisect
import random
import statistics

import pytest

from tierra.core.autoscale import (
    DEFAULT_PARAMS,
    burst_lookback,
    burst_noise,
    burst_rise,
    burst_summary,
    burst_swing,
    headroom_need,
    rate_dispersion,
    swing_noise,
)
from tierra_testing.autoscale import (
    clustered_rates,
    crowd_from_a_quiet_level,
    inputs,
    level_that_moved,
    need_for,
    poisson_rates,
    varying_poisson_rates,
)

# --------------------------------------------------------------------------------------------
# Rises and swings


def test_burst_rise_is_the_largest_rise_within_the_lead() -> None:
    rates = ((0.0, 2.0, 1), (15.0, 3.0, 1), (30.0, 20.0, 1), (45.0, 5.0, 1), (60.0, 30.0, 1))
    assert burst_rise(rates, 20.0) == (25.0, 30.0)  # 5 -> 30 within 15 s
    assert burst_rise(rates, 60.0) == (28.0, 30.0)  # 2 -> 30 within 60 s
    assert burst_rise((), 60.0) == (0.0, 0.0)


def test_burst_swing_counts_falls_as_well_as_rises() -> None:
    """A burst already under way when first observed shows no rise, but its end is a fall
    as large: the evidence of bursty traffic either way."""
    rates = ((0.0, 20.0, 8), (15.0, 21.0, 8), (30.0, 2.0, 8), (45.0, 3.0, 8), (60.0, 2.5, 8))
    assert burst_rise(rates, 20.0) == (1.0, 21.0)
    assert burst_swing(rates, 20.0) == (19.0, 21.0)  # 21 -> 2 within 15 s
    assert burst_swing(rates, 10.0) == (0.0, 21.0)  # (no two samples within 10 s)
    rising = ((0.0, 2.0, 1), (15.0, 3.0, 1), (30.0, 20.0, 1), (45.0, 5.0, 1), (60.0, 30.0, 1))
    assert burst_swing(rising, 20.0) == (25.0, 30.0)
    assert burst_swing((), 60.0) == (0.0, 0.0)


# --------------------------------------------------------------------------------------------
# The noise of a steady load


@pytest.mark.parametrize("startup", [30.0, 60.0, 120.0, 300.0])
@pytest.mark.parametrize("rate", [0.5, 3.0, 12.0, 40.0])
def test_the_noise_of_a_steady_load_holds_no_headroom(rate: float, startup: float) -> None:
    """Over 40 seeded lookbacks of a steady Poisson load, the largest swing (rise or fall,
    what the headroom holds) stays within the noise bound in nearly all (the bound is the
    extreme of the lookback's pairs of samples either way, not of one pair), so a smooth load
    keeps no burst headroom."""
    lookback = burst_lookback(startup)
    false_alarms = 0
    for seed in range(40):
        rates = poisson_rates(seed, rate, lookback)
        swing, peak = burst_swing(rates, startup)
        false_alarms += swing > burst_noise(peak, startup)
    assert false_alarms <= 2


@pytest.mark.parametrize("startup", [30.0, 60.0, 120.0, 300.0, 600.0])
@pytest.mark.parametrize("rate", [0.2, 0.5, 3.0, 12.0, 40.0])
def test_the_noise_of_a_steady_load_shows_no_swing_beyond_the_noise_of_its_own_level(
    rate: float, startup: float
) -> None:
    """The same 40 seeded lookbacks of a steady Poisson load, each swing read against the
    noise at its own level (``swing_noise``) rather than the peak's: nearly none is beyond
    it, a quiet load's included (a few arrivals after an empty sample), nor, on the longer
    start-ups, beyond the noise of the moving means (``level_means_per_lead``)."""
    lookback = burst_lookback(startup)
    false_alarms = 0
    for seed in range(40):
        rates = poisson_rates(seed, rate, lookback)
        false_alarms += burst_summary(rates, startup, lambda t: 1.0).beyond_noise > 0
    assert false_alarms <= 2


@pytest.mark.parametrize("startup", [30.0, 120.0])
@pytest.mark.parametrize("rate", [0.5, 3.0, 40.0])
def test_a_history_sampled_every_2_s_shows_no_more_swings_beyond_the_noise(
    rate: float, startup: float
) -> None:
    """Deciding every 2 s, the burst history holds a sample per decision, each the arrivals
    of the last ``rate_sample_seconds``: seven times as many samples, and pairs, as at 15 s,
    overlapping. A steady load shows a swing beyond the noise of its own level no more
    often than at 15 s."""
    window, spacing = DEFAULT_PARAMS.rate_sample_seconds, 2.0
    lookback = burst_lookback(startup)
    false_alarms = 0
    for seed in range(40):
        rng = random.Random(seed)
        arrivals, t = [], rng.expovariate(rate)
        while t < lookback + window:
            arrivals.append(t)
            t += rng.expovariate(rate)
        rates = tuple(
            (
                at,
                (bisect.bisect_right(arrivals, at) - bisect.bisect_right(arrivals, at - window))
                / window,
                4,
            )
            for at in (window + i * spacing for i in range(int(lookback / spacing)))
        )
        false_alarms += burst_summary(rates, startup, lambda t: 1.0).beyond_noise > 0
    assert false_alarms <= 2


def test_a_crowd_from_a_quiet_level_is_held_though_within_the_noise_of_its_peak() -> None:
    """A crowd ramps from 1 to 14 req/s in 90 s and fades over 10 minutes: within the 30 s
    start-up it rose 4.33 req/s, less than Poisson noise shows somewhere in half an hour at a
    steady 14 req/s, but beyond what it shows at the level of that rise (1 to 5.33 req/s),
    unless arrivals come in clusters. The next crowd rises as fast, so that rise is held
    above the rate now."""
    startup, now = 30.0, 1800.0
    rates, rise = crowd_from_a_quiet_level(now)
    summary = burst_summary(rates, startup, lambda t: 1.0)
    assert summary.rise == pytest.approx(rise)
    assert summary.rise < burst_noise(summary.peak, startup)
    assert summary.beyond_noise == summary.rise > swing_noise(1.0, 1.0 + rise, startup)
    # (arrivals scattered 4x Poisson's swing twice as far: there it is within their noise)
    clustered = burst_summary(rates, startup, lambda t: 1.0, dispersion=4.0)
    assert clustered.beyond_noise == 0.0
    need = headroom_need(inputs(startup_seconds=startup), 3.6, rates)
    assert need is not None and need.replicas == need_for(3.6 + rise) > need_for(3.6 * 1.1)
    assert "the largest rise or fall within the 30 s start-up" in need.reason


# --------------------------------------------------------------------------------------------
# Moving means: a level that moved


def test_a_level_that_moved_within_the_noise_of_its_samples_is_held_on_a_long_start_up() -> None:
    """On a 300 s start-up, a level of 4 req/s moved to 7 for five minutes and back: 3 req/s
    is within the noise two 15 s samples show somewhere in an hour, at its level or at the
    peak's, but beyond the noise of two 75 s means. The level comes back as fast as it went,
    and a replica asked for then serves five minutes later: the swing is held above the rate
    now, at its share of it."""
    startup, now = 300.0, 3600.0
    rates = level_that_moved(now)
    assert swing_noise(4.0, 7.0, startup) > 3.0 and burst_noise(7.0, startup) > 3.0
    summary = burst_summary(rates, startup, lambda t: 1.0)
    assert summary.means_of == 75.0
    assert summary.beyond_noise == pytest.approx(3.0) and summary.peak == pytest.approx(7.0)
    need = headroom_need(inputs(startup_seconds=startup), 4.0, rates)
    assert need is not None and need.replicas == need_for(7.0, startup_seconds=startup)
    assert "the largest rise or fall of its 75 s means within the 300 s start-up" in need.reason
    # (on a 60 s start-up a reactive scale-up is a minute late: means of 15 s, the samples')
    assert burst_summary(rates, 60.0, lambda t: 1.0).means_of is None


def test_a_level_that_moved_is_held_through_its_arrivals_noise() -> None:
    """A level of 3 req/s that moved to 4.5 for five minutes, as Poisson counts in 20 draws:
    held above the count the rate now needs in three quarters or more (the samples alone, in
    a quarter: 5 of 20)."""
    startup, now = 300.0, 3600.0
    held = 0
    for seed in range(20):
        rates = level_that_moved(now, 3.0, 4.5, seed)
        need = headroom_need(inputs(startup_seconds=startup), rates[-1][1], rates)
        held += need is not None and need.replicas > need_for(rates[-1][1], startup_seconds=startup)
    assert held >= 15


# --------------------------------------------------------------------------------------------
# The arrivals' scatter


@pytest.mark.parametrize("rate", [0.3, 4.0, 40.0])
def test_poisson_arrivals_show_a_dispersion_of_about_one(rate: float) -> None:
    """Over an hour of Poisson samples, at low and high rates, 20 seeds."""
    found = [
        rate_dispersion(varying_poisson_rates(random.Random(seed), lambda t: rate, 0.0, 3600.0))
        for seed in range(20)
    ]
    assert statistics.median(found) <= 1.3, found
    assert max(found) <= 1.8, found


def test_a_step_or_a_ramp_moves_too_few_pairs_to_look_dispersed() -> None:
    """A step from 1 to 25 req/s and a ramp of 0.02 req/s every second are Poisson between
    their samples: the median pair does not see them."""
    shapes = {
        "step": lambda t: 25.0 if t >= 1800.0 else 1.0,
        "ramp": lambda t: 1.0 + 0.02 * t,
    }
    for name, shape in shapes.items():
        for seed in range(10):
            rates = varying_poisson_rates(random.Random(seed), shape, 0.0, 3600.0)
            assert rate_dispersion(rates) <= 1.8, (name, seed)


@pytest.mark.parametrize("size", [8, 30])
def test_arrivals_in_clusters_show_their_dispersion(size: int) -> None:
    """A cluster of ``size`` requests at once makes a sample's variance ``size`` times
    Poisson's: the estimate finds it within a factor of two below and 2.5 above (a median
    over two clusters a sample takes coarse values)."""
    for seed in range(10):
        rates = clustered_rates(seed, 4.0, size, 3600.0)
        assert size / 2 <= rate_dispersion(rates) <= size * 2.5, (size, seed)


def test_too_few_samples_are_taken_for_poisson() -> None:
    rates = clustered_rates(1, 4.0, 30, 150.0)  # (nine pairs)
    assert rate_dispersion(rates) == 1.0
    assert rate_dispersion(()) == 1.0


def test_the_samples_own_scatter_replaces_the_kept_one() -> None:
    """Once the samples since a restart have enough pairs, theirs is the scatter: Poisson
    arrivals after clustered ones read about 1, whatever was kept."""
    rates = poisson_rates(3, 4.0, 600.0)
    assert rate_dispersion(rates[:10], fallback=25.0) == 25.0  # (nine pairs)
    assert rate_dispersion(rates, fallback=25.0) <= 1.8
