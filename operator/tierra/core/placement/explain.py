"""A placement decision told for a person (``tierra explain``)."""

from __future__ import annotations

from tierra.core.placement.model import PlacementDecision
from tierra.core.placement.scores import describe_score

EXPLAIN_TOP = 5
"""Feasible candidates listed by ``explain``."""
EXPLAIN_MAX_REJECTED = 10
"""Rejections listed by ``explain`` (all of them are in ``PlacementDecision.rejected``)."""


def explain(decision: PlacementDecision) -> str:
    """A short multi-line account of the decision, for a person."""
    d = decision
    lines = [
        f"{d.service}: {d.placed}/{d.desired} replicas placed "
        f"(objective {d.objective}, minTiers {d.min_tiers})"
    ]
    if d.desired == 0:
        lines[0] += ": scaled to zero"
    if d.placements:
        lines.append("placed:")
        width = max(len("/".join(p.key)) for p in d.placements)
        lines += [f"  {'/'.join(p.key):<{width}}  x{p.replicas}  {p.reason}" for p in d.placements]
    if d.unplaced:
        why = "feasible pools full" if d.ranked else "no feasible candidate"
        lines.append(f"unplaced: {d.unplaced} ({why})")
    if not d.spread_ok:
        lines.append(f"spread short: {len(d.tiers)} tier(s) used, minTiers {d.min_tiers}")
    if d.ranked:
        lines.append("feasible, best first:")
        width = max(len("/".join(s.key)) for s in d.ranked[:EXPLAIN_TOP])
        lines += [
            f"  {i}. {'/'.join(s.key):<{width}}  "
            f"{describe_score(d.objective, s.score)}, {s.free} free"
            for i, s in enumerate(d.ranked[:EXPLAIN_TOP], start=1)
        ]
        if len(d.ranked) > EXPLAIN_TOP:
            lines.append(f"  ... and {len(d.ranked) - EXPLAIN_TOP} more")
    if d.rejected:
        lines.append("rejected:")
        lines += [f"  {r}" for r in d.rejected[:EXPLAIN_MAX_REJECTED]]
        if len(d.rejected) > EXPLAIN_MAX_REJECTED:
            lines.append(f"  ... and {len(d.rejected) - EXPLAIN_MAX_REJECTED} more")
    if d.dropped:
        lines.append("dropped from current placement:")
        lines += [f"  {r}" for r in d.dropped]
    return "\n".join(lines)
