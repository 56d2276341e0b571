"""The offline benchmark scripts still run end to end (one case each): a script that only
runs by hand breaks unnoticed. Their figures are the scripts' own business; here they must
exit 0 and print a row for the case asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tierra.lab.traces import MORE

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=BENCHMARKS,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_simulate_says_when_an_attainment_goal_is_out_of_any_policy_s_reach(
    tmp_path: Path,
) -> None:
    """A shifting mix on replicas 30 % slower than their profile: some of its long-context
    requests take longer than the SLO alone, which the verdict says beside the MISS."""
    out = run("simulate.py", "--traces", "mix-shift", "--seeds", "1", "--errors", "0.3",
              "--duration", "900", "--plot", str(tmp_path))  # fmt: skip
    verdicts = [line for line in out.splitlines() if "tierra within SLO" in line]
    assert len(verdicts) == 1 and "MISS" in verdicts[0], out
    assert "out of any policy's reach: 98." in verdicts[0], out
    assert "goals met: 0 of 2; 1 attainment goals are out of any policy's reach" in out, out


def test_causal_bound_runs_a_case() -> None:
    out = run("causal_bound.py", "--traces", "on-off", "--seeds", "1", "--errors", "0")
    rows = [line for line in out.splitlines() if line.startswith("on-off")]
    assert len(rows) == 1 and "best hold" in rows[0], out
    assert "1 cases in" in out, out


def test_shapes_runs_a_case() -> None:
    out = run("shapes.py", "--shapes", "heavytail", "--seeds", "11", "--errors", "0")
    rows = [line for line in out.splitlines() if line.startswith("heavytail")]
    assert rows and "tierra" in rows[0] and "cheapest baseline" in rows[0], out
    assert "scrapes +" in rows[0], out


def test_held_out_runs_a_case() -> None:
    out = run("held_out.py", "--cases", "1", "--start", "17", "--jobs", "1")
    rows = [line for line in out.splitlines() if line.startswith("  17 ")]
    assert rows and "static:" in rows[0] and rows[0].count("%") >= 4, out
    assert "1 cases (start 17)" in out and " SETTLED " in out, out
    assert "settled (the same, over the requests from then on" in out, out
    assert " CEILING " in out and "ceiling below 99 % (no policy reaches 99 %) in" in out, out


def test_held_out_draws_the_scrape_timing_again_and_nothing_else(tmp_path: Path) -> None:
    rows = []
    for scrapes in ("0", "1"):
        out = tmp_path / f"{scrapes}.json"
        run("held_out.py", "--cases", "1", "--start", "17", "--jobs", "1", "--json", str(out),
            "--scrapes", scrapes)  # fmt: skip
        rows.append(json.loads(out.read_text())[0])
    timing = ("scrape_offset", "scrape_lag")
    assert all(0 <= row["scrape_offset"] < 15 and 0 <= row["scrape_lag"] <= 5 for row in rows)
    assert [rows[0][k] for k in timing] != [rows[1][k] for k in timing]
    drawn = ("trace", "seed", "startup", "slo", "delay", "error")
    assert [rows[0][k] for k in drawn] == [rows[1][k] for k in drawn]


def test_held_out_wide_runs_a_case_with_its_wider_draws() -> None:
    out = run("held_out.py", "--cases", "1", "--start", "3", "--jobs", "1", "--wide")
    rows = [line for line in out.splitlines() if line.startswith("   3 ")]
    assert rows and " c" in rows[0] and " q" in rows[0], out
    assert "CONC QUEUE MIN-MAX" in out and "1 cases (start 3)" in out, out


def test_held_out_more_draws_its_traces_from_the_shapes_it_was_not_tuned_on(
    tmp_path: Path,
) -> None:
    out = tmp_path / "more.json"
    run("held_out.py", "--cases", "2", "--jobs", "1", "--more", "--json", str(out))
    rows = json.loads(out.read_text())
    assert [row["case"] for row in rows] == [0, 1]
    assert all(row["trace"] in MORE and 0 < row["within_slo"] <= 1 for row in rows), rows


def test_held_out_counts_the_replicas_scale_downs_removed_while_starting() -> None:
    """Wide case 5: a 600 s start-up with no scale-down delay, on a diurnal ramp."""
    out = run("held_out.py", "--cases", "1", "--start", "5", "--jobs", "1", "--wide")
    assert " 600s " in out and "    0s " in out, out
    assert "removed replicas still starting in 1 of 1 cases" in out, out
    assert "1 of those cases have a scale-down delay shorter than the start-up" in out, out


def test_latency_verdicts_runs_a_case_with_a_verdict() -> None:
    """Held-out case 23 (mix-shift): its TTFT goal is given up in a long-context phase."""
    out = run("latency_verdicts.py", "--start", "23", "--cases", "1", "--wide-cases", "0")
    rows = [line for line in out.splitlines() if line.startswith(" held  23 ")]
    assert rows and "p95 TTFT" in rows[0] and "at least x" in rows[0], out
    assert "1 cases, 1 with a goal given up" in out, out
    assert "verdicts a static fleet contradicts over the whole run:" in out, out


def test_scrape_intervals_runs_a_case_at_every_setting() -> None:
    out = run("scrape_intervals.py", "--cases", "1", "--start", "22", "--jobs", "1")
    rows = [line for line in out.splitlines() if line.startswith("  22 ")]
    assert rows and rows[0].count("%") == 7, out
    assert "60s 1m" in out and "1 cases in" in out, out


def test_schedules_runs_a_case() -> None:
    out = run("schedules.py", "--cases", "1", "--jobs", "1")
    rows = [line for line in out.splitlines() if line.lstrip().startswith("0 ")]
    assert len(rows) == 1 and "static:" in rows[0], out
    assert "ahead: mean" in out and "at start: mean" in out, out
    assert "schedule evaluation, 1,000 services x 4 schedules" in out, out


def test_restarts_runs_a_case_four_ways() -> None:
    out = run("restarts.py", "--cases", "1", "--start", "1", "--jobs", "1")
    rows = [line for line in out.splitlines() if line.startswith("   1 on-off")]
    # (the profile error, then the share within the SLO of each of the four runs)
    assert len(rows) == 1 and rows[0].count("%") == 5, out
    for mode in ("never", "status", "decision", "count only"):
        assert f"{mode}: mean" in out, out


def test_scale_to_zero_runs_a_case_every_way() -> None:
    out = run("scale_to_zero.py", "--cases", "1", "--start", "1", "--jobs", "1", "--hours", "2")
    rows = [line for line in out.splitlines() if line.startswith("   1 ")]
    # (share, cost and wake-ups of each of the five settings; keeping a replica never wakes)
    assert len(rows) == 1 and rows[0].count("%") == 6 and "scrapes +" in rows[0], out
    assert "never: mean" in out and "0 wake-ups" in out.split("never: mean")[1].splitlines()[0]
    for setting in ("default", "at delay", "4 start-ups", "keda"):
        summary = out.split(f"{setting}: mean")[1].splitlines()[0]
        assert " 0 wake-ups" not in summary, out
