"""``tierra simulate``: reads a trace CSV and a fleet directory, prints JSON or a table, and
writes PNG plots."""

from __future__ import annotations

import datetime
import itertools
import json
import random
import shutil
from pathlib import Path

import pytest

from tierra.lab.simulate import main, read_fleet, read_trace
from tierra.lab.simulation import parse_policies, simulate

EXAMPLE_FLEET = Path(__file__).resolve().parents[3] / "examples" / "simulate"


def write_trace(path: Path, seconds: float = 240.0, seed: int = 1) -> Path:
    """An Azure-format trace (BOM, 7-digit fractions) at about 5 req/s."""
    rng = random.Random(seed)
    start, t, lines = 1_700_000_000.0, 0.0, ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    while t < seconds:
        t += rng.expovariate(5.0)
        whole = int(start + t)
        stamp = datetime.datetime.fromtimestamp(whole, tz=datetime.UTC)
        fraction = f"{(start + t) - whole:.7f}"[2:]
        lines.append(
            f"{stamp:%Y-%m-%d %H:%M:%S}.{fraction},{rng.randint(200, 2000)},{rng.randint(20, 400)}"
        )
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_trace_is_relative_to_the_first_request(tmp_path: Path) -> None:
    trace = read_trace(write_trace(tmp_path / "t.csv"))
    assert trace[0].arrival == 0.0
    assert all(a.arrival <= b.arrival for a, b in itertools.pairwise(trace))
    assert 800 < len(trace) < 1600
    assert len(read_trace(tmp_path / "t.csv", duration=60.0)) < len(trace) / 3


def test_json_output_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "trace.csv", seconds=180.0)
    plots = tmp_path / "plots"
    code = main(
        [
            "--trace", str(trace),
            "--fleet", str(EXAMPLE_FLEET),
            "--policy", "tierra,hpa:2,keda:2,static-peak,oracle",
            "--output", "json",
            "--plot", str(plots),
        ]
    )  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in rows[:2]] == ["tierra", "hpa"]
    for row in rows:
        for key in (
            "policy", "requests", "within_slo", "p95_latency_ms", "p99_latency_ms",
            "accelerator_hours", "cost", "scale_events",
        ):  # fmt: skip
            assert key in row
        assert 0 <= row["within_slo"] <= 1
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert pngs == ["chat-conv.png"]
    assert all((plots / name).read_bytes()[:4] == b"\x89PNG" for name in pngs)


def test_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "trace.csv", seconds=120.0)
    assert (
        main(["--trace", str(trace), "--fleet", str(EXAMPLE_FLEET), "--policy", "tierra,hpa:2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "POLICY" in out and "tierra" in out and "hpa:2" in out
    assert "chat-conv on regional/l4/l4" in out


def test_a_scrape_lag_delays_every_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = read_trace(write_trace(tmp_path / "trace.csv", seconds=120.0))
    tiers, services = read_fleet(EXAMPLE_FLEET)
    chat = next(s for s in services if s.metadata.name == "chat-conv")
    for lag in (0.0, 4.0):
        (run,) = simulate(chat, tiers, trace, parse_policies("tierra"), scrape_lag=lag)
        assert [p.time for p in run.timeline[:2]] == [15.0 + lag, 30.0 + lag]
    args = ["--trace", str(tmp_path / "trace.csv"), "--fleet", str(EXAMPLE_FLEET)]
    assert main([*args, "--policy", "tierra", "--scrape-lag", "2.5"]) == 0
    assert "tierra" in capsys.readouterr().out
    assert main([*args, "--scrape-lag", "20"]) == 2
    assert "--scrape-lag 20 is outside 0 to 15 s" in capsys.readouterr().err


def test_errors_are_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "trace.csv", seconds=30.0)
    assert main(["--trace", str(trace), "--fleet", str(EXAMPLE_FLEET), "--policy", "nope"]) == 2
    assert "unknown policy" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--trace", str(trace), "--fleet", str(empty)]) == 2
    fleet = tmp_path / "fleet"
    shutil.copytree(EXAMPLE_FLEET, fleet)
    (fleet / "chat.yaml").write_text(
        (fleet / "chat.yaml")
        .read_text()
        .replace("objective: cost", "objective: cost\n    minTiers: 2")
    )
    assert main(["--trace", str(trace), "--fleet", str(fleet), "--policy", "tierra"]) == 1
    assert "minTiers" in capsys.readouterr().err
