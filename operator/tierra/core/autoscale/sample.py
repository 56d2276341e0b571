"""One sample as the signals read it: the replicas and requests observed (``Observed``), the
load now and the burst history (``Load``), and the state from the last call (``Sample``)."""

from __future__ import annotations

from dataclasses import dataclass

from tierra.core.slo_reach import OutOfReach

from .history import BurstHistory
from .model import ScalingInputs
from .state import LatencyProbe, ScalerState, Unhelped


@dataclass(frozen=True)
class Arrivals:
    rate: float | None
    growth: float | None
    probe: tuple[float, float] | None
    segment: tuple[tuple[float, float, float], ...]
    estimate: float | None
    rise: float
    """How much of ``estimate`` is the extrapolated part of a rise within the last interval."""
    intervals: tuple[tuple[float, float, float], ...] = ()
    """(end, arrivals, span) of every scrape interval within ``rate_sample_seconds``."""
    rise_pending: float | None = None
    """What the next interval must show for this one's rise to have lasted (``judge_rise``)."""
    rises: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """How past rises went (``rise_trust``)."""
    trust: float = 1.0
    """How far ``rise`` was believed (``rise_trust``)."""


@dataclass(frozen=True)
class Observed:
    """What one sample says of the replicas and the requests (``observe``)."""

    inputs: ScalingInputs
    """The inputs with the measured request size and the profile scaled by ``speed``."""
    sized: ScalingInputs
    """``inputs`` without a request size while it stands for a handful of requests."""
    running_seen: tuple[tuple[float, float], ...]
    serving: int
    """Ready replicas past their start-up."""
    speed: float
    profile_work: float | None
    sizes: tuple[float, float, float, float] | None
    unreachable: tuple[OutOfReach, ...] | None
    unmeetable: frozenset[str]
    """The goals a running variant misses at any count, or that more replicas did not bring
    closer (``unhelped``): feedback does not chase them."""
    latency_probe: LatencyProbe | None = None
    """The sample the replicas added since are judged against (``tested_feedback``)."""
    unhelped: tuple[Unhelped, ...] = ()
    """The goals the replicas added since a probe did not bring closer."""


@dataclass(frozen=True)
class Load:
    """The requests now and the burst history (``observe_load``)."""

    waiting: float | None
    running: float | None
    arrival: float | None
    """Arrivals now (requests/s): the runtime's rate, or what conservation implies."""
    active: bool
    """Anything waiting, running or arriving."""
    backlogged: bool
    """More waiting than the ready replicas' allowed queue."""
    implied: Arrivals
    rates: tuple[tuple[float, float, int], ...]
    crowds: tuple[tuple[float, float], ...]
    mixes: tuple[tuple[float, float, float], ...]
    history: BurstHistory
    """``rates`` as the signals read them (``burst_history``), read once for all of them."""


@dataclass(frozen=True)
class Sample:
    """What every signal reads of one sample (``signals.Scaler``)."""

    seen: Observed
    load: Load
    state: ScalerState
    """The state from the last call: this sample is not in it (``load`` has its history)."""
    now: float
