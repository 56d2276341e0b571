"""The burst history's fan-outs (``kept_crowds``): which jumps of what is in the system are
kept while they may still be the largest fan-out, and a fan-out kept through a larger jump
that turned out to be a burst's rate."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierra.core.autoscale import Signals, fan_out, queue_allowance
from tierra.core.autoscale.load import kept_crowds
from tierra_testing.autoscale import STEP, closed_loop, inputs, steady

Crowds = tuple[tuple[float, float], ...]


def _samples(*rates: tuple[float, float]) -> tuple[tuple[float, float, int], ...]:
    return tuple((t, r, 4) for t, r in rates)


# A jump at 300 s and one at 600 s, each with the rate of its sample and of the next one:
# "fell back" after a fan-out, "stayed up" after a burst's first sample.
FELL_BACK_AT_300 = ((300.0, 5.0), (315.0, 1.0))
STAYED_UP_AT_300 = ((300.0, 9.0), (315.0, 9.0))
FELL_BACK_AT_600 = ((600.0, 9.0), (615.0, 1.0))
STAYED_UP_AT_600 = ((600.0, 9.0), (615.0, 9.0))
UNJUDGED_AT_600 = ((600.0, 9.0),)


@pytest.mark.parametrize(
    ("crowds", "rates", "expected"),
    [
        pytest.param(((300.0, 40.0), (600.0, 120.0)), (*FELL_BACK_AT_300, *STAYED_UP_AT_600),
                     ((300.0, 40.0), (600.0, 120.0)),
                     id="a larger later jump that was a rate keeps the fan-out before it"),
        pytest.param(((300.0, 40.0), (600.0, 120.0)), (*FELL_BACK_AT_300, *FELL_BACK_AT_600),
                     ((600.0, 120.0),), id="a larger later fan-out replaces it"),
        pytest.param(((300.0, 40.0), (600.0, 120.0)), (*FELL_BACK_AT_300, *UNJUDGED_AT_600),
                     ((300.0, 40.0), (600.0, 120.0)),
                     id="a larger later jump not yet judged keeps it"),
        pytest.param(((300.0, 40.0), (600.0, 120.0)), (*STAYED_UP_AT_300, *STAYED_UP_AT_600),
                     ((600.0, 120.0),), id="a rate's start goes behind any larger later jump"),
        pytest.param(((300.0, 120.0), (600.0, 40.0)), (*FELL_BACK_AT_300, *FELL_BACK_AT_600),
                     ((300.0, 120.0), (600.0, 40.0)),
                     id="a smaller later fan-out stays: it outlives the larger one"),
        pytest.param(((300.0, 40.0), (600.0, 40.0)), (*FELL_BACK_AT_300, *FELL_BACK_AT_600),
                     ((600.0, 40.0),), id="an equal later fan-out replaces it"),
        pytest.param(((7000.0, 40.0), (7300.0, 120.0)), _samples((7300.0, 9.0), (7315.0, 1.0)),
                     ((7300.0, 120.0),),
                     id="kept by a restart, no sample of it: a fan-out like any"),
        pytest.param((), _samples((300.0, 9.0)), (), id="none"),
    ],
)  # fmt: skip
def test_kept_crowds_keeps_what_can_still_be_the_largest_fan_out(
    crowds: Crowds,
    rates: tuple[tuple[float, float], ...] | tuple[tuple[float, float, int], ...],
    expected: Crowds,
) -> None:
    history = tuple((r[0], r[1], 4) for r in rates)
    assert kept_crowds(crowds, history) == expected


@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 1.0, 5.0, 9.0, 20.0]),  # the sample's arrival rate
            st.one_of(st.none(), st.sampled_from([10.0, 40.0, 60.0, 120.0])),  # its jump
        ),
        max_size=40,
    ),
)
def test_kept_crowds_reads_as_every_jump_would_at_every_sample(
    samples: list[tuple[float, float | None]],
) -> None:
    """Reduced at every sample, the crowds give ``fan_out`` the same largest fan-out, and the
    same larger jump taken for a rate, as every jump kept would, at every sample, whether
    the arrivals scatter like Poisson's or come in clusters."""
    rates: tuple[tuple[float, float, int], ...] = ()
    every: Crowds = ()
    kept: Crowds = ()
    for i, (rate, jump) in enumerate(samples):
        now = i * STEP
        rates = (*rates, (now, rate, 4))
        if jump is not None:
            every, kept = (*every, (now, jump)), (*kept, (now, jump))
        kept = kept_crowds(kept, rates)
        for dispersion in (1.0, 20.0):
            assert _read(fan_out(kept, rates, dispersion)) == _read(
                fan_out(every, rates, dispersion)
            )


def _read(found: tuple[float, float]) -> tuple[float, float]:
    """What the headroom reads of ``fan_out``: the fan-out, and a jump taken for a rate only
    when it is larger (the reason names it then)."""
    crowd, rate_like = found
    return crowd, rate_like if rate_like > crowd else 0.0


def test_a_fan_out_is_held_through_a_later_burst_whose_first_sample_jumped_further() -> None:
    """Poisson-like arrivals at 1 req/s; 60 requests within one sample at 150 s, all running
    (a fan-out: the rate fell back after it); then at 300 s a minute at 9 req/s whose first
    sample filled the running slots with 120 (the burst's rate: it stayed up). The burst's
    rate goes to the rate headroom; the fan-out before it may come again, so the count that
    clears its 60 within the SLO is still held after the burst (the larger jump replaced it,
    was then dismissed as a rate, and nothing held the fan-out)."""

    def sample(now: float) -> tuple[Signals, dict[str, Any]]:
        if now == 150.0:
            return steady(now, 1.0, 60.375), {}
        if now == 300.0:
            return steady(now, 1.0, 120.375), {}
        if 300.0 < now < 360.0:
            return steady(now, 9.0, 120.375), {}
        return steady(now, 1.0, 0.375), {}

    run = closed_loop(sample, 900, current=4)
    crowd_need = math.ceil(60 / queue_allowance(inputs()) - 1e-9)
    later = [rec for t, rec in run.items() if t >= 600.0]
    assert all(rec.replicas >= crowd_need for rec in later), [r.replicas for r in later]
    assert "60 more in the system within one sample (a fan-out)" in later[-1].reason
    assert "a jump of 120" in later[-1].reason
