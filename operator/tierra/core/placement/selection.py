"""``place``: the candidates of one service filtered, scored and handed replicas, kept where
it runs (see the package's docstring for the capacity contract, the spread and stability)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from tierra.api.inference_service import InferenceService, Variant
from tierra.core.accelerators import units_per_replica
from tierra.core.placement.filters import FILTERS, cordoned, first_failure
from tierra.core.placement.model import (
    Candidate,
    CandidateKey,
    CurrentPlacement,
    PlacementDecision,
    PlannedPlacement,
    PoolCapacity,
    PoolKey,
    Rejection,
    ScoredCandidate,
    TierView,
    service_key,
)
from tierra.core.placement.scores import SCORERS, describe_score


@dataclass(frozen=True)
class _Ranked:
    candidate: Candidate
    score: float
    rank: int


@dataclass(frozen=True)
class _Evaluation:
    feasible: list[Candidate]
    rejected: dict[tuple[str, str, str | None], tuple[str, str]]  # key -> (filter, reason)
    mismatched: dict[CandidateKey, str]


def _allowed_variants(service: InferenceService) -> list[Variant]:
    allowed = service.spec.placement.allowed_variants
    return [v for v in service.spec.variants if not allowed or v.name in allowed]


def _own_credit(
    service: InferenceService, current: Iterable[CurrentPlacement]
) -> dict[PoolKey, int]:
    """Units of the service's scheduled replicas per pool (unknown variants: no credit)."""
    variants = {v.name: v for v in service.spec.variants}
    credit: dict[PoolKey, int] = {}
    for cp in current:
        variant = variants.get(cp.variant)
        if variant is None:
            continue
        scheduled = cp.replicas if cp.scheduled is None else min(cp.scheduled, cp.replicas)
        units = max(0, scheduled) * units_per_replica(variant)
        credit[(cp.tier, cp.pool)] = credit.get((cp.tier, cp.pool), 0) + units
    return credit


def _free_for_service(observed: PoolCapacity | None, held: int, credit: int) -> int:
    if observed is None:
        return 0
    return max(0, observed.capacity - observed.allocated - held + credit)


def _evaluate(
    service: InferenceService,
    views: Sequence[TierView],
    held: Mapping[PoolKey, int],
    credit: Mapping[PoolKey, int],
    current: Collection[CandidateKey] = (),
    pinned: Collection[CandidateKey] = (),
) -> _Evaluation:
    variants = _allowed_variants(service)
    feasible: list[Candidate] = []
    rejected: dict[tuple[str, str, str | None], tuple[str, str]] = {}
    mismatched: dict[CandidateKey, str] = {}
    memo: dict[tuple[str, ...], str | None] = {}
    for view in views:
        for pool in sorted(view.tier.spec.pools, key=lambda p: p.name):
            key = (view.name, pool.name)
            observed = view.pools.get(pool.name)
            free = _free_for_service(observed, held.get(key, 0), credit.get(key, 0))
            any_variant_fits_pool = False
            for variant in variants:
                key3 = (view.name, pool.name, variant.name)
                candidate = Candidate(
                    service, view, pool, variant, free, key3 in current, key3 in pinned
                )
                failure = first_failure(candidate, memo)
                if failure is None:
                    feasible.append(candidate)
                    any_variant_fits_pool = True
                    continue
                failed, reason = failure
                if failed.name == "accelerator":
                    mismatched[candidate.key] = reason
                    continue
                any_variant_fits_pool = True
                scope_variant = variant.name if failed.scope == "variant" else None
                rejected.setdefault((view.name, pool.name, scope_variant), (failed.name, reason))
            if not any_variant_fits_pool:
                have = pool.accelerator.type + (
                    f" {pool.accelerator.model}" if pool.accelerator.model else ""
                )
                why = "; ".join(
                    f"{v.name}: {mismatched[(view.name, pool.name, v.name)]}" for v in variants
                )
                rejected[(view.name, pool.name, None)] = (
                    "accelerator",
                    f"no variant runs on {have} ({why or 'no variant allowed'})",
                )
    return _Evaluation(feasible, rejected, mismatched)


def _rank(service: InferenceService, feasible: Sequence[Candidate]) -> list[_Ranked]:
    placement = service.spec.placement
    scorer = SCORERS[placement.objective]

    def order(item: tuple[Candidate, float]) -> tuple[float, int, str, str, str]:
        c, score = item
        return (score, placement.levels.index(c.tier.spec.level), *c.key)

    scored = sorted(((c, scorer(c)) for c in feasible), key=order)
    return [_Ranked(c, score, rank) for rank, (c, score) in enumerate(scored)]


class _Selection:
    """Replicas handed out so far and the units left per pool (local to one ``place`` call)."""

    def __init__(self, ranked: Sequence[_Ranked]) -> None:
        self.free: dict[PoolKey, int] = {r.candidate.pool_key: r.candidate.free for r in ranked}
        self.replicas: dict[CandidateKey, int] = {}
        self.roles: dict[CandidateKey, str] = {}

    def total(self) -> int:
        return sum(self.replicas.values())

    def tiers(self) -> set[str]:
        return {key[0] for key in self.replicas}

    def tier_replicas(self, tier: str) -> int:
        return sum(n for key, n in self.replicas.items() if key[0] == tier)

    def conflicts(self, c: Candidate) -> bool:
        """One pool per (tier, variant): both render to the same Deployment name."""
        return any(
            key[0] == c.tier_name and key[2] == c.variant.name and key[1] != c.pool.name
            for key in self.replicas
        )

    def room(self, r: _Ranked) -> int:
        """Replicas of this candidate that still fit."""
        c = r.candidate
        return 0 if self.conflicts(c) else self.free[c.pool_key] // c.units

    def add(self, r: _Ranked, role: str, n: int = 1) -> None:
        c = r.candidate
        self.replicas[c.key] = self.replicas.get(c.key, 0) + n
        self.free[c.pool_key] -= n * c.units
        self.roles.setdefault(c.key, role)

    def remove(self, r: _Ranked) -> None:
        c = r.candidate
        self.replicas[c.key] -= 1
        self.free[c.pool_key] += c.units
        if self.replicas[c.key] == 0:
            del self.replicas[c.key]


def _why_not_kept(
    key: CandidateKey,
    service: InferenceService,
    views: Mapping[str, TierView],
    evaluation: _Evaluation,
) -> tuple[str, str]:
    """(filter, reason) a current placement was ruled out by."""
    tier, pool, variant = key
    found = evaluation.rejected.get(key) or evaluation.rejected.get((tier, pool, None))
    if found:
        return found
    if tier not in views:
        return "tier", "tier no longer exists"
    if pool not in {p.name for p in views[tier].tier.spec.pools}:
        return "pool", "pool no longer in tier"
    if variant not in {v.name for v in service.spec.variants}:
        return "variant", "variant no longer in spec"
    if variant not in {v.name for v in _allowed_variants(service)}:
        return "variant", "variant not in placement.allowedVariants"
    return "accelerator", evaluation.mismatched.get(key, "not feasible")


def _current_replicas(current: Iterable[CurrentPlacement]) -> dict[CandidateKey, int]:
    replicas: dict[CandidateKey, int] = {}
    for cp in current:
        if cp.replicas > 0:
            key = (cp.tier, cp.pool, cp.variant)
            replicas[key] = replicas.get(key, 0) + cp.replicas
    return replicas


def _keep_current(
    selection: _Selection,
    by_key: Mapping[CandidateKey, _Ranked],
    current: Mapping[CandidateKey, int],
) -> dict[CandidateKey, tuple[str, str]]:
    """Seed the selection with the current placements that are still feasible, best first
    (trimmed to what fits); return why feasible ones could not be kept at all."""
    dropped: dict[CandidateKey, tuple[str, str]] = {}
    for r in sorted((by_key[k] for k in current if k in by_key), key=lambda r: r.rank):
        n = min(current[r.candidate.key], selection.room(r))
        if n > 0:
            selection.add(r, "kept", n)
        elif selection.conflicts(r.candidate):
            dropped[r.candidate.key] = ("", "one pool per tier and variant")
        else:
            dropped[r.candidate.key] = ("capacity", "pool has no room left")
    return dropped


def _seed_spread(selection: _Selection, ranked: Sequence[_Ranked], required_tiers: int) -> None:
    """Give one replica to the best candidate of each further tier until enough tiers are used."""
    for r in ranked:
        used = selection.tiers()
        if len(used) >= required_tiers:
            return
        if r.candidate.tier_name not in used and selection.room(r) > 0:
            selection.add(r, "best" if not used and r.rank == 0 else "spread")


def _shrink(
    selection: _Selection,
    by_key: Mapping[CandidateKey, _Ranked],
    desired: int,
    required_tiers: int,
    balance: bool,
) -> None:
    """Remove replicas until ``desired`` remain, never dropping below the required tiers while
    another replica can go instead. Balanced services shed from their fullest tier first;
    others from their worst-scoring placement."""

    def victim_order(key: CandidateKey) -> tuple[int, int]:
        fullest_tier_first = -selection.tier_replicas(key[0]) if balance else 0
        return (fullest_tier_first, -by_key[key].rank)

    while selection.total() > desired:
        spare_tiers = len(selection.tiers()) > required_tiers
        removable = [
            key for key in selection.replicas if spare_tiers or selection.tier_replicas(key[0]) > 1
        ]
        victim = min(removable or selection.replicas, key=victim_order)
        selection.remove(by_key[victim])


def _fill(
    selection: _Selection,
    ranked: Sequence[_Ranked],
    by_key: Mapping[CandidateKey, _Ranked],
    *,
    kept: set[CandidateKey],
    desired: int,
    balance: bool,
) -> None:
    """Hand out the remaining replicas.

    Preference order: kept placements (grow in place), then candidates by rank. A balanced
    service (minTiers > 1) gives each next replica to its least-loaded tier that has room, so
    replicas split evenly over the spread tiers; when they are all full, replicas spill to the
    best candidate with room anywhere, whose tier then joins the rotation.
    """
    preference = sorted(ranked, key=lambda r: (r.candidate.key not in kept, r.rank))

    def role_for(r: _Ranked) -> str:
        if r.rank == 0:
            return "best"
        if balance and r.candidate.tier_name in selection.tiers():
            return "spread"
        return "overflow"

    def tier_order(tier: str) -> tuple[int, int]:
        best = min(by_key[k].rank for k in selection.replicas if k[0] == tier)
        return (selection.tier_replicas(tier), best)

    while (missing := desired - selection.total()) > 0:
        choice: _Ranked | None = None
        n = 1
        if balance:
            for tier in sorted(selection.tiers(), key=tier_order):
                choice = next(
                    (
                        r
                        for r in preference
                        if r.candidate.tier_name == tier and selection.room(r) > 0
                    ),
                    None,
                )
                if choice is not None:
                    break
        if choice is None:
            choice = next((r for r in preference if selection.room(r) > 0), None)
            if choice is None:
                return
            if not balance:
                n = min(missing, selection.room(choice))
        selection.add(choice, role_for(choice), n)


_ROLE_TEXT = {
    "kept": "kept: current placement still feasible",
    "best": "best by {objective}",
    "spread": "spread over minTiers {min_tiers}",
    "overflow": "overflow: better candidates full",
}


def place(
    service: InferenceService,
    desired_replicas: int,
    tiers: Sequence[TierView],
    current: Sequence[CurrentPlacement] = (),
    held: Mapping[PoolKey, int] | None = None,
    pinned: Collection[CandidateKey] = frozenset(),
    keep: bool = True,
) -> PlacementDecision:
    """Decide where ``desired_replicas`` replicas of the service run.

    ``held`` carries units committed to other services that ``allocated`` does not show yet
    (see the module docstring). ``pinned`` current placements are kept whatever their tier's
    state (see ``ENVIRONMENT_FILTERS``). The result is a pure function of the arguments; the
    order of ``tiers`` and ``current`` does not matter. ``keep=False`` places from scratch
    (what runs now is only credited as capacity the service holds): the best placement, for
    comparison.
    """
    if desired_replicas < 0:
        raise ValueError(f"desired_replicas must be >= 0, got {desired_replicas}")
    placement = service.spec.placement
    views = sorted(tiers, key=lambda v: v.name)
    credit = _own_credit(service, current)
    current_replicas = _current_replicas(current)
    evaluation = _evaluate(service, views, held or {}, credit, current_replicas, pinned)
    ranked = _rank(service, evaluation.feasible)
    by_key = {r.candidate.key: r for r in ranked}

    balance = placement.min_tiers > 1
    required_tiers = min(placement.min_tiers, desired_replicas)
    selection = _Selection(ranked)
    dropped = _keep_current(selection, by_key, current_replicas) if keep else {}
    kept = set(selection.replicas)
    growable = [r for r in ranked if not (r.candidate.current and cordoned(r.candidate))]
    _seed_spread(selection, growable, required_tiers)
    _shrink(selection, by_key, desired_replicas, required_tiers, balance)
    _fill(selection, growable, by_key, kept=kept, desired=desired_replicas, balance=balance)

    views_by_name = {v.name: v for v in views}
    for key in current_replicas:
        if key not in by_key:
            dropped[key] = _why_not_kept(key, service, views_by_name, evaluation)
    shed = "scaled to zero" if desired_replicas == 0 else "scaled down"
    for key in kept - set(selection.replicas):
        dropped[key] = ("", shed)

    placements = tuple(
        _planned(by_key[key], n, selection.roles[key], service)
        for key, n in sorted(selection.replicas.items(), key=lambda kv: by_key[kv[0]].rank)
    )
    placed = sum(p.replicas for p in placements)
    unplaced = desired_replicas - placed
    # Nothing placed is an unplaced problem, not a spread one.
    spread_ok = placed == 0 or len({p.tier for p in placements}) >= required_tiers

    usage: dict[PoolKey, int] = {}
    for p in placements:
        usage[p.pool_key] = usage.get(p.pool_key, 0) + p.accelerators
    held_delta = {
        key: usage.get(key, 0) - credit.get(key, 0)
        for key in sorted(set(usage) | set(credit))
        if usage.get(key, 0) != credit.get(key, 0)
    }
    # Closest misses first: a candidate that failed a later filter got further. Pools no
    # variant can run on at all are not real candidates: they go last.
    stage = {f.name: index for index, f in enumerate(FILTERS)}
    stage["accelerator"] = -1
    rejected = tuple(
        Rejection(tier, pool, variant, reason, failed)
        for (tier, pool, variant), (failed, reason) in sorted(
            evaluation.rejected.items(),
            key=lambda kv: (-stage[kv[1][0]], kv[0][0], kv[0][1], kv[0][2] or ""),
        )
    )
    decision = PlacementDecision(
        service=service_key(service),
        objective=placement.objective,
        desired=desired_replicas,
        min_tiers=placement.min_tiers,
        placements=placements,
        rejected=rejected,
        ranked=tuple(
            ScoredCandidate(*r.candidate.key, score=r.score, free=r.candidate.free) for r in ranked
        ),
        dropped=tuple(
            Rejection(*key, reason=reason, filter=failed)
            for key, (failed, reason) in sorted(dropped.items())
        ),
        satisfied=unplaced == 0,
        unplaced=unplaced,
        spread_ok=spread_ok,
        summary="",
        held_delta=held_delta,
    )
    return _with_summary(decision)


def with_waiting(
    service: InferenceService, decision: PlacementDecision, key: CandidateKey, replicas: int
) -> PlacementDecision:
    """``decision`` with ``replicas`` more, of those it left unplaced, at ``key``: replicas
    whose pods no node there takes and no other candidate can take keep waiting where they
    are (dropped, they would be placed there again and wait again)."""
    variant = next((v for v in service.spec.variants if v.name == key[2]), None)
    replicas = min(replicas, decision.unplaced)
    if variant is None or replicas <= 0:
        return decision
    units = units_per_replica(variant)
    placements = list(decision.placements)
    found = next((i for i, p in enumerate(placements) if p.key == key), None)
    if found is None:
        placements.append(PlannedPlacement(*key, replicas, "waiting for a node", units))
    else:
        placements[found] = replace(
            placements[found], replicas=placements[found].replicas + replicas
        )
    held = dict(decision.held_delta)
    pool_key = (key[0], key[1])
    held[pool_key] = held.get(pool_key, 0) + replicas * units
    unplaced = decision.unplaced - replicas
    return _with_summary(
        replace(
            decision,
            placements=tuple(placements),
            unplaced=unplaced,
            satisfied=unplaced == 0,
            held_delta={k: v for k, v in held.items() if v},
        )
    )


def _planned(r: _Ranked, replicas: int, role: str, service: InferenceService) -> PlannedPlacement:
    placement = service.spec.placement
    text = _ROLE_TEXT[role].format(objective=placement.objective, min_tiers=placement.min_tiers)
    c = r.candidate
    return PlannedPlacement(
        *c.key,
        replicas=replicas,
        reason=f"{text}; {describe_score(placement.objective, r.score)}",
        accelerators_per_replica=c.units,
    )


def _with_summary(d: PlacementDecision) -> PlacementDecision:
    if d.desired == 0:
        summary = "scaled to zero"
    else:
        where = ", ".join(f"{'/'.join(p.key)} x{p.replicas}" for p in d.placements)
        summary = f"{d.placed}/{d.desired} replicas"
        summary += f" on {where} (objective {d.objective})" if where else " placed"
        if d.unplaced:
            why = "feasible pools full" if d.ranked else "no feasible candidate"
            summary += f"; {d.unplaced} unplaced: {why}"
            if d.rejected:
                summary += f" ({len(d.rejected)} rejected)"
        if not d.spread_ok:
            summary += f"; spread over {len(d.tiers)} tier(s), minTiers {d.min_tiers}"
    return replace(d, summary=summary)
