"""The CRD generator: structural schemas, documentation, rules, and no drift from the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tierra.api.crd import all_crds, inference_service_crd, model_schema, tier_crd
from tierra.api.inference_service import InferenceServiceSpec
from tierra.crdgen import render_crds, stale_crds

REPO = Path(__file__).resolve().parents[3]


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def openapi(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize(
    "crd", [tier_crd(), inference_service_crd()], ids=["tier", "inferenceservice"]
)
def test_schema_is_structural(crd: dict[str, Any]) -> None:
    for path, node in walk(openapi(crd)):
        for forbidden in ("$ref", "anyOf", "allOf", "oneOf", "$defs", "title", "const"):
            assert forbidden not in node, f"{path} has {forbidden}"
        if path.count(".") >= 1 and path != ".metadata":
            assert "type" in node, f"{path} has no type"
        if node.get("type") == "array":
            assert "items" in node, path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node


@pytest.mark.parametrize(
    "crd", [tier_crd(), inference_service_crd()], ids=["tier", "inferenceservice"]
)
def test_every_field_is_documented(crd: dict[str, Any]) -> None:
    for path, node in walk(openapi(crd)):
        if path.startswith((".spec", ".status")) and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description"


def test_cross_field_rules_are_cel() -> None:
    rules = [
        rule["rule"]
        for _, node in walk(openapi(inference_service_crd()))
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert any("minReplicas <= self.maxReplicas" in rule for rule in rules)
    assert any("allowedVariants" in rule for rule in rules)
    assert any("ttftP95Ms" in rule for rule in rules)
    assert any("metadata.name.size()" in rule for rule in rules)


def test_lists_keyed_by_name_reject_duplicates() -> None:
    variants = openapi(inference_service_crd())["properties"]["spec"]["properties"]["variants"]
    assert variants["x-kubernetes-list-type"] == "map"
    assert variants["x-kubernetes-list-map-keys"] == ["name"]
    assert variants["minItems"] == 1
    pools = openapi(tier_crd())["properties"]["spec"]["properties"]["pools"]
    assert pools["x-kubernetes-list-type"] == "map"


def test_defaults_enums_and_bounds() -> None:
    spec = model_schema(InferenceServiceSpec)
    scaling = spec["properties"]["scaling"]
    assert scaling["default"] == {
        "minReplicas": 1,
        "maxReplicas": 10,
        "scaleToZero": False,
        "scaleDownDelaySeconds": 120,
        "schedules": [],
    }
    assert scaling["properties"]["scaleDownDelaySeconds"]["default"] == 120
    memory = scaling["properties"]["burstMemorySeconds"]
    assert (memory["minimum"], memory["maximum"], "default" in memory) == (60, 14400, False)
    assert spec["properties"]["placement"]["properties"]["objective"]["enum"] == [
        "cost",
        "latency",
        "carbon",
    ]
    capacity = spec["properties"]["variants"]["items"]["properties"]["capacity"]
    assert capacity["properties"]["prefillTokensPerSecond"]["exclusiveMinimum"] is True


def test_subresources_names_and_columns() -> None:
    crd = inference_service_crd()
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    names = crd["spec"]["names"]
    assert "isvc" not in names["shortNames"] and names["categories"] == ["tierra"]
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Tiers", "Variant", "Ready", "Desired", "P95ms", "SLOms", "Age"} <= columns
    assert tier_crd()["spec"]["scope"] == "Cluster"


def test_generation_is_deterministic() -> None:
    assert render_crds() == render_crds()
    assert set(all_crds()) == {"tierra.dev_tiers.yaml", "tierra.dev_inferenceservices.yaml"}


def test_checked_in_crds_match_the_models() -> None:
    stale = stale_crds(REPO)
    assert not stale, f"run `tierra crds generate`; stale: {stale}"
