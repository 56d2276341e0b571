"""The signals, one per module behind one interface (``Scaler``): each reads the sample and
says what it finds the load needs, or nothing. The recommendation is the max over them, and a
tie goes to the one listed first in ``SCALERS``.

* ``queue``: what is in the system over what a replica holds within the SLO, or what drains
  the backlog there will be when a replica asked now serves;
* ``arrival``: the arrival rate through the M/M/c model (the SLO-safe count);
* ``headroom``: capacity held ahead of bursts a reactive scale-up would be late for;
* ``latency``: feedback from the observed p95 above the SLO.
"""

from __future__ import annotations

from typing import Protocol

from ..model import ScalerParams, SignalNeed
from ..sample import Sample
from . import arrival, headroom, latency, queue


class Scaler(Protocol):
    """One signal: the replicas the sample needs by it, with the reason, or None when it cannot
    tell (a metric it reads is missing) or asks for nothing."""

    def __call__(self, sample: Sample, params: ScalerParams) -> SignalNeed | None: ...


SCALERS: tuple[Scaler, ...] = (
    queue.from_sample,
    arrival.from_sample,
    headroom.from_sample,
    latency.from_sample,
)
"""Every signal, in the order that breaks ties for the reason."""
