"""Outage rehearsal on the local fleet, without control planes: the state file keeps each
component's command line, /proc states are read right, and stop / freeze / resume / down act
on real (stand-in) processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tierra import cli
from tierra.localfleet import runner
from tierra.localfleet.runner import (
    ClusterState,
    Fleet,
    FleetError,
    UnknownClusterError,
    describe_proc_state,
    parse_proc_state,
    process_state,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
# Ignores SIGTERM (as a hung component might), and says so in its log once it does.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(120)",
]


def _state(name: str = "edge") -> ClusterState:
    return ClusterState(name=name, ports={"kube-apiserver": 1, "etcd": 2})


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        yield fleet
    finally:
        fleet.down(quiet=True, grace=0.5)


def _spawn(fleet: Fleet, states: dict[str, ClusterState], component: str, argv: list[str]) -> int:
    fleet._spawn(states["edge"], states, component, argv, tie_to_parent=True)
    return states["edge"].pids[component]


def _wait_for_log(fleet: Fleet, component: str, text: str) -> None:
    log = fleet.directory / "edge" / "logs" / f"{component}.log"
    deadline = time.monotonic() + 10
    while not (log.exists() and text in log.read_text()):
        assert time.monotonic() < deadline, f"{component} never logged {text!r}"
        time.sleep(0.02)


# ------------------------------------------------------------------------------ /proc state


@pytest.mark.parametrize(
    ("stat", "letter"),
    [
        ("4242 (kube-apiserver) S 1 4242 4242 0 -1 4194560", "S"),
        ("4242 (kube-apiserver) T 1 4242", "T"),
        ("7 (odd) name (x)) t 1 7", "t"),  # the name may hold ") " itself
        ("9 (etcd) Z 1 9", "Z"),
    ],
)
def test_the_state_letter_follows_the_last_parenthesis(stat: str, letter: str) -> None:
    assert parse_proc_state(stat) == letter


@pytest.mark.parametrize("stat", ["", "4242 kube-apiserver", "4242 (kube-apiserver)"])
def test_a_malformed_stat_line_is_an_error(stat: str) -> None:
    with pytest.raises(ValueError):
        parse_proc_state(stat)


def test_state_letters_map_to_frozen_stopped_or_running() -> None:
    assert [describe_proc_state(x) for x in "TtZXRSDI"] == [
        "frozen",
        "frozen",
        "stopped",
        "stopped",
        "running",
        "running",
        "running",
        "running",
    ]


def test_process_state_of_live_frozen_and_exited_processes() -> None:
    assert process_state(None) == "stopped"
    assert process_state(os.getpid()) == "running"
    child = subprocess.Popen(SLEEPER)
    try:
        os.kill(child.pid, signal.SIGSTOP)
        runner._wait_until(lambda: process_state(child.pid) == "frozen", 5, "SIGSTOP")
        os.kill(child.pid, signal.SIGCONT)
        runner._wait_until(lambda: process_state(child.pid) == "running", 5, "SIGCONT")
        child.kill()
        # Not yet reaped: a zombie, which is no longer running.
        runner._wait_until(lambda: process_state(child.pid) == "stopped", 5, "exit")
    finally:
        child.kill()
        child.wait()
    assert process_state(child.pid) == "stopped"


# ------------------------------------------------------------------------------ state file


def test_the_state_file_keeps_command_lines_and_how_processes_were_started(
    tmp_path: Path,
) -> None:
    fleet = Fleet(tmp_path)
    states = {
        "edge": ClusterState(
            name="edge",
            ports={"kube-apiserver": 12345, "etcd": 12346},
            pids={"etcd": 10, "kube-apiserver": 11},
            argv={"kube-apiserver": ["/bin/kube-apiserver", "--secure-port=12345", "--v=1"]},
            tie_to_parent=True,
            owner_pid=4242,
        )
    }
    fleet._save_state(states)
    assert fleet.load_state() == states


def test_a_state_file_from_before_command_lines_were_recorded_still_loads(
    tmp_path: Path,
) -> None:
    (tmp_path / runner.STATE_FILE).write_text(
        json.dumps({"clusters": {"edge": {"name": "edge", "ports": {"etcd": 1}, "pids": {}}}})
    )
    state = Fleet(tmp_path).load_state()["edge"]
    assert (state.argv, state.tie_to_parent, state.owner_pid) == ({}, False, 0)


def test_spawn_records_the_command_line(fleet: Fleet) -> None:
    states = {"edge": _state()}
    _spawn(fleet, states, "kube-apiserver", SLEEPER)
    assert fleet.load_state()["edge"].argv["kube-apiserver"] == SLEEPER


# --------------------------------------------------------------- stop / freeze / resume


def test_stop_freeze_and_resume_act_on_the_recorded_processes(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No real apiserver here: ready as soon as it runs.
    monkeypatch.setattr(Fleet, "_wait_ready", lambda self, state, component, timeout: None)
    states = {"edge": _state()}
    states["edge"].tie_to_parent = True
    states["edge"].owner_pid = os.getpid()
    etcd = _spawn(fleet, states, "etcd", SLEEPER)
    first = _spawn(fleet, states, "kube-apiserver", SLEEPER)
    messages: list[str] = []

    assert fleet.resume_apiserver("edge", log=messages.append) == "running"
    assert "nothing to resume" in messages[-1]

    fleet.freeze_apiserver("edge", log=messages.append)
    assert process_state(first) == "frozen"
    fleet.freeze_apiserver("edge", log=messages.append)  # twice: no error
    assert fleet.resume_apiserver("edge", log=messages.append) == "frozen"
    assert process_state(first) == "running"

    fleet.freeze_apiserver("edge", log=messages.append)
    fleet.stop_apiserver("edge", log=messages.append)  # a frozen process is stopped too
    assert process_state(first) == "stopped"
    assert "kube-apiserver" not in fleet.load_state()["edge"].pids
    with pytest.raises(FleetError, match="resume"):
        fleet.freeze_apiserver("edge")
    fleet.stop_apiserver("edge", log=messages.append)
    assert "already stopped" in messages[-1]

    assert fleet.resume_apiserver("edge", log=messages.append) == "stopped"
    state = fleet.load_state()["edge"]
    second = state.pids["kube-apiserver"]
    assert second != first and process_state(second) == "running"
    assert state.argv["kube-apiserver"] == SLEEPER
    assert process_state(etcd) == "running"  # untouched all along


def test_resume_without_etcd_or_command_line_explains_itself(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Fleet, "_wait_ready", lambda self, state, component, timeout: None)
    states = {"edge": _state()}
    fleet._save_state(states)
    with pytest.raises(FleetError, match="etcd is not running"):
        fleet.resume_apiserver("edge")
    _spawn(fleet, states, "etcd", SLEEPER)
    with pytest.raises(FleetError, match="no recorded kube-apiserver command line"):
        fleet.resume_apiserver("edge")


def test_down_ends_a_frozen_process_that_ignores_sigterm(fleet: Fleet) -> None:
    states = {"edge": _state()}
    stubborn = _spawn(fleet, states, "kube-apiserver", STUBBORN)
    plain = _spawn(fleet, states, "etcd", SLEEPER)
    _wait_for_log(fleet, "kube-apiserver", "ready")
    fleet.freeze_apiserver("edge", log=lambda _: None)
    started = time.monotonic()
    assert sorted(fleet.down(quiet=True, grace=0.5)) == sorted([stubborn, plain])
    assert time.monotonic() - started < 5
    assert process_state(stubborn) == "stopped" and process_state(plain) == "stopped"
    assert fleet.load_state()["edge"].pids == {}


def test_an_unknown_cluster_is_a_clear_error(fleet: Fleet) -> None:
    with pytest.raises(FleetError, match="no fleet"):
        fleet.stop_apiserver("edge")
    fleet._save_state({"edge": _state()})
    with pytest.raises(UnknownClusterError, match=r"'nowhere'.*has edge"):
        fleet.freeze_apiserver("nowhere")


@pytest.mark.parametrize("command", ["stop", "freeze", "resume"])
def test_the_cli_reports_an_unknown_cluster_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    Fleet(tmp_path)._save_state({"edge": _state()})
    assert cli.main(["fleet", command, "nowhere", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown cluster 'nowhere'" in err and "Traceback" not in err


def test_the_cli_reports_a_missing_fleet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["fleet", "resume", "edge", "--dir", str(tmp_path)]) == 1
    assert "no fleet in" in capsys.readouterr().err
