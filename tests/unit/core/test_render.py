"""Rendering a placement into a Deployment and a Service."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.core.placement import PlannedPlacement
from tierra.core.render import (
    ANNOTATION_OWNER_UID,
    LABEL_OWNER_UID,
    LABEL_POOL,
    LABEL_TIER,
    RENDERED_KINDS,
    OwnerRef,
    child_name,
    child_selector,
    owner_of,
    render,
)
from tierra_testing.builders import pool, service, tier, variant

UID = "6f1c2d9e-0000-4000-8000-000000000001"


def rendered(
    svc: InferenceService | None = None,
    t: Tier | None = None,
    *,
    pool_name: str = "h100",
    variant_name: str = "h100",
    replicas: int = 2,
    same_cluster: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    svc = svc or service(uid=UID)
    t = t or tier()
    placement = PlannedPlacement(t.metadata.name, pool_name, variant_name, replicas, "test")
    deployment, svc_manifest = render(svc, placement, t, owner_of(svc), same_cluster)
    return deployment, svc_manifest


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return result


# --------------------------------------------------------------------------------------------
# objects, names, labels


def test_renders_a_deployment_and_a_service() -> None:
    deployment, svc_manifest = rendered()
    assert [(o["apiVersion"], o["kind"]) for o in (deployment, svc_manifest)] == list(
        RENDERED_KINDS
    )
    assert deployment["metadata"]["name"] == "chat-h100-central"
    assert svc_manifest["metadata"]["name"] == "chat-h100-central"
    assert deployment["metadata"]["namespace"] == "team-a"
    assert deployment["spec"]["replicas"] == 2


def test_labels_and_owner_marker() -> None:
    deployment, svc_manifest = rendered()
    expected = {
        "app.kubernetes.io/name": "chat",
        "app.kubernetes.io/instance": "chat-h100-central",
        "app.kubernetes.io/managed-by": "tierra",
        "app.kubernetes.io/component": "model-server",
        "tierra.dev/inference-service": "chat",
        "tierra.dev/inference-service-namespace": "team-a",
        "tierra.dev/variant": "h100",
        "tierra.dev/tier": "central",
        "tierra.dev/pool": "h100",
        "tierra.dev/owner-uid": UID,
    }
    for labels in (
        deployment["metadata"]["labels"],
        deployment["spec"]["template"]["metadata"]["labels"],
        svc_manifest["metadata"]["labels"],
    ):
        assert labels == expected
    assert deployment["metadata"]["annotations"] == {ANNOTATION_OWNER_UID: UID}
    assert svc_manifest["metadata"]["annotations"] == {ANNOTATION_OWNER_UID: UID}


def test_selector_is_a_stable_subset() -> None:
    deployment, svc_manifest = rendered()
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/managed-by": "tierra",
        "tierra.dev/inference-service": "chat",
        "tierra.dev/inference-service-namespace": "team-a",
        "tierra.dev/tier": "central",
        "tierra.dev/variant": "h100",
    }
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()
    assert svc_manifest["spec"]["selector"] == selector
    # The selector is immutable: nothing that can change for the same child goes in it.
    assert not {LABEL_POOL, LABEL_OWNER_UID, "app.kubernetes.io/instance"} & selector.keys()
    # It is independent of the replica count and the pool.
    other, _ = rendered(replicas=7)
    assert other["spec"]["selector"] == deployment["spec"]["selector"]


def test_child_selector_matches_every_child_of_the_service() -> None:
    selector = child_selector("chat", "team-a")
    assert selector == (
        "app.kubernetes.io/managed-by=tierra,"
        "tierra.dev/inference-service=chat,"
        "tierra.dev/inference-service-namespace=team-a"
    )
    deployment, _ = rendered()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for term in selector.split(","):
        key, value = term.split("=")
        assert labels[key] == value


def test_long_tier_names_are_truncated_with_a_stable_hash() -> None:
    svc = service("a" * 40, uid=UID)
    long_a = tier("regional-" + "x" * 200)
    long_b = tier("regional-" + "x" * 199 + "y")
    name_a = child_name(svc, "h100", long_a)
    name_b = child_name(svc, "h100", long_b)
    assert len(name_a) <= 63
    assert len(name_b) <= 63
    assert name_a != name_b
    assert name_a == child_name(svc, "h100", long_a)
    assert name_a.startswith("a" * 40 + "-h100-regional-")
    deployment, _ = rendered(svc, long_a)
    assert deployment["metadata"]["name"] == name_a
    assert len(deployment["metadata"]["labels"][LABEL_TIER]) <= 63


def test_names_that_need_sanitising_stay_valid_and_distinct() -> None:
    svc = service("7b.chat", uid=UID)
    dotted = child_name(svc, "h100", tier("eu.central"))
    dashed = child_name(svc, "h100", tier("eu-central"))
    assert dotted != dashed
    assert dotted[0].isalpha()
    assert all(ch.isalnum() or ch == "-" for ch in dotted)
    assert len(dotted) <= 63


def test_shared_target_namespace_keeps_services_of_the_same_name_apart() -> None:
    shared = tier("central", namespace="inference")
    a = service("chat", "team-a", uid=UID)
    b = service("chat", "team-b", uid=UID)
    assert child_name(a, "h100", shared) == "chat-h100-central-team-a"
    assert child_name(b, "h100", shared) == "chat-h100-central-team-b"
    deployment, _ = rendered(a, shared, same_cluster=False)
    assert deployment["metadata"]["namespace"] == "inference"
    assert (
        deployment["spec"]["selector"]["matchLabels"]["tierra.dev/inference-service-namespace"]
        == "team-a"
    )


def test_tier_namespace_equal_to_the_services_keeps_the_short_name() -> None:
    assert child_name(service(), "h100", tier(namespace="team-a")) == "chat-h100-central"


# --------------------------------------------------------------------------------------------
# ownership


def test_owner_reference_only_in_the_operators_own_cluster() -> None:
    local, local_svc = rendered(same_cluster=True)
    assert local["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "tierra.dev/v1alpha1",
            "kind": "InferenceService",
            "name": "chat",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert local_svc["metadata"]["ownerReferences"] == local["metadata"]["ownerReferences"]
    remote, remote_svc = rendered(same_cluster=False)
    assert "ownerReferences" not in remote["metadata"]
    assert "ownerReferences" not in remote_svc["metadata"]
    assert remote["metadata"]["labels"][LABEL_OWNER_UID] == UID


def test_no_cross_namespace_owner_reference() -> None:
    deployment, _ = rendered(t=tier(namespace="inference"), same_cluster=True)
    assert "ownerReferences" not in deployment["metadata"]


def test_owner_of_needs_namespace_and_uid() -> None:
    assert owner_of(service(uid=UID)) == OwnerRef("chat", "team-a", UID)
    nameless = InferenceService.model_validate(
        {**service().model_dump(by_alias=True), "metadata": {"name": "x"}}
    )
    with pytest.raises(ValueError, match="namespace or uid"):
        owner_of(nameless)


# --------------------------------------------------------------------------------------------
# accelerator conventions in the manifest


def test_nvidia_gpu_manifest() -> None:
    svc = service(uid=UID, variants=[variant("h100", model="H100", count=2)])
    t = tier(pools=[pool(selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})])
    deployment, _ = rendered(svc, t)
    assert container(deployment)["resources"] == {
        "requests": {"nvidia.com/gpu": "2"},
        "limits": {"nvidia.com/gpu": "2"},
    }
    spec = pod_spec(deployment)
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_google_tpu_manifest() -> None:
    svc = service(uid=UID, variants=[variant("tpu", "google-tpu", "v5e", count=4, topology="2x2")])
    t = tier(
        pools=[
            pool(
                "v5e",
                "google-tpu",
                "v5e",
                selector={"cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice"},
            )
        ]
    )
    deployment, _ = rendered(svc, t, pool_name="v5e", variant_name="tpu")
    assert container(deployment)["resources"] == {
        "requests": {"google.com/tpu": "4"},
        "limits": {"google.com/tpu": "4"},
    }
    spec = pod_spec(deployment)
    assert spec["nodeSelector"] == {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
        "cloud.google.com/gke-tpu-topology": "2x2",
    }
    assert spec["tolerations"] == [
        {"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_aws_neuron_manifest() -> None:
    svc = service(uid=UID, variants=[variant("inf2", "aws-neuron", count=2)])
    t = tier(
        pools=[
            pool(
                "inf2",
                "aws-neuron",
                "inferentia2",
                selector={"node.kubernetes.io/instance-type": "inf2.8xlarge"},
            )
        ]
    )
    deployment, _ = rendered(svc, t, pool_name="inf2", variant_name="inf2")
    assert container(deployment)["resources"]["limits"] == {"aws.amazon.com/neuron": "2"}
    spec = pod_spec(deployment)
    assert spec["nodeSelector"] == {"node.kubernetes.io/instance-type": "inf2.8xlarge"}
    assert spec["tolerations"] == [
        {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_edge_gpu_manifest_uses_pool_resource_name_and_edge_toleration() -> None:
    svc = service(uid=UID, variants=[variant("orin", "edge-gpu")])
    t = tier(
        "edge-berlin",
        "edge",
        pools=[
            pool(
                "orin",
                "edge-gpu",
                "jetson-orin",
                resource_name="nvidia.com/gpu",
                selector={"tierra.dev/pool": "orin"},
                tolerations=[
                    {
                        "key": "node-role.kubernetes.io/edge",
                        "operator": "Exists",
                        "effect": "NoSchedule",
                    },
                    {"key": "site", "operator": "Equal", "value": "berlin", "effect": "NoSchedule"},
                ],
            )
        ],
    )
    deployment, _ = rendered(svc, t, pool_name="orin", variant_name="orin")
    assert container(deployment)["resources"]["requests"] == {"nvidia.com/gpu": "1"}
    spec = pod_spec(deployment)
    assert spec["nodeSelector"] == {"tierra.dev/pool": "orin"}
    assert spec["tolerations"] == [
        {"key": "node-role.kubernetes.io/edge", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "site", "operator": "Equal", "value": "berlin", "effect": "NoSchedule"},
    ]


def test_edge_npu_manifest() -> None:
    svc = service(uid=UID, variants=[variant("npu", "edge-npu", count=1)])
    t = tier(
        "edge", "edge", pools=[pool("npu", "edge-npu", "hailo-8", resource_name="example.com/npu")]
    )
    deployment, _ = rendered(svc, t, pool_name="npu", variant_name="npu")
    assert container(deployment)["resources"] == {
        "requests": {"example.com/npu": "1"},
        "limits": {"example.com/npu": "1"},
    }
    assert pod_spec(deployment)["tolerations"] == [
        {"key": "node-role.kubernetes.io/edge", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_cpu_manifest_requests_cores_and_has_no_toleration() -> None:
    svc = service(uid=UID, variants=[variant("cpu", "cpu", count=8, decode=20)])
    t = tier(pools=[pool("cpu", "cpu", None, price=0.04)])
    deployment, _ = rendered(svc, t, pool_name="cpu", variant_name="cpu")
    assert container(deployment)["resources"] == {
        "requests": {"cpu": "8", "memory": "32Gi"},
        "limits": {"memory": "32Gi"},
    }
    spec = pod_spec(deployment)
    assert "tolerations" not in spec
    assert "nodeSelector" not in spec


# --------------------------------------------------------------------------------------------
# pod template


def test_container_args_env_and_ports() -> None:
    svc = service(
        uid=UID,
        runtime={
            "image": "vllm/vllm-openai:v0.10.0",
            "port": 8080,
            "args": ["--max-model-len", "8192"],
            "env": [
                {"name": "HF_HOME", "value": "/cache"},
                {"name": "TIERRA_VARIANT", "value": "spoofed"},
                {"name": "HF_HOME", "value": "/models"},
            ],
        },
        variants=[variant("h100", args=["--tensor-parallel-size", "1"])],
    )
    c = container(rendered(svc)[0])
    assert c["name"] == "model-server"
    assert c["image"] == "vllm/vllm-openai:v0.10.0"
    assert c["args"] == ["--max-model-len", "8192", "--tensor-parallel-size", "1"]
    assert c["env"] == [
        {"name": "HF_HOME", "value": "/models"},
        {"name": "TIERRA_MODEL_NAME", "value": "llama-3.1-8b"},
        {"name": "TIERRA_MODEL_URI", "value": "hf://meta/llama"},
        {"name": "TIERRA_VARIANT", "value": "h100"},
    ]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_model_without_uri_gets_no_uri_variable() -> None:
    svc = service(uid=UID, model={"name": "local-model"})
    names = [e["name"] for e in container(rendered(svc)[0])["env"]]
    assert names == ["TIERRA_MODEL_NAME", "TIERRA_VARIANT"]


@pytest.mark.parametrize("startup", [0, 5, 90, 600, 3600])
def test_probes_leave_slow_loaders_time(startup: int) -> None:
    svc = service(uid=UID, variants=[variant("h100", startup=startup)])
    c = container(rendered(svc)[0])
    startup_probe = c["startupProbe"]
    assert startup_probe["httpGet"] == {"path": "/health", "port": "http"}
    assert startup_probe["failureThreshold"] * startup_probe["periodSeconds"] >= startup * 2
    assert c["readinessProbe"]["initialDelaySeconds"] == min(startup, 30)
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_health_path_comes_from_the_runtime() -> None:
    svc = service(uid=UID, runtime={"image": "ghcr.io/tgi:3", "healthPath": "/healthz"})
    c = container(rendered(svc)[0])
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_rollout_drain_and_scrape_settings() -> None:
    svc = service(uid=UID, migration={"drainSeconds": 90})
    deployment, _ = rendered(svc)
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] == 120
    assert pod_spec(deployment)["enableServiceLinks"] is False
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/path": "/metrics",
        "prometheus.io/port": "8000",
        "prometheus.io/scrape": "true",
    }


def test_triton_metrics_are_scraped_on_their_own_port() -> None:
    svc = service(
        uid=UID, runtime={"image": "nvcr.io/tritonserver:24.08", "metricsPreset": "triton"}
    )
    deployment, _ = rendered(svc)
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == (
        "8002"
    )
    assert {"name": "metrics", "containerPort": 8002, "protocol": "TCP"} in container(deployment)[
        "ports"
    ]


def test_service_exposes_port_80_to_http() -> None:
    _, svc_manifest = rendered()
    assert svc_manifest["spec"] == {
        "type": "ClusterIP",
        "selector": svc_manifest["spec"]["selector"],
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    }


# --------------------------------------------------------------------------------------------
# determinism and errors


def test_rendering_is_deterministic() -> None:
    first = render(
        service(uid=UID),
        PlannedPlacement("central", "h100", "h100", 3, "x"),
        tier(),
        OwnerRef("chat", "team-a", UID),
        True,
    )
    second = render(
        service(uid=UID),
        PlannedPlacement("central", "h100", "h100", 3, "other reason"),
        tier(),
        OwnerRef("chat", "team-a", UID),
        True,
    )
    assert first == second
    assert json.dumps(first) == json.dumps(second)


def test_unknown_variant_or_pool_is_an_error() -> None:
    owner = OwnerRef("chat", "team-a", UID)
    with pytest.raises(ValueError, match="no variant nope"):
        render(service(), PlannedPlacement("central", "h100", "nope", 1, ""), tier(), owner, True)
    with pytest.raises(ValueError, match="no pool nope"):
        render(service(), PlannedPlacement("central", "nope", "h100", 1, ""), tier(), owner, True)


# --------------------------------------------------------------------------------------------
# Pod Security Standards


def _restricted_violations(deployment: dict[str, Any]) -> list[str]:
    """The checks of Pod Security "restricted" (v1.34) that a rendered pod could fail."""
    spec = pod_spec(deployment)
    pod_ctx = spec.get("securityContext") or {}
    problems = []
    for c in spec["containers"]:
        ctx = c.get("securityContext") or {}
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation != false")
        if "ALL" not in (ctx.get("capabilities") or {}).get("drop", []):
            problems.append("capabilities.drop lacks ALL")
        if set((ctx.get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append("capabilities added")
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
            problems.append("runAsNonRoot != true")
        if 0 in (ctx.get("runAsUser"), pod_ctx.get("runAsUser")):
            problems.append("runAsUser 0")
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append("seccompProfile not RuntimeDefault/Localhost")
        if ctx.get("privileged"):
            problems.append("privileged")
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        problems.append("host namespaces")
    return problems


def test_workloads_meet_pod_security_restricted_by_default() -> None:
    deployment, _ = rendered()
    assert _restricted_violations(deployment) == []
    assert pod_spec(deployment)["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(deployment)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def test_a_service_can_ask_for_baseline_for_an_image_that_runs_as_root() -> None:
    svc = service(uid=UID, runtime={"image": "vllm/vllm-openai:v0.10.0", "podSecurity": "baseline"})
    deployment, _ = rendered(svc)
    assert _restricted_violations(deployment) == [
        "capabilities.drop lacks ALL",
        "runAsNonRoot != true",
    ]
    assert container(deployment)["securityContext"] == {"allowPrivilegeEscalation": False}
    assert pod_spec(deployment)["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}


def test_rendered_security_contexts_are_not_shared_between_renders() -> None:
    first, _ = rendered()
    container(first)["securityContext"]["capabilities"]["drop"].append("X")
    second, _ = rendered()
    assert container(second)["securityContext"]["capabilities"]["drop"] == ["ALL"]
