"""The signals behind one interface (``signals.SCALERS``): each reads one sample and asks for
nothing when the metrics it reads are missing; the recommender takes the max over them, the
first listed on a tie."""

from __future__ import annotations

from tierra.core.autoscale import SCALERS, ScalerParams, ScalerState, ScalingInputs, Signals
from tierra.core.autoscale.load import observe_load
from tierra.core.autoscale.observe import observe
from tierra.core.autoscale.recommender import recommend
from tierra.core.autoscale.sample import Observed, Sample
from tierra_testing.builders import recommender_inputs

PARAMS = ScalerParams(speed_prior=1.0)
NOW = 1000.0


def inputs(signals: Signals) -> ScalingInputs:
    """Two replicas of the builders' chat replica, ready, with these metrics."""
    return recommender_inputs(desired_replicas=2, ready_replicas=2, signals=signals)


def sample(signals: Signals, state: ScalerState | None = None) -> Sample:
    state = state or ScalerState()
    seen = observe(inputs(signals), state, NOW, PARAMS)
    assert isinstance(seen, Observed)
    return Sample(seen, observe_load(seen, state, NOW, PARAMS), state, NOW)


def needs(signals: Signals, state: ScalerState | None = None) -> dict[str, int]:
    at = sample(signals, state)
    found = (scaler(at, PARAMS) for scaler in SCALERS)
    return {need.signal: need.replicas for need in found if need is not None}


def test_the_signals_are_listed_in_the_order_that_breaks_ties() -> None:
    assert [s.__module__.rsplit(".", 1)[-1] for s in SCALERS] == [
        "queue",
        "arrival",
        "headroom",
        "latency",
    ]


def test_no_metrics_of_the_load_asks_nothing_of_any_signal() -> None:
    assert needs(Signals(observed_at=NOW, p95_latency_ms=500.0)) == {}


def test_each_signal_answers_from_the_metrics_it_reads() -> None:
    assert set(needs(Signals(queue_depth=0.0, running=3.0, observed_at=NOW))) == {"queue"}
    assert set(needs(Signals(arrival_rate=4.0, observed_at=NOW))) == {"arrival"}
    # (a burst in the history, 1 -> 10 req/s within the start-up, is held at 1 req/s now)
    history = ScalerState(
        rates=tuple((NOW - 600 + 15 * i, 10.0 if i >= 4 else 1.0, 2) for i in range(8))
    )
    assert set(needs(Signals(arrival_rate=1.0, observed_at=NOW), history)) == {
        "arrival",
        "headroom",
    }
    late = ScalerState(last_scale_up_at=NOW - 3600)
    over = Signals(queue_depth=0.0, running=1.0, p95_latency_ms=5000.0, observed_at=NOW)
    # (p95 2.5x the SLO on 2 ready: feedback doubles them at most)
    assert needs(over, late) == {"queue": 1, "latency": 4}


def test_the_recommendation_is_the_largest_need_and_names_its_signal() -> None:
    state = ScalerState(last_scale_up_at=NOW - 3600)
    over = Signals(queue_depth=0.0, running=1.0, p95_latency_ms=5000.0, observed_at=NOW)
    found = needs(over, state)
    made = recommend(inputs(over), state, NOW, PARAMS)
    assert made.needs == found
    assert made.replicas == max(found.values()) and made.signal == "latency"
