"""Shared vocabulary of the API: enums, the base model, conditions and object metadata."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "tierra.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

Level = Literal["central", "regional", "edge"]
LEVELS: tuple[Level, ...] = ("central", "regional", "edge")

AcceleratorType = Literal["nvidia-gpu", "google-tpu", "aws-neuron", "edge-gpu", "edge-npu", "cpu"]
Objective = Literal["cost", "latency", "carbon"]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
REGION = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

RegionName = Annotated[str, Field(pattern=REGION, max_length=63)]


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, no unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class Condition(ApiModel):
    """A Kubernetes-style status condition."""

    type: str = Field(description="Condition type, e.g. Ready, Placed, Reachable.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One-word CamelCase reason for the status.")
    message: str = Field(default="", description="Human-readable explanation.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this condition was computed from."
    )
    last_transition_time: str | None = Field(
        default=None, description="RFC 3339 time the status last changed."
    )


class ObjectMeta(BaseModel):
    """The subset of Kubernetes object metadata the operator reads."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: str | None = Field(default=None, alias="creationTimestamp")
    deletion_timestamp: str | None = Field(default=None, alias="deletionTimestamp")


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


TAINT_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
"""A qualified name, as taint keys are: an optional DNS-subdomain prefix and a slash, a name."""


class Taint(ApiModel):
    """A taint on a whole Tier (the Kubernetes taint shape)."""

    key: str = Field(
        description="Taint key, e.g. tierra.dev/maintenance.", pattern=TAINT_KEY, max_length=316
    )
    value: str | None = Field(default=None, description="Taint value.", max_length=63)
    effect: Literal["NoSchedule", "NoExecute"] = Field(
        description="NoSchedule: no new placements; NoExecute: placements move away."
    )


class Toleration(ApiModel):
    """A toleration, as in core/v1: matches a taint by key, value and effect."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.key) || self.operator == 'Exists'",
                    "a toleration without a key must use operator Exists",
                    ".operator",
                ),
            ]
        }
    )

    key: str | None = Field(default=None, description="Taint key; empty with Exists matches all.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty tolerates all effects."
    )
