"""The generated CRDs on a real kube-apiserver: install, teach, default, and reject bad input."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CASES = yaml.safe_load((REPO / "tests/cluster/invalid/cases.yaml").read_text())
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def test_crds_are_established_with_names_and_category(
    crds_installed: None, kubectl: Kubectl
) -> None:
    resources = kubectl("api-resources", "--api-group=tierra.dev", "-o", "wide").stdout
    assert "inferenceservices" in resources and "tisvc" in resources
    assert "tiers" in resources and "ttier" in resources
    assert "tierra" in resources  # category column
    assert " isvc" not in resources  # KServe's short name stays free


def test_kubectl_explain_teaches_the_api(
    crds_installed: None, kubectl: Kubectl, wait_for: Callable[..., Any]
) -> None:
    # The apiserver publishes a new CRD's OpenAPI a moment after it is Established.
    text = wait_for(
        lambda: kubectl("explain", "inferenceservices.spec.scaling", check=False).stdout,
        timeout=30,
        what="kubectl explain to know InferenceService",
    )
    assert "scaleDownDelaySeconds" in text and "Sustained lower need" in text
    text = kubectl("explain", "tiers.spec.pools.accelerator").stdout
    assert "resourceName" in text and "Accelerators per node" in text


@pytest.fixture(scope="module")
def examples_applied(crds_installed: None, kubectl: Kubectl) -> Iterator[None]:
    kubectl("apply", "--server-side", "-f", str(REPO / "examples/fleet"))
    kubectl("apply", "--server-side", "-f", str(REPO / "examples/services/namespaces.yaml"))
    kubectl("apply", "--server-side", "-f", str(REPO / "examples/services"))
    yield
    # Leave no services behind for an operator started by later tests to place.
    for document in sorted((REPO / "examples/services").glob("team-*.yaml")):
        kubectl("delete", "-f", str(document), "--ignore-not-found", "--wait=true", "--timeout=60s")


def test_examples_apply_and_get_defaults(examples_applied: None, kubectl: Kubectl) -> None:
    tiers = json.loads(kubectl("get", "tiers", "-o", "json").stdout)["items"]
    assert {t["spec"]["level"] for t in tiers} == {"central", "regional", "edge"}
    services = json.loads(kubectl("get", "tisvc", "-A", "-o", "json").stdout)["items"]
    assert len(services) >= 4
    for service in services:
        spec = service["spec"]
        # Defaults filled in by the apiserver from the schema.
        assert spec["migration"]["policy"] in ("auto", "manual")
        assert "scaleDownDelaySeconds" in spec["scaling"]
        assert spec["runtime"]["metricsPreset"] in ("vllm", "tgi", "triton", "custom")
        for variant in spec["variants"]:
            assert "startupSeconds" in variant


def test_printer_columns_and_category(examples_applied: None, kubectl: Kubectl) -> None:
    header = kubectl("get", "tisvc", "-A").stdout.splitlines()[0].split()
    for column in ("TIERS", "VARIANT", "READY", "DESIRED", "P95MS", "SLOMS", "PLACED", "AGE"):
        assert column in header
    everything = kubectl("get", "tierra", "-A").stdout
    assert "tier.tierra.dev/" in everything and "inferenceservice.tierra.dev/" in everything


def test_scale_subresource(
    examples_applied: None, kubectl: Kubectl, api_clients: dict[str, client.ApiClient]
) -> None:
    service = json.loads(kubectl("get", "tisvc", "-A", "-o", "json").stdout)["items"][0]
    name, ns = service["metadata"]["name"], service["metadata"]["namespace"]
    kubectl("scale", f"tisvc/{name}", "-n", ns, "--replicas=2")
    scaled = json.loads(kubectl("get", f"tisvc/{name}", "-n", ns, "-o", "json").stdout)
    assert scaled["spec"]["replicas"] == 2
    scale = client.CustomObjectsApi(api_clients["central"]).get_namespaced_custom_object_scale(
        "tierra.dev", "v1alpha1", ns, "inferenceservices", name
    )
    assert scale["spec"]["replicas"] == 2
    kubectl(
        "patch",
        f"tisvc/{name}",
        "-n",
        ns,
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/spec/replicas"}]',
    )


def test_corpus_is_large_and_distinct() -> None:
    assert len(CASES) >= 40
    assert len({case["name"] for case in CASES}) == len(CASES)
    assert len({json.dumps(case["manifest"], sort_keys=True) for case in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def invalid_namespace(crds_installed: None, api_clients: dict[str, client.ApiClient]) -> str:
    core = client.CoreV1Api(api_clients["central"])
    try:
        core.create_namespace({"metadata": {"name": "tierra-invalid"}})
    except ApiException as error:
        if error.status != 409:
            raise
    return "tierra-invalid"


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_invalid_manifest_is_rejected_with_a_useful_message(
    case: dict[str, Any], invalid_namespace: str, api_clients: dict[str, client.ApiClient]
) -> None:
    manifest = case["manifest"]
    api = client.CustomObjectsApi(api_clients["central"])
    with pytest.raises(ApiException) as caught:
        if manifest["kind"] == "Tier":
            api.create_cluster_custom_object(
                "tierra.dev", "v1alpha1", "tiers", manifest, dry_run="All"
            )
        else:
            api.create_namespaced_custom_object(
                "tierra.dev",
                "v1alpha1",
                manifest["metadata"].get("namespace", invalid_namespace),
                "inferenceservices",
                manifest,
                dry_run="All",
            )
    assert caught.value.status == 422, caught.value.body
    message = json.loads(caught.value.body)["message"]
    assert case["expect"] in message, message
