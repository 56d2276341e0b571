"""Scheduled floors: the replicas a known window of load holds (``spec.scaling.schedules``).

A reactive scaler is a start-up time late for any rise; a team that knows when its load comes
(a daily peak, a launch) says so, and the replicas are asked for a start-up time before the
window opens, so that they serve from its first second. Pure: the clock is an argument.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from tierra.api.inference_service import ScalingSchedule


@dataclass(frozen=True)
class ScheduledFloor:
    """The open schedule with the most replicas."""

    replicas: int
    name: str
    opens_at: float
    """When the open window started (or starts, while it is open for the start-up ahead)."""
    closes_at: float
    reason: str


def last_start(schedule: ScalingSchedule, at: float) -> datetime | None:
    """The latest start of ``schedule`` at or before ``at`` (seconds since the epoch), in its
    time zone; None if it has none (or its expression is not cron's)."""
    try:
        whole = int(at // 1)
        local = datetime.fromtimestamp(whole, UTC).astimezone(ZoneInfo(schedule.time_zone))
    except (ValueError, OverflowError, OSError):
        return None
    # (cron starts fall on a local minute's second 0, so every instant of one local minute has
    # the same last start: one evaluation per line, zone and minute, however many services
    # and decisions ask)
    return _last_start_at_minute(schedule.start, schedule.time_zone, whole - local.second)


@functools.lru_cache(maxsize=16384)
def _last_start_at_minute(start: str, time_zone: str, minute: int) -> datetime | None:
    """The latest start of the cron line ``start`` in ``time_zone`` at or before ``minute``
    (seconds since the epoch of a local minute's second 0)."""
    # (plus one second: reverse iteration starts strictly before its datetime)
    try:
        after = datetime.fromtimestamp(minute, UTC).astimezone(ZoneInfo(time_zone))
        return next(CronSim(start, after + timedelta(seconds=1), reverse=True))
    except (CronSimError, StopIteration, ValueError, OverflowError, OSError):
        return None


def next_start(schedule: ScalingSchedule, at: float) -> datetime | None:
    """The first start of ``schedule`` after ``at``, in its time zone; None if it has none."""
    try:
        zone = ZoneInfo(schedule.time_zone)
        return next(
            CronSim(schedule.start, datetime.fromtimestamp(int(at // 1), UTC).astimezone(zone))
        )
    except (CronSimError, StopIteration, ValueError, OverflowError, OSError):
        return None


def scheduled_floor(
    schedules: Sequence[ScalingSchedule], now: float, lead_seconds: float
) -> ScheduledFloor | None:
    """The open schedule with the most replicas at ``now``, or None.

    A window is open from ``lead_seconds`` (the start-up time) before a start of its cron
    expression until ``durationSeconds`` after it: the replicas it holds serve from the start.
    """
    lead = max(lead_seconds, 0.0)
    best: ScheduledFloor | None = None
    for schedule in schedules:
        start = last_start(schedule, now + lead)
        if start is None:
            continue
        opens = start.timestamp()
        closes = opens + schedule.duration_seconds
        if not now < closes:
            continue
        if best is not None and best.replicas >= schedule.min_replicas:
            continue
        local = f"{start:%Y-%m-%d %H:%M} {schedule.time_zone}"
        ahead = f", asked for {lead:g} s ahead for the start-up" if now < opens else ""
        best = ScheduledFloor(
            replicas=schedule.min_replicas,
            name=schedule.name,
            opens_at=opens,
            closes_at=closes,
            reason=(
                f"schedule {schedule.name} holds {schedule.min_replicas} from {local} for "
                f"{schedule.duration_seconds} s{ahead}"
            ),
        )
    return best
