"""SIGTERM tears a pytest run's fixtures down (``tierra_testing.interrupt``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HELD = """
import pathlib, time, pytest

@pytest.fixture
def held():
    yield
    pathlib.Path("torn-down").write_text("yes")

def test_runs_until_stopped(held):
    pathlib.Path("started").write_text("yes")
    time.sleep(60)
"""


def terminated_run(tmp_path: Path, *plugin: str) -> subprocess.CompletedProcess[str]:
    """A run of a test holding a fixture, sent SIGTERM once the test runs."""
    (tmp_path / "test_held.py").write_text(HELD)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, "test_held.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "started").exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
            time.sleep(0.1)
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=30)
    finally:
        run.kill()
        run.wait()
    return subprocess.CompletedProcess(run.args, run.returncode, out)


@pytest.mark.timeout(120)
def test_a_terminated_run_tears_its_fixtures_down(tmp_path: Path) -> None:
    done = terminated_run(tmp_path, "-p", "tierra_testing.interrupt")
    assert (tmp_path / "torn-down").exists(), done.stdout
    assert done.returncode == pytest.ExitCode.INTERRUPTED, done.stdout
    assert "SIGTERM" in done.stdout


@pytest.mark.timeout(120)
def test_without_the_plugin_a_terminated_run_leaves_its_fixtures(tmp_path: Path) -> None:
    done = terminated_run(tmp_path)
    assert not (tmp_path / "torn-down").exists(), done.stdout
    assert done.returncode == -signal.SIGTERM
