"""How often Prometheus really scrapes a service's pods, from the timestamps of their samples
(pure, no I/O).

A Tier says how often its Prometheus scrapes (``spec.metrics.scrapeIntervalSeconds``, 15 s
when it says nothing), and every windowed query is sized for it. A Prometheus that scrapes
less often than that answers no ``rate()`` over a window holding one sample. The operator
reads the raw samples of one of the pods' gauges over the last ``LOOKBACK``, and the typical
gap between two of a series' samples is the interval in effect.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

from tierra.api.inference_service import InferenceService
from tierra.core.metrics_presets import Selector

LOOKBACK = "10m"
"""How far back the raw samples are read: two samples even at the 300 s the Tier allows."""

MARGIN = 1.25
"""A measured interval is used only when it is this much longer than the configured one:
scrape jitter, and a slower Prometheus than said is what empties the windows (a faster one
fills them better)."""

#: The gauge whose samples are timed, per preset: one every pod exports from its start.
TIMED_GAUGES = {
    "vllm": "vllm:num_requests_waiting",
    "tgi": "tgi_queue_size",
    "triton": "nv_inference_pending_request_count",
}


def timing_query(service: InferenceService, tier: str | None = None) -> str | None:
    """The range selector whose raw samples say when the pods (in ``tier``, if given) were
    scraped; None for custom queries, whose series the operator does not know."""
    gauge = TIMED_GAUGES.get(service.spec.runtime.metrics_preset)
    if gauge is None:
        return None
    meta = service.metadata
    sel = Selector(namespace=meta.namespace or "default", name=meta.name, tier=tier)
    return f"{gauge}{{{sel.matcher()}}}[{LOOKBACK}]"


def measured_interval(series: Sequence[Sequence[float]]) -> float | None:
    """The (low) median gap between consecutive samples of the same series: a missed scrape
    doubles one gap and does not move it, nor do pods scraped at their own offsets. None
    without two samples in a series."""
    gaps = [
        later - earlier
        for times in series
        for earlier, later in itertools.pairwise(times)
        if later > earlier
    ]
    return statistics.median_low(gaps) if gaps else None


def interval_in_effect(configured: float, measured: float | None) -> float:
    """The interval to size the windows for: the measured one, to the second (scrape configs
    are written in seconds; the samples' times jitter by milliseconds), when it is clearly
    longer than the configured one, else the configured one."""
    if measured is not None and measured > MARGIN * configured:
        return float(round(measured))
    return configured
