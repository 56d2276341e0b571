"""Generated parts of the Helm chart in ``charts/tierra``: ``values.schema.json``.

Every object in the schema is closed (``additionalProperties: false``), so a misspelt key fails
``helm install``/``template``/``lint`` with a message naming it instead of being ignored. Values
that are Kubernetes types (resources, security contexts, tolerations, affinity, env) use the
pinned Kubernetes version's own schemas (see :mod:`.kubeschema`), closed in the same way.

``python -m tierra.localfleet.chart generate|check`` writes or checks the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tierra.localfleet.binaries import ensure_helm
from tierra.localfleet.kubeschema import definitions

CHART = Path("charts") / "tierra"
SCHEMA_FILE = "values.schema.json"

_K8S = "io.k8s.api.core.v1."


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/definitions/{name}"}


def _string_map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string"},
    }


def _closed(description: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": properties,
        **extra,
    }


def _port(description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": 65535, "description": description}


_DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"}


def _values_properties() -> dict[str, Any]:
    return {
        "image": _closed(
            "Operator container image.",
            {
                "repository": {"type": "string", "minLength": 1},
                "tag": {"type": "string", "description": "Empty: the chart's appVersion."},
                "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
            },
        ),
        "imagePullSecrets": {"type": "array", "items": _ref(f"{_K8S}LocalObjectReference")},
        "nameOverride": {"type": "string"},
        "fullnameOverride": {"type": "string"},
        "replicaCount": {
            "type": "integer",
            "minimum": 0,
            "maximum": 10,
            "description": "Operator replicas: they elect a leader on a Lease and only the "
            "leader acts; 2 keeps a standby ready to take over within the lease duration.",
        },
        "serviceAccount": _closed(
            "The operator's ServiceAccount.",
            {
                "create": {"type": "boolean"},
                "name": {"type": "string"},
                "annotations": _string_map("ServiceAccount annotations."),
            },
        ),
        "logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
        "defaultPrometheusURL": {
            "type": "string",
            "pattern": "^(https?://.+)?$",
            "description": "Prometheus for tiers without spec.metrics; empty: none.",
        },
        "metricsInterval": {"type": "number", "exclusiveMinimum": 0},
        "statusRefreshSeconds": {
            "type": "number",
            "minimum": 5,
            "description": "Seconds between status writes of a service's observed metrics while "
            "its decision holds.",
        },
        "defaultPrometheusScrapeInterval": {
            "type": "number",
            "minimum": 1,
            "maximum": 300,
            "description": "Seconds between the default Prometheus' scrapes of the model servers.",
        },
        "extraArgs": {"type": "array", "items": {"type": "string"}},
        "extraEnv": {"type": "array", "items": _ref(f"{_K8S}EnvVar")},
        "metrics": _closed(
            "The operator's Prometheus metrics endpoint.",
            {
                "port": _port("Container and Service port of /metrics."),
                "service": _closed(
                    "The metrics Service.",
                    {
                        "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                        "annotations": _string_map("Service annotations."),
                    },
                ),
                "serviceMonitor": _closed(
                    "A prometheus-operator ServiceMonitor for the metrics Service.",
                    {
                        "enabled": {"type": "boolean"},
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "labels": _string_map("Extra labels (your Prometheus' selector)."),
                    },
                ),
            },
        ),
        "health": _closed(
            "kopf's liveness endpoint.", {"port": _port("Port of /healthz (both probes).")}
        ),
        "prometheusRule": _closed(
            "A prometheus-operator PrometheusRule with Tierra's alerts.",
            {
                "enabled": {"type": "boolean"},
                "labels": _string_map("Extra labels (your Prometheus' ruleSelector)."),
            },
        ),
        "grafanaDashboard": _closed(
            "A ConfigMap holding Tierra's Grafana dashboard (for Grafana's sidecar).",
            {
                "enabled": {"type": "boolean"},
                "labels": _string_map("Labels the Grafana sidecar selects dashboards by."),
                "annotations": _string_map("e.g. the sidecar's target folder."),
            },
        ),
        "resources": _ref(f"{_K8S}ResourceRequirements"),
        "podAnnotations": _string_map("Operator Pod annotations."),
        "podSecurityContext": _ref(f"{_K8S}PodSecurityContext"),
        "securityContext": _ref(f"{_K8S}SecurityContext"),
        "nodeSelector": _string_map("Operator Pod node selector."),
        "tolerations": {"type": "array", "items": _ref(f"{_K8S}Toleration")},
        "affinity": _ref(f"{_K8S}Affinity"),
    }


def _referenced(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            found.add(ref.removeprefix("#/$defs/"))
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref.removeprefix("#/definitions/"))
        for value in node.values():
            _referenced(value, found)
    elif isinstance(node, list):
        for value in node:
            _referenced(value, found)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                value.replace("#/$defs/", "#/definitions/")
                if key == "$ref" and isinstance(value, str)
                else _rewrite_refs(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(value) for value in node]
    return node


def _drop_descriptions(node: Any) -> Any:
    """Kubernetes' own field docs would make the file ten times larger; `kubectl explain`
    has them."""
    if isinstance(node, dict):
        return {
            key: (
                {name: _drop_descriptions(schema) for name, schema in value.items()}
                if key == "properties"
                else _drop_descriptions(value)
            )
            for key, value in node.items()
            if key != "description" and not key.startswith("x-kubernetes-")
        }
    if isinstance(node, list):
        return [_drop_descriptions(value) for value in node]
    return node


def values_schema() -> dict[str, Any]:
    properties = _values_properties()
    k8s = definitions()
    needed: set[str] = set()
    _referenced(properties, needed)
    closure: dict[str, Any] = {}
    while needed:
        name = needed.pop()
        if name in closure:
            continue
        closure[name] = _rewrite_refs(_drop_descriptions(k8s[name]))
        _referenced(k8s[name], needed)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Tierra Helm chart values",
        "description": "Generated by `python -m tierra.localfleet.chart generate`; do not edit.",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "definitions": dict(sorted(closure.items())),
    }


def render_values_schema() -> str:
    return json.dumps(values_schema(), indent=2, sort_keys=False) + "\n"


class HelmFailed(subprocess.CalledProcessError):
    """A helm command that exited non-zero, with what helm said in its message (a plain
    ``CalledProcessError`` says only the exit status, which tells a CI log nothing)."""

    def __str__(self) -> str:
        said = str(self.stderr or self.stdout or "").strip()
        return f"{super().__str__()}\nhelm said: {said[-2000:]}" if said else super().__str__()


class Helm:
    """The pinned ``helm``, with its configuration, cache and data kept under ``home`` (never
    the user's ``~/.config/helm``), and an optional kubeconfig and context."""

    def __init__(
        self, home: Path, kubeconfig: Path | None = None, context: str | None = None
    ) -> None:
        self.binary = ensure_helm()
        self.home = home
        self.kubeconfig = kubeconfig
        self.context = context

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if self.kubeconfig:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *args]
        if self.context:
            argv.append(f"--kube-context={self.context}")
        result = subprocess.run(
            argv, capture_output=True, text=True, env=self.env(), timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise HelmFailed(result.returncode, argv, result.stdout, result.stderr)
        return result

    def template(
        self, chart: Path, values: dict[str, Any] | None = None, namespace: str = "tierra-system"
    ) -> list[dict[str, Any]]:
        """``helm template`` with ``values`` (written to a file, as a user would) -> objects."""
        values_file = self.home / "values.yaml"
        self.home.mkdir(parents=True, exist_ok=True)
        values_file.write_text(yaml.safe_dump(values or {}))
        out = self.run("template", "tierra", str(chart), "-n", namespace, "-f", str(values_file))
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    root = Path(argv[1]) if len(argv) > 1 else Path()
    path = root / CHART / SCHEMA_FILE
    text = render_values_schema()
    if command == "generate":
        path.write_text(text)
        print(f"wrote {path}")
        return 0
    if not path.exists() or path.read_text() != text:
        print(f"stale: {path} (run `python -m tierra.localfleet.chart generate`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
