"""The cluster-scoped Tier: a place where inference can run (a cluster, its pools, its reach)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from tierra.api.common import (
    DNS_LABEL,
    REGION,
    AcceleratorType,
    ApiModel,
    Condition,
    Level,
    ObjectMeta,
    RegionName,
    Taint,
    Toleration,
    cel,
)

MAX_TIER_NAME = 40


class SecretKeyRef(ApiModel):
    """A key of a Secret in the operator's namespace."""

    name: str = Field(
        description="Name of the Secret, read from the operator's namespace only.",
        min_length=1,
        max_length=253,
    )
    key: str = Field(default="kubeconfig", description="Key holding the kubeconfig.", min_length=1)


class TierCluster(ApiModel):
    """How the operator reaches this tier's cluster."""

    kubeconfig_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret with a kubeconfig for the member cluster. Omit it to use the "
        "operator's own cluster.",
    )
    namespace: str | None = Field(
        default=None,
        description="Namespace for workloads in this cluster; default: the service's namespace.",
        pattern=DNS_LABEL,
        max_length=63,
    )


class TierMetrics(ApiModel):
    """Where the runtime metrics of this tier's workloads are queried."""

    prometheus_url: str = Field(
        alias="prometheusURL",
        description="Base URL of a Prometheus HTTP API, e.g. http://prometheus:9090.",
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
    )
    scrape_interval_seconds: int = Field(
        default=15,
        alias="scrapeIntervalSeconds",
        ge=1,
        le=300,
        description="How often that Prometheus scrapes the model servers' pods. The autoscaler's "
        "rate and latency windows hold four scrapes (at least 1 m) and its arrival samples "
        "are one scrape apart. The operator also times the pods' samples: an interval it "
        "measures more than 1.25x longer than this sizes the windows instead (reason "
        "ScrapeIntervalMeasured), from the first minutes in which two samples were seen.",
    )


class PoolAccelerator(ApiModel):
    """The accelerators each node of a pool carries."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(self.type in ['edge-gpu', 'edge-npu']) || has(self.resourceName)",
                    "edge-gpu and edge-npu pools must name their extended resource "
                    "(resourceName, e.g. nvidia.com/gpu or example.com/npu)",
                    ".resourceName",
                ),
            ]
        }
    )

    type: AcceleratorType = Field(description="Accelerator family.")
    model: str | None = Field(
        default=None,
        description="Accelerator model, e.g. H100, L4, v5e, jetson-orin.",
        max_length=63,
    )
    per_node: int = Field(
        default=1, ge=1, le=64, description="Accelerators per node (for cpu: cores per node)."
    )
    resource_name: str | None = Field(
        default=None,
        description="Extended resource name; defaults to nvidia.com/gpu, google.com/tpu or "
        "aws.amazon.com/neuron by type. Required for edge-gpu and edge-npu.",
        pattern=r"^([a-z0-9.-]+/)?[a-z0-9A-Z._-]+$",
        max_length=253,
    )


class Pool(ApiModel):
    """A homogeneous group of nodes in the tier's cluster."""

    name: str = Field(
        description="Pool name, unique in the tier.", pattern=DNS_LABEL, max_length=63
    )
    accelerator: PoolAccelerator = Field(description="What each node carries.")
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Labels selecting this pool's nodes; merged over the accelerator's defaults.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Tolerations added to pods placed here, besides the accelerator's defaults.",
        max_length=16,
    )
    price_per_accelerator_hour: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="Price of one accelerator for one hour (any currency).",
    )


class TierSpec(ApiModel):
    """Desired description of a Tier."""

    level: Level = Field(description="central, regional or edge.")
    region: str = Field(
        description="Region the tier is in, e.g. eu-central.", pattern=REGION, max_length=63
    )
    residency: list[RegionName] = Field(
        default_factory=list,
        description="Data boundaries this tier satisfies, e.g. [eu, de].",
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    cluster: TierCluster = Field(
        default_factory=TierCluster,
        description="Connection to the tier's cluster; empty means the operator's own cluster.",
    )
    latency_ms: dict[str, Annotated[float, Field(ge=0, le=60000)]] = Field(
        default_factory=dict,
        description="Network round-trip time in ms from each user region to this tier.",
        json_schema_extra={"maxProperties": 64},
    )
    carbon_intensity: float | None = Field(
        default=None, ge=0, le=2000, description="Grid carbon intensity in gCO2e/kWh."
    )
    metrics: TierMetrics | None = Field(
        default=None, description="Metrics source for workloads in this tier."
    )
    pools: list[Pool] = Field(
        description="Node pools of the tier's cluster.",
        min_length=1,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    taints: list[Taint] = Field(
        default_factory=list,
        description="Taints on the whole tier, matched against the services' "
        "placement.tolerations as pods' tolerations match node taints. NoSchedule: no new "
        "placements here (cordon), what runs here stays. NoExecute: what runs here moves to "
        "another allowed tier, make-before-break (drain); without one it stays and reports "
        "Migrating=False/NoTarget.",
        max_length=32,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["key", "effect"],
        },
    )


class PoolStatus(ApiModel):
    """Observed capacity of one pool, from the cluster's Nodes and Pods."""

    name: str = Field(description="Pool name.")
    nodes: int = Field(default=0, description="Ready nodes matching the pool.")
    capacity: int = Field(default=0, description="Allocatable accelerators over the ready nodes.")
    allocated: int = Field(default=0, description="Accelerators requested by scheduled pods.")
    free: int = Field(default=0, description="capacity - allocated.")


class TierStatus(ApiModel):
    """Observed state of a Tier."""

    observed_generation: int | None = Field(default=None, description="Generation last observed.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Reachable and Ready conditions."
    )
    pools: list[PoolStatus] = Field(default_factory=list, description="Per-pool capacity.")
    last_probe_time: str | None = Field(
        default=None, description="RFC 3339 time of the last probe."
    )
    consecutive_probe_failures: int = Field(
        default=0, description="Failed probes in a row (Reachable flips after a threshold)."
    )


class Tier(ApiModel):
    """A place where inference can run: a cluster at a level, in a region, with pools."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["tierra.dev/v1alpha1"] = Field(default="tierra.dev/v1alpha1")
    kind: Literal["Tier"] = "Tier"
    metadata: ObjectMeta
    spec: TierSpec
    status: TierStatus = Field(default_factory=TierStatus)
