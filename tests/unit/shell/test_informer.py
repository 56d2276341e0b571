"""Informer stores report every write and index children by owner; the usage index on top."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from tierra.core.inventory import UsageIndex, held_by_others, owner_key, service_usage
from tierra.shell.informer import Informer, Key, Store
from tierra.shell.kube import KubeClient, Obj
from tierra_testing.builders import pool, tier


def child(name: str, owner: str | None, version: str = "1", **extra: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "tierra", **extra}
    if owner is not None:
        labels["tierra.dev/inference-service"] = owner
        labels["tierra.dev/inference-service-namespace"] = "team-a"
    return {
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "labels": labels,
            "resourceVersion": version,
        },
        "spec": {"replicas": 1},
    }


def test_store_reports_every_write_in_order() -> None:
    store = Store()
    seen: list[tuple[Key, Obj | None]] = []
    store.subscribe(lambda key, obj: seen.append((key, obj)))
    a, b = child("a", "x"), child("b", "x")
    store[("team-a", "a")] = a
    store[("team-a", "b")] = b
    assert store.pop(("team-a", "a")) is a
    assert store.pop(("team-a", "zz"), None) is None  # no such key: nothing reported
    del store[("team-a", "b")]
    a_key, b_key = ("team-a", "a"), ("team-a", "b")
    assert seen == [(a_key, a), (b_key, b), (a_key, None), (b_key, None)]
    assert len(store) == 0


def test_failing_listener_does_not_break_the_store() -> None:
    store = Store()

    def broken(key: Key, obj: Obj | None) -> None:
        raise RuntimeError("bug")

    calls: list[Key] = []
    store.subscribe(broken)
    store.subscribe(lambda key, obj: calls.append(key))
    store[("ns", "a")] = child("a", None)
    assert calls == [("ns", "a")]
    store.unsubscribe(broken)
    store.unsubscribe(broken)  # twice is harmless


def test_store_indexes_by_owner() -> None:
    store = Store(index_by=owner_key)
    store[("team-a", "a")] = child("a", "chat")
    store[("team-a", "b")] = child("b", "chat")
    store[("team-a", "c")] = child("c", "big")
    store[("team-a", "n")] = child("n", None)
    assert [o["metadata"]["name"] for o in store.by_index("team-a/chat")] == ["a", "b"]
    store[("team-a", "b")] = child("b", "big")  # relabelled: moves to the other owner
    assert [o["metadata"]["name"] for o in store.by_index("team-a/chat")] == ["a"]
    assert [o["metadata"]["name"] for o in store.by_index("team-a/big")] == ["c", "b"]
    for obj in store.by_index("team-a/big"):  # deleting while looping is safe
        del store[(obj["metadata"]["namespace"], obj["metadata"]["name"])]
    assert store.by_index("team-a/big") == []
    assert store.by_index("nobody/none") == []
    assert set(store) == {("team-a", "a"), ("team-a", "n")}


class FakeClient:
    name = "fake"

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    async def list(self, kind: str, label_selector: str | None = None) -> dict[str, Any]:
        return {"items": [dict(i) for i in self.items], "metadata": {"resourceVersion": "9"}}


async def test_relist_updates_the_store_in_place_and_notifies() -> None:
    client = FakeClient([child("a", "chat"), child("b", "chat")])
    events: list[tuple[str, str]] = []
    informer = Informer(
        cast(KubeClient, client),
        "Deployment",
        on_change=lambda event, obj: events.append((event, obj["metadata"]["name"])),
        index_by=owner_key,
    )
    store = informer.store
    writes: list[tuple[Key, bool]] = []
    store.subscribe(lambda key, obj: writes.append((key, obj is not None)))
    assert await informer._relist() == "9"
    client.items = [child("b", "chat", version="2"), child("c", "chat")]
    await informer._relist()
    assert informer.store is store  # subscribers stay attached
    assert set(store) == {("team-a", "b"), ("team-a", "c")}
    assert [o["metadata"]["name"] for o in store.by_index("team-a/chat")] == ["b", "c"]
    assert events[2:] == [("DELETED", "a"), ("MODIFIED", "b"), ("ADDED", "c")]
    assert (("team-a", "a"), False) in writes


CENTRAL = tier(region="us-central", pools=[pool("cpu", "cpu", None, per_node=32)])
TIER_LABELS = {"tierra.dev/tier": "central", "tierra.dev/pool": "cpu"}


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),
            st.sampled_from(["chat", "big", None]),
            st.sampled_from(["v1", "v2"]),
            st.integers(0, 3),
        ),
        max_size=30,
    )
)
def test_usage_index_subscribed_to_a_store_matches_from_scratch(
    ops: list[tuple[str, str | None, str, int]],
) -> None:
    central = CENTRAL
    store = Store(index_by=owner_key)
    index = UsageIndex()
    index.track(central, store.items())
    store.subscribe(lambda key, obj: index.write("central", key, obj))
    for name, owner, variant, replicas in ops:
        key = ("team-a", name)
        if replicas == 0:
            store.pop(key, None)
            continue
        obj = child(name, owner, **TIER_LABELS, **{"tierra.dev/variant": variant})
        obj["spec"] = {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}},
        }
        store[key] = obj
        expected = service_usage(central, store.values(), ())
        assert dict(index) == expected
        for who in ("team-a/chat", "team-a/big"):
            assert held_by_others(index, who) == held_by_others(expected, who)
