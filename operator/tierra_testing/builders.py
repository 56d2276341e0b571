"""Builders of the objects Tierra's tests and benchmarks need: variants, pools, Tiers and
InferenceServices (as the apiserver takes them, camelCase dicts, or as the typed models), the
fleet as a reconcile sees it (TierView, ServiceView), Deployments with Tierra's labels, and the
autoscaling recommender's inputs (``recommender_inputs``).

Each builder is one call with keyword overrides and defaults that make a valid object: a
single H100 variant, a ``central`` Tier in ``eu-central`` with one H100 pool, ``team-a/chat``.
Name only what a test is about; compose the rest::

    service(variants=[variant("cpu", "cpu", decode=50)], placement={"levels": ["edge"]})
    tier_view(tier("edge", "edge"), {"h100": (8, 6)})
    service_manifest("bulk-1", "bench", [variant("cpu", "cpu", startup=0)])

The manifests carry only the fields given or needed (an unset field is the API's default), so
the same builder serves a request to a real apiserver and a model for the functional core.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from tierra.api.inference_service import InferenceService
from tierra.api.tier import Tier
from tierra.core.autoscale import ScalingInputs
from tierra.core.placement import (
    Candidate,
    PlacementDecision,
    PlannedPlacement,
    PoolCapacity,
    Rejection,
    TierView,
)
from tierra.core.reconcile import ServiceView

API_VERSION = "tierra.dev/v1alpha1"
IMAGE = "vllm/vllm-openai:v0.10.0"
MODEL: Mapping[str, str] = {"name": "llama-3.1-8b", "uri": "hf://meta/llama"}
SLO: Mapping[str, Any] = {"latencyP95Ms": 2000}
FREE_UNITS = 8
"""Free units a pool of a ``tier_view`` has unless told otherwise."""

Manifest = dict[str, Any]


# --------------------------------------------------------------------------------------------
# InferenceService


def variant(
    name: str = "h100",
    type_: str = "nvidia-gpu",
    model: str | None = None,
    *,
    count: int = 1,
    concurrency: int = 32,
    prefill: float = 24000.0,
    decode: float = 2400.0,
    startup: int | None = 90,
    topology: str | None = None,
    args: Sequence[str] = (),
) -> Manifest:
    """One entry of ``spec.variants``: ``count`` accelerators of ``type_`` (and ``model``) per
    replica, their profiled capacity, and ``startup`` seconds to Ready (None: the API's
    default)."""
    accelerator: Manifest = {"type": type_, "count": count}
    if model is not None:
        accelerator["model"] = model
    if topology is not None:
        accelerator["topology"] = topology
    entry: Manifest = {
        "name": name,
        "accelerator": accelerator,
        "capacity": {
            "maxConcurrency": concurrency,
            "prefillTokensPerSecond": prefill,
            "decodeTokensPerSecond": decode,
        },
    }
    if startup is not None:
        entry["startupSeconds"] = startup
    if args:
        entry["args"] = list(args)
    return entry


def service_manifest(
    name: str = "chat",
    namespace: str = "team-a",
    variants: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
    slo: Mapping[str, Any] | None = None,
    uid: str | None = None,
    **spec: Any,
) -> Manifest:
    """An InferenceService as the apiserver takes it. ``spec`` adds or replaces any other
    field of the spec (``placement``, ``scaling``, ``migration``, ``replicas``, ...)."""
    metadata: Manifest = {"name": name, "namespace": namespace}
    if uid is not None:
        metadata["uid"] = uid
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {
            "model": dict(MODEL if model is None else model),
            "runtime": dict({"image": IMAGE} if runtime is None else runtime),
            "variants": [dict(v) for v in ([variant()] if variants is None else variants)],
            "slo": dict(SLO if slo is None else slo),
            **spec,
        },
    }


def service(
    name: str = "chat",
    namespace: str = "team-a",
    variants: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
    slo: Mapping[str, Any] | None = None,
    uid: str = "0000-uid",
    **spec: Any,
) -> InferenceService:
    """The typed InferenceService of ``service_manifest`` (with a uid, as a stored one has)."""
    return InferenceService.model_validate(
        service_manifest(
            name, namespace, variants, model=model, runtime=runtime, slo=slo, uid=uid, **spec
        )
    )


# --------------------------------------------------------------------------------------------
# Tier


def pool(
    name: str = "h100",
    type_: str = "nvidia-gpu",
    model: str | None = "H100",
    *,
    price: float | None = 2.0,
    per_node: int | None = None,
    selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, str]] = (),
    resource_name: str | None = None,
) -> Manifest:
    """One entry of a Tier's ``spec.pools``: nodes carrying ``type_`` (and ``model``)
    accelerators, picked by the node ``selector``, at ``price`` per accelerator-hour (None: the
    API's default)."""
    accelerator: Manifest = {"type": type_}
    if model is not None:
        accelerator["model"] = model
    if per_node is not None:
        accelerator["perNode"] = per_node
    if resource_name is not None:
        accelerator["resourceName"] = resource_name
    entry: Manifest = {"name": name, "accelerator": accelerator}
    if selector:
        entry["nodeSelector"] = dict(selector)
    if tolerations:
        entry["tolerations"] = [dict(t) for t in tolerations]
    if price is not None:
        entry["pricePerAcceleratorHour"] = price
    return entry


def tier_manifest(
    name: str = "central",
    level: str = "central",
    *,
    region: str = "eu-central",
    residency: Sequence[str] = ("eu",),
    latency: Mapping[str, float] | None = None,
    carbon: float | None = None,
    pools: Sequence[Mapping[str, Any]] | None = None,
    namespace: str | None = None,
    kubeconfig_secret: str | None = None,
) -> Manifest:
    """A Tier as the apiserver takes it: ``latency`` maps user regions to RTT ms; ``namespace``
    and ``kubeconfig_secret`` (a Secret's name, key ``kubeconfig``) say where its children go
    (neither: the operator's own cluster, in the service's namespace)."""
    spec: Manifest = {"level": level, "region": region}
    if residency:
        spec["residency"] = list(residency)
    spec["pools"] = [dict(p) for p in (pools if pools is not None else [pool()])]
    if latency:
        spec["latencyMs"] = dict(latency)
    if carbon is not None:
        spec["carbonIntensity"] = carbon
    cluster: Manifest = {}
    if kubeconfig_secret is not None:
        cluster["kubeconfigSecretRef"] = {"name": kubeconfig_secret, "key": "kubeconfig"}
    if namespace is not None:
        cluster["namespace"] = namespace
    if cluster:
        spec["cluster"] = cluster
    return {"apiVersion": API_VERSION, "kind": "Tier", "metadata": {"name": name}, "spec": spec}


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
    kubeconfig_secret: str | None = None,
) -> Tier:
    """The typed Tier of ``tier_manifest``."""
    return Tier.model_validate(
        tier_manifest(
            name,
            level,
            region=region,
            residency=residency,
            latency=latency,
            carbon=carbon,
            pools=pools,
            namespace=namespace,
            kubeconfig_secret=kubeconfig_secret,
        )
    )


# --------------------------------------------------------------------------------------------
# The fleet as a reconcile sees it


def tier_view(
    t: Tier,
    capacity: Mapping[str, int | tuple[int, int]] | None = None,
    *,
    reachable: bool = True,
    lost: bool = False,
    deleting: bool = False,
) -> TierView:
    """A Tier with its observed state: ``capacity`` maps a pool to its units, or to (units,
    allocated); a pool not named has ``FREE_UNITS`` free. ``lost`` (with ``reachable=False``):
    unreachable for longer than the tier-lost threshold."""
    pools: dict[str, PoolCapacity] = {}
    for p in t.spec.pools:
        given = (capacity or {}).get(p.name, FREE_UNITS)
        total, allocated = given if isinstance(given, tuple) else (given, 0)
        pools[p.name] = PoolCapacity(t.metadata.name, p.name, total, allocated)
    return TierView(tier=t, reachable=reachable, pools=pools, lost=lost, deleting=deleting)


def candidate(
    svc: InferenceService,
    tv: TierView,
    pool_name: str = "h100",
    variant_name: str = "h100",
    free: int = 8,
) -> Candidate:
    """The candidate of ``svc``'s variant on a pool of a viewed tier, with ``free`` units."""
    p = next(p for p in tv.tier.spec.pools if p.name == pool_name)
    v = next(v for v in svc.spec.variants if v.name == variant_name)
    return Candidate(svc, tv, p, v, free)


def cheap_and_dear() -> list[TierView]:
    """central is cheaper than regional for the default h100 variant."""
    return [
        tier_view(tier("central", "central", pools=[pool(price=1.0)])),
        tier_view(tier("regional", "regional", pools=[pool(price=3.0)])),
    ]


def three_tiers() -> list[TierView]:
    """Three tiers of one h100 pool each, t1 the cheapest and t3 the dearest."""
    return [
        tier_view(tier("t1", pools=[pool(price=1.0)])),
        tier_view(tier("t2", pools=[pool(price=2.0)])),
        tier_view(tier("t3", pools=[pool(price=3.0)])),
    ]


def placed_replicas(decision: PlacementDecision) -> dict[tuple[str, str, str], int]:
    """Replicas per (tier, pool, variant) of a placement decision."""
    return {p.key: p.replicas for p in decision.placements}


def service_view(
    *tiers: Tier | TierView,
    settled: Iterable[str] = (),
    local: Iterable[str] = (),
    **fields: Any,
) -> ServiceView:
    """The fleet as one service's reconcile sees it: a Tier given bare gets ``tier_view``'s
    defaults (reachable, ``FREE_UNITS`` free in each pool); ``settled`` and ``local`` take any
    iterable of tier names; ``fields`` are the view's others (``current``, ``held``,
    ``children``, ...) as ServiceView takes them."""
    return ServiceView(
        tiers=[t if isinstance(t, TierView) else tier_view(t) for t in tiers],
        settled=frozenset(settled),
        local=frozenset(local),
        **fields,
    )


# --------------------------------------------------------------------------------------------
# Deployments


def child_labels(
    service_name: str | None = "chat",
    namespace: str = "team-a",
    *,
    tier: str = "central",
    pool: str = "h100",
    variant: str = "h100",
) -> dict[str, str]:
    """The labels by which Tierra knows a Deployment of its own: managed by it, in a tier,
    pool and variant, and (``service_name`` not None) whose service it runs."""
    labels = {
        "app.kubernetes.io/managed-by": "tierra",
        "tierra.dev/tier": tier,
        "tierra.dev/pool": pool,
        "tierra.dev/variant": variant,
    }
    if service_name is not None:
        labels["tierra.dev/inference-service"] = service_name
        labels["tierra.dev/inference-service-namespace"] = namespace
    return labels


def deployment(
    name: str = "chat-h100-central",
    replicas: int = 1,
    *,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    selector: Mapping[str, str] | None = None,
    container: str = "server",
    image: str = IMAGE,
    resources: Mapping[str, str] | None = None,
    requests: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, str]] = (),
) -> Manifest:
    """An apps/v1 Deployment of one container, which requests and is limited to ``resources``
    (as accelerators must be) or only requests ``requests``. Its pods match ``selector``
    (default ``app: <name>``) and carry ``labels`` too, as the Deployment itself does."""
    match = dict(selector or {"app": name})
    all_labels = {**match, **(labels or {})}
    metadata: Manifest = {"name": name, "labels": all_labels}
    if namespace is not None:
        metadata["namespace"] = namespace
    server: Manifest = {"name": container, "image": image}
    if resources:
        server["resources"] = {"requests": dict(resources), "limits": dict(resources)}
    elif requests:
        server["resources"] = {"requests": dict(requests)}
    pod: Manifest = {"containers": [server]}
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod["tolerations"] = [dict(t) for t in tolerations]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": match},
            "template": {"metadata": {"labels": all_labels}, "spec": pod},
        },
    }


# --------------------------------------------------------------------------------------------
# Decisions


def placement_decision(
    replicas: int, desired: int, rejected: tuple[Rejection, ...] = ()
) -> PlacementDecision:
    """A decision placing ``replicas`` of ``desired`` on edge/orin (for status tests)."""
    placements = (
        (PlannedPlacement("edge", "orin", "orin", replicas, "best by latency"),) if replicas else ()
    )
    return PlacementDecision(
        service="team-a/chat",
        objective="latency",
        desired=desired,
        min_tiers=1,
        placements=placements,
        rejected=rejected,
        ranked=(),
        dropped=(),
        satisfied=replicas >= desired,
        unplaced=max(0, desired - replicas),
        spread_ok=True,
        summary=f"{replicas}/{desired} replicas",
    )


# --------------------------------------------------------------------------------------------
# The autoscaling recommender


def recommender_inputs(**changes: Any) -> ScalingInputs:
    """The recommender's inputs for one replica serving a 1000-token prompt and a 200-token
    answer in 0.375 s alone (8,000 prefill and 800 decode tokens/s, 32 at once), a 2 s p95
    SLO, a 60 s start-up and a 120 s scale-down delay; one replica, ready; no metrics."""
    base = ScalingInputs(
        min_replicas=1,
        max_replicas=50,
        latency_p95_ms=2000.0,
        max_concurrency=32,
        prefill_tokens_per_second=8000.0,
        decode_tokens_per_second=800.0,
        desired_replicas=1,
        ready_replicas=1,
        signals=None,
        scale_down_delay_seconds=120.0,
        startup_seconds=60.0,
        max_queue_per_replica=8,
        mean_prompt_tokens=1000.0,
        mean_output_tokens=200.0,
    )
    return replace(base, **changes)


def step_benchmark_inputs(**changes: Any) -> ScalingInputs:
    """``benchmarks/autoscale.py``'s service as the recommender sees it: 500-token prompts and
    100-token answers, 0.3125 s alone on a replica (8,000 prefill and 400 decode tokens/s, 8
    at once, 4 waiting each), a 2 s p95 SLO, a 5 s start-up and a 60 s scale-down delay; one
    replica, ready; room for 100 (the benchmark's maxReplicas 12 would clamp the count a step
    asks for)."""
    return recommender_inputs(
        **{
            "max_replicas": 100,
            "max_concurrency": 8,
            "decode_tokens_per_second": 400.0,
            "scale_down_delay_seconds": 60.0,
            "startup_seconds": 5.0,
            "max_queue_per_replica": 4,
            "mean_prompt_tokens": 500.0,
            "mean_output_tokens": 100.0,
            **changes,
        }
    )


def units_by_pool(decisions: Sequence[PlacementDecision]) -> Counter[tuple[str, str]]:
    """Units the decisions place, per (tier, pool)."""
    used: Counter[tuple[str, str]] = Counter()
    for d in decisions:
        for p in d.placements:
            used[p.pool_key] += p.accelerators
    return used


def applied(tiers: Sequence[TierView], decisions: Sequence[PlacementDecision]) -> list[TierView]:
    """The tiers as observed once the decisions' pods are scheduled."""
    used = units_by_pool(decisions)
    return [
        TierView(
            tier=tv.tier,
            reachable=tv.reachable,
            pools={
                name: PoolCapacity(tv.name, name, p.capacity, p.allocated + used[(tv.name, name)])
                for name, p in tv.pools.items()
            },
        )
        for tv in tiers
    ]
