"""Small builders of Tier / InferenceService / TierView for the core's tests (camelCase dicts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.core.placement import PoolCapacity, TierView


def pool(
    name: str = "h100",
    type_: str = "nvidia-gpu",
    model: str | None = "H100",
    *,
    price: float = 2.0,
    selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, str]] = (),
    resource_name: str | None = None,
) -> dict[str, Any]:
    accelerator: dict[str, Any] = {"type": type_}
    if model is not None:
        accelerator["model"] = model
    if resource_name is not None:
        accelerator["resourceName"] = resource_name
    return {
        "name": name,
        "accelerator": accelerator,
        "nodeSelector": dict(selector or {}),
        "tolerations": [dict(t) for t in tolerations],
        "pricePerAcceleratorHour": price,
    }


def tier(
    name: str = "central",
    level: str = "central",
    *,
    region: str = "eu-central",
    residency: Sequence[str] = ("eu",),
    latency: Mapping[str, float] | None = None,
    carbon: float | None = None,
    pools: Sequence[Mapping[str, Any]] | None = None,
    namespace: str | None = None,
) -> Tier:
    spec: dict[str, Any] = {
        "level": level,
        "region": region,
        "residency": list(residency),
        "latencyMs": dict(latency or {}),
        "pools": [dict(p) for p in (pools if pools is not None else [pool()])],
    }
    if carbon is not None:
        spec["carbonIntensity"] = carbon
    if namespace is not None:
        spec["cluster"] = {"namespace": namespace}
    return Tier.model_validate({"metadata": {"name": name}, "spec": spec})


def variant(
    name: str = "h100",
    type_: str = "nvidia-gpu",
    model: str | None = None,
    *,
    count: int = 1,
    decode: float = 2400.0,
    prefill: float = 24000.0,
    topology: str | None = None,
    startup: int = 90,
    args: Sequence[str] = (),
) -> dict[str, Any]:
    accelerator: dict[str, Any] = {"type": type_, "count": count}
    if model is not None:
        accelerator["model"] = model
    if topology is not None:
        accelerator["topology"] = topology
    return {
        "name": name,
        "accelerator": accelerator,
        "capacity": {
            "maxConcurrency": 32,
            "prefillTokensPerSecond": prefill,
            "decodeTokensPerSecond": decode,
        },
        "startupSeconds": startup,
        "args": list(args),
    }


def service(
    name: str = "chat",
    namespace: str = "team-a",
    *,
    variants: Sequence[Mapping[str, Any]] | None = None,
    placement: Mapping[str, Any] | None = None,
    slo: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    migration: Mapping[str, Any] | None = None,
    uid: str = "0000-uid",
) -> InferenceService:
    return InferenceService.model_validate(
        {
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {
                "model": dict(model or {"name": "llama-3.1-8b", "uri": "hf://meta/llama"}),
                "runtime": dict(runtime or {"image": "vllm/vllm-openai:v0.10.0"}),
                "variants": [dict(v) for v in (variants or [variant()])],
                "placement": dict(placement or {}),
                "slo": dict(slo or {"latencyP95Ms": 2000}),
                "migration": dict(migration or {}),
            },
        }
    )


def view(
    t: Tier,
    capacity: Mapping[str, int | tuple[int, int]] | None = None,
    *,
    reachable: bool = True,
    deleting: bool = False,
) -> TierView:
    """Observed state: ``capacity`` maps pool -> capacity or (capacity, allocated); pools not
    named get 8 free units."""
    pools: dict[str, PoolCapacity] = {}
    for p in t.spec.pools:
        given = (capacity or {}).get(p.name, 8)
        total, allocated = given if isinstance(given, tuple) else (given, 0)
        pools[p.name] = PoolCapacity(t.metadata.name, p.name, total, allocated)
    return TierView(tier=t, reachable=reachable, pools=pools, deleting=deleting)
