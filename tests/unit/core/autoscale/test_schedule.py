"""Scheduled floors: when a window of known load opens and closes, and what it holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tierra.api.inference_service import ScalingSchedule
from tierra.core.autoscale import (
    ScalerState,
    Signals,
    recommend,
    restore_state,
    scaling_inputs,
    status_signals,
)
from tierra.core.autoscale.schedule import _last_start_at_minute, last_start, scheduled_floor
from tierra_testing.builders import service, variant


def schedule(**fields: Any) -> ScalingSchedule:
    body = {
        "name": "peak",
        "start": "0 9 * * MON-FRI",
        "durationSeconds": 3600,
        "minReplicas": 8,
        "timeZone": "Europe/Paris",
        **fields,
    }
    return ScalingSchedule.model_validate(body)


def at(zone: str, *fields: int) -> float:
    return datetime(*fields, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Windows


@pytest.mark.parametrize(
    ("local", "open_"),
    [
        ((2026, 12, 4, 8, 49, 59), False),  # a Friday, before the start-up's lead
        ((2026, 12, 4, 8, 50, 0), True),  # 600 s ahead: the replicas serve from 09:00
        ((2026, 12, 4, 9, 0, 0), True),
        ((2026, 12, 4, 9, 59, 59), True),
        ((2026, 12, 4, 10, 0, 0), False),  # closed after durationSeconds
        ((2026, 12, 5, 9, 30, 0), False),  # Saturday
        ((2026, 12, 7, 8, 55, 0), True),  # Monday, within the lead
    ],
)
def test_a_window_opens_a_start_up_ahead_and_closes_after_its_duration(
    local: tuple[int, ...], open_: bool
) -> None:
    floor = scheduled_floor([schedule()], at("Europe/Paris", *local), lead_seconds=600)
    assert (floor is not None) == open_
    if floor is not None:
        assert floor.replicas == 8
        assert floor.opens_at - 600 <= at("Europe/Paris", *local) < floor.closes_at


def test_the_time_zone_follows_daylight_saving_time() -> None:
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer
    summer = datetime(2026, 7, 3, 7, 30, tzinfo=UTC).timestamp()
    winter = datetime(2026, 12, 4, 7, 30, tzinfo=UTC).timestamp()
    assert scheduled_floor([schedule()], summer, lead_seconds=0) is not None
    assert scheduled_floor([schedule()], winter, lead_seconds=0) is None
    assert scheduled_floor([schedule(timeZone="UTC")], winter, lead_seconds=0) is None


def test_the_open_window_with_the_most_replicas_holds_and_is_named() -> None:
    now = at("Europe/Paris", 2026, 12, 4, 9, 30)
    floor = scheduled_floor(
        [
            schedule(name="office", minReplicas=4),
            schedule(name="launch", start="0 9 4 12 *", minReplicas=12, durationSeconds=7200),
            schedule(name="night", start="0 22 * * *", minReplicas=20),
        ],
        now,
        lead_seconds=300,
    )
    assert floor is not None
    assert (floor.replicas, floor.name) == (12, "launch")
    assert floor.reason == "schedule launch holds 12 from 2026-12-04 09:00 Europe/Paris for 7200 s"


def test_a_window_longer_than_its_period_stays_open() -> None:
    every_hour = schedule(start="0 * * * *", durationSeconds=5400, timeZone="UTC")
    for minute in range(0, 180, 7):
        now = datetime(2026, 12, 4, 10, tzinfo=UTC).timestamp() + 60 * minute
        assert scheduled_floor([every_hour], now, lead_seconds=0) is not None


def test_the_reason_says_when_the_window_is_held_ahead_for_the_start_up() -> None:
    floor = scheduled_floor([schedule()], at("Europe/Paris", 2026, 12, 4, 8, 55), 600)
    assert floor is not None
    assert floor.reason.endswith("asked for 600 s ahead for the start-up")


DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def matches(tick: datetime, minutes: set[int], hours: set[int], days: set[int]) -> bool:
    weekday = (tick.weekday() + 1) % 7  # cron counts from Sunday
    return tick.minute in minutes and tick.hour in hours and weekday in days


@settings(max_examples=300, deadline=None)
@given(
    minutes=st.sets(st.integers(0, 59), min_size=1, max_size=3),
    hours=st.sets(st.integers(0, 23), min_size=1, max_size=3),
    days=st.sets(st.integers(0, 6), min_size=1, max_size=7),
    zone=st.sampled_from(["UTC", "Asia/Kolkata", "America/Sao_Paulo"]),
    offset=st.integers(0, 14 * 86400),
    lead=st.sampled_from([0, 30, 300, 600]),
    duration=st.integers(60, 3 * 3600),
    nearby=st.floats(-1.2, 1.2),
)
def test_open_exactly_when_a_start_lies_within_the_lead_or_the_duration(
    minutes: set[int],
    hours: set[int],
    days: set[int],
    zone: str,
    offset: int,
    lead: int,
    duration: int,
    nearby: float,
) -> None:
    """Against every minute of the zone's wall clock around ``now`` (zones without daylight
    saving time in 2026, where cron's wall-clock minutes are all real and distinct), ``now``
    drawn around a start: from a little before its lead to a little after its window."""
    expression = (
        f"{','.join(map(str, sorted(minutes)))} {','.join(map(str, sorted(hours)))} * * "
        f"{','.join(DAYS[d] for d in sorted(days))}"
    )
    rule = schedule(start=expression, durationSeconds=duration, timeZone=zone, minReplicas=3)
    zone_info = ZoneInfo(zone)
    tick = datetime.fromtimestamp(datetime(2026, 1, 5, tzinfo=UTC).timestamp() + offset, zone_info)
    tick = tick.replace(second=0)
    while not matches(tick, minutes, hours, days):
        tick += timedelta(minutes=1)
    span = lead + duration
    now = (
        tick.timestamp() - lead + nearby * span
        if nearby >= 0
        else tick.timestamp() - lead + nearby * 120
    )
    expected = False
    candidate = datetime.fromtimestamp((now - duration) // 60 * 60, zone_info)
    while candidate.timestamp() <= now + lead:
        opens = candidate.timestamp() - lead
        if matches(candidate, minutes, hours, days) and opens <= now < opens + lead + duration:
            expected = True
            break
        candidate += timedelta(minutes=1)
    assert (scheduled_floor([rule], now, lead) is not None) == expected


def test_a_start_is_found_within_the_local_minute_of_a_zone_offset_by_seconds() -> None:
    """Monrovia ran at -00:44:30 until 1972: its 09:00 start is at 09:44:30 UTC, so the
    instants of one UTC minute lie on both sides of it (a cache keyed by the UTC minute
    would give one answer for both)."""
    rule = schedule(start="0 9 * * *", timeZone="Africa/Monrovia")
    before, after = (
        at("Africa/Monrovia", 1960, 6, 1, 8, 59, 50),
        at("Africa/Monrovia", 1960, 6, 1, 9, 0, 10),
    )
    assert before // 60 == after // 60
    first, second = last_start(rule, before), last_start(rule, after)
    assert first is not None and second is not None
    assert (first.day, second.day) == (31, 1) and second.timestamp() == before + 10


def test_cron_is_evaluated_once_per_line_zone_and_minute() -> None:
    """A decision every few seconds for many services asks the same minute again and again."""
    rules = [schedule(name="peak"), schedule(name="batch", start="*/5 * * * *")]
    _last_start_at_minute.cache_clear()
    minute = at("Europe/Paris", 2026, 12, 4, 9, 30, 0)
    for second in range(0, 60, 5):
        for rule in rules:
            scheduled_floor([rule, rule], minute + second, 0)
    assert _last_start_at_minute.cache_info().misses == 2


# --------------------------------------------------------------------------------------------
# The spec


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": "61 * * * *"}, "not a cron expression (Bad minute)"),
        ({"start": "0 9 * *"}, "String should match pattern"),
        ({"start": "0 9 31 2 *"}, "not a cron expression (Bad day-of-month)"),
        ({"timeZone": "Mars/Olympus_Mons"}, "not a time zone of the IANA database"),
        ({"timeZone": "../../etc/passwd"}, "String should match pattern"),
        ({"timeZone": "/etc/localtime"}, "String should match pattern"),
        ({"durationSeconds": 30}, "greater than or equal to 60"),
        ({"minReplicas": 0}, "greater than or equal to 1"),
    ],
)
def test_a_bad_schedule_is_refused_with_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        schedule(**fields)
    assert message in str(caught.value)


def chat(replicas: int | None = None, **scaling: Any) -> Any:
    manual = {} if replicas is None else {"replicas": replicas}
    return service(
        variants=[variant("l4", startup=300)],
        scaling={"minReplicas": 1, "maxReplicas": 10, **scaling},
        **manual,
    )


def test_an_open_window_raises_the_floor_and_keeps_the_service_from_zero() -> None:
    spec = chat(
        minReplicas=0,
        scaleToZero=True,
        schedules=[{"name": "peak", "start": "0 9 * * *", "durationSeconds": 3600,
                    "minReplicas": 6}],
    )  # fmt: skip
    before = datetime(2026, 12, 4, 8, 54, 59, tzinfo=UTC).timestamp()
    ahead = datetime(2026, 12, 4, 8, 55, tzinfo=UTC).timestamp()  # 300 s: the variant's start-up
    closed = scaling_inputs(
        spec, "l4", desired_replicas=0, ready_replicas=0, signals=None, now=before
    )
    opened = scaling_inputs(
        spec, "l4", desired_replicas=0, ready_replicas=0, signals=None, now=ahead
    )
    assert (closed.min_replicas, closed.scale_to_zero, closed.floor_reason) == (0, True, None)
    assert (opened.min_replicas, opened.scale_to_zero) == (6, False)
    assert opened.floor_reason is not None and "schedule peak holds 6" in opened.floor_reason


def test_manual_mode_ignores_schedules_and_the_floor_stays_within_max_replicas() -> None:
    rules = [{"name": "peak", "start": "* * * * *", "durationSeconds": 600, "minReplicas": 10}]
    now = datetime(2026, 12, 4, 9, tzinfo=UTC).timestamp()
    manual = chat(replicas=2, schedules=rules)
    inputs = scaling_inputs(
        manual, "l4", desired_replicas=2, ready_replicas=2, signals=None, now=now
    )
    assert (inputs.min_replicas, inputs.floor_reason) == (1, None)
    capped = chat(maxReplicas=10, schedules=rules)
    inputs = scaling_inputs(
        capped, "l4", desired_replicas=2, ready_replicas=2, signals=None, now=now
    )
    assert inputs.min_replicas == 10


# --------------------------------------------------------------------------------------------
# The recommender under a schedule


def test_a_window_scales_up_ahead_of_its_start_and_back_down_after_it() -> None:
    """Idle traffic: 1 replica, 6 from a start-up before 09:00 until 10:00, then back to 1
    once the scale-down delay has seen the lower need; with metrics missing the floor holds
    too, and the reason names the schedule."""
    spec = chat(
        scaleDownDelaySeconds=120,
        schedules=[{"name": "peak", "start": "0 9 * * *", "durationSeconds": 3600,
                    "minReplicas": 6}],
    )  # fmt: skip
    start = datetime(2026, 12, 4, 8, 50, tzinfo=UTC).timestamp()
    state, current, counts = ScalerState(), 1, {}
    for step in range(0, 80 * 60, 15):
        now = start + step
        quiet = Signals(queue_depth=0, running=0, arrival_rate=0.2, observed_at=now)
        metrics = None if 25 * 60 <= step < 30 * 60 else quiet
        inputs = scaling_inputs(
            spec, "l4", desired_replicas=current, ready_replicas=current, signals=metrics, now=now
        )
        rec = recommend(inputs, state, now)
        if rec.replicas != current:
            counts[step] = (rec.replicas, rec.reason)
        if metrics is None:
            assert rec.replicas == 6, rec.reason
        state, current = rec.state, rec.replicas
    (up, (n_up, why_up)), (down, (n_down, _)) = counts.items()
    assert (up, n_up) == (5 * 60, 6)  # 08:55, the variant's 300 s ahead of 09:00
    assert why_up.startswith("scale up 1 -> 6: schedule peak holds 6 from 2026-12-04 09:00 UTC")
    assert n_down == 1 and 70 * 60 <= down <= 70 * 60 + 120 + 15  # 10:00 + the delay


def run_day(
    spec: Any,
    metrics_from: float | None,
    *,
    restart_at: float | None = None,
    minutes: int = 80,
) -> dict[float, int]:
    """Steps of 15 s from 08:50 UTC: the count after each (metrics from ``metrics_from``
    seconds into the day, if ever; a restart from what status keeps at ``restart_at``)."""
    start = datetime(2026, 12, 4, 8, 50, tzinfo=UTC).timestamp()
    state, current, counts = ScalerState(), 1, {}
    for step in range(0, minutes * 60, 15):
        now = start + step
        quiet = Signals(queue_depth=0, running=0, arrival_rate=0.2, observed_at=now)
        metrics = quiet if metrics_from is not None and step >= metrics_from else None
        if step == restart_at:
            kept = status_signals(state, 300.0)
            state = restore_state(current, now, last_scale_at=now - 60, signals=kept)
        inputs = scaling_inputs(
            spec, "l4", desired_replicas=current, ready_replicas=current, signals=metrics, now=now
        )
        rec = recommend(inputs, state, now)
        state, current = rec.state, rec.replicas
        counts[step] = current
    return counts


SIX_AT_NINE = [{"name": "peak", "start": "0 9 * * *", "durationSeconds": 3600, "minReplicas": 6}]


def test_without_metrics_a_window_goes_back_to_what_the_hold_kept() -> None:
    """A service with no metrics source uses schedules as a cron scaler: up for the window,
    back to the count it held once the window closes (a hold never scales down on missing
    data, but what it raised for a floor is the floor's)."""
    counts = run_day(chat(schedules=SIX_AT_NINE), metrics_from=None)
    assert counts[0] == 1 and counts[5 * 60] == 6 and counts[69 * 60 + 45] == 6
    assert counts[70 * 60] == 1


def test_metrics_lost_within_a_window_keep_its_count_after_it() -> None:
    """Nothing measured since 09:30, when 6 ran: the load then may need them."""
    counts = run_day_with_loss(chat(schedules=SIX_AT_NINE), lost_at=40 * 60)
    assert counts[39 * 60] == 6 and counts[70 * 60] == 6 and counts[79 * 60] == 6


def run_day_with_loss(spec: Any, lost_at: float) -> dict[float, int]:
    start = datetime(2026, 12, 4, 8, 50, tzinfo=UTC).timestamp()
    state, current, counts = ScalerState(), 1, {}
    for step in range(0, 80 * 60, 15):
        now = start + step
        quiet = Signals(queue_depth=0, running=0, arrival_rate=0.2, observed_at=now)
        inputs = scaling_inputs(
            spec,
            "l4",
            desired_replicas=current,
            ready_replicas=current,
            signals=None if step >= lost_at else quiet,
            now=now,
        )
        rec = recommend(inputs, state, now)
        state, current = rec.state, rec.replicas
        counts[step] = current
    return counts


def test_a_restart_within_a_window_without_metrics_still_goes_back_after_it() -> None:
    counts = run_day(chat(schedules=SIX_AT_NINE), metrics_from=None, restart_at=30 * 60)
    assert counts[30 * 60] == 6 and counts[70 * 60] == 1
