"""Offline validation of manifests against the pinned Kubernetes version's own schemas.

The OpenAPI v3 documents that the kube-apiserver serves are published in the
``k8s.io/kubernetes`` module (``api/openapi-spec/v3``), which ``tierra fleet build`` already
downloads from the Go module proxy for the pinned :data:`KUBERNETES_VERSION`. They are turned
into JSON Schemas that are stricter than the apiserver's default: an object with declared
properties allows no others, so a misspelt field fails here instead of being dropped with a
warning. Custom resources are checked against the ``openAPIV3Schema`` of their CRD, the same
way. Nothing here needs a cluster or the internet beyond the Go module proxy.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from tierra.localfleet.binaries import KUBERNETES_VERSION, BinaryError, go_environment

_REF = "#/components/schemas/"

PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
"""The prometheus-operator whose ServiceMonitor and PrometheusRule CRDs the chart's optional
monitoring objects are checked against (and the cluster test installs)."""
MONITORING_CRDS = ("servicemonitors", "prometheusrules")


@cache
def module_dir(module: str, version: str) -> Path:
    """Where ``module@version`` is unpacked in the Go module cache (downloaded if missing)."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        env=go_environment(),
        cwd="/",
    )
    if result.returncode != 0:
        raise BinaryError(f"cannot download {module}@{version}: {result.stdout[-2000:]}")
    return Path(json.loads(result.stdout)["Dir"])


def openapi_dir(version: str = KUBERNETES_VERSION) -> Path:
    """``api/openapi-spec/v3`` of ``k8s.io/kubernetes@version``: what its apiserver serves."""
    directory = module_dir("k8s.io/kubernetes", version) / "api" / "openapi-spec" / "v3"
    if not directory.is_dir():
        raise BinaryError(f"{directory} is missing from the k8s.io/kubernetes module")
    return directory


def monitoring_crd_paths() -> list[Path]:
    """The ServiceMonitor and PrometheusRule CRDs of the pinned prometheus-operator."""
    root = module_dir(
        "github.com/prometheus-operator/prometheus-operator", PROMETHEUS_OPERATOR_VERSION
    )
    return [
        root / "example" / "prometheus-operator-crd" / f"monitoring.coreos.com_{plural}.yaml"
        for plural in MONITORING_CRDS
    ]


@cache
def _components(version: str) -> dict[str, Any]:
    """Every named schema of every API group version (the same name means the same type)."""
    schemas: dict[str, Any] = {}
    for path in sorted(openapi_dir(version).glob("*_openapi.json")):
        schemas.update(json.loads(path.read_text()).get("components", {}).get("schemas", {}))
    return schemas


def _strict(node: Any) -> Any:
    """OpenAPI schema -> JSON Schema: local ``$defs`` references, closed objects."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "default":
            continue
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {
                name: _strict(schema) for name, schema in value.items()
            }  # names, not keywords
        else:
            out[key] = _strict(value)
    if isinstance(out.get("$ref"), str) and out["$ref"].startswith(_REF):
        out["$ref"] = "#/$defs/" + out["$ref"].removeprefix(_REF)
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(exclusive) is True and bound in out:  # OpenAPI 3.0's boolean form
            out[exclusive] = out.pop(bound)
        elif out.get(exclusive) is False:
            del out[exclusive]
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def definitions(version: str = KUBERNETES_VERSION) -> dict[str, Any]:
    """All of the version's named schemas as strict JSON Schema, keyed by OpenAPI name."""
    return {name: _strict(schema) for name, schema in _components(version).items()}


@cache
def _kinds(version: str) -> dict[tuple[str, str], str]:
    kinds: dict[tuple[str, str], str] = {}
    for name, schema in _components(version).items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            kinds.setdefault((api_version, gvk["kind"]), name)
    return kinds


def _object_meta_ref() -> dict[str, Any]:
    return {"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}


def crd_schemas(crds: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON Schema of each served version of each CRD."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for crd in crds:
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schema.setdefault("properties", {})["metadata"] = _object_meta_ref()
            for field in ("apiVersion", "kind"):
                schema["properties"].setdefault(field, {"type": "string"})
            schema.setdefault("additionalProperties", False)
            out[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return out


class Validator:
    """Validates manifests against the pinned version's built-in kinds and the CRDs given."""

    def __init__(
        self, crds: Iterable[Mapping[str, Any]] = (), version: str = KUBERNETES_VERSION
    ) -> None:
        self.version = version
        self._defs = definitions(version)
        self._kinds = _kinds(version)
        self._crds = crd_schemas(crds)
        self._validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}

    def _validator(self, key: tuple[str, str]) -> jsonschema.protocols.Validator | None:
        if key not in self._validators:
            if key in self._crds:
                schema = {**self._crds[key], "$defs": self._defs}
            elif key in self._kinds:
                schema = {"$ref": f"#/$defs/{self._kinds[key]}", "$defs": self._defs}
            else:
                return None
            self._validators[key] = jsonschema.Draft202012Validator(schema)
        return self._validators[key]

    def errors(self, manifest: Mapping[str, Any]) -> list[str]:
        """One message per problem, naming the object and the field's path."""
        key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
        name = (manifest.get("metadata") or {}).get("name", "?")
        where = f"{key[1]}/{name} ({key[0]})"
        validator = self._validator(key)
        if validator is None:
            return [f"{where}: no schema for this kind in Kubernetes {self.version} or the CRDs"]
        return [
            f"{where}: {'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
            for error in sorted(validator.iter_errors(manifest), key=lambda e: list(e.path))
        ]


def validate_documents(
    documents: Iterable[Mapping[str, Any] | None], crds: Iterable[Mapping[str, Any]] = ()
) -> list[str]:
    """Validate a multi-document stream (``None`` documents are skipped)."""
    validator = Validator(crds)
    return [error for doc in documents if doc for error in validator.errors(doc)]
