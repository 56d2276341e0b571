"""Accelerator scheduling conventions."""

from __future__ import annotations

from typing import Any

import pytest

from tierra.api.common import AcceleratorType
from tierra.api.inference_service import Variant
from tierra.api.tier import Pool, Toleration
from tierra.core import accelerators
from tierra.core.accelerators import (
    CONVENTIONS,
    EDGE_ROLE_KEY,
    TPU_TOPOLOGY_LABEL,
    default_tolerations,
    has_resource_name,
    node_selector,
    resource_name,
    resources,
    tolerations,
)
from tierra_testing.builders import pool, variant


def make_pool(*args: Any, **kwargs: Any) -> Pool:
    return Pool.model_validate(pool(*args, **kwargs))


def make_variant(*args: Any, **kwargs: Any) -> Variant:
    return Variant.model_validate(variant(*args, **kwargs))


def test_every_accelerator_type_has_a_convention() -> None:
    assert set(CONVENTIONS) == {
        "nvidia-gpu",
        "google-tpu",
        "aws-neuron",
        "edge-gpu",
        "edge-npu",
        "cpu",
    }


@pytest.mark.parametrize(
    ("type_", "expected"),
    [
        ("nvidia-gpu", "nvidia.com/gpu"),
        ("google-tpu", "google.com/tpu"),
        ("aws-neuron", "aws.amazon.com/neuron"),
        ("cpu", "cpu"),
    ],
)
def test_default_resource_names(type_: str, expected: str) -> None:
    assert resource_name(make_pool("p", type_, None)) == expected


def test_edge_pools_use_their_resource_name() -> None:
    assert resource_name(make_pool("orin", "edge-gpu", resource_name="nvidia.com/gpu")) == (
        "nvidia.com/gpu"
    )
    assert resource_name(make_pool("npu", "edge-npu", resource_name="example.com/npu")) == (
        "example.com/npu"
    )


def test_edge_pool_without_resource_name_is_an_error() -> None:
    orin = make_pool("orin", "edge-gpu", "jetson-orin")
    assert not has_resource_name(orin)
    with pytest.raises(ValueError, match="resourceName"):
        resource_name(orin)


def test_pool_resource_name_overrides_default_but_not_for_cpu() -> None:
    assert resource_name(make_pool("p", "nvidia-gpu", resource_name="nvidia.com/mig-1g.10gb")) == (
        "nvidia.com/mig-1g.10gb"
    )
    assert resource_name(make_pool("c", "cpu", None, resource_name="example.com/x")) == "cpu"


@pytest.mark.parametrize(
    ("type_", "key"),
    [
        ("nvidia-gpu", "nvidia.com/gpu"),
        ("google-tpu", "google.com/tpu"),
        ("aws-neuron", "aws.amazon.com/neuron"),
        ("edge-gpu", EDGE_ROLE_KEY),
        ("edge-npu", EDGE_ROLE_KEY),
    ],
)
def test_default_tolerations(type_: AcceleratorType, key: str) -> None:
    assert default_tolerations(type_) == (
        Toleration(key=key, operator="Exists", effect="NoSchedule"),
    )


def test_cpu_has_no_default_toleration() -> None:
    assert default_tolerations("cpu") == ()


def test_pool_tolerations_are_merged_after_defaults_without_duplicates() -> None:
    edge = make_pool(
        "orin",
        "edge-gpu",
        resource_name="nvidia.com/gpu",
        tolerations=[
            {"key": EDGE_ROLE_KEY, "operator": "Exists", "effect": "NoSchedule"},
            {"key": "site", "operator": "Equal", "value": "berlin", "effect": "NoExecute"},
        ],
    )
    assert tolerations(edge) == [
        Toleration(key=EDGE_ROLE_KEY, operator="Exists", effect="NoSchedule"),
        Toleration(key="site", operator="Equal", value="berlin", effect="NoExecute"),
    ]


def test_node_selector_is_the_pools_plus_tpu_topology() -> None:
    tpu = make_pool(
        "v5e",
        "google-tpu",
        "v5e",
        selector={"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice"},
    )
    v = make_variant("tpu", "google-tpu", count=4, topology="2x2")
    assert node_selector(tpu, v) == {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
        TPU_TOPOLOGY_LABEL: "2x2",
    }
    gpu = make_pool(selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    assert node_selector(gpu, make_variant()) == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_tpu_without_topology_adds_nothing() -> None:
    tpu = make_pool("v5e", "google-tpu", "v5e")
    assert node_selector(tpu, make_variant("tpu", "google-tpu", count=4)) == {}


def test_resources_request_and_limit_whole_accelerators() -> None:
    v = make_variant(count=2)
    assert resources(make_pool(), v) == {
        "requests": {"nvidia.com/gpu": "2"},
        "limits": {"nvidia.com/gpu": "2"},
    }


def test_cpu_resources_request_cores_and_capped_memory() -> None:
    cpu_pool = make_pool("cpu", "cpu", None)
    assert resources(cpu_pool, make_variant("cpu", "cpu", count=4)) == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"memory": "16Gi"},
    }
    big = resources(cpu_pool, make_variant("cpu", "cpu", count=32))
    assert big["requests"]["memory"] == "64Gi"


def test_nominal_power_ranks_edge_below_datacenter() -> None:
    assert accelerators.nominal_kilowatts("edge-npu") < accelerators.nominal_kilowatts("nvidia-gpu")
