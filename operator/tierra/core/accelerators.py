"""Scheduling conventions of each accelerator family: resource name, node selection, tolerations.

One table (``CONVENTIONS``) holds the defaults; a pool's own ``nodeSelector`` and ``tolerations``
are merged over them, the pool being authoritative on conflicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tierra.api.common import AcceleratorType, Toleration
from tierra.api.inference_service import Variant
from tierra.api.tier import Pool

TPU_TOPOLOGY_LABEL = "cloud.google.com/gke-tpu-topology"
EDGE_ROLE_KEY = "node-role.kubernetes.io/edge"
CPU_RESOURCE = "cpu"

# cpu variants request memory with their cores: this much per core, up to the cap.
CPU_MEMORY_GI_PER_CORE = 4
CPU_MEMORY_GI_CAP = 64


@dataclass(frozen=True)
class Convention:
    """Defaults for one accelerator family."""

    resource: str | None
    """Extended resource requested per accelerator; None: the pool must name it."""
    toleration_key: str | None
    """Taint key nodes of this family usually carry (tolerated with Exists/NoSchedule)."""
    nominal_watts: float
    """Rough power draw of one unit (one accelerator, or one core for cpu), for carbon scoring.

    Order-of-magnitude class averages (datacenter GPU ~400 W, TPU chip ~250 W, Inferentia
    ~150 W, Jetson-class ~40 W, edge NPU ~10 W, server core ~10 W); they rank tiers, they do
    not report emissions.
    """


CONVENTIONS: Mapping[AcceleratorType, Convention] = {
    "nvidia-gpu": Convention("nvidia.com/gpu", "nvidia.com/gpu", 400.0),
    "google-tpu": Convention("google.com/tpu", "google.com/tpu", 250.0),
    "aws-neuron": Convention("aws.amazon.com/neuron", "aws.amazon.com/neuron", 150.0),
    "edge-gpu": Convention(None, EDGE_ROLE_KEY, 40.0),
    "edge-npu": Convention(None, EDGE_ROLE_KEY, 10.0),
    "cpu": Convention(CPU_RESOURCE, None, 10.0),
}


def has_resource_name(pool: Pool) -> bool:
    """Whether the pool's resource is known (edge pools must name theirs)."""
    accel = pool.accelerator
    return accel.type == "cpu" or bool(accel.resource_name or CONVENTIONS[accel.type].resource)


def resource_name(pool: Pool) -> str:
    """The resource one unit of the pool is requested as (``cpu`` for cpu pools: units are cores).

    The pool's ``accelerator.resourceName`` overrides the family default, except for cpu pools,
    which always use the core resource.
    """
    accel = pool.accelerator
    if accel.type == "cpu":
        return CPU_RESOURCE
    name = accel.resource_name or CONVENTIONS[accel.type].resource
    if name is None:
        raise ValueError(f"pool {pool.name}: {accel.type} pools must set accelerator.resourceName")
    return name


def units_per_replica(variant: Variant) -> int:
    """Whole accelerators (or cores, for cpu) one replica of the variant occupies."""
    return variant.accelerator.count


def node_selector(pool: Pool, variant: Variant) -> dict[str, str]:
    """Node selector of the variant's pods in the pool: family defaults, then the pool's labels.

    The only derived default is the TPU slice topology of a google-tpu variant; everything else
    (``nvidia.com/gpu.product``, ``cloud.google.com/gke-tpu-accelerator``, instance types) is
    the pool's to state in its nodeSelector, which is authoritative.
    """
    selector: dict[str, str] = {}
    if variant.accelerator.type == "google-tpu" and variant.accelerator.topology:
        selector[TPU_TOPOLOGY_LABEL] = variant.accelerator.topology
    selector.update(pool.node_selector)
    return dict(sorted(selector.items()))


def default_tolerations(accelerator_type: AcceleratorType) -> tuple[Toleration, ...]:
    """Tolerations every pod of the family gets (none for cpu)."""
    key = CONVENTIONS[accelerator_type].toleration_key
    if key is None:
        return ()
    return (Toleration(key=key, operator="Exists", effect="NoSchedule"),)


def tolerations(pool: Pool) -> list[Toleration]:
    """The family's default tolerations followed by the pool's own, without duplicates."""
    merged: list[Toleration] = []
    for toleration in (*default_tolerations(pool.accelerator.type), *pool.tolerations):
        if toleration not in merged:
            merged.append(toleration)
    return merged


def resources(pool: Pool, variant: Variant) -> dict[str, dict[str, str]]:
    """Container resources of one replica.

    Accelerators are extended resources: requests and limits must be equal whole numbers.
    cpu variants request cores plus memory (per core, capped) and limit only memory: a CPU
    limit would throttle the server in bursts without protecting anyone else.
    """
    units = units_per_replica(variant)
    if pool.accelerator.type == "cpu":
        memory = f"{min(units * CPU_MEMORY_GI_PER_CORE, CPU_MEMORY_GI_CAP)}Gi"
        return {
            "requests": {CPU_RESOURCE: str(units), "memory": memory},
            "limits": {"memory": memory},
        }
    name = resource_name(pool)
    return {"requests": {name: str(units)}, "limits": {name: str(units)}}


def nominal_kilowatts(accelerator_type: AcceleratorType) -> float:
    """Nominal power of one unit of the family, in kW."""
    return CONVENTIONS[accelerator_type].nominal_watts / 1000.0
