"""The incremental usage index answers exactly what the from-scratch functions compute."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tierra.core.inventory import (
    ServiceUsage,
    Slot,
    UsageIndex,
    bound_replicas,
    held_by_others,
    merge_usage,
    service_usage,
)
from tierra_testing import builders
from tierra_testing.builders import child_labels, tier

TIERS = [
    tier(
        name,
        region="us-central",
        pools=[
            builders.pool(per_node=8, selector={"tierra.dev/pool": "h100"}),
            builders.pool("cpu", "cpu", None, per_node=32, selector={"tierra.dev/pool": "cpu"}),
        ],
    )
    for name in ("central", "regional")
]
OWNERS = ["chat", "big", "tiny"]
POOLS = ["h100", "cpu", "tpu"]  # tpu is not a pool of these tiers
VARIANTS = ["a", "b"]
KEYS = [("team-a", f"d{i}") for i in range(6)]


def deployment(
    owner: str | None, tier_label: str, pool: str, variant: str, replicas: int, units: str
) -> dict[str, Any]:
    resource = "cpu" if pool == "cpu" else "nvidia.com/gpu"
    labels = child_labels(owner, tier=tier_label, pool=pool, variant=variant)
    return builders.deployment(replicas=replicas, labels=labels, resources={resource: units})


deployments = st.builds(
    deployment,
    st.sampled_from([*OWNERS, None]),
    st.sampled_from(["central", "regional", "elsewhere"]),
    st.sampled_from(POOLS),
    st.sampled_from(VARIANTS),
    st.integers(0, 4),
    st.sampled_from(["1", "2", "8", "500m", "1500m"]),
)
slots = st.tuples(
    st.sampled_from([t.metadata.name for t in TIERS]),
    st.sampled_from(POOLS),
    st.sampled_from(VARIANTS),
)
bounds = st.dictionaries(
    st.sampled_from([f"team-a/{o}" for o in OWNERS]),
    st.dictionaries(slots, st.integers(0, 5), max_size=4),
    max_size=3,
)
operations = st.one_of(
    st.tuples(st.just("put"), st.integers(0, 1), st.sampled_from(KEYS), deployments),
    st.tuples(st.just("delete"), st.integers(0, 1), st.sampled_from(KEYS)),
    st.tuples(st.just("bound"), st.integers(0, 1), bounds),
    st.tuples(st.just("retrack"), st.integers(0, 1)),
    st.tuples(st.just("untrack"), st.integers(0, 1)),
)


def from_scratch(
    stores: list[dict[Any, Any]],
    bound: list[dict[str, dict[Slot, int]]],
    tracked: list[bool],
) -> dict[str, ServiceUsage]:
    return merge_usage(
        service_usage(t, store.values(), (), bound=b)
        for t, store, b, on in zip(TIERS, stores, bound, tracked, strict=True)
        if on
    )


def assert_same(index: UsageIndex, expected: dict[str, ServiceUsage]) -> None:
    assert dict(index) == expected
    assert len(index) == len(expected)
    for owner in [f"team-a/{o}" for o in OWNERS] + ["nobody/none"]:
        assert (owner in index) == (owner in expected)
        assert index.get(owner) == expected.get(owner)
        assert (
            index.get(owner, ServiceUsage()).current()
            == expected.get(owner, ServiceUsage()).current()
        )
        assert held_by_others(index, owner) == held_by_others(expected, owner)


@settings(max_examples=300, deadline=None)
@given(st.lists(operations, max_size=40))
def test_index_matches_from_scratch_usage(ops: list[tuple[Any, ...]]) -> None:
    stores: list[dict[Any, Any]] = [{}, {}]
    bound: list[dict[str, dict[Slot, int]]] = [{}, {}]
    tracked = [True, True]
    index = UsageIndex()
    for t in TIERS:
        index.track(t, ())
    for op in ops:
        which = op[1]
        name = TIERS[which].metadata.name
        if op[0] == "put":
            stores[which][op[2]] = op[3]
            index.write(name, op[2], op[3])
        elif op[0] == "delete":
            if stores[which].pop(op[2], None) is not None:
                index.write(name, op[2], None)
        elif op[0] == "bound":
            bound[which] = op[2]
            index.set_bound(name, op[2])
        elif op[0] == "retrack":
            tracked[which] = True
            index.track(TIERS[which], stores[which].items(), bound[which])
        else:
            tracked[which] = False
            index.untrack(name)
        assert_same(index, from_scratch(stores, bound, tracked))


def test_later_deployment_of_a_slot_wins_like_service_usage() -> None:
    index = UsageIndex()
    central = TIERS[0]
    index.track(central, ())
    store: dict[Any, Any] = {}
    for key, replicas in [(KEYS[0], 1), (KEYS[1], 3), (KEYS[0], 2)]:
        store[key] = deployment("chat", "central", "h100", "a", replicas, "1")
        index.write("central", key, store[key])
    assert index["team-a/chat"].replicas == {("central", "h100", "a"): 3}
    assert dict(index) == service_usage(central, store.values(), ())


def test_bound_from_pods_and_held_by_others() -> None:
    central = TIERS[0]
    chat = deployment("chat", "central", "h100", "a", 3, "2")
    big = deployment("big", "central", "h100", "a", 2, "8")
    pods = [
        {"metadata": {"labels": chat["metadata"]["labels"]}, "spec": {"nodeName": "g0"}},
        {"metadata": {"labels": big["metadata"]["labels"]}, "spec": {"nodeName": "g1"}},
    ]
    index = UsageIndex()
    index.track(central, [(KEYS[0], chat), (KEYS[1], big)], bound_replicas(central, pods))
    assert held_by_others(index, "team-a/chat") == {("central", "h100"): 8}
    assert held_by_others(index, "team-a/big") == {("central", "h100"): 4}
    assert index["team-a/chat"].current()[0].scheduled == 1
