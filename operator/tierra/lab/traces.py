"""Synthetic request traces with seeds: the shapes of traffic the recommender must hold its SLO
on, beyond one smooth chat trace (pure: a seed in, a list of requests out, no I/O, no clock).

Each generator returns ``TraceRequest`` (arrival seconds from 0, prompt and output tokens),
sorted by arrival, the same for the same seed. Sizes are log-normal around a median and
clipped to a range, as measured LLM request sizes are (heavy right tail, no zero).

* ``prefill_heavy_bursts``: code completion. Prompts of thousands of tokens, outputs of tens;
  bursts that go from near 0 to 15-30 req/s within seconds, last 20-70 s, and come back after
  quiet minutes.
* ``decode_heavy``: long answers (hundreds to thousands of output tokens) to short prompts, at
  a slowly wandering rate.
* ``diurnal_ramp``: a day compressed into the trace: the rate follows a cosine from a night
  trough to a midday peak and back, with noise.
* ``agentic_fanout``: agent sessions; each step of a session fans one request out into dozens
  of model calls within a second (tools, sub-agents, re-reading a long context).

Three more shapes were written to test the recommender on traffic it was not tuned on (each
showed a weakness the four above did not):

* ``flash_crowds``: a steady rate with a few crowds that ramp up over one to three minutes
  to 8-15 times it and fade over several minutes.
* ``on_off``: phases of 5-15 minutes alternating between busy and nearly idle, opening busy
  (a service already under load when the autoscaler first sees it).
* ``mix_shift``: a steady rate whose mix alternates every 10 minutes between chat requests
  and long-context ones (retrieval: prompts seven times as long).

``SUITE`` names them for the benchmark; ``generate(name, seed)`` builds one.

Five more were written after the recommender was tuned on the seven above, to draw
held-out cases from shapes it had never met (``MORE``; ``benchmarks/held_out.py --more``):

* ``level_switching``: the rate jumps at random times (minutes apart) between four levels
  drawn per seed (a Markov-modulated Poisson process: clients turning batch jobs on and off).
* ``cron_spikes``: a low base rate and a spike of one to two minutes every 3, 5 or 10
  minutes (scheduled jobs).
* ``heavy_tailed_sizes``: a steady rate whose prompts and answers have a much heavier tail
  than chat's (one request in a hundred ten times the median or more).
* ``launch``: the rate grows (or falls) steadily over the trace, between a quiet and a busy
  level, with minute-to-minute noise.
* ``pareto_on_off``: busy and quiet phases whose lengths have a Pareto tail: mostly tens of
  seconds, now and then many minutes.

One more is not in the suite, whose services never go idle:

* ``intermittent_sessions``: a team's development service, used in sessions of a few minutes
  with idle gaps between them (by default minutes to an hour: what scale to zero is for).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from tierra.lab.baselines import TraceRequest

DEFAULT_DURATION = 3600.0


def _lognormal(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    return int(min(high, max(low, round(rng.lognormvariate(math.log(median), sigma)))))


def _poisson_times(rng: random.Random, rate: float, start: float, end: float) -> list[float]:
    times: list[float] = []
    if rate <= 0:
        return times
    t = start + rng.expovariate(rate)
    while t < end:
        times.append(t)
        t += rng.expovariate(rate)
    return times


def _finish(requests: list[TraceRequest]) -> list[TraceRequest]:
    return sorted(requests, key=lambda r: r.arrival)


def prefill_heavy_bursts(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """Code completion: ~0.3 req/s background, bursts of 15-30 req/s lasting 20-70 s with 1-6
    quiet minutes between them; prompts ~2,500 tokens (500-8,000), outputs ~30 (5-200)."""
    rng = random.Random(f"prefill-heavy/{seed}")

    def request(t: float) -> TraceRequest:
        return TraceRequest(
            t, _lognormal(rng, 2500, 0.5, 500, 8000), _lognormal(rng, 30, 0.6, 5, 200)
        )

    arrivals = _poisson_times(rng, 0.3, 0.0, duration)
    t = rng.uniform(20.0, 120.0)
    while t < duration:
        length = rng.uniform(20.0, 70.0)
        peak = rng.uniform(15.0, 30.0)
        ramp = rng.uniform(2.0, 6.0)  # "within seconds": the rate climbs over a few seconds
        for at in _poisson_times(rng, peak, t, min(duration, t + length)):
            # thin the first seconds so the rate rises linearly over ``ramp``
            if at - t >= ramp or rng.random() < (at - t) / ramp:
                arrivals.append(at)
        t += length + rng.uniform(60.0, 360.0)
    return _finish([request(a) for a in sorted(arrivals)])


def decode_heavy(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """Long outputs: prompts ~300 tokens (50-2,000), outputs ~700 (100-3,000); the rate wanders
    between about 0.5 and 2.5 req/s (a random walk on minutes)."""
    rng = random.Random(f"decode-heavy/{seed}")
    requests: list[TraceRequest] = []
    rate = 1.2
    for minute in range(math.ceil(duration / 60.0)):
        rate = min(2.5, max(0.5, rate * math.exp(rng.gauss(0.0, 0.15))))
        start = minute * 60.0
        for at in _poisson_times(rng, rate, start, min(duration, start + 60.0)):
            requests.append(
                TraceRequest(
                    at, _lognormal(rng, 300, 0.7, 50, 2000), _lognormal(rng, 700, 0.5, 100, 3000)
                )
            )
    return _finish(requests)


def _chat(rng: random.Random, at: float) -> TraceRequest:
    """A chat request arriving at ``at``: prompt ~1,000 tokens (50-6,000), answer ~200
    (5-1,500)."""
    return TraceRequest(
        at, _lognormal(rng, 1000, 0.6, 50, 6000), _lognormal(rng, 200, 0.7, 5, 1500)
    )


def diurnal_ramp(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """A day in ``duration``: chat requests (prompt ~1,000, output ~200) at a rate that follows
    a cosine from 0.5 req/s at night to 12 req/s at midday, with +-15 % minute-to-minute
    noise."""
    rng = random.Random(f"diurnal/{seed}")
    requests: list[TraceRequest] = []
    low, high = 0.5, 12.0
    for minute in range(math.ceil(duration / 60.0)):
        start = minute * 60.0
        phase = (start + 30.0) / duration
        rate = low + (high - low) * (1 - math.cos(2 * math.pi * phase)) / 2
        rate *= max(0.5, rng.gauss(1.0, 0.15))
        requests += [
            _chat(rng, at) for at in _poisson_times(rng, rate, start, min(duration, start + 60.0))
        ]
    return _finish(requests)


def agentic_fanout(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """Agent sessions start at 1 per 40 s on average and run 3-8 steps 5-30 s apart; each step
    fans out into 10-40 calls within one second, each re-reading the session's context
    (~3,000 tokens, growing by ~500 per step) and answering briefly (~80 tokens)."""
    rng = random.Random(f"agentic/{seed}")
    requests: list[TraceRequest] = []
    for start in _poisson_times(rng, 1 / 40.0, 0.0, duration):
        context = _lognormal(rng, 3000, 0.4, 800, 12000)
        t = start
        for _ in range(rng.randint(3, 8)):
            if t >= duration:
                break
            for _ in range(rng.randint(10, 40)):
                at = t + rng.uniform(0.0, 1.0)
                if at < duration:
                    requests.append(
                        TraceRequest(
                            at,
                            min(16000, context + _lognormal(rng, 200, 0.5, 20, 2000)),
                            _lognormal(rng, 80, 0.6, 5, 600),
                        )
                    )
            context = min(16000, context + _lognormal(rng, 500, 0.5, 50, 3000))
            t += rng.uniform(5.0, 30.0)
    return _finish(requests)


def _thinned(
    rng: random.Random, rate: Callable[[float], float], peak: float, duration: float
) -> list[float]:
    """Arrivals at the time-varying ``rate`` (never above ``peak``), by thinning."""
    return [t for t in _poisson_times(rng, peak, 0.0, duration) if rng.random() * peak < rate(t)]


def _crowd_plan(rng: random.Random, duration: float) -> list[tuple[float, float, float, float]]:
    """(start, rise, factor, fade) of each crowd of ``flash_crowds``."""
    return [
        (
            rng.uniform(0.05, 0.85) * duration,
            rng.uniform(60.0, 180.0),
            rng.uniform(8.0, 15.0),
            rng.uniform(300.0, 600.0),
        )
        for _ in range(rng.randint(2, 4))
    ]


def flash_crowd_starts(seed: int, duration: float = DEFAULT_DURATION) -> list[float]:
    """When each crowd of ``flash_crowds(seed)`` begins to rise (seconds into the trace): what
    a team that sent the newsletter or planned the launch knows ahead."""
    return sorted(start for start, _, _, _ in _crowd_plan(random.Random(f"flash/{seed}"), duration))


def flash_crowds(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """Chat at ~1 req/s; 2-4 crowds an hour, each rising linearly over 60-180 s to 8-15 times
    the base rate, then fading exponentially with a time constant of 5-10 minutes."""
    rng = random.Random(f"flash/{seed}")
    base = 1.0
    crowds = _crowd_plan(rng, duration)

    def rate(t: float) -> float:
        level = base
        for start, rise, factor, fade in crowds:
            if start <= t < start + rise:
                level = max(level, base * (1 + (factor - 1) * (t - start) / rise))
            elif t >= start + rise:
                level = max(level, base * (1 + (factor - 1) * math.exp(-(t - start - rise) / fade)))
        return level

    return _finish([_chat(rng, t) for t in _thinned(rng, rate, 15.0 * base, duration)])


def on_off(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """Chat in phases of 5-15 minutes, busy (6-10 req/s) and nearly idle (0.2-0.8 req/s) in
    turn, opening busy."""
    rng = random.Random(f"on-off/{seed}")
    arrivals: list[float] = []
    t, busy = 0.0, True
    while t < duration:
        length = rng.uniform(300.0, 900.0)
        rate = rng.uniform(6.0, 10.0) if busy else rng.uniform(0.2, 0.8)
        arrivals += _poisson_times(rng, rate, t, min(duration, t + length))
        t, busy = t + length, not busy
    return _finish([_chat(rng, at) for at in arrivals])


def mix_shift(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """4 req/s throughout; the mix alternates every 10 minutes between chat (prompts ~600
    tokens, answers ~250) and long-context requests (prompts ~4,000, answers ~120)."""
    rng = random.Random(f"mix-shift/{seed}")
    requests: list[TraceRequest] = []
    for at in _poisson_times(rng, 4.0, 0.0, duration):
        if int(at // 600.0) % 2:
            prompt, output = (
                _lognormal(rng, 4000, 0.5, 200, 12000),
                _lognormal(rng, 120, 0.6, 5, 800),
            )
        else:
            prompt, output = _lognormal(rng, 600, 0.5, 50, 4000), _lognormal(rng, 250, 0.6, 5, 1500)
        requests.append(TraceRequest(at, prompt, output))
    return _finish(requests)


def level_switching(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """Chat at one of four levels (0.3-12 req/s, drawn per seed), switching to a random one
    after each stay (exponential, with a mean of 1-6 minutes drawn per stay)."""
    rng = random.Random(f"level-switching/{seed}")
    levels = sorted(rng.uniform(0.3, 12.0) for _ in range(4))
    arrivals: list[float] = []
    t = 0.0
    while t < duration:
        stay = rng.expovariate(1.0 / rng.uniform(60.0, 360.0))
        arrivals += _poisson_times(rng, rng.choice(levels), t, min(duration, t + stay))
        t += stay
    return _finish([_chat(rng, at) for at in arrivals])


def cron_spikes(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """Chat at a base of 0.5-3 req/s, with a spike of 6-14 req/s more lasting 30-120 s every
    3, 5 or 10 minutes (drawn per seed), from a random phase."""
    rng = random.Random(f"cron-spikes/{seed}")
    base, spike = rng.uniform(0.5, 3.0), rng.uniform(6.0, 14.0)
    period, width = rng.choice((180.0, 300.0, 600.0)), rng.uniform(30.0, 120.0)
    arrivals = _poisson_times(rng, base, 0.0, duration)
    start = rng.uniform(0.0, period)
    while start < duration:
        arrivals += _poisson_times(rng, spike, start, min(duration, start + width))
        start += period
    return _finish([_chat(rng, at) for at in arrivals])


def heavy_tailed_sizes(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """1.5-6 req/s (drawn per seed) of requests whose prompts (~800 tokens, 20-30,000) and
    answers (~150, 1-4,000) are log-normal with a much wider spread than chat's."""
    rng = random.Random(f"heavy-tailed/{seed}")
    rate = rng.uniform(1.5, 6.0)
    return _finish(
        [
            TraceRequest(
                at,
                _lognormal(rng, 800, 1.3, 20, 30000),
                _lognormal(rng, 150, 1.2, 1, 4000),
            )
            for at in _poisson_times(rng, rate, 0.0, duration)
        ]
    )


def launch(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """Chat whose rate moves linearly over the trace from 0.3-2 req/s to 8-14 (or back, in
    half of the seeds), each minute's rate off the line by +-10 %."""
    rng = random.Random(f"launch/{seed}")
    start, end = rng.uniform(0.3, 2.0), rng.uniform(8.0, 14.0)
    if rng.random() < 0.5:
        start, end = end, start
    minutes = math.ceil(duration / 60.0)
    arrivals: list[float] = []
    for minute in range(minutes):
        rate = (start + (end - start) * (minute + 0.5) / minutes) * max(0.5, rng.gauss(1.0, 0.1))
        at = minute * 60.0
        arrivals += _poisson_times(rng, rate, at, min(duration, at + 60.0))
    return _finish([_chat(rng, at) for at in arrivals])


def pareto_on_off(seed: int, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """Chat in phases, quiet (0.5 req/s) and busy (4-12 req/s) in turn, opening quiet, each
    lasting 20 s times a Pareto draw of shape 1.3 (at most 20 minutes)."""
    rng = random.Random(f"pareto-on-off/{seed}")
    arrivals: list[float] = []
    t, busy = 0.0, False
    while t < duration:
        length = min(1200.0, 20.0 * rng.paretovariate(1.3))
        rate = rng.uniform(4.0, 12.0) if busy else 0.5
        arrivals += _poisson_times(rng, rate, t, min(duration, t + length))
        t, busy = t + length, not busy
    return _finish([_chat(rng, at) for at in arrivals])


INTERMITTENT_DURATION = 4 * 3600.0


INTERMITTENT_GAPS = (120.0, 3600.0)


def intermittent_sessions(
    seed: int,
    duration: float = INTERMITTENT_DURATION,
    gaps: tuple[float, float] = INTERMITTENT_GAPS,
) -> list[TraceRequest]:
    """Chat sessions of 1-10 minutes at 0.3-4 req/s, separated by idle gaps log-uniform
    within ``gaps`` seconds (by default 2-60 minutes: as many gaps of 2-8 minutes as of
    15-60), opening with a gap."""
    rng = random.Random(f"intermittent/{seed}/{gaps[0]:g}-{gaps[1]:g}")
    shortest, longest = math.log(gaps[0]), math.log(max(gaps))

    def gap() -> float:
        return math.exp(rng.uniform(shortest, longest))

    arrivals: list[float] = []
    t = gap()
    while t < duration:
        length = rng.uniform(60.0, 600.0)
        arrivals += _poisson_times(rng, rng.uniform(0.3, 4.0), t, min(duration, t + length))
        t += length + gap()
    return _finish([_chat(rng, at) for at in arrivals])


SUITE: dict[str, Callable[[int, float], list[TraceRequest]]] = {
    "prefill-heavy": prefill_heavy_bursts,
    "decode-heavy": decode_heavy,
    "diurnal": diurnal_ramp,
    "agentic": agentic_fanout,
    "flash-crowds": flash_crowds,
    "on-off": on_off,
    "mix-shift": mix_shift,
}
"""The generated traces, by name."""

MORE: dict[str, Callable[[int, float], list[TraceRequest]]] = {
    "level-switching": level_switching,
    "cron-spikes": cron_spikes,
    "heavy-tailed": heavy_tailed_sizes,
    "launch": launch,
    "pareto-on-off": pareto_on_off,
}
"""Shapes the recommender was not tuned on, by name (not in the suite's table)."""


def generate(name: str, seed: int = 1, duration: float = DEFAULT_DURATION) -> list[TraceRequest]:
    """The named trace of the suite, or of ``MORE``."""
    generator = SUITE.get(name) or MORE.get(name)
    if generator is None:
        known = ", ".join([*SUITE, *MORE])
        raise ValueError(f"unknown trace {name!r} (choose from {known})")
    return generator(seed, duration)
