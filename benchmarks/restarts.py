"""Operator restarts: what the recommender keeps in status is what it keeps across a restart.

An operator restarts on every upgrade, node drain and leader failover; its recommender then
has only what the InferenceService's status says (``status.autoscaling.recommendedReplicas``
and the last scale decision with its ``state.*`` signals, ``restore_state``). Each case is a
held-out draw (``benchmarks/held_out.py``: a suite trace at a seed the suite does not use, its
service's start-up, goals, scale-down delay and profile error drawn), replayed three ways:

  * ``never``: Tierra never restarted;
  * ``status``: restarted every ``--every`` seconds, its state rebuilt from what status keeps
    (as ``tierra run`` does at start-up): ``status.autoscaling.state``, written with every
    status (at least every 30 s while the metrics change, as the operator writes it);
  * ``decision``: restarted as often, from the state kept with the last scale decision only
    (``status.lastScale.signals``: a burst that moved no count is not in it);
  * ``count only``: restarted as often, keeping only the recommended count (no state signals:
    what the recommender knew before it wrote them).

It prints each case's share of requests within the SLO and cost under each, the mean share
and the total cost, and the cases a restart costs more than half a point.

Usage: python benchmarks/restarts.py [--cases 40] [--start 0] [--every 600] [--jobs 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from held_out import case_context, draw, fleet

from tierra.core.autoscale import ScalerParams, ScalerState, restore_state, status_signals
from tierra.lab.simulation import (
    Observation,
    PolicyContext,
    ServiceSetup,
    TierraPolicy,
    run_policy,
    setup_service,
)

LOSS_POINTS = 0.005
STATUS_REFRESH_SECONDS = 30.0
"""The operator writes the observed metrics, and the state with them, at least this often
while they change (``AutoscalingSettings.status_refresh_seconds``'s default)."""
MODES = ("never", "status", "decision", "count only")


class RestartedTierra(TierraPolicy):
    """Tierra whose state is rebuilt every ``every`` seconds from what status keeps:
    ``keeps`` is ``status`` (the state written with every status), ``decision`` (with the last
    scale decision only) or ``count only``."""

    def __init__(self, setup: ServiceSetup, every: float, keeps: str) -> None:
        super().__init__(setup, ScalerParams())
        self.every = every
        self.keeps = keeps
        self.next_restart = every
        self.last_scale: tuple[float, int, int] | None = None
        """(time, from, to) of the last scale decision: ``status.lastScale``."""
        self.decided: dict[str, float] = {}
        """The state signals the last scale decision carried."""
        self.written: tuple[dict[str, float], float] | None = None
        """The state signals of the last status write, and its time."""

    def start(self, context: PolicyContext) -> int:
        self.next_restart = self.every
        self.last_scale, self.decided, self.written = None, {}, None
        return super().start(context)

    def decide(self, observation: Observation) -> int:
        if observation.time >= self.next_restart:
            self.next_restart += self.every
            self.state = self._restored(observation)
        replicas = super().decide(observation)
        moved = replicas != observation.desired_replicas
        stale = self.written is None or observation.time - self.written[1] >= (
            STATUS_REFRESH_SECONDS
        )
        if moved or stale:
            kept = self._kept()
            self.written = (kept, observation.time)
            if moved:
                self.last_scale = (observation.time, observation.desired_replicas, replicas)
                self.decided = kept
        return replicas

    def _kept(self) -> dict[str, float]:
        """``status_signals`` through JSON, as status keeps them."""
        capacity = self.setup.variant.capacity
        rates = (capacity.prefill_tokens_per_second, capacity.decode_tokens_per_second)
        kept = status_signals(self.state, self.setup.variant.startup_seconds, self.params, rates)
        return dict(json.loads(json.dumps(kept)))

    def _restored(self, observation: Observation) -> ScalerState:
        recommended = self.state.last_replicas
        if self.keeps == "count only":
            return restore_state(recommended, observation.time)
        at, before, after = self.last_scale or (None, 0, 0)
        signals, signals_at = self.decided, at
        if self.keeps == "status" and self.written is not None:
            signals, signals_at = self.written
        return restore_state(
            recommended,
            observation.time,
            last_scale_at=at,
            scaled_up_by=max(0, after - before),
            signals=signals,
            signals_at=signals_at,
            scale_down_delay=float(self.setup.service.spec.scaling.scale_down_delay_seconds),
            params=self.params,
        )


def run_case(case: int, every: float) -> dict[str, Any]:
    tiers, chat = fleet()
    name, seed, service, drawn = draw(case, chat)
    setup = setup_service(service, tiers, drawn["error"])
    context = case_context(setup, name, seed, drawn)
    runs = {"never": TierraPolicy(setup)} | {
        keeps: RestartedTierra(setup, every, keeps) for keeps in MODES[1:]
    }
    row: dict[str, Any] = {"case": case, "trace": name, **drawn}
    for label, policy in runs.items():
        result = run_policy(setup, context, policy, keep_timeline=False)
        row[label] = (result.within_slo, result.cost)
    return row


def line(row: dict[str, Any]) -> str:
    cells = "  ".join(f"{row[k][0]:7.2%} {row[k][1]:6.2f}" for k in MODES)
    return (
        f"{row['case']:4d} {row['trace']:14} {row['startup']:5d}s {row['delay']:4d}s "
        f"{row['error']:+5.0%}  {cells}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--every", type=float, default=600.0, help="seconds between restarts")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"{'CASE':>4} {'TRACE':14} {'START':>6} {'DELAY':>5} {'ERROR':>5}  "
        f"{'NEVER RESTARTED':>14}  {'STATUS':>14}  {'LAST DECISION':>14}  {'COUNT ONLY':>14}"
    )
    rows = []
    cases = range(args.start, args.start + args.cases)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(functools.partial(run_case, every=args.every), cases):
            rows.append(row)
            print(line(row), flush=True)
    print()
    cost = sum(r["never"][1] for r in rows)
    for label in MODES:
        shares = [r[label][0] for r in rows]
        losses = [r for r in rows if r[label][0] < r["never"][0] - LOSS_POINTS]
        worst = min(rows, key=lambda r: r[label][0] - r["never"][0])
        print(
            f"{label:>10}: mean {statistics.mean(shares):.2%} within the SLO, cost "
            f"{sum(r[label][1] for r in rows) / cost:.3f}x never restarted; "
            f"{len(losses)} of {len(rows)} cases lose more than half a point"
            + (
                f" (worst: case {worst['case']} {worst['trace']}, "
                f"{(worst[label][0] - worst['never'][0]) * 100:+.2f} points)"
                if losses
                else ""
            )
        )
    print(f"restarts every {args.every:g} s; wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
