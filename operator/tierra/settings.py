"""The operator's settings: one object, built by the CLI and passed down to every controller.

Grouped by concern; every attribute says what it changes. Defaults are what ``tierra run``
uses without flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tierra.core.migration import MigrationSettings
from tierra.shell.kubeconfig import KubeconfigPolicy
from tierra.shell.leader import LeaderElectionSettings


@dataclass(frozen=True)
class MemberSettings:
    """How member clusters are reached and judged."""

    kubeconfig_policy: KubeconfigPolicy = field(default_factory=KubeconfigPolicy)
    """What a Tier's kubeconfig Secret may contain beyond inline credentials."""
    sync_timeout: float = 10.0
    """Seconds a reconcile waits for a new member cluster's first listing before it moves on
    (services wait on while the cluster is *syncing*, rather than see it empty)."""


@dataclass(frozen=True)
class ServiceSettings:
    """The InferenceService controller."""

    workers: int = 16
    """Services reconciled at once."""
    retry_base_seconds: float = 5.0
    """First delay before a service that is not fully placed, or failed, is looked at again;
    it doubles with every further attempt."""
    retry_max_seconds: float = 300.0
    """The longest such delay."""
    syncing_retry_seconds: float = 1.0
    """How soon a service waiting for a member cluster's first listing is looked at again."""
    pod_snapshot_seconds: float = 0.5
    """At most how often a busy cluster's Pods are recounted into capacity (Deployments are
    followed on every write)."""
    cleanup_give_up_seconds: float = 300.0
    """How long a deleted service waits for unreachable clusters before its finalizer is
    released (with a Warning Event; the orphan sweep removes what is left)."""


@dataclass(frozen=True)
class TierSettings:
    """The Tier controller."""

    status_interval_seconds: float = 5.0
    """How often Tier statuses are brought up to date (also at once on reachability
    changes)."""
    resolve_interval_seconds: float = 30.0
    """How often every Tier's kubeconfig Secret is re-read (rotations; Tiers whose
    credentials are rejected are re-read every status interval)."""
    cleanup_timeout_seconds: float = 300.0
    """How long a deleted Tier whose cluster cannot be reached is held before it is released
    with a Warning Event naming what may be left behind."""


@dataclass(frozen=True)
class SweepSettings:
    """The orphan sweep."""

    interval_seconds: float = 30.0
    """Time between sweeps."""
    min_age_seconds: float = 30.0
    """Children younger than this are never swept (their owner may not be watched yet)."""


@dataclass(frozen=True)
class AutoscalingSettings:
    """The autoscaling loop."""

    prometheus_url: str | None = None
    """Operator-wide Prometheus for Tiers without ``spec.metrics``."""
    scrape_interval_seconds: float = 15.0
    """How often that Prometheus scrapes the model servers (a Tier's ``spec.metrics`` says
    it for its own)."""
    interval_seconds: float = 5.0
    """Seconds between metric samples of each service."""
    status_refresh_seconds: float = 30.0
    """While a service's decision holds, its status's observed metrics are written again at
    most this often (a decision or condition that changes is written at once). Each write
    costs the management apiserver and etcd about 6 ms of CPU: at 1,000 services, 30 s is
    about 30 writes/s and a sixth of a core (``benchmarks/metered_fleet.py``)."""


@dataclass(frozen=True)
class ElectionSettings:
    """Leader election among operator replicas (a coordination.k8s.io Lease)."""

    enabled: bool = True
    """Only the holder of the Lease runs the controllers and writes; off: this process always
    does (never run two such processes against one management cluster)."""
    lease_name: str = "tierra-operator"
    """The Lease's name, in the operator's namespace."""
    timing: LeaderElectionSettings = field(default_factory=LeaderElectionSettings)
    """Lease duration, renew deadline and retry period (client-go's defaults: 15, 10, 2 s)."""


@dataclass(frozen=True)
class Settings:
    """Everything ``tierra run`` can be told."""

    context: str | None = None
    """The kube context of the management cluster (``tierra run --context``); none: the
    in-cluster service account, else the kubeconfig's current context."""
    namespace: str = "tierra-system"
    """The operator's namespace: kubeconfig Secrets are read from here only; the Lease lives
    here."""
    metrics_port: int = 8080
    """Port of the operator's Prometheus metrics (0: off)."""
    members: MemberSettings = field(default_factory=MemberSettings)
    services: ServiceSettings = field(default_factory=ServiceSettings)
    tiers: TierSettings = field(default_factory=TierSettings)
    sweep: SweepSettings = field(default_factory=SweepSettings)
    autoscaling: AutoscalingSettings = field(default_factory=AutoscalingSettings)
    migration: MigrationSettings = field(default_factory=MigrationSettings)
    """When a tier counts as lost, and how many moves a tier takes at once."""
    leader_election: ElectionSettings = field(default_factory=ElectionSettings)
