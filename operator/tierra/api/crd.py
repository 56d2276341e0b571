"""Generate CustomResourceDefinitions from the pydantic models (pure: models in, dicts out).

pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 schema. The
conversion inlines ``$ref``s, turns ``Optional[X]`` into a non-required ``X``, maps numeric
``exclusiveMinimum`` to the boolean form, drops titles and null defaults, and keeps the
``x-kubernetes-*`` extensions the models declare (CEL rules, list types).
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from tierra.api.common import GROUP, VERSION, cel
from tierra.api.inference_service import (
    MAX_SERVICE_NAME,
    InferenceServiceSpec,
    InferenceServiceStatus,
)
from tierra.api.tier import MAX_TIER_NAME, TierSpec, TierStatus

Schema = dict[str, Any]

_DROPPED_KEYS = {"title", "$defs"}


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Merge a ``$ref`` (or single-element ``allOf``) into its sibling keys."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**_resolve(copy.deepcopy(target), defs)}
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return merged
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**_resolve(node["allOf"][0], defs)}
        merged.update({k: v for k, v in node.items() if k != "allOf"})
        return merged
    any_of = node.get("anyOf")
    if any_of is not None:
        branches = [b for b in any_of if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"non-structural union in schema: {node}")
        merged = {**_resolve(branches[0], defs)}
        merged.update({k: v for k, v in node.items() if k != "anyOf"})
        return merged
    return node


def _structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    node = _resolve(node, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "default":
            if value is None:
                continue
            out[key] = value
        elif key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _structural(value, defs)
        elif key == "exclusiveMinimum":
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum":
            out["maximum"] = value
            out["exclusiveMaximum"] = True
        elif key == "const":
            out["enum"] = [value]
        elif key == "additionalProperties" and value is False:
            continue  # structural schemas prune unknown fields already
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


class _FactoryDefaults(GenerateJsonSchema):
    """Publish ``default_factory`` defaults: nested models as their full default (CEL rules
    are checked against a default as written, so ``{}`` would fail them); non-empty lists
    are kept; empty collections are omitted."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return value.model_dump(by_alias=True, exclude_none=True, mode="json")
        if isinstance(value, list | dict) and not value:
            return NoDefault
        return value


def model_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of one model."""
    raw = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_FactoryDefaults
    )
    return _structural(raw, raw.get("$defs", {}))


def _root_schema(
    spec: type[BaseModel],
    status: type[BaseModel],
    description: str,
    validations: list[Schema] | None = None,
) -> Schema:
    root: Schema = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version: tierra.dev/v1alpha1."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": model_schema(spec),
            "status": model_schema(status),
        },
    }
    if validations:
        root["x-kubernetes-validations"] = validations
    return root


def _crd(
    kind: str,
    plural: str,
    scope: str,
    short_names: list[str],
    schema: Schema,
    columns: list[Schema],
    subresources: Schema,
) -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["tierra"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def _column(name: str, json_path: str, type_: str, description: str, priority: int = 0) -> Schema:
    column: Schema = {
        "name": name,
        "type": type_,
        "jsonPath": json_path,
        "description": description,
    }
    if priority:
        column["priority"] = priority
    return column


def inference_service_crd() -> Schema:
    schema = _root_schema(
        InferenceServiceSpec,
        InferenceServiceStatus,
        "An InferenceService serves one model across tiers and accelerator variants, "
        "autoscaled on its SLOs.",
        [
            cel(
                f"self.metadata.name.size() <= {MAX_SERVICE_NAME}",
                f"metadata.name must be at most {MAX_SERVICE_NAME} characters "
                "(child names append the variant and tier)",
            ),
            cel(
                "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
                "metadata.name must be a DNS-1035 label (start with a letter): it names "
                "Services in member clusters",
            ),
        ],
    )
    columns = [
        _column("Tiers", ".status.tiers", "string", "Tiers the service runs in."),
        _column("Variant", ".status.variant", "string", "Accelerator variants in use."),
        _column("Ready", ".status.readyReplicas", "integer", "Ready replicas."),
        _column("Desired", ".status.replicas", "integer", "Desired replicas."),
        _column("P95ms", ".status.metrics.p95LatencyMs", "number", "Observed p95 latency (ms)."),
        _column("SLOms", ".spec.slo.latencyP95Ms", "integer", "p95 latency objective (ms)."),
        _column(
            "Scaling", ".status.autoscaling.mode", "string", "auto, manual or hold.", priority=1
        ),
        _column(
            "Placed",
            '.status.conditions[?(@.type=="Placed")].status',
            "string",
            "Placed condition.",
        ),
        _column("Age", ".metadata.creationTimestamp", "date", "Age."),
    ]
    subresources = {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    return _crd(
        "InferenceService",
        "inferenceservices",
        "Namespaced",
        ["tisvc", "tis"],
        schema,
        columns,
        subresources,
    )


def tier_crd() -> Schema:
    schema = _root_schema(
        TierSpec,
        TierStatus,
        "A Tier is a place where inference can run: a cluster at a level (central, regional, "
        "edge) in a region, with accelerator pools.",
        [
            cel(
                f"self.metadata.name.size() <= {MAX_TIER_NAME}",
                f"metadata.name must be at most {MAX_TIER_NAME} characters "
                "(it is part of child names and labels)",
            ),
        ],
    )
    columns = [
        _column("Level", ".spec.level", "string", "central, regional or edge."),
        _column("Region", ".spec.region", "string", "Region."),
        _column("Residency", ".spec.residency", "string", "Data boundaries satisfied."),
        _column(
            "Reachable",
            '.status.conditions[?(@.type=="Reachable")].status',
            "string",
            "Whether the tier's cluster answers.",
        ),
        _column("Age", ".metadata.creationTimestamp", "date", "Age."),
    ]
    return _crd("Tier", "tiers", "Cluster", ["ttier"], schema, columns, {"status": {}})


def all_crds() -> dict[str, Schema]:
    """File name -> CRD, in the order they are written to ``crds/``."""
    return {
        "tierra.dev_tiers.yaml": tier_crd(),
        "tierra.dev_inferenceservices.yaml": inference_service_crd(),
    }
