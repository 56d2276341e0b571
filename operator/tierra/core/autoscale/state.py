"""What the recommender carries from one call to the next, and what it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

from tierra.core.slo_reach import OutOfReach

Mode = Literal["auto", "manual", "hold"]


class LatencyProbe(NamedTuple):
    """The first settled sample over one goal, against which the replicas added since, by
    any signal, are judged (``tested_feedback``)."""

    at: float
    ready: int
    """Replicas ready then."""
    ratio: float
    """The goal's p95 over its SLO then."""
    goal: str
    arrival: float | None
    """Arrivals then (req/s): the replicas added are judged per request arriving."""
    met_since: float | None = None
    """Since when the goal has been met (the probe ends once that is a latency window)."""


class Unhelped(NamedTuple):
    """A goal over its SLO that the replicas added since its probe did not bring closer
    (``tested_feedback``): not chased with replicas until met again."""

    goal: str
    ratio: float
    """Its p95 over its SLO when judged."""
    ready: int
    """Replicas ready then."""
    probe_ratio: float
    """Its ratio at the probe."""
    probe_ready: int
    """Replicas ready at the probe."""
    floor: float
    """The least ratio no count removes, from the two."""
    met_since: float | None = None
    """Since when the goal has been met: a verdict ends once it is met for a latency window
    (a p95 at the edge of a mix's slowest requests dips under the goal now and then)."""

    @property
    def seen(self) -> str:
        return (
            f"x{self.ratio:.2f} on {self.ready} ready, x{self.probe_ratio:.2f} on "
            f"{self.probe_ready}: at least x{self.floor:.2f} is the requests' own time"
        )


@dataclass(frozen=True)
class ScalerState:
    """What the recommender carries from one call to the next: the shell keeps it in memory,
    and after a restart ``restore_state`` rebuilds it from status."""

    last_replicas: int | None = None
    """The last recommendation made with metrics (or the manual count): what a hold keeps."""
    last_change_at: float | None = None
    last_scale_up_at: float | None = None
    starting: tuple[tuple[float, int], ...] = ()
    """(when asked, replicas) of each scale-up of the last ``startupSeconds`` (+
    ``ready_lag_seconds``), oldest first, less what scale-downs took back (newest first, as a
    ReplicaSet removes unready pods first): their replicas may be Ready before they serve, and
    each batch serves a start-up time after its own scale-up."""
    asked_rates: tuple[tuple[float, float], ...] = ()
    """(when asked, arrivals then) of a batch of ``starting`` a restart restored: the burst
    history's sample of its scale-up was not kept, but its rate was (``still_asked_for``)."""
    forecast_asks: tuple[float, ...] = ()
    """When each batch of ``starting`` that a ramp's forecast asked for was asked for (the
    others were asked for by the arrivals then, ``still_asked_for``). Not kept in status:
    after a restart the restored batch counts as the arrivals'."""
    window: tuple[tuple[float, int], ...] = ()
    """Recent (time, need at 110 % of the load) samples within ``scaleDownDelaySeconds``,
    reduced to those that can still be the window's max (needs strictly decreasing), so its
    size is bounded by the number of distinct needs; ``window[0]`` is the window's max."""
    window_since: float | None = None
    """Start of the current unbroken run of observations (None after a gap or manual mode)."""
    idle_since: float | None = None
    """Since when nothing has been waiting, running or arriving."""
    metrics_missing_since: float | None = None
    hold_base: int | None = None
    """While metrics are missing: the count held under any floor (``_hold``), so that a
    schedule's window that closes during the hold goes back to it."""
    backlog_at: float | None = None
    """Last time more was waiting than the ready replicas' allowed queue."""
    backlog_probe: tuple[float, float] | None = None
    """(time, waiting + running) of the last sample the growth is measured from (re-anchored
    every ``growth_min_seconds`` or more): how fast the system fills tells, during a backlog,
    the arrivals the completions rate does not yet show, from the very first backlogged
    sample."""
    backlog_growth: float | None = None
    """The backlog's last measured growth (requests/s, negative while it drains)."""
    segment: tuple[tuple[float, float, float], ...] = ()
    """(end, arrivals, span) of the last scrape intervals that agree with each other
    (``interval_rate``): their pooled rate is the arrivals now."""
    interval_rate: float | None = None
    """The arrivals now, as of the last scrape interval (kept until the next scrape)."""
    interval_rise: float = 0.0
    """The part of ``interval_rate`` extrapolated from a rise within the last interval."""
    intervals: tuple[tuple[float, float, float], ...] = ()
    """(end, arrivals, span) of every scrape interval that ends within ``rate_sample_seconds``,
    agreeing or not: their rate is the burst history's sample, the same window whatever the
    scrape interval."""
    rise_pending: float | None = None
    """The rate (req/s) the next scrape interval must show for the rise the last one showed
    to have lasted: half-way from the rate before it to the rising interval's (``judge_rise``)."""
    rises: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """(lasted, faded, as of when): the rises the next interval kept at least half of, and
    those it did not, each weighing half as much every ``rise_memory_seconds``
    (``rise_trust``)."""
    sizes: tuple[float, float, float, float] | None = None
    """(mean prompt tokens, mean output tokens, completions they stand for, when): the
    smoothed request size (``smoothed_sizes``)."""
    running_seen: tuple[tuple[float, float], ...] = ()
    """(scrape time, requests running) over the last ``rate_window_seconds``, one per scrape:
    what was in flight at the start of the token counters' window (``request_sizes``)."""
    rates: tuple[tuple[float, float, int], ...] = ()
    """(time, arrival-rate estimate, serving replicas) of the samples of the last
    ``burst_lookback``: the burst headroom and the mean serving replicas of the
    rate window come from them."""
    restored_burst: tuple[float, float, float, float, float, float] | None = None
    """(time, largest jump, largest modest swing, its share of its level, peak, largest swing
    beyond the noise at its own level) of the burst history a restart rebuilt from status
    (``restore_state``), each at its weight then: held beside the samples since, fading from
    that time (``burst_summary``)."""
    restored_edges: tuple[tuple[float, float], ...] = ()
    """(time, rate) of the highest and lowest samples within a start-up before the restart
    (``restore_state``): they pair with the samples since into the swings (only there, not
    the arrival rate or the ramp), so a fall or a rise that spans the restart is one."""
    restored_dispersion: float | None = None
    """The arrivals' scatter (``rate_dispersion``) a restart rebuilt from status: the ramp
    test's until the samples since have enough pairs to read their own."""
    restored_mix_peak: tuple[float, float] | None = None
    """(time, rate) of the heaviest mix's peak (``heavier_mix_peak``) a restart rebuilt from
    status: held whole until it is older than the burst lookback."""
    mixes: tuple[tuple[float, float, float], ...] = ()
    """(time, mean prompt tokens, mean output tokens) of the burst history's samples whose
    request size was known (``mix_weighted``)."""
    crowds: tuple[tuple[float, float], ...] = ()
    """(time, requests) of the jumps of what is in the system between two samples that the
    running slots took in (no backlog) within ``burst_lookback``, reduced to those that can
    still be the largest fan-out or the largest jump (``kept_crowds``): the largest crowd a
    fan-out brought at once."""
    speed: float = 1.0
    """Online estimate of the replicas' real service rate as a multiple of the profile
    (``speed_prior`` until ``speed_at`` is set)."""
    speed_at: float | None = None
    """When ``speed`` was last updated."""
    work: float | None = None
    """The mean request's work (seconds alone on a replica, at the profile) last believed."""
    suspect_at: float | None = None
    """When an implausible sample was set aside (the next one confirms or clears it)."""
    out_of_reach: tuple[OutOfReach, ...] | None = None
    """The goals a running variant cannot meet for the mean request (``out_of_reach``); None
    while the request size is unknown. Rebuilt from the first sample with a known size."""
    latency_probe: LatencyProbe | None = None
    """The first settled sample over a goal since it was last met for a latency window:
    whether the replicas added since brought the goal closer (``tested_feedback``)."""
    unhelped: tuple[Unhelped, ...] = ()
    """The goals over the SLO that a tested latency scale-up left as far above it: not chased
    with replicas until met again."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "lastReplicas": self.last_replicas,
            "lastChangeAt": self.last_change_at,
            "lastScaleUpAt": self.last_scale_up_at,
            "starting": [[t, n] for t, n in self.starting],
            "askedRates": [list(a) for a in self.asked_rates],
            "forecastAsks": list(self.forecast_asks),
            "window": [[t, need] for t, need in self.window],
            "windowSince": self.window_since,
            "idleSince": self.idle_since,
            "metricsMissingSince": self.metrics_missing_since,
            "holdBase": self.hold_base,
            "backlogAt": self.backlog_at,
            "backlogProbe": list(self.backlog_probe) if self.backlog_probe else None,
            "backlogGrowth": self.backlog_growth,
            "segment": [list(x) for x in self.segment],
            "runningSeen": [list(x) for x in self.running_seen],
            "sizes": list(self.sizes) if self.sizes else None,
            "intervalRate": self.interval_rate,
            "intervalRise": self.interval_rise,
            "intervals": [list(x) for x in self.intervals],
            "risePending": self.rise_pending,
            "rises": list(self.rises),
            "rates": [[t, rate, ready] for t, rate, ready in self.rates],
            "restoredBurst": list(self.restored_burst) if self.restored_burst else None,
            "restoredEdges": [list(e) for e in self.restored_edges],
            "restoredDispersion": self.restored_dispersion,
            "restoredMixPeak": list(self.restored_mix_peak) if self.restored_mix_peak else None,
            "mixes": [list(m) for m in self.mixes],
            "crowds": [[t, n] for t, n in self.crowds],
            "speed": self.speed,
            "speedAt": self.speed_at,
            "work": self.work,
            "suspectAt": self.suspect_at,
            "outOfReach": None
            if self.out_of_reach is None
            else [asdict(o) for o in self.out_of_reach],
            "latencyProbe": list(self.latency_probe) if self.latency_probe else None,
            "unhelped": [list(u) for u in self.unhelped],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ScalerState:
        """The state from ``to_dict``'s output; missing keys take their defaults."""
        data = data or {}

        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        last = data.get("lastReplicas")
        base = data.get("holdBase")
        probe = data.get("backlogProbe")
        tested = data.get("latencyProbe")
        return cls(
            last_replicas=None if last is None else int(last),
            last_change_at=number("lastChangeAt"),
            last_scale_up_at=number("lastScaleUpAt"),
            starting=tuple((float(t), int(n)) for t, n in data.get("starting") or ()),
            asked_rates=tuple((float(t), float(r)) for t, r in data.get("askedRates") or ()),
            forecast_asks=tuple(float(t) for t in data.get("forecastAsks") or ()),
            window=tuple((float(t), int(need)) for t, need in data.get("window") or ()),
            window_since=number("windowSince"),
            idle_since=number("idleSince"),
            metrics_missing_since=number("metricsMissingSince"),
            hold_base=None if base is None else int(base),
            backlog_at=number("backlogAt"),
            backlog_probe=(float(probe[0]), float(probe[1])) if probe else None,
            backlog_growth=number("backlogGrowth"),
            segment=tuple((float(t), float(n), float(d)) for t, n, d in data.get("segment") or ()),
            running_seen=tuple((float(t), float(n)) for t, n in data.get("runningSeen") or ()),
            sizes=_four(data.get("sizes")),
            interval_rate=number("intervalRate"),
            interval_rise=float(data.get("intervalRise") or 0.0),
            intervals=tuple(
                (float(t), float(n), float(d)) for t, n, d in data.get("intervals") or ()
            ),
            rise_pending=number("risePending"),
            rises=_three(data.get("rises")) or (0.0, 0.0, 0.0),
            rates=tuple(
                (float(t), float(rate), int(ready)) for t, rate, ready in data.get("rates") or ()
            ),
            restored_burst=_burst(data.get("restoredBurst")),
            restored_edges=tuple((float(t), float(r)) for t, r in data.get("restoredEdges") or ()),
            restored_dispersion=number("restoredDispersion"),
            restored_mix_peak=_two(data.get("restoredMixPeak")),
            mixes=tuple((float(t), float(p), float(o)) for t, p, o in data.get("mixes") or ()),
            crowds=tuple((float(t), float(n)) for t, n in data.get("crowds") or ()),
            speed=float(data.get("speed") or 1.0),
            speed_at=number("speedAt"),
            work=number("work"),
            suspect_at=number("suspectAt"),
            out_of_reach=None
            if data.get("outOfReach") is None
            else tuple(OutOfReach(**o) for o in data["outOfReach"]),
            latency_probe=LatencyProbe(
                float(tested[0]),
                int(tested[1]),
                float(tested[2]),
                str(tested[3]),
                None if tested[4] is None else float(tested[4]),
                _number_or_none(tested[5]) if len(tested) > 5 else None,
            )
            if tested
            else None,
            unhelped=tuple(
                Unhelped(str(g), float(r), int(n), float(pr), int(pn), float(f), _number_or_none(m))
                for g, r, n, pr, pn, f, m in data.get("unhelped") or ()
            ),
        )


def _number_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _burst(value: Any) -> tuple[float, float, float, float, float, float] | None:
    """A restored burst summary; one of five (a version that kept no swing beyond the noise
    at its own level) with none."""
    if not value or len(value) not in (5, 6):
        return None
    a, b, c, d, e, f = (*(float(x) for x in value), 0.0)[:6]
    return a, b, c, d, e, f


def _two(value: Any) -> tuple[float, float] | None:
    if not value or len(value) != 2:
        return None
    a, b = (float(x) for x in value)
    return a, b


def _three(value: Any) -> tuple[float, float, float] | None:
    if not value or len(value) != 3:
        return None
    a, b, c = (float(x) for x in value)
    return a, b, c


def _four(value: Any) -> tuple[float, float, float, float] | None:
    if not value or len(value) != 4:
        return None
    a, b, c, d = (float(x) for x in value)
    return a, b, c, d


@dataclass(frozen=True)
class Recommendation:
    """The replicas to run, why, and the state for the next call."""

    replicas: int
    reason: str
    mode: Mode
    metrics_available: bool
    state: ScalerState
    needs: Mapping[str, int] = field(default_factory=dict)
    """Each signal's need, for the signals that could be computed."""
    signal: str | None = None
    """The signal whose need won (None when none was computed)."""
    keeps: int | None = None
    """What this sample keeps against a scale-down: the largest of its signals' needs at the
    top of the deadband (``SignalNeed.high``). A scale-down goes to the largest of these over
    ``scaleDownDelaySeconds``. None when no signal was computed."""
    cancels: int = 0
    """Replicas still starting that this scale-down removes before they serve (asked for
    within the last start-up time)."""
    beyond_max: int | None = None
    """The count the signals ask for when it is above ``maxReplicas``, which holds the count
    below it: the requests beyond what ``maxReplicas`` serve wait (the ScalingLimited
    condition). None when the need is within the bounds, or no automatic decision was made."""
