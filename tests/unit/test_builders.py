"""The shared test builders (tierra_testing.builders) write objects a real apiserver takes:
each manifest passes the CRDs' and Kubernetes' own schemas, closed to unknown fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tierra.localfleet.kubeschema import Validator
from tierra_testing.builders import (
    child_labels,
    deployment,
    pool,
    service,
    service_manifest,
    service_view,
    tier,
    tier_manifest,
    tier_view,
    variant,
)

CRDS = Path(__file__).resolve().parents[2] / "crds"

MANIFESTS = {
    "service": service_manifest(),
    "service, every option": service_manifest(
        "bulk-1",
        "bench",
        [
            variant("tpu", "google-tpu", "v5e", count=4, topology="2x2", args=["--x"]),
            variant("cpu", "cpu", concurrency=4, prefill=500, decode=50, startup=None),
        ],
        model={"name": "bench"},
        runtime={"image": "example/server:1"},
        slo={"latencyP95Ms": 5000},
        uid="0000-uid",
        placement={"levels": ["central"]},
        scaling={"minReplicas": 1, "maxReplicas": 2},
    ),
    "tier": tier_manifest(),
    "tier, every option": tier_manifest(
        "edge",
        "edge",
        region="zz-north",
        residency=(),
        latency={"zz-north": 5},
        carbon=120.0,
        pools=[
            pool(
                "orin",
                "edge-gpu",
                None,
                price=None,
                per_node=1,
                selector={"tierra.dev/pool": "orin"},
                tolerations=[{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
                resource_name="nvidia.com/gpu",
            )
        ],
        namespace="inference",
        kubeconfig_secret="edge-kubeconfig",
    ),
    "deployment": deployment(),
    "deployment, every option": deployment(
        "chat-h100-central",
        2,
        namespace="team-a",
        labels=child_labels(),
        selector={"app.kubernetes.io/instance": "chat-h100-central"},
        container="model-server",
        image="registry.k8s.io/pause:3.10",
        resources={"nvidia.com/gpu": "1"},
        node_selector={"tierra.dev/pool": "h100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    ),
}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator([yaml.safe_load(path.read_text()) for path in sorted(CRDS.glob("*.yaml"))])


@pytest.mark.parametrize("manifest", MANIFESTS.values(), ids=MANIFESTS.keys())
def test_manifest_passes_the_apiservers_schema(validator: Validator, manifest: Any) -> None:
    assert validator.errors(manifest) == []


def test_a_deployments_pods_match_its_selector() -> None:
    manifest = deployment(labels=child_labels(), selector={"app": "x"})
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert manifest["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert child_labels().items() <= pod_labels.items()


def test_typed_builders_are_the_manifests_validated() -> None:
    assert service().metadata.uid == "0000-uid"
    assert service("x", variants=[variant("cpu", "cpu")]).spec.variants[0].accelerator.type == "cpu"
    assert tier("edge", "edge").spec.pools[0].price_per_accelerator_hour == 2.0
    view = service_view(tier("a"), tier_view(tier("b"), {"h100": (8, 6)}), settled=["a"])
    assert [(t.name, t.pools["h100"].free) for t in view.tiers] == [("a", 8), ("b", 2)]
    assert view.settled == frozenset({"a"})
