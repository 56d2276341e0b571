"""The shared test builders under the names the core's tests have always imported them by
(``view`` is ``tier_view``). New tests import ``tierra_testing.builders`` directly."""

from __future__ import annotations

from tierra_testing.builders import pool, service, tier, variant
from tierra_testing.builders import tier_view as view

__all__ = ["pool", "service", "tier", "variant", "view"]
