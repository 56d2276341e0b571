"""Rendering: one planned placement -> a Deployment and a Service, as plain dicts.

The dicts are applied with server-side apply, so rendering is deterministic (same input, equal
dicts with the same key order) and states only fields Tierra owns.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

from tierra.api.common import API_VERSION
from tierra.api.inference_service import EnvVar, InferenceService, Variant
from tierra.api.tier import Pool, Tier
from tierra.core import accelerators
from tierra.core.placement import PlannedPlacement

Manifest = dict[str, Any]

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_SERVICE = "tierra.dev/inference-service"
LABEL_SERVICE_NAMESPACE = "tierra.dev/inference-service-namespace"
LABEL_VARIANT = "tierra.dev/variant"
LABEL_TIER = "tierra.dev/tier"
LABEL_POOL = "tierra.dev/pool"
LABEL_OWNER_UID = "tierra.dev/owner-uid"
ANNOTATION_OWNER_UID = "tierra.dev/owner-uid"

MANAGED_BY = "tierra"
COMPONENT = "model-server"
CONTAINER_NAME = "model-server"
PORT_NAME = "http"
SERVICE_PORT = 80
METRICS_PATH = "/metrics"
# Triton serves Prometheus metrics on its own port; the others on the HTTP port.
METRICS_PORT_BY_PRESET = {"triton": 8002}

RENDERED_KINDS: tuple[tuple[str, str], ...] = (("apps/v1", "Deployment"), ("v1", "Service"))
"""(apiVersion, kind) of every object ``render`` returns, in order."""

MAX_NAME = 63
_HASH_LEN = 8

READINESS_MAX_DELAY_SECONDS = 30
STARTUP_PROBE_PERIOD_SECONDS = 10
STARTUP_GRACE_FACTOR = 2  # the startup probe tolerates twice the variant's profiled startup
DRAIN_EXTRA_SECONDS = 30  # grace beyond migration.drainSeconds for in-flight requests
RESERVED_ENV = ("TIERRA_MODEL_NAME", "TIERRA_MODEL_URI", "TIERRA_VARIANT")

# Pod Security Standards (runtime.podSecurity): "restricted" passes namespaces that enforce it;
# "baseline" lets images that must run as root run, still without privilege escalation.
POD_SECURITY_CONTEXT: dict[str, Manifest] = {
    "restricted": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "baseline": {"seccompProfile": {"type": "RuntimeDefault"}},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Manifest] = {
    "restricted": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    "baseline": {"allowPrivilegeEscalation": False},
}


@dataclass(frozen=True)
class OwnerRef:
    """The InferenceService that owns rendered children."""

    name: str
    namespace: str
    uid: str


def owner_of(service: InferenceService) -> OwnerRef:
    meta = service.metadata
    if not meta.namespace or not meta.uid:
        raise ValueError(f"InferenceService {meta.name} has no namespace or uid")
    return OwnerRef(name=meta.name, namespace=meta.namespace, uid=meta.uid)


# --------------------------------------------------------------------------------------------
# Names and labels


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:_HASH_LEN]


def _shorten(text: str, digest: str, limit: int = MAX_NAME) -> str:
    """``text`` cut to leave room for ``-<digest>`` within ``limit``."""
    head = text[: limit - _HASH_LEN - 1].rstrip("-._")
    return f"{head}-{digest}"


def label_value(text: str) -> str:
    """Label values are at most 63 characters; longer ones keep a prefix and a hash."""
    return text if len(text) <= MAX_NAME else _shorten(text, _digest(text))


def target_namespace(service: InferenceService, tier: Tier) -> str:
    """Where the service's children go in the tier's cluster."""
    namespace = tier.spec.cluster.namespace or service.metadata.namespace
    if not namespace:
        raise ValueError(f"InferenceService {service.metadata.name} has no namespace")
    return namespace


def child_name(service: InferenceService, variant: str, tier: Tier) -> str:
    """``<service>-<variant>-<tier>``, a DNS-1035 label of at most 63 characters.

    When the tier puts workloads in a fixed namespace that is not the service's own, services
    of the same name from several namespaces meet there, so the service's namespace is
    appended. Names that are too long, or that had to be sanitised, end in a hash of the
    original parts, so distinct inputs stay distinct and the same input gives the same name.
    """
    parts = [service.metadata.name, variant, tier.metadata.name]
    if target_namespace(service, tier) != service.metadata.namespace:
        parts.append(service.metadata.namespace or "")
    raw = "-".join(parts)
    clean = re.sub(r"[^a-z0-9-]", "-", raw.lower())
    if not clean[:1].isalpha():
        clean = f"x{clean}"
    if clean == raw and len(clean) <= MAX_NAME:
        return clean
    return _shorten(clean, _digest(*parts))


def selector_labels(service_name: str, namespace: str, variant: str, tier: str) -> dict[str, str]:
    """The Deployment's immutable selector: only labels that never change for a child."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_SERVICE: label_value(service_name),
        LABEL_SERVICE_NAMESPACE: namespace,
        LABEL_TIER: label_value(tier),
        LABEL_VARIANT: variant,
    }


def child_selector(service_name: str, namespace: str) -> str:
    """Label selector of every pod of the service, in every tier (for ``status.selector``)."""
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_SERVICE: label_value(service_name),
        LABEL_SERVICE_NAMESPACE: namespace,
    }
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def child_labels(
    service: InferenceService, placement: PlannedPlacement, tier: Tier, owner: OwnerRef
) -> dict[str, str]:
    """Labels of the Deployment, the Service and the pod template."""
    labels = {
        LABEL_NAME: label_value(service.metadata.name),
        LABEL_INSTANCE: child_name(service, placement.variant, tier),
        LABEL_COMPONENT: COMPONENT,
        LABEL_POOL: placement.pool,
        LABEL_OWNER_UID: owner.uid,
        **selector_labels(
            service.metadata.name, owner.namespace, placement.variant, tier.metadata.name
        ),
    }
    return dict(sorted(labels.items()))


# --------------------------------------------------------------------------------------------
# Manifests


def _find_variant(service: InferenceService, name: str) -> Variant:
    for variant in service.spec.variants:
        if variant.name == name:
            return variant
    raise ValueError(f"InferenceService {service.metadata.name} has no variant {name}")


def _find_pool(tier: Tier, name: str) -> Pool:
    for pool in tier.spec.pools:
        if pool.name == name:
            return pool
    raise ValueError(f"Tier {tier.metadata.name} has no pool {name}")


def _env(service: InferenceService, variant: Variant) -> list[dict[str, str]]:
    """The user's env (a repeated name keeps its first position and last value) followed by
    Tierra's variables, which replace user entries of the same name. Names stay unique, as
    server-side apply requires (env is a map keyed by name)."""
    merged: dict[str, str] = {}
    for var in service.spec.runtime.env:
        if var.name not in RESERVED_ENV:
            merged[var.name] = var.value
    tierra_env = [EnvVar(name="TIERRA_MODEL_NAME", value=service.spec.model.name)]
    if service.spec.model.uri:
        tierra_env.append(EnvVar(name="TIERRA_MODEL_URI", value=service.spec.model.uri))
    tierra_env.append(EnvVar(name="TIERRA_VARIANT", value=variant.name))
    merged.update((var.name, var.value) for var in tierra_env)
    return [{"name": name, "value": value} for name, value in merged.items()]


def _probes(service: InferenceService, variant: Variant) -> dict[str, Manifest]:
    def http_get() -> Manifest:
        return {"path": service.spec.runtime.health_path, "port": PORT_NAME}

    startup_budget = variant.startup_seconds * STARTUP_GRACE_FACTOR
    return {
        # Holds readiness and liveness back until the weights are loaded.
        "startupProbe": {
            "httpGet": http_get(),
            "periodSeconds": STARTUP_PROBE_PERIOD_SECONDS,
            "timeoutSeconds": 2,
            "failureThreshold": max(3, math.ceil(startup_budget / STARTUP_PROBE_PERIOD_SECONDS)),
        },
        "readinessProbe": {
            "httpGet": http_get(),
            "initialDelaySeconds": min(variant.startup_seconds, READINESS_MAX_DELAY_SECONDS),
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        # Generous: a saturated model server answers health checks slowly.
        "livenessProbe": {
            "httpGet": http_get(),
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
    }


def _metadata(
    name: str, namespace: str, labels: dict[str, str], owner: OwnerRef, owned: bool
) -> Manifest:
    metadata: Manifest = {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "annotations": {ANNOTATION_OWNER_UID: owner.uid},
    }
    if owned:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": "InferenceService",
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return metadata


def render(
    service: InferenceService,
    placement: PlannedPlacement,
    tier: Tier,
    owner: OwnerRef,
    same_cluster: bool,
) -> list[Manifest]:
    """The Deployment and the Service (``RENDERED_KINDS``) of one placement.

    An ownerReference to the InferenceService is set only when the child lives in the
    operator's own cluster *and* in the owner's namespace: Kubernetes garbage collection
    treats a cross-namespace owner as missing and would delete the child. Other children are
    found through the ``tierra.dev/owner-uid`` label and annotation.
    """
    variant = _find_variant(service, placement.variant)
    pool = _find_pool(tier, placement.pool)
    runtime = service.spec.runtime
    name = child_name(service, variant.name, tier)
    namespace = target_namespace(service, tier)
    labels = child_labels(service, placement, tier, owner)
    selector = dict(
        sorted(
            selector_labels(
                service.metadata.name, owner.namespace, variant.name, tier.metadata.name
            ).items()
        )
    )
    owned = same_cluster and namespace == owner.namespace
    metrics_port = METRICS_PORT_BY_PRESET.get(runtime.metrics_preset, runtime.port)

    ports: list[Manifest] = [{"name": PORT_NAME, "containerPort": runtime.port, "protocol": "TCP"}]
    if metrics_port != runtime.port:
        ports.append({"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"})
    container: Manifest = {
        "name": CONTAINER_NAME,
        "image": runtime.image,
        "args": [*runtime.args, *variant.args],
        "env": _env(service, variant),
        "ports": ports,
        "resources": accelerators.resources(pool, variant),
        **_probes(service, variant),
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT[runtime.pod_security]),
    }
    pod_spec: Manifest = {
        # Service links would inject e.g. VLLM_PORT for a Service named "vllm", which vLLM
        # misreads as its own configuration.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": service.spec.migration.drain_seconds + DRAIN_EXTRA_SECONDS,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT[runtime.pod_security]),
        "containers": [container],
    }
    node_selector = accelerators.node_selector(pool, variant)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = accelerators.tolerations(pool)
    if tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in tolerations
        ]

    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, namespace, labels, owner, owned),
        "spec": {
            "replicas": placement.replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "revisionHistoryLimit": 3,
            # Slow loaders must not be reported as a failed rollout.
            "progressDeadlineSeconds": max(600, variant.startup_seconds * 2 + 60),
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {
                        "prometheus.io/path": METRICS_PATH,
                        "prometheus.io/port": str(metrics_port),
                        "prometheus.io/scrape": "true",
                    },
                },
                "spec": pod_spec,
            },
        },
    }
    service_manifest: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace, labels, owner, owned),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": SERVICE_PORT,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }
    return [deployment, service_manifest]
