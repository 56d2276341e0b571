"""Schedules for load a team knows is coming: flash crowds with the crowds' start times given
to Tierra as ``spec.scaling.schedules``, against Tierra alone and against a floor asked for at
the start time (as a cron-driven reactive scaler asks: KEDA's cron scaler).

A crowd that ramps within one to three minutes is over before replicas asked for it serve when
they take two to ten minutes to start: no reactive scaler, Tierra's included, meets it the
first time (``benchmarks/held_out.py``: flash crowds at 300 s start-ups 68-84 %). A team that
sends the newsletter or opens the sale knows *when*, seldom *how much*. Each case draws:

  * a ``flash_crowds`` trace at a seed in 100..999 (2-4 crowds an hour, 8-15x the base rate);
  * ``startupSeconds`` in {120, 300, 600} and a profile error uniform in [-30 %, +30 %];
  * for each crowd a schedule from its start's minute (up to 59 s early) for 15 minutes, at
    the replicas the profile (the wrong one) sizes for 10 req/s: the team's guess of a
    crowd's peak, which the real 8-15 req/s miss by -33 to +50 %.

Policies per case: Tierra alone; Tierra with the schedules (their replicas asked for a
start-up time ahead, so they serve from the start); the same schedules asked for at their
start only (each schedule moved a start-up later, Tierra's lead then brings it back to the
start). The static sweep gives the cheapest fixed fleet reaching each share, for scale.

It ends with what evaluating schedules costs the operator per decision: 1,000 services of four
schedules each (distinct cron lines), decided every 5 s for 5 minutes, with the evaluation
cached per cron line, zone and minute as the operator does and without the cache (cronsim
on every decision), in the same run.

Usage: python benchmarks/schedules.py [--cases 24] [--jobs 2]
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

from simulate import REPO

import tierra.core.autoscale.schedule as schedule_module
from tierra.api.inference_service import InferenceService, ScalingSchedule
from tierra.core.autoscale.schedule import scheduled_floor
from tierra.lab.simulate import read_fleet
from tierra.lab.simulation import (
    SIMULATION_EPOCH,
    build_policies,
    cheapest_reaching,
    parse_policies,
    policy_context,
    run_policy,
    setup_service,
    sized_for,
)
from tierra.lab.traces import flash_crowd_starts, generate

STARTUPS = (120, 300, 600)
WINDOW_SECONDS = 900
GUESSED_PEAK = 10.0
"""Requests/s a team plans a crowd for (the generator's crowds peak at 8-15)."""


def with_schedules(
    service: InferenceService, starts: list[float], replicas: int, delay: float
) -> InferenceService:
    """``service`` with a schedule from each start's minute (moved ``delay`` seconds later)."""
    body = service.model_dump(by_alias=True, exclude_none=True)
    schedules = []
    for k, start in enumerate(starts):
        at = datetime.fromtimestamp(SIMULATION_EPOCH + start + delay, UTC)
        schedules.append(
            {
                "name": f"crowd-{k + 1}",
                "start": f"{at.minute} {at.hour} {at.day} {at.month} *",
                "durationSeconds": WINDOW_SECONDS,
                "minReplicas": min(replicas, body["spec"]["scaling"]["maxReplicas"]),
            }
        )
    body["spec"]["scaling"]["schedules"] = schedules
    return InferenceService.model_validate(body)


def run_case(case: int) -> dict[str, Any]:
    rng = random.Random(f"schedules/{case}")
    seed = rng.randint(100, 999)
    startup = rng.choice(STARTUPS)
    error = round(rng.uniform(-0.3, 0.3), 2)
    tiers, services = read_fleet(REPO / "examples/simulate")
    chat = next(s for s in services if s.metadata.name == "chat-conv")
    body = chat.model_dump(by_alias=True, exclude_none=True)
    for variant in body["spec"]["variants"]:
        variant["startupSeconds"] = startup
    body["spec"]["scaling"]["maxReplicas"] = 40
    service = InferenceService.model_validate(body)
    trace = generate("flash-crowds", seed)
    starts = flash_crowd_starts(seed)
    plain = setup_service(service, list(tiers), error)
    # (examples/simulate's chat: 1,000-token prompts, 250-token answers)
    replicas = sized_for(plain, GUESSED_PEAK, 1000.0, 250.0)
    row: dict[str, Any] = {
        "case": case,
        "seed": seed,
        "startup": startup,
        "error": error,
        "crowds": len(starts),
        "guess": replicas,
    }
    results = []
    for label, delay in (("alone", None), ("ahead", 0.0), ("at start", float(startup))):
        spec = service if delay is None else with_schedules(service, starts, replicas, delay)
        setup = setup_service(spec, list(tiers), error)
        context = policy_context(setup, trace)
        policy = build_policies(parse_policies("tierra"), setup)[0]
        result = run_policy(setup, context, policy, keep_timeline=False)
        row[label] = (result.within_slo, result.cost)
        results.append(result)
    context = policy_context(plain, trace)
    statics = [
        run_policy(plain, context, p, keep_timeline=False)
        for p in build_policies(parse_policies("static"), plain)
    ]
    ahead = results[1]
    reaching = cheapest_reaching(statics, "static", ahead.within_slo)
    row["static"] = (reaching.label, reaching.cost) if reaching else None
    return row


def line(row: dict[str, Any]) -> str:
    cells = " ".join(f"{row[k][0]:8.2%} {row[k][1]:6.2f}" for k in ("alone", "ahead", "at start"))
    static = f"{row['static'][0]} {row['static'][1]:.2f}" if row["static"] else "-"
    return (
        f"{row['case']:4d} {row['seed']:4d} {row['startup']:5d} {row['error']:+6.0%} "
        f"{row['crowds']:3d} {row['guess']:5d}  {cells}  {static}"
    )


def evaluation_cost(services: int = 1000, per_service: int = 4) -> tuple[float, float]:
    """Microseconds per schedule per decision (cached, uncached) over five minutes of
    decisions every 5 s for ``services`` services of ``per_service`` schedules each."""
    rng = random.Random("schedules/evaluation")
    fleet = [
        [
            ScalingSchedule.model_validate(
                {
                    "name": f"s{k}",
                    "start": f"{rng.randrange(60)} {rng.randrange(24)} * * {rng.choice(DAYS)}",
                    "timeZone": rng.choice(ZONES),
                    "durationSeconds": 3600,
                    "minReplicas": 4,
                }
            )
            for k in range(per_service)
        ]
        for _ in range(services)
    ]
    decisions = [SIMULATION_EPOCH + 9 * 3600 + t for t in range(0, 300, 5)]

    def timed(rounds: list[float]) -> float:
        started = time.perf_counter()
        for now in rounds:
            for schedules in fleet:
                scheduled_floor(schedules, now, 300)
        return (time.perf_counter() - started) / (len(rounds) * services * per_service) * 1e6

    schedule_module._last_start_at_minute.cache_clear()
    cached = timed(decisions)
    # (the same decisions with cron evaluated every time, as before the cache: a sample of
    # them, the evaluation being the same at every one)
    evaluate = schedule_module._last_start_at_minute
    schedule_module._last_start_at_minute = evaluate.__wrapped__  # type: ignore[assignment]
    try:
        uncached = timed(decisions[:6])
    finally:
        schedule_module._last_start_at_minute = evaluate
    return cached, uncached


DAYS = ("*", "1-5", "0,6", "MON")
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"{'CASE':>4} {'SEED':>4} {'START':>5} {'ERROR':>6} {'N':>3} {'GUESS':>5}  "
        f"{'ALONE':>8} {'COST':>6} {'AHEAD':>8} {'COST':>6} {'AT START':>8} {'COST':>6}  "
        "CHEAPEST STATIC REACHING AHEAD'S SHARE"
    )
    rows = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(functools.partial(run_case), range(args.cases)):
            rows.append(row)
            print(line(row), flush=True)
    print()
    for label in ("alone", "ahead", "at start"):
        shares = [r[label][0] for r in rows]
        cost = sum(r[label][1] for r in rows)
        print(
            f"{label:>8}: mean {statistics.mean(shares):.2%}, median "
            f"{statistics.median(shares):.2%}, min {min(shares):.2%}, at >= 99 %: "
            f"{sum(s >= 0.99 for s in shares)} of {len(rows)}, cost {cost:.1f} "
            f"({cost / sum(r['alone'][1] for r in rows):.2f}x alone)"
        )
    for startup in STARTUPS:
        some = [r for r in rows if r["startup"] == startup]
        if some:
            means = [statistics.mean(r[k][0] for r in some) for k in ("alone", "ahead", "at start")]
            print(
                f"start-up {startup:3d} s ({len(some)} cases): alone {means[0]:.2%}, ahead "
                f"{means[1]:.2%}, at start {means[2]:.2%}"
            )
    cached, uncached = evaluation_cost()
    print(
        f"schedule evaluation, 1,000 services x 4 schedules every 5 s: {cached:.1f} us per "
        f"schedule per decision cached per cron line, zone and minute; {uncached:.1f} us "
        f"evaluating cron every time ({uncached / cached:.0f}x)"
    )
    print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
