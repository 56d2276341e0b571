"""The Argo CD health checks the docs give for both kinds, run in Lua 5.1 (the language of
Argo CD's gopher-lua) against the status shapes the operator writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lupa import lua51

from .test_chart import CHART

SCRIPTS = CHART / "files" / "argocd"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime()
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    source = (SCRIPTS / script).read_text()
    result = runtime.execute(source)
    return str(result["status"]), str(result["message"])


def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def service(generation: int = 2, observed: int | None = 2, *conditions: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "chat", "generation": generation}}
    if observed is not None:
        body["status"] = {"observedGeneration": observed, "conditions": list(conditions)}
    return body


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (service(2, None), ("Progressing", "Waiting for the operator")),
        (
            service(3, 2, cond("Placed", "True"), cond("Ready", "True")),
            ("Progressing", "Waiting for the operator to observe generation 3"),
        ),
        (
            service(2, 2, cond("Placed", "False", "NoCandidate", "no tier satisfies residency eu")),
            ("Degraded", "no tier satisfies residency eu"),
        ),
        (
            service(2, 2, cond("Placed", "True"), cond("Migrating", "True", "", "edge -> central")),
            ("Progressing", "edge -> central"),
        ),
        (
            service(2, 2, cond("Placed", "True"), cond("Ready", "False", "", "1/3 replicas ready")),
            ("Progressing", "1/3 replicas ready"),
        ),
        (
            service(2, 2, cond("Placed", "True"), cond("Ready", "True", "", "3/3 ready")),
            ("Healthy", "3/3 ready"),
        ),
    ],
)
def test_inference_service_health(obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert health("inferenceservice-health.lua", obj) == expected


def tier(*conditions: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "edge", "generation": 1},
        "status": {"observedGeneration": 1, "conditions": list(conditions)},
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"metadata": {"name": "edge", "generation": 1}}, "Progressing"),
        (tier(cond("Reachable", "False", "SecretNotFound", "no Secret")), "Degraded"),
        (tier(cond("Reachable", "True"), cond("Ready", "False", "NoCapacity")), "Degraded"),
        (tier(cond("Reachable", "True"), cond("Ready", "True", "", "2/2 pools")), "Healthy"),
    ],
)
def test_tier_health(obj: dict[str, Any], expected: str) -> None:
    assert health("tier-health.lua", obj)[0] == expected


def test_the_docs_carry_the_tested_scripts() -> None:
    docs = DOCS.read_text()
    for script in ("inferenceservice-health.lua", "tier-health.lua"):
        body = (SCRIPTS / script).read_text()
        indented = "\n".join(f"    {line}" if line else "" for line in body.splitlines())
        assert indented in docs, f"docs/operations.md must embed {script} unchanged"
