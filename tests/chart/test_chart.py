"""The Helm chart, checked offline with the pinned helm: ``lint --strict``, ``values.schema.json``
(closed everywhere, in sync with its generator, naming a typo), and every rendered object
validated against the pinned Kubernetes version's schemas and the CRDs."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tierra.localfleet import chart as chart_module
from tierra.localfleet.binaries import HELM_VERSION, KUBERNETES_VERSION
from tierra.localfleet.chart import Helm
from tierra.localfleet.kubeschema import Validator, monitoring_crd_paths

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tierra"

# Every optional part of the chart switched on, with Kubernetes-typed values filled in.
FULL_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example/tierra", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"iam.example/role": "tierra"}},
    "logLevel": "DEBUG",
    "defaultPrometheusURL": "http://prometheus.monitoring:9090",
    "metricsInterval": 2.5,
    "statusRefreshSeconds": 120,
    "defaultPrometheusScrapeInterval": 30,
    "extraArgs": ["--workers", "8"],
    "extraEnv": [
        {"name": "A", "value": "b"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ],
    "metrics": {
        "service": {"type": "NodePort", "annotations": {"a": "b"}},
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kps"}},
    },
    "prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Tierra"}},
    "resources": {"requests": {"cpu": "200m", "memory": "300Mi"}, "limits": {"memory": 1e9}},
    "podAnnotations": {"a": "b"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                ]
            }
        }
    },
}


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def validator() -> Validator:
    crds = [
        yaml.safe_load(path.read_text())
        for path in [*sorted((CHART / "crds").glob("*.yaml")), *monitoring_crd_paths()]
    ]
    return Validator(crds)


def _objects(helm: Helm, values: dict[str, Any]) -> list[dict[str, Any]]:
    return helm.template(CHART, values)


def test_lint_strict(helm: Helm, tmp_path: Path) -> None:
    helm.run("lint", "--strict", str(CHART))
    values = tmp_path / "full.yaml"
    values.write_text(yaml.safe_dump(FULL_VALUES))
    helm.run("lint", "--strict", str(CHART), "-f", str(values))


@pytest.mark.parametrize("values", [{}, FULL_VALUES], ids=["defaults", "everything-on"])
def test_rendered_objects_match_the_pinned_kubernetes_schemas(
    helm: Helm, validator: Validator, values: dict[str, Any]
) -> None:
    objects = _objects(helm, values)
    kinds = sorted(o["kind"] for o in objects)
    assert {"Deployment", "ServiceAccount", "ClusterRole", "Role", "Service"} <= set(kinds)
    assert [e for o in objects for e in validator.errors(o)] == []


def test_chart_crds_are_valid_and_the_gitops_manifests(validator: Validator) -> None:
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        assert validator.errors(crd) == [], path
        assert (REPO / "crds" / path.name).read_text() == path.read_text()


def test_the_validator_catches_what_the_apiserver_would_drop_or_refuse(
    helm: Helm, validator: Validator
) -> None:
    deployment = next(o for o in _objects(helm, {}) if o["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["replica"] = 2  # misspelt: the apiserver would drop it silently
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["ports"][0]["containerPort"] = "8080"  # wrong type
    container["securityContext"]["runAsNonroot"] = True
    errors = validator.errors(broken)
    assert any("'replica' was unexpected" in e for e in errors), errors
    assert any("containerPort" in e and "not of type 'integer'" in e for e in errors), errors
    assert any("'runAsNonroot' was unexpected" in e for e in errors), errors
    assert validator.errors({"apiVersion": "v9", "kind": "Nope", "metadata": {"name": "x"}})


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicaCont": 1}, "replicaCont"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
        ({"securityContext": {"runAsNonroot": True}}, "runAsNonroot"),
        ({"tolerations": [{"key": "a", "efect": "NoSchedule"}]}, "efect"),
        ({"logLevel": "LOUD"}, "logLevel"),
    ],
)
def test_a_values_typo_fails_naming_it(helm: Helm, values: dict[str, Any], named: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failure:
        _objects(helm, values)
    assert named in failure.value.stderr, failure.value.stderr
    assert named in str(failure.value)  # (what a failing fixture's traceback shows)


def test_values_schema_is_generated_and_in_sync() -> None:
    assert chart_module.main(["check", str(REPO)]) == 0, (
        "run python -m tierra.localfleet.chart generate"
    )


def _object_schemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield node
        for value in node.values():
            yield from _object_schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _object_schemas(value)


def test_values_schema_is_closed_everywhere() -> None:
    """Objects with named keys allow no other keys; free-form maps (labels, annotations,
    resource lists) constrain their values' type; nothing is left open."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = [
        node
        for node in _object_schemas(schema)
        if node is not schema.get("definitions")
        and node is not schema.get("properties")
        and node.get("additionalProperties") in (None, True)
        and not (node.get("type") == "object" and "properties" not in node and "anyOf" in node)
    ]
    # Kubernetes' RawExtension-like free objects are the only acceptable exceptions; there are
    # none among the types the values use.
    assert open_objects == [], [n.get("description", n) for n in open_objects][:5]


def test_helm_is_the_pinned_build(helm: Helm) -> None:
    """Stamped like helm's own release builds: its version, and the Kubernetes minor of its
    client-go (the default ``.Capabilities.KubeVersion``), which is the pinned cluster's."""
    out = helm.run("version", "--template", "{{.Version}} {{.KubeClientVersion}}").stdout
    minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    assert out.split() == [HELM_VERSION, minor]


def test_two_replicas_render_with_a_rolling_update(helm: Helm) -> None:
    deployment = next(o for o in _objects(helm, {"replicaCount": 2}) if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"].get("strategy", {}).get("type", "RollingUpdate") == "RollingUpdate"
