"""Defaults and validation of the typed API models."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tierra.api import InferenceService, Tier
from tierra_testing.builders import pool, service_manifest, tier_manifest, variant


def service_doc(**spec_overrides: Any) -> dict[str, Any]:
    """A service that sets only what the API requires (the defaults are under test)."""
    doc = service_manifest(
        variants=[variant(model="H100", concurrency=64, startup=None)],
        model={"name": "llama-3.1-8b-instruct", "uri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        slo={"latencyP95Ms": 1500},
    )
    doc["spec"].update(spec_overrides)
    return doc


def tier_doc(**spec_overrides: Any) -> dict[str, Any]:
    """A Tier that sets only what the API requires."""
    orin = pool("orin", "edge-gpu", None, resource_name="nvidia.com/gpu", price=None)
    doc = tier_manifest("edge-1", "edge", residency=(), pools=[orin])
    doc["spec"].update(spec_overrides)
    return doc


def test_service_defaults() -> None:
    spec = InferenceService.model_validate(service_doc()).spec
    assert spec.runtime.port == 8000
    assert spec.runtime.metrics_preset == "vllm"
    assert spec.placement.levels == ["central", "regional", "edge"]
    assert spec.placement.objective == "cost"
    assert spec.placement.min_tiers == 1
    assert spec.scaling.min_replicas == 1 and spec.scaling.max_replicas == 10
    assert spec.scaling.scale_down_delay_seconds == 120
    assert spec.migration.policy == "auto"
    assert spec.variants[0].startup_seconds == 60
    assert spec.replicas is None


def test_tier_defaults() -> None:
    spec = Tier.model_validate(tier_doc()).spec
    assert spec.cluster.kubeconfig_secret_ref is None  # the operator's own cluster
    assert spec.pools[0].accelerator.per_node == 1
    assert spec.pools[0].price_per_accelerator_hour == 0.0
    assert spec.residency == []


def test_camel_case_round_trip() -> None:
    service = InferenceService.model_validate(service_doc())
    dumped = service.model_dump(by_alias=True, exclude_none=True)
    assert dumped["spec"]["slo"]["latencyP95Ms"] == 1500
    assert "max_concurrency" not in str(dumped)
    assert InferenceService.model_validate(dumped) == service


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"variants": []}, "variants"),
        ({"slo": {"latencyP95Ms": 0}}, "latencyP95Ms"),
        ({"placement": {"levels": ["core"]}}, "levels"),
        ({"placement": {"objective": "speed"}}, "objective"),
        ({"placement": {"userRegions": {"eu": 1.5}}}, "userRegions"),
        ({"scaling": {"minReplicas": -1}}, "minReplicas"),
        ({"runtime": {"image": "x", "port": 70000}}, "port"),
        ({"unknownField": 1}, "unknownField"),
        (
            {
                "runtime": {
                    "image": "x",
                    "metricsPreset": "custom",
                    "customQueries": {"queueDepth": "sum(vllm:num_requests_waiting)"},
                }
            },
            "must contain {selector}",
        ),
        (
            {
                "runtime": {
                    "image": "x",
                    "metricsPreset": "custom",
                    "customQueries": {
                        "queueDepth": "sum(q{{selector}})",
                        "running": 'sum(r{namespace="other-team"})',
                    },
                }
            },
            "must contain {selector}",
        ),
        (
            {
                "runtime": {
                    "image": "x",
                    "metricsPreset": "custom",
                    "customQueries": {"queueDepth": "sum(q{{selector}})" + " " * 4096},
                }
            },
            "at most 4096",
        ),
    ],
)
def test_service_rejects(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        InferenceService.model_validate(service_doc(**overrides))
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"level": "core"}, "level"),
        ({"pools": []}, "pools"),
        ({"region": "EU West"}, "region"),
        ({"residency": ["EU"]}, "residency"),
        ({"metrics": {"prometheusURL": "ftp://x"}}, "prometheusURL"),
        ({"latencyMs": {"eu": -1}}, "latencyMs"),
    ],
)
def test_tier_rejects(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Tier.model_validate(tier_doc(**overrides))
    assert fragment in str(caught.value)
