"""A pytest plugin: SIGTERM ends a test run as Ctrl-C does.

Python's default SIGTERM ends the process at once, so no fixture tears down: a cancelled CI job
or a ``timeout`` wrapper would leave a test's objects on a shared fleet (a namespace, a service
holding pool units the next run waits for) and its helpers' clean-up unrun. Raised as a
``KeyboardInterrupt`` instead, pytest stops the run and tears every fixture down. A second
SIGTERM ends the process at once, as a second Ctrl-C would, for a teardown that hangs.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import pytest


def _interrupt(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}: tearing the fixtures down")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # (signal handlers can only be set from the main thread)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
