"""The drift check: rendered fields must all be present, with equal values, in the live object."""

from __future__ import annotations

from tierra.core.reconcile import is_subset


def test_extra_live_fields_are_fine() -> None:
    desired = {"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "m"}]}}}}
    live = {
        "spec": {
            "replicas": 2,
            "strategy": {},
            "template": {
                "spec": {
                    "containers": [{"name": "m", "terminationMessagePath": "/dev/termination-log"}]
                }
            },
        },
        "status": {},
    }
    assert is_subset(desired, live)


def test_changed_missing_or_reordered_values_are_drift() -> None:
    desired = {"spec": {"replicas": 2, "args": ["a", "b"]}}
    assert not is_subset(desired, {"spec": {"replicas": 3, "args": ["a", "b"]}})
    assert not is_subset(desired, {"spec": {"args": ["a", "b"]}})
    assert not is_subset(desired, {"spec": {"replicas": 2, "args": ["b", "a"]}})
    assert not is_subset(desired, {"spec": {"replicas": 2, "args": ["a", "b", "c"]}})


def test_quantities_compare_by_text() -> None:
    assert is_subset({"limits": {"nvidia.com/gpu": "4"}}, {"limits": {"nvidia.com/gpu": "4"}})
    assert is_subset({"port": 80}, {"port": 80})


def test_zero_values_match_fields_the_apiserver_omits() -> None:
    desired = {"args": [], "probe": {"initialDelaySeconds": 0, "periodSeconds": 10}}
    assert is_subset(desired, {"probe": {"periodSeconds": 10}})
    assert not is_subset({"probe": {"initialDelaySeconds": 5}}, {"probe": {}})
