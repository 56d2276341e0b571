"""The namespaced InferenceService: one model, how to run it per accelerator, where and how much."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, ConfigDict, Field

from tierra.api.common import (
    DNS_LABEL,
    LEVELS,
    REGION,
    AcceleratorType,
    ApiModel,
    Condition,
    Level,
    Objective,
    ObjectMeta,
    Toleration,
    cel,
)

MetricsPreset = Literal["vllm", "tgi", "triton", "custom"]
PodSecurityLevel = Literal["restricted", "baseline"]
MigrationPolicy = Literal["auto", "manual"]

# Rendered child names are "<service>-<variant>-<tier>"; keep them under the 63-character DNS label.
MAX_SERVICE_NAME = 40
MAX_VARIANT_NAME = 15


class ModelRef(ApiModel):
    """The model being served."""

    name: str = Field(
        description="Model name, e.g. llama-3.1-8b-instruct.", min_length=1, max_length=253
    )
    uri: str | None = Field(
        default=None,
        description="Where the runtime loads weights from, e.g. hf://org/model or s3://bucket/path.",
        pattern=r"^[a-z][a-z0-9+.-]*://\S+$",
        max_length=2048,
    )


class EnvVar(ApiModel):
    """An environment variable for the runtime container."""

    name: str = Field(
        description="Variable name.", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=253
    )
    value: str = Field(default="", description="Variable value.")


MAX_QUERY_LENGTH = 4096


def _scoped_to_the_service(query: str) -> str:
    if "{selector}" not in query:
        raise ValueError("must contain {selector}, so that it reads only this service's pods")
    return query


PromQL = Annotated[
    str,
    AfterValidator(_scoped_to_the_service),
    Field(
        min_length=1,
        max_length=MAX_QUERY_LENGTH,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.contains('{selector}')",
                    "must contain {selector}, so that the query reads only this service's pods"
                    " (a query without it could read any series of a shared Prometheus)",
                )
            ]
        },
    ),
]
"""A tenant's PromQL: scoped to the service's pods by ``{selector}``, and bounded in length."""


class CustomQueries(ApiModel):
    """PromQL for the custom metrics preset; {selector} is replaced by the pods' label matcher
    and must appear in every query."""

    queue_depth: PromQL = Field(description="Requests waiting, summed over the service's pods.")
    running: PromQL | None = Field(default=None, description="Requests being served.")
    latency_p95_seconds: PromQL | None = Field(
        default=None, description="p95 end-to-end latency (s)."
    )
    ttft_p95_seconds: PromQL | None = Field(
        default=None, description="p95 time to first token (s)."
    )
    arrival_rate: PromQL | None = Field(default=None, description="Requests per second arriving.")


class Runtime(ApiModel):
    """The model server container."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.metricsPreset != 'custom' || has(self.customQueries)",
                    "metricsPreset custom requires customQueries",
                    ".customQueries",
                ),
            ]
        }
    )

    image: str = Field(
        description="Container image of the model server.", min_length=1, max_length=1024
    )
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port the server listens on.")
    args: list[str] = Field(default_factory=list, description="Container arguments.", max_length=64)
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Extra environment.",
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    metrics_preset: MetricsPreset = Field(
        default="vllm", description="Which runtime's Prometheus metric names to query."
    )
    custom_queries: CustomQueries | None = Field(
        default=None, description="Queries for metricsPreset custom."
    )
    health_path: str = Field(
        default="/health",
        description="HTTP path for readiness and liveness probes.",
        pattern=r"^/\S*$",
    )
    pod_security: PodSecurityLevel = Field(
        default="restricted",
        description=(
            "Pod Security Standard the model server's pods meet. restricted: non-root, no "
            "privilege escalation, all capabilities dropped, seccomp RuntimeDefault, so they "
            "run in namespaces enforcing restricted; the image must run as a non-root user. "
            "baseline: for images that must run as root (as the official vLLM and TGI images "
            "do); still no privilege escalation and seccomp RuntimeDefault."
        ),
    )


class VariantAccelerator(ApiModel):
    """The accelerators one replica of a variant needs."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.topology) || self.type == 'google-tpu'",
                    "topology is only meaningful for google-tpu",
                    ".topology",
                ),
            ]
        }
    )

    type: AcceleratorType = Field(description="Accelerator family this variant runs on.")
    model: str | None = Field(
        default=None,
        description="Required accelerator model (e.g. H100); empty accepts any model of the type.",
        max_length=63,
    )
    count: int = Field(default=1, ge=1, le=64, description="Accelerators per replica.")
    topology: str | None = Field(
        default=None,
        description="TPU slice topology, e.g. 2x2 or 2x2x1.",
        pattern=r"^[1-9][0-9]*x[1-9][0-9]*(x[1-9][0-9]*)?$",
    )


class VariantCapacity(ApiModel):
    """Profiled throughput of one replica."""

    max_concurrency: int = Field(
        ge=1, le=100000, description="Requests one replica serves at once."
    )
    prefill_tokens_per_second: float = Field(
        gt=0, le=1e9, description="Prompt tokens one replica processes per second."
    )
    decode_tokens_per_second: float = Field(
        gt=0, le=1e9, description="Output tokens one replica generates per second."
    )


class Variant(ApiModel):
    """How to run the model on one accelerator type."""

    name: str = Field(
        description="Variant name, unique in the service.",
        pattern=DNS_LABEL,
        max_length=MAX_VARIANT_NAME,
    )
    accelerator: VariantAccelerator = Field(description="Accelerators per replica.")
    capacity: VariantCapacity = Field(description="Per-replica throughput, profiled.")
    startup_seconds: int = Field(
        default=60, ge=0, le=3600, description="Seconds from pod start until it serves."
    )
    args: list[str] = Field(
        default_factory=list, description="Extra runtime arguments for this variant.", max_length=64
    )


class Placement(ApiModel):
    """Where the service may run and what placement optimises."""

    levels: list[Level] = Field(
        default_factory=lambda: list(LEVELS),
        description="Allowed levels, in preference order (ties are broken by this order).",
        min_length=1,
        max_length=3,
        # The order is the preference order: atomic, so no merge can reorder it.
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    residency: str | None = Field(
        default=None,
        description="Data boundary: only tiers whose residency includes it.",
        pattern=REGION,
        max_length=63,
    )
    user_regions: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict,
        description="Share of requests from each user region (weights, 0..1).",
        json_schema_extra={"maxProperties": 64},
    )
    min_tiers: int = Field(
        default=1, ge=1, le=8, description="Spread replicas over this many tiers."
    )
    objective: Objective = Field(default="cost", description="cost, latency or carbon.")
    allowed_variants: list[Annotated[str, Field(max_length=MAX_VARIANT_NAME)]] = Field(
        default_factory=list,
        description="Restrict placement to these variants (names from spec.variants); "
        "empty allows all.",
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Tier taints this service tolerates, with the matching rules of pod "
        "tolerations (an empty key with operator Exists tolerates every taint).",
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class Slo(ApiModel):
    """Service-level objectives."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.ttftP95Ms) || self.ttftP95Ms <= self.latencyP95Ms",
                    "ttftP95Ms must not exceed latencyP95Ms",
                    ".ttftP95Ms",
                ),
            ]
        }
    )

    latency_p95_ms: int = Field(
        ge=1, le=600000, description="p95 end-to-end request latency goal (ms)."
    )
    ttft_p95_ms: int | None = Field(
        default=None, ge=1, le=600000, description="p95 time-to-first-token goal (ms)."
    )
    max_queue_per_replica: int | None = Field(
        default=None, ge=0, le=100000, description="Waiting requests a replica may hold."
    )


CRON = r"^[0-9A-Za-z*/,#?-]+( [0-9A-Za-z*/,#?-]+){4}$"
"""Five cron fields (minute, hour, day of month, month, day of week) of cron's characters;
whether each field's values are in range is checked by the operator (``_a_cron_expression``)."""
TIME_ZONE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
"""An IANA time zone name (Europe/Paris, America/Argentina/Buenos_Aires, UTC): no path."""


def _a_cron_expression(expression: str) -> str:
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as error:
        raise ValueError(f"not a cron expression ({error})") from None
    return expression


def _a_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a time zone of the IANA database (e.g. Europe/Paris, UTC)") from None
    return name


class ScalingSchedule(ApiModel):
    """Replicas held in a known window of load (a peak, a launch), asked for a start-up ahead."""

    # (asked for the primary variant's startupSeconds before each start, so that they serve
    # from the start on; the autoscaler may add more, never fewer)

    name: str = Field(description="The schedule's name.", pattern=DNS_LABEL, max_length=63)
    start: Annotated[str, AfterValidator(_a_cron_expression)] = Field(
        description="When each window opens: a five-field cron expression (minute hour "
        "day-of-month month day-of-week), e.g. '0 9 * * MON-FRI', in timeZone.",
        pattern=CRON,
        max_length=128,
    )
    duration_seconds: int = Field(
        ge=60, le=7 * 86400, description="How long each window stays open after its start."
    )
    min_replicas: int = Field(
        ge=1, le=10000, description="Replicas held while the window is open (at most maxReplicas)."
    )
    time_zone: Annotated[str, AfterValidator(_a_time_zone)] = Field(
        default="UTC",
        description="The IANA time zone of start, e.g. Europe/Paris (daylight saving time as "
        "cron keeps it).",
        pattern=TIME_ZONE,
        max_length=64,
    )


class Scaling(ApiModel):
    """Autoscaling bounds and behaviour."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must be less than or equal to maxReplicas",
                    ".minReplicas",
                ),
                cel(
                    "self.minReplicas > 0 || self.scaleToZero",
                    "minReplicas 0 requires scaleToZero: true",
                    ".minReplicas",
                ),
                cel(
                    "!has(self.schedules) || self.schedules.all(s, s.minReplicas <= "
                    "self.maxReplicas)",
                    "a schedule's minReplicas must be less than or equal to maxReplicas",
                    ".schedules",
                ),
            ]
        }
    )

    min_replicas: int = Field(default=1, ge=0, le=10000, description="Lower bound on replicas.")
    max_replicas: int = Field(default=10, ge=1, le=10000, description="Upper bound on replicas.")
    scale_to_zero: bool = Field(default=False, description="Allow zero replicas when idle.")
    scale_down_delay_seconds: int = Field(
        default=120,
        ge=0,
        le=86400,
        description="Sustained lower need before scaling down. Replicas still starting are "
        "kept, whatever this delay, while the arrivals have not fallen back beyond noise since "
        "they were asked for (no lower at all, for those a ramp's forecast asked for).",
    )
    scale_to_zero_idle_seconds: int | None = Field(
        default=None,
        ge=0,
        le=86400,
        description="With scaleToZero, how long nothing waits, runs or arrives before scaling "
        "to zero. Default: scaleDownDelaySeconds, and at least the variant's startupSeconds "
        "(a lull shorter than a start-up is served by the replicas kept; at zero its first "
        "request waits the whole start-up).",
    )
    burst_memory_seconds: int | None = Field(
        default=None,
        ge=60,
        le=14400,
        description="How long a burst seen keeps headroom held against the next one: the "
        "burst headroom looks back this far for the arrivals' rises and peak, and older "
        "bursts fade out over half as long again. Longer holds replicas through longer calm "
        "between bursts (bursts an hour or more apart); shorter costs less. Each decision "
        "reads the whole history, so the operator's CPU grows with it. Load known a day "
        "ahead belongs in schedules. Default: 1800, or 12 times the variant's "
        "startupSeconds when that is longer.",
    )
    schedules: list[ScalingSchedule] = Field(
        default_factory=list,
        description="Windows of known load in which at least their minReplicas run (the "
        "highest of the open ones), asked for a start-up time ahead; not in manual mode.",
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class Migration(ApiModel):
    """How the service moves between tiers."""

    policy: MigrationPolicy = Field(default="auto", description="auto or manual.")
    drain_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Grace the old replicas get to finish their requests once the new ones "
        "are Ready (their pods' termination grace period).",
    )
    priority: int = Field(
        default=0,
        ge=-1000,
        le=1000,
        description="When many services must move at once (a lost or drained tier), higher "
        "priorities move first.",
    )


class InferenceServiceSpec(ApiModel):
    """Desired state of an InferenceService."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.placement.allowedVariants) || "
                    "self.placement.allowedVariants.all(n, self.variants.exists(v, v.name == n))",
                    "placement.allowedVariants must name variants from spec.variants",
                    ".placement.allowedVariants",
                ),
                cel(
                    "!has(self.replicas) || self.replicas <= self.scaling.maxReplicas",
                    "replicas must not exceed scaling.maxReplicas",
                    ".replicas",
                ),
                cel(
                    "!has(self.replicas) || self.replicas > 0 || self.scaling.scaleToZero",
                    "replicas 0 requires scaling.scaleToZero: true",
                    ".replicas",
                ),
            ]
        }
    )

    model: ModelRef = Field(description="The model being served.")
    runtime: Runtime = Field(description="The model server container.")
    variants: list[Variant] = Field(
        description="How to run the model on each accelerator type (at least one).",
        min_length=1,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    placement: Placement = Field(default_factory=Placement, description="Where it may run.")
    slo: Slo = Field(description="Latency objectives.")
    scaling: Scaling = Field(default_factory=Scaling, description="Autoscaling bounds.")
    migration: Migration = Field(default_factory=Migration, description="Migration policy.")
    replicas: int | None = Field(
        default=None,
        ge=0,
        le=10000,
        description="Manual replica count (the scale subresource). When set, it overrides the "
        "autoscaler; remove it to return to automatic scaling.",
    )


class PlacementStatus(ApiModel):
    """One placement of the service: a variant on a pool of a tier."""

    tier: str = Field(description="Tier name.")
    pool: str = Field(description="Pool name in the tier.")
    variant: str = Field(description="Variant name.")
    replicas: int = Field(default=0, description="Desired replicas here.")
    ready_replicas: int = Field(default=0, description="Ready replicas of the Deployment here.")
    reason: str = Field(default="", description="Why this placement was chosen.")


class RejectedCandidate(ApiModel):
    """A candidate placement that a filter ruled out, and why."""

    tier: str = Field(description="Tier name.")
    pool: str = Field(
        default="", description="Pool name (empty when the whole tier was ruled out)."
    )
    variant: str = Field(default="", description="Variant name (empty when not variant-specific).")
    reason: str = Field(description="Why the candidate was rejected.")


class ObservedMetrics(ApiModel):
    """The last metrics the operator observed."""

    observed_at: str | None = Field(default=None, description="RFC 3339 time of the sample.")
    queue_depth: float | None = Field(default=None, description="Waiting requests.")
    running: float | None = Field(default=None, description="Requests being served.")
    arrival_rate: float | None = Field(default=None, description="Requests per second.")
    p95_latency_ms: float | None = Field(default=None, description="p95 latency (ms).")
    ttft_p95_ms: float | None = Field(default=None, description="p95 time to first token (ms).")
    mean_prompt_tokens: float | None = Field(
        default=None,
        description=(
            "Prompt tokens of the mean request, smoothed over minutes (what the autoscaler "
            "sizes replicas with, and placement checks each variant's TTFT floor against)."
        ),
    )
    mean_output_tokens: float | None = Field(
        default=None, description="Output tokens of the mean request, smoothed likewise."
    )


class Decision(ApiModel):
    """A recorded scale or migration decision."""

    time: str = Field(description="RFC 3339 time of the decision.")
    from_: str = Field(alias="from", description="State before.")
    to: str = Field(description="State after.")
    reason: str = Field(description="Why.")
    signals: dict[str, float] = Field(
        default_factory=dict,
        description="Signal values the decision was made on (metrics, and each signal's need).",
        json_schema_extra={"maxProperties": 80},
    )


MigrationTrigger = Literal[
    "TierLost", "Drain", "TierDeleting", "Capacity", "SLO", "Optimisation", "SpecChange"
]
MigrationOutcome = Literal["InProgress", "Succeeded", "Superseded"]
MAX_MIGRATIONS_IN_STATUS = 10


class MigrationRecord(ApiModel):
    """One move of the service between placements."""

    trigger: MigrationTrigger = Field(description="What started the move.")
    from_: list[str] = Field(
        alias="from",
        default_factory=list,
        description="Placements left (tier/pool/variant).",
        max_length=16,
    )
    to: list[str] = Field(
        default_factory=list, description="Placements moved to (tier/pool/variant).", max_length=16
    )
    started: str = Field(description="RFC 3339 time the move started.")
    finished: str | None = Field(default=None, description="RFC 3339 time it ended.")
    outcome: MigrationOutcome = Field(
        default="InProgress",
        description="InProgress; Succeeded once the new placements are Ready and the old ones "
        "are gone (or unreachable); Superseded when another move replaced it.",
    )
    message: str = Field(default="", description="Why, for a person.", max_length=1024)


class MigrationOpportunity(ApiModel):
    """A placement better by the objective than where the service runs, not taken yet: it is
    taken once it has held for the operator's optimisation delay, and only after the minimum
    dwell time since the last move."""

    to: list[str] = Field(
        default_factory=list,
        description="The better placements (tier/pool/variant).",
        max_length=16,
    )
    gain: float = Field(default=0.0, description="Relative improvement of the objective's score.")
    since: str = Field(description="RFC 3339 time it was first seen.")


class AutoscalingStatus(ApiModel):
    """What the SLO autoscaler currently recommends, and in which mode."""

    mode: Literal["auto", "manual", "hold"] = Field(
        default="auto",
        description=(
            "auto: the recommender decides; manual: spec.replicas (the scale subresource) "
            "overrides it; hold: metrics are missing, the last good count is kept."
        ),
    )
    recommended_replicas: int | None = Field(
        default=None, description="Replicas the recommender asks for (before placement)."
    )
    signal: str | None = Field(
        default=None,
        description="The signal whose need won: queue, arrival, headroom or latency.",
    )
    needs: dict[str, int] = Field(
        default_factory=dict,
        description="Replicas each signal needs.",
        json_schema_extra={"maxProperties": 8},
    )
    keeps: int | None = Field(
        default=None,
        description=(
            "Replicas the last sample keeps against a scale-down: the largest of its signals' "
            "needs at the top of the deadband (the arrival and queue signals at 10 % more "
            "load, more at a low arrival rate, whose noise widens it; the headroom, already "
            "held above the load, and latency feedback at their own need). A scale-down goes "
            "to the largest of these over spec.scaling.scaleDownDelaySeconds."
        ),
    )
    reason: str = Field(default="", description="Why the recommender asks for this count.")
    state: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "What a restarted operator needs of the recommender's memory (service-rate "
            "estimate, burst history, fan-out, how far recent rises lasted, the arrivals' "
            "scatter, request size, latency verdicts, the last backlog, the scale-down "
            "window's steps), as of stateTime: written with the status, so it is at most a "
            "status refresh old."
        ),
        json_schema_extra={"maxProperties": 64},
    )
    state_time: str | None = Field(default=None, description="RFC 3339 time of state.")


class InferenceServiceStatus(ApiModel):
    """Observed state of an InferenceService."""

    observed_generation: int | None = Field(default=None, description="Generation last reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description=(
            "Ready, Placed, SLOMet, SLOReachable, ScalingLimited, MetricsAvailable and "
            "Migrating conditions."
        ),
    )
    placements: list[PlacementStatus] = Field(default_factory=list, description="Where it runs.")
    rejected: list[RejectedCandidate] = Field(
        default_factory=list,
        description="Candidates the last placement ruled out, with reasons (at most 50).",
    )
    replicas: int = Field(default=0, description="Desired replicas over all placements.")
    ready_replicas: int = Field(default=0, description="Ready replicas over all placements.")
    selector: str = Field(default="", description="Label selector of the service's pods (scale).")
    tiers: str = Field(default="", description="Comma-separated tiers it runs in (printer column).")
    variant: str = Field(
        default="", description="Comma-separated variants in use (printer column)."
    )
    metrics: ObservedMetrics | None = Field(default=None, description="Last observed metrics.")
    autoscaling: AutoscalingStatus | None = Field(
        default=None, description="The autoscaler's current recommendation and mode."
    )
    last_scale: Decision | None = Field(default=None, description="Last scale decision.")
    last_migration: Decision | None = Field(default=None, description="Last migration.")
    opportunity: MigrationOpportunity | None = Field(
        default=None, description="A better placement waiting to be moved to (optimisation)."
    )
    migrations: list[MigrationRecord] = Field(
        default_factory=list,
        description=f"The last {MAX_MIGRATIONS_IN_STATUS} moves, oldest first.",
        max_length=MAX_MIGRATIONS_IN_STATUS,
    )


class InferenceService(ApiModel):
    """One model served across tiers and accelerator variants."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["tierra.dev/v1alpha1"] = Field(default="tierra.dev/v1alpha1")
    kind: Literal["InferenceService"] = "InferenceService"
    metadata: ObjectMeta
    spec: InferenceServiceSpec
    status: InferenceServiceStatus = Field(default_factory=InferenceServiceStatus)
