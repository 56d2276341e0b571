"""Load shapes outside the trace suite, on ``chat-conv`` (120 s start-up): where the
recommender stands when the traffic is not the kind it was tuned on.

Shapes (Poisson arrivals, chat-sized requests: prompt ~1,000 tokens, output ~200, lognormal):
  square     2 and 12 req/s in turns of 10 minutes
  flash      2 req/s, then 10 req/s for good from minute 20
  dropjump   a ramp from 1 to 10 req/s over 25 minutes, 0.5 req/s for 15, then 8 req/s
  onoff      3 req/s for 5 minutes of every 20, nothing between
  mixshift   5 req/s throughout; from minute 30 prompts four times as long, outputs half
  heavytail  4-6 req/s; Pareto prompt and output sizes (tail indices 1.5 and 1.3)

For each shape, seed and profile error it prints Tierra's share of requests within the SLO and
its cost, the cheapest baseline setting (static, HPA, KEDA) reaching that share, the
clairvoyant floor at it, and the best share any reactive baseline (HPA or KEDA, any target or
window) reached, with its cost. A step, a first burst or a heavier mix that comes with no
warning costs any reactive policy the start-up time's requests; the reactive baselines' best
column says how much of a shortfall is that.

Prometheus scrapes at an offset into each 15 s interval and every policy decides a lag after
it, both drawn per shape and seed (``suite_timing``) and printed per case: the shapes' steps
begin on round seconds, and a scrape on them would see each step whole.

Usage: python benchmarks/shapes.py [--shapes square,flash,...] [--seeds 11,12]
           [--errors -0.3,0,0.3]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path

from simulate import (  # (benchmarks/)
    cheapest_baseline,
    like_for_like_floor,
    run_case,
    suite_timing,
)

from tierra.lab.simulate import read_fleet
from tierra.lab.simulation import TraceRequest

REPO = Path(__file__).resolve().parents[1]
DURATION = 3600.0
Sizes = Callable[[random.Random, float], tuple[int, int]]


def chat_sizes(rng: random.Random, _t: float) -> tuple[int, int]:
    prompt = int(rng.lognormvariate(math.log(1000), 0.6))
    output = int(rng.lognormvariate(math.log(200), 0.7))
    return max(50, prompt), max(10, output)


def arrivals(
    rng: random.Random, rate: Callable[[float], float], sizes: Sizes = chat_sizes
) -> list[TraceRequest]:
    """A Poisson process of rate ``rate(t)`` (thinned from 40 req/s)."""
    out: list[TraceRequest] = []
    t, top = 0.0, 40.0
    while True:
        t += rng.expovariate(top)
        if t >= DURATION:
            return out
        if rng.random() < rate(t) / top:
            prompt, output = sizes(rng, t)
            out.append(TraceRequest(t, prompt, output))


def square(rng: random.Random) -> list[TraceRequest]:
    return arrivals(rng, lambda t: 12.0 if int(t // 600) % 2 else 2.0)


def flash(rng: random.Random) -> list[TraceRequest]:
    return arrivals(rng, lambda t: 2.0 if t < 1200 else 10.0)


def dropjump(rng: random.Random) -> list[TraceRequest]:
    return arrivals(rng, lambda t: 1 + 9 * t / 1500 if t < 1500 else (0.5 if t < 2400 else 8.0))


def onoff(rng: random.Random) -> list[TraceRequest]:
    return arrivals(rng, lambda t: 3.0 if t % 1200 < 300 else 0.0)


def mixshift(rng: random.Random) -> list[TraceRequest]:
    def sizes(rng: random.Random, t: float) -> tuple[int, int]:
        prompt, output = chat_sizes(rng, t)
        return (prompt * 4, max(10, output // 2)) if t >= 1800 else (prompt, output)

    return arrivals(rng, lambda t: 5.0, sizes)


def heavytail(rng: random.Random) -> list[TraceRequest]:
    def sizes(rng: random.Random, _t: float) -> tuple[int, int]:
        prompt = int(rng.paretovariate(1.5) * 300)
        output = int(rng.paretovariate(1.3) * 60)
        return max(50, prompt), min(4000, max(10, output))

    return arrivals(rng, lambda t: 5.0 + math.sin(t / 400), sizes)


SHAPES: dict[str, Callable[[random.Random], list[TraceRequest]]] = {
    "square": square,
    "flash": flash,
    "dropjump": dropjump,
    "onoff": onoff,
    "mixshift": mixshift,
    "heavytail": heavytail,
}


def case(job: tuple[str, int, float]) -> str:
    shape, seed, error = job
    tiers, services = read_fleet(REPO / "examples" / "simulate")
    chat = next(s for s in services if s.metadata.name == "chat-conv")
    trace = SHAPES[shape](random.Random(seed))
    timing = suite_timing(shape, seed)
    results = run_case(chat, tiers, trace, error, {}, f"{shape}/{seed}/{error:g}", timing)
    tierra = results[0]
    base = cheapest_baseline(results, tierra.within_slo)
    floor = like_for_like_floor(results, tierra.within_slo)
    reactive = max(
        (r for r in results if r.policy in ("hpa", "keda")), key=lambda r: (r.within_slo, -r.cost)
    )
    vs_base = f"{base.label} {tierra.cost / base.cost:.2f}x" if base else "none reaches it"
    vs_floor = f"{tierra.cost / floor.cost:.2f}x" if floor and floor.cost > 0 else "-"
    return (
        f"{shape:10} s{seed:<3} {error:+4.0%} scrapes +{timing['scrape_offset']:4.1f}"
        f"/{timing['scrape_lag']:3.1f} s  tierra {tierra.within_slo:7.2%} cost "
        f"{tierra.cost:6.2f} | cheapest baseline at it: {vs_base:20} | floor {vs_floor:6} | "
        f"best reactive {reactive.label} {reactive.within_slo:.2%} cost {reactive.cost:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--seeds", default="11")
    parser.add_argument("--errors", default="-0.3,0,0.3")
    args = parser.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; known: {', '.join(SHAPES)}")
    jobs = [
        (shape, int(seed), float(error))
        for shape in shapes
        for seed in args.seeds.split(",")
        for error in args.errors.split(",")
    ]
    started = time.monotonic()
    with Pool(2) as pool:
        for line in pool.imap(case, jobs):
            print(line, flush=True)
    print(f"{len(jobs)} cases in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
