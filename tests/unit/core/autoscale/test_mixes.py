"""The weight of a heavier mix of requests in the burst history, and the rate a heavier mix
came at."""

from __future__ import annotations

import pytest

from tierra.core.autoscale import (
    heavier_mix_peak,
    mix_weighted,
    mix_weights,
)


def test_mix_weights_count_only_a_much_heavier_mix_on_the_same_replicas() -> None:
    rates = ((0.0, 4.0, 2), (15.0, 4.0, 2), (30.0, 4.0, 2), (45.0, 4.0, 2))
    # (at 1000 prefill and 100 decode tokens/s: 3, 2.25, 1.25 and 1 times the latest's work)
    mixes = (
        (0.0, 4400.0, 100.0),
        (15.0, 3050.0, 100.0),
        (30.0, 1250.0, 100.0),
        (45.0, 800.0, 100.0),
    )
    weights = mix_weights(mixes, 1000.0, 100.0)
    assert weights == pytest.approx({0.0: 3.0, 15.0: 2.25})
    weighted = mix_weighted(rates, weights)
    assert [r for _, r, _ in weighted] == pytest.approx([12.0, 9.0, 4.0, 4.0])
    # the same mixes on replicas three times as fast: the same weights (no mix changed)
    assert mix_weights(mixes, 3000.0, 300.0) == pytest.approx(weights)
    assert mix_weighted(rates, {}) == rates
    assert mix_weights((), 1000.0, 100.0) == {}
    assert mix_weights(((45.0, 0.0, 0.0),), 1000.0, 100.0) == {}


def test_the_heavier_mix_peak_is_the_highest_of_the_samples_and_what_a_restart_kept() -> None:
    history = ((0.0, 8.0, 2), (15.0, 9.0, 2), (30.0, 12.0, 2), (45.0, 4.0, 2))
    weights = {0.0: 2.0, 15.0: 2.0}
    assert heavier_mix_peak(history, weights) == (15.0, 9.0)  # (30 s: no heavier mix)
    assert heavier_mix_peak(history, weights, (-60.0, 10.0)) == (-60.0, 10.0)
    assert heavier_mix_peak(history, weights, (-60.0, 5.0)) == (15.0, 9.0)
    assert heavier_mix_peak(history, {}) is None
    assert heavier_mix_peak((), {}, (-60.0, 5.0)) == (-60.0, 5.0)
