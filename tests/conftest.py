"""Shared pytest configuration: hypothesis profiles, and SIGTERM tearing fixtures down."""

from __future__ import annotations

import os

from hypothesis import settings

pytest_plugins = ("tierra_testing.interrupt",)

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
