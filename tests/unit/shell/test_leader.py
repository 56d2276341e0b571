"""Leader election's pure parts: expiry judged by observed change on an injected clock, the
records written, and the leadership gate after a freeze. The election itself, between two
processes on a real apiserver, is in ``tests/cluster/test_leader_election.py``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tierra.shell.leader import (
    LeaderElectionSettings,
    LeadershipGate,
    LeaseRecord,
    NotLeaderError,
    held_by_other,
    next_record,
    observe,
    released_record,
)

ME, OTHER = "me_1_aa", "other_2_bb"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def held(holder: str = OTHER, renew_time: str = "2026-11-30T12:00:00.000000Z") -> LeaseRecord:
    return LeaseRecord(holder, 15, "2026-11-30T11:00:00.000000Z", renew_time, 3)


# ------------------------------------------------------------------------------- settings
def test_settings_default_to_client_go_timing() -> None:
    settings = LeaderElectionSettings()
    assert (settings.lease_duration, settings.renew_deadline, settings.retry_period) == (15, 10, 2)
    assert settings.lease_duration_seconds == 15
    assert settings.request_timeout < settings.renew_deadline
    assert LeaderElectionSettings(4.5, 3, 1).lease_duration_seconds == 5


@pytest.mark.parametrize(
    ("lease_duration", "renew_deadline", "retry_period"),
    [(10, 10, 2), (15, 10, 0), (15, 2.4, 2), (5, 10, 2)],
)
def test_settings_refuse_unsafe_timing(
    lease_duration: float, renew_deadline: float, retry_period: float
) -> None:
    with pytest.raises(ValueError):
        LeaderElectionSettings(lease_duration, renew_deadline, retry_period)


# --------------------------------------------------------------------------------- record
def test_record_round_trips_through_a_lease_spec() -> None:
    record = held()
    assert LeaseRecord.from_lease({"spec": record.to_spec()}) == record
    assert LeaseRecord.from_lease({"metadata": {"name": "tierra"}}) == LeaseRecord()


# ----------------------------------------------------------------- expiry by observed change
def test_expiry_counts_from_when_the_record_was_first_seen_not_from_its_timestamps() -> None:
    # renewTime is years old by the wall clock: it does not matter, we only just saw it.
    first = observe(None, held(renew_time="2001-01-01T00:00:00.000000Z"), "10", now=500.0)
    assert held_by_other(first, ME, now=500.0)
    assert held_by_other(first, ME, now=514.9)
    assert not held_by_other(first, ME, now=515.0)


def test_an_unchanged_record_keeps_its_first_sighting_and_a_changed_one_restarts_it() -> None:
    first = observe(None, held(), "10", now=500.0)
    again = observe(first, held(), "11", now=510.0)  # same record (a metadata-only update)
    assert again.seen_at == 500.0 and again.resource_version == "11"
    assert not held_by_other(again, ME, now=515.0)

    renewed = observe(again, held(renew_time="2026-11-30T12:00:02.000000Z"), "12", now=512.0)
    assert renewed.seen_at == 512.0
    assert held_by_other(renewed, ME, now=526.9)
    assert not held_by_other(renewed, ME, now=527.0)


def test_expiry_uses_the_holders_advertised_duration() -> None:
    released = released_record(held(), "2026-11-30T12:00:05.000000Z")
    assert released.holder == "" and released.lease_duration_seconds == 1
    assert not held_by_other(observe(None, released, "13", now=600.0), ME, now=600.0)
    short = LeaseRecord(OTHER, 4, None, "x", 0)
    assert not held_by_other(observe(None, short, "14", now=600.0), ME, now=604.0)


def test_a_free_lease_and_our_own_lease_are_never_held_by_another() -> None:
    assert not held_by_other(observe(None, LeaseRecord(), "1", 0.0), ME, now=0.0)
    assert not held_by_other(observe(None, held(holder=ME), "1", 0.0), ME, now=0.0)


# ---------------------------------------------------------------------- records we write
def test_renewal_keeps_the_term_and_takeover_counts_a_transition() -> None:
    mine = held(holder=ME)
    renewed = next_record(mine, ME, "2026-11-30T12:00:04.000000Z", 15)
    assert renewed.acquire_time == mine.acquire_time and renewed.transitions == 3
    assert renewed.renew_time == "2026-11-30T12:00:04.000000Z"

    taken = next_record(held(), ME, "2026-11-30T12:00:20.000000Z", 15)
    assert taken.holder == ME and taken.transitions == 4
    assert taken.acquire_time == taken.renew_time == "2026-11-30T12:00:20.000000Z"

    after_release = next_record(released_record(held(), "t"), ME, "u", 15)
    assert after_release.transitions == 4 and after_release.lease_duration_seconds == 15


# ---------------------------------------------------------------------------------- gate
def test_gate_is_shut_until_a_term_starts_and_shuts_at_the_renew_deadline() -> None:
    clock = FakeClock(100.0)
    gate = LeadershipGate(renew_deadline=10.0, clock=clock)
    assert not gate.is_open() and gate.remaining() == 0.0
    gate.renewed(100.0)
    clock.now = 109.99
    assert gate.is_open() and gate.remaining() == pytest.approx(0.01)
    clock.now = 110.0
    assert not gate.is_open()


def test_gate_after_a_freeze_refuses_before_any_network_call() -> None:
    clock = FakeClock(100.0)
    gate = LeadershipGate(renew_deadline=10.0, clock=clock)
    gate.renewed(100.0)
    clock.now = 102.0
    gate.renewed(102.0)  # renewing every 2 s
    assert gate.is_open()
    clock.now = 102.0 + 25.0  # SIGSTOP for 25 s, then SIGCONT: only the clock moved
    assert not gate.is_open()
    assert gate.in_term  # the renew loop has not even run yet; the gate already refuses


def test_gate_ignores_an_older_renewal_and_close_ends_the_term() -> None:
    clock = FakeClock(100.0)
    gate = LeadershipGate(renew_deadline=10.0, clock=clock)
    gate.renewed(100.0)
    gate.renewed(95.0)  # a late answer to an earlier request does not shorten the term
    clock.now = 109.0
    assert gate.is_open()
    gate.close()
    assert not gate.is_open() and not gate.in_term


def test_write_timeout_is_capped_at_the_term_left_and_refused_after_it() -> None:
    clock = FakeClock(100.0)
    gate = LeadershipGate(renew_deadline=10.0, clock=clock)
    with pytest.raises(NotLeaderError):
        gate.write_timeout(5.0)
    gate.renewed(100.0)
    assert gate.write_timeout(5.0) == 5.0
    clock.now = 108.0
    assert gate.write_timeout(5.0) == pytest.approx(2.0)
    clock.now = 130.0  # frozen past the deadline
    with pytest.raises(NotLeaderError):
        gate.write_timeout(5.0)


@given(
    st.lists(
        st.tuples(st.floats(0, 30), st.booleans()),  # (time passes, renewal succeeds)
        min_size=1,
        max_size=30,
    )
)
def test_gate_is_open_exactly_within_the_deadline_of_the_latest_renewal(
    steps: list[tuple[float, bool]],
) -> None:
    clock = FakeClock(0.0)
    gate = LeadershipGate(renew_deadline=10.0, clock=clock)
    latest: float | None = None
    for elapsed, succeeded in steps:
        clock.now += elapsed
        if succeeded:
            gate.renewed(clock.now)
            latest = clock.now
        assert gate.is_open() == (latest is not None and clock.now < latest + 10.0)


@given(
    sent=st.floats(0, 1e6),
    commit_delay=st.floats(0, 5),
    observe_delay=st.floats(0, 5),
)
def test_the_leaders_window_ends_before_any_standby_may_take_over(
    sent: float, commit_delay: float, observe_delay: float
) -> None:
    """The leader dates its renewal from *sending* it; a standby from *seeing* it, which is
    later: so the leader stops at least lease_duration - renew_deadline before a takeover."""
    settings = LeaderElectionSettings()
    clock = FakeClock(sent)
    gate = LeadershipGate(settings.renew_deadline, clock)
    gate.renewed(sent)
    record = LeaseRecord(ME, settings.lease_duration_seconds, "a", "r", 0)
    seen = observe(None, record, "7", now=sent + commit_delay + observe_delay)
    standby_may_take_over = seen.expires_at
    margin = settings.lease_duration - settings.renew_deadline
    clock.now = standby_may_take_over - margin + 1e-6  # float rounding
    assert not gate.is_open()
    assert not held_by_other(seen, OTHER, now=standby_may_take_over)
