"""The chart on a real apiserver (the fleet's central cluster): helm install -> upgrade with
changed values -> a rejected typo -> uninstall, with the pinned helm."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_helpers import Clients, Kubectl
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tierra.localfleet.chart import Helm
from tierra.localfleet.kubeschema import monitoring_crd_paths

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tierra"
RELEASE = "helm-e2e"
NAMESPACE = "tierra-helm-e2e"
FULLNAME = f"{RELEASE}-tierra"

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def helm(fleet_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm"), fleet_kubeconfig, "tierra-central")


@pytest.fixture(scope="module")
def monitoring_crds(kubectl: Kubectl) -> Iterator[None]:
    """ServiceMonitor and PrometheusRule CRDs, so the upgrade can switch them on."""
    paths = [str(p) for p in monitoring_crd_paths()]
    kubectl("apply", "--server-side", *[arg for p in paths for arg in ("-f", p)])
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *[
            f"crd/{plural}.monitoring.coreos.com"
            for plural in ("servicemonitors", "prometheusrules")
        ],
    )
    yield
    kubectl("delete", "--ignore-not-found", *[arg for p in paths for arg in ("-f", p)])


def _values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def _status(helm: Helm) -> dict[str, Any]:
    out = helm.run("status", RELEASE, "-n", NAMESPACE, "-o", "json").stdout
    result: dict[str, Any] = yaml.safe_load(out)
    return result


def _env(deployment: Any) -> dict[str, str]:
    container = deployment.spec.template.spec.containers[0]
    return {e.name: e.value for e in container.env if e.value is not None}


def _gone(read: Any) -> bool:
    try:
        read()
    except ApiException as error:
        return bool(error.status == 404)
    return False


def test_install_upgrade_uninstall(
    helm: Helm,
    clients: Clients,
    crds_installed: None,
    monitoring_crds: None,
    tmp_path: Path,
) -> None:
    apps = client.AppsV1Api(clients["central"])
    core = client.CoreV1Api(clients["central"])
    rbac = client.RbacAuthorizationV1Api(clients["central"])
    custom = client.CustomObjectsApi(clients["central"])
    try:
        # Install: the operator Pod lands on a kwok node, which reports it Ready, so --wait
        # covers the Deployment's rollout too.
        helm.run(
            "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace",
            "--wait", "--timeout", "120s",
        )  # fmt: skip
        assert _status(helm)["info"]["status"] == "deployed"
        deployment = apps.read_namespaced_deployment(FULLNAME, NAMESPACE)
        assert deployment.status.ready_replicas == 1
        assert _env(deployment)["TIERRA_LOG_LEVEL"] == "INFO"
        assert core.read_namespaced_service_account(FULLNAME, NAMESPACE)
        assert rbac.read_cluster_role(FULLNAME).rules
        assert rbac.read_namespaced_role(FULLNAME, NAMESPACE).rules

        # Upgrade with changed values: a new log level and metrics interval reach the Pod
        # template, and the ServiceMonitor appears.
        changed = {
            "logLevel": "DEBUG",
            "metricsInterval": 2,
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        }
        helm.run(
            "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "-f", _values_file(tmp_path, changed),
            "--wait", "--timeout", "120s",
        )  # fmt: skip
        status = _status(helm)
        assert (status["info"]["status"], status["version"]) == ("deployed", 2)
        env = _env(apps.read_namespaced_deployment(FULLNAME, NAMESPACE))
        assert (env["TIERRA_LOG_LEVEL"], env["TIERRA_METRICS_INTERVAL"]) == ("DEBUG", "2")
        monitor = custom.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", NAMESPACE, "servicemonitors", FULLNAME
        )
        assert monitor["metadata"]["labels"]["release"] == "kps"
        rule = custom.get_namespaced_custom_object(
            "monitoring.coreos.com", "v1", NAMESPACE, "prometheusrules", FULLNAME
        )
        assert {g["name"] for g in rule["spec"]["groups"]} == {"tierra-slo", "tierra-fleet"}
        dashboard = core.read_namespaced_config_map(f"{FULLNAME}-dashboard", NAMESPACE)
        assert json.loads(dashboard.data["tierra.json"])["uid"] == "tierra-overview"

        # A typo is refused before anything is sent to the apiserver, naming the key.
        typo = helm.run(
            "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--reuse-values",
            "--set", "metrics.serviceMonitor.intervall=5s", check=False,
        )  # fmt: skip
        assert typo.returncode != 0 and "intervall" in typo.stderr, typo.stderr
        assert _status(helm)["version"] == 2

        # Uninstall removes everything the chart made, and leaves the CRDs (and so every
        # user's Tiers and InferenceServices) alone.
        helm.run("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")
        assert _gone(lambda: apps.read_namespaced_deployment(FULLNAME, NAMESPACE))
        assert _gone(lambda: rbac.read_cluster_role(FULLNAME))
        assert _gone(lambda: rbac.read_cluster_role_binding(FULLNAME))
        assert _gone(lambda: core.read_namespaced_service_account(FULLNAME, NAMESPACE))
        assert _gone(
            lambda: custom.get_namespaced_custom_object(
                "monitoring.coreos.com", "v1", NAMESPACE, "servicemonitors", FULLNAME
            )
        )
        extensions = client.ApiextensionsV1Api(clients["central"])
        assert extensions.read_custom_resource_definition("inferenceservices.tierra.dev")
    finally:
        helm.run("uninstall", RELEASE, "-n", NAMESPACE, "--ignore-not-found", check=False)
        try:
            core.delete_namespace(NAMESPACE)
        except ApiException as error:
            if error.status != 404:
                raise
