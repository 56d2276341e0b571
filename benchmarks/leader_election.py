"""Leader election takeover on the local fleet: two candidate processes, one Lease.

Starts its own one-cluster fleet (a real kube-apiserver and etcd), then two candidate processes
(``tests/cluster/leader_child.py``: ``LeaderElector`` with the given timing, attempting a gated
write, a ConfigMap, every 0.25 s). The leader is then

  * killed with SIGKILL ``--kills`` times (a fresh standby is started after each kill), and
  * frozen with SIGSTOP ``--freezes`` times, resumed with SIGCONT once the standby has taken
    over (it stays on as the next standby),

each time after a random 2-4 s, so the kill falls anywhere in the renewal cycle. ``--no-watch``
makes the standbys poll the Lease every retry period instead of also watching it. Prints, per
scenario, the takeover time (signal -> the standby's ``on_started_leading``; goal <= 15 s with
the default timing) and the writes the old leader made after it lost the lease (goal 0): its
ConfigMaps whose resourceVersion, the etcd revision of the write, is above the revision of the
standby's takeover of the Lease.

Every process it starts is stopped on the way out (also on Ctrl-C or SIGTERM).

Usage: python benchmarks/leader_election.py [--kills 5] [--freezes 3]
                                            [--lease-duration 15] [--renew-deadline 10]
                                            [--retry-period 2] [--no-watch]
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cluster"))
from leader_child import LABEL, WRITER_LABEL, Candidate

from tierra.localfleet.binaries import ensure_binaries
from tierra.localfleet.runner import Fleet
from tierra.localfleet.topology import default_fleet

NAMESPACE = "leader-bench"
LEASE = "tierra"


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Bench:
    def __init__(
        self, fleet: Fleet, workdir: Path, timing: tuple[float, float, float], watch: bool
    ) -> None:
        self.fleet = fleet
        self.watch = watch
        self.workdir = workdir
        self.timing = timing
        self.candidates: list[Candidate] = []
        self.core = client.CoreV1Api(
            config.new_client_from_config(
                config_file=str(fleet.kubeconfig), context="tierra-central"
            )
        )
        self.serial = 0

    def spawn(self) -> Candidate:
        self.serial += 1
        tag = f"c{self.serial}"
        candidate = Candidate(
            self.fleet.kubeconfig,
            NAMESPACE,
            LEASE,
            tag,
            self.workdir / f"{tag}.log",
            self.timing,
            self.watch,
        )
        self.candidates.append(candidate)
        candidate.start()
        candidate.wait_for("ready", 60)
        return candidate

    def writes_after(self, tag: str, revision: int) -> int:
        items = self.core.list_namespaced_config_map(
            NAMESPACE, label_selector=f"{LABEL}={LEASE},{WRITER_LABEL}={tag}"
        ).items
        return sum(int(item.metadata.resource_version) > revision for item in items)

    def leader(self, live: list[Candidate], after: float, timeout: float) -> Candidate:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for candidate in live:
                if candidate.of("started", after):
                    return candidate
            time.sleep(0.05)
        raise TimeoutError("no leader")

    def trial(
        self, kind: str, leader: Candidate, standby: Candidate, limit: float
    ) -> dict[str, Any]:
        time.sleep(random.uniform(2.0, 4.0))  # anywhere in the renewal cycle
        signum = signal.SIGKILL if kind == "kill -9" else signal.SIGSTOP
        at = leader.send(signum)
        started = standby.wait_for("started", limit, after=at)
        row: dict[str, Any] = {"takeover": started["t"] - at}
        revision = int(started["rv"])
        if kind == "SIGSTOP":
            resumed_at = leader.send(signal.SIGCONT)
            resumed = leader.wait_for("resumed", 10, after=resumed_at)
            row["resumed_leader"] = resumed["leader"]
            time.sleep(2 * self.timing[2])  # it ticks on, gate closed, and campaigns again
            row["writes_sent_after_freeze"] = sum(
                e["sent"] >= at for e in leader.of("write") + leader.of("write-failed")
            )
        row["writes_after_loss"] = self.writes_after(leader.tag, revision)
        return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--freezes", type=int, default=3)
    parser.add_argument("--lease-duration", type=float, default=15.0)
    parser.add_argument("--renew-deadline", type=float, default=10.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    parser.add_argument(
        "--no-watch", action="store_true", help="standbys poll the Lease only (no watch)"
    )
    args = parser.parse_args()
    timing = (args.lease_duration, args.renew_deadline, args.retry_period)
    limit = args.lease_duration + 4 * args.retry_period + 10  # a takeover slower than this fails

    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(signum, _interrupt)
    ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="tierra-bench-leader-"))
    central = tuple(spec for spec in default_fleet() if spec.name == "central")
    fleet = Fleet(workdir / "fleet", central)
    bench: Bench | None = None
    try:
        print(f"fleet (central only) up in {fleet.up(tie_to_parent=True, log=lambda _: None):.1f}s")
        bench = Bench(fleet, workdir, timing, watch=not args.no_watch)
        bench.core.create_namespace({"metadata": {"name": NAMESPACE}})
        print(
            f"timing: lease {args.lease_duration:g} s, renew deadline {args.renew_deadline:g} s,"
            f" retry {args.retry_period:g} s; standbys {'poll' if args.no_watch else 'watch'}"
            f" the Lease; logs in {workdir}"
        )
        live = [bench.spawn(), bench.spawn()]
        since = 0.0
        results: dict[str, list[dict[str, Any]]] = {"kill -9": [], "SIGSTOP": []}
        plan = ["kill -9"] * args.kills + ["SIGSTOP"] * args.freezes
        for number, kind in enumerate(plan, 1):
            leader = bench.leader(live, since, limit)
            standby = next(c for c in live if c is not leader)
            row = bench.trial(kind, leader, standby, limit)
            results[kind].append(row)
            since = standby.of("started")[-1]["t"]
            extra = ""
            if kind == "SIGSTOP":
                extra = (
                    f", leader when resumed: {row['resumed_leader']},"
                    f" writes sent after the freeze: {row['writes_sent_after_freeze']}"
                )
            print(
                f"  {number:2d}. {kind:8s} takeover {row['takeover']:6.2f} s,"
                f" old leader's writes after losing the lease: {row['writes_after_loss']}{extra}",
                flush=True,
            )
            if kind == "kill -9":
                live = [standby, bench.spawn()]
        print()
        for kind, rows in results.items():
            if not rows:
                continue
            takeovers = [r["takeover"] for r in rows]
            late = sum(r["writes_after_loss"] for r in rows)
            ok = statistics.median(takeovers) <= 15.0 and late == 0
            print(
                f"{kind:8s} n={len(rows)}: takeover median {statistics.median(takeovers):.2f} s,"
                f" max {max(takeovers):.2f} s (goal <= 15 s);"
                f" writes after losing the lease: {late} (goal 0): {'PASS' if ok else 'MISS'}"
            )
        return 0
    except KeyboardInterrupt:
        print("interrupted: stopping every process started", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            for candidate in bench.candidates:
                candidate.stop()
        fleet.down(quiet=True)


if __name__ == "__main__":
    raise SystemExit(main())
