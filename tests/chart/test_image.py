"""The Dockerfile cannot be built here (no registry), so what can be checked without building
is: its shape (multi-stage, base pinned by digest, non-root, no build tools left), and that its
entrypoint, the chart's container command and the CLI's parser agree."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tierra.cli import build_parser
from tierra.localfleet.chart import Helm

from .test_chart import CHART, FULL_VALUES

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _args() -> dict[str, str]:
    return dict(
        rest.split("=", 1) for word, rest in _instructions() if word == "ARG" and "=" in rest
    )


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def entrypoint() -> list[str]:
    values = [json.loads(rest) for word, rest in _final_stage() if word == "ENTRYPOINT"]
    assert len(values) == 1, "exactly one ENTRYPOINT, in exec (JSON) form"
    result: list[str] = values[0]
    return result


def test_multi_stage_on_a_base_pinned_by_digest() -> None:
    froms = [rest for word, rest in _instructions() if word == "FROM"]
    assert len(froms) >= 2
    images = [
        re.sub(r"\$\{(\w+)\}", lambda m: _args()[m.group(1)], rest.split()[0]) for rest in froms
    ]
    for image in images:
        assert re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", image), image
    assert any("COPY --from=" in f"{w} {r}" for w, r in _final_stage())


def test_final_stage_runs_as_non_root_without_build_tools() -> None:
    final = _final_stage()
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert int(users[-1].split(":")[0]) > 0
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert "pip uninstall" in runs and all(tool in runs for tool in ("pip", "setuptools", "wheel"))
    assert not re.search(r"apt-get install|apk add|\bgcc\b|build-essential", runs)


def test_entrypoint_is_the_console_script_running_the_operator() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint() == ["tierra", "run"]
    assert scripts["tierra"] == "tierra.cli:main"


@pytest.mark.parametrize("values", [{}, FULL_VALUES], ids=["defaults", "everything-on"])
def test_chart_command_agrees_with_the_entrypoint_and_the_cli(
    tmp_path: Path, values: dict[str, Any]
) -> None:
    objects = Helm(tmp_path).template(CHART, values)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command, args = container["command"], container["args"]
    # The chart overrides the entrypoint with the same program and the same subcommand.
    assert [*command, *args][: len(entrypoint())] == entrypoint()
    # Every flag the chart passes is one `tierra run` accepts, with a value of the right type.
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run"
    assert parsed.namespace == "$(TIERRA_NAMESPACE)"
    env = {e["name"] for e in container["env"]}
    assert "TIERRA_NAMESPACE" in env  # ...which Kubernetes expands from the downward API
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert parsed.metrics_port == ports["metrics"]
    assert parsed.liveness == f"http://0.0.0.0:{ports['health']}/healthz"


def test_the_check_fails_on_a_flag_the_cli_does_not_know() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--metrics-prot", "8080"])
