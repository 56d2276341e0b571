"""What the local fleet contains: clusters and their fake accelerator node pools (pure data).

Nodes carry the labels, taints and extended resources real device plugins and cloud providers
put on them, so the real kube-scheduler treats them as it would treat real accelerator nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
POOL_LABEL = "tierra.dev/pool"
FLEET_LABEL = "tierra.dev/fleet-node"
EDGE_ROLE = "node-role.kubernetes.io/edge"


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str = "NoSchedule"
    value: str | None = None

    def manifest(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value is not None:
            out["value"] = self.value
        return out


@dataclass(frozen=True)
class NodePool:
    name: str
    nodes: int
    cpu: int
    memory_gi: int
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    extended: dict[str, int] = field(default_factory=dict)  # e.g. {"nvidia.com/gpu": 8}
    instance_type: str = "kwok-standard"


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    region: str
    pools: tuple[NodePool, ...]

    @property
    def context(self) -> str:
        return f"tierra-{self.name}"


def _gpu_pool(
    name: str, product: str, gke_accelerator: str, nodes: int, per_node: int, instance_type: str
) -> NodePool:
    return NodePool(
        name=name,
        nodes=nodes,
        cpu=8 * per_node + 8,
        memory_gi=64 * per_node,
        labels={
            "nvidia.com/gpu.product": product,
            "nvidia.com/gpu.count": str(per_node),
            "nvidia.com/gpu.present": "true",
            "cloud.google.com/gke-accelerator": gke_accelerator,
        },
        taints=(Taint("nvidia.com/gpu"),),
        extended={"nvidia.com/gpu": per_node},
        instance_type=instance_type,
    )


def default_fleet(scale: int = 1) -> tuple[ClusterSpec, ...]:
    """The three-tier fleet; ``scale`` multiplies node counts (benchmarks use a larger fleet)."""
    cpu_pool = NodePool(
        name="cpu", nodes=2 * scale, cpu=32, memory_gi=128, instance_type="n2-standard-32"
    )
    central = ClusterSpec(
        name="central",
        region="us-central",
        pools=(
            _gpu_pool(
                "h100", "NVIDIA-H100-80GB-HBM3", "nvidia-h100-80gb", 2 * scale, 8, "a3-highgpu-8g"
            ),
            NodePool(
                name="tpu-v5e",
                nodes=2 * scale,
                cpu=112,
                memory_gi=192,
                labels={
                    "cloud.google.com/gke-tpu-accelerator": "tpu-v5-lite-podslice",
                    "cloud.google.com/gke-tpu-topology": "2x2",
                },
                taints=(Taint("google.com/tpu"),),
                extended={"google.com/tpu": 4},
                instance_type="ct5lp-hightpu-4t",
            ),
            cpu_pool,
        ),
    )
    regional = ClusterSpec(
        name="regional",
        region="eu-west",
        pools=(
            _gpu_pool("l4", "NVIDIA-L4", "nvidia-l4", 3 * scale, 4, "g2-standard-48"),
            cpu_pool,
        ),
    )
    edge_labels = {EDGE_ROLE: ""}
    edge_taint = Taint(EDGE_ROLE)
    edge = ClusterSpec(
        name="edge",
        region="eu-central",
        pools=(
            NodePool(
                name="orin",
                nodes=3 * scale,
                cpu=12,
                memory_gi=64,
                labels={**edge_labels, "nvidia.com/gpu.product": "Jetson-AGX-Orin"},
                taints=(edge_taint,),
                extended={"nvidia.com/gpu": 1},
                instance_type="jetson-agx-orin",
            ),
            NodePool(
                name="npu",
                nodes=2 * scale,
                cpu=8,
                memory_gi=16,
                labels={**edge_labels, "tierra.dev/npu": "hailo-8"},
                taints=(edge_taint,),
                extended={"edge.tierra.dev/npu": 1},
                instance_type="edge-npu-box",
            ),
        ),
    )
    return (central, regional, edge)


def node_manifests(cluster: ClusterSpec) -> list[dict[str, Any]]:
    """kwok-managed Node objects for every pool of a cluster."""
    manifests = []
    for pool in cluster.pools:
        for index in range(pool.nodes):
            name = f"{cluster.name}-{pool.name}-{index}"
            resources = {
                "cpu": str(pool.cpu),
                "memory": f"{pool.memory_gi}Gi",
                "pods": "110",
                **{key: str(value) for key, value in pool.extended.items()},
            }
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": pool.instance_type,
                "topology.kubernetes.io/region": cluster.region,
                "type": "kwok",
                POOL_LABEL: pool.name,
                FLEET_LABEL: "true",
                **pool.labels,
            }
            manifests.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {
                            "node.alpha.kubernetes.io/ttl": "0",
                            KWOK_ANNOTATION: "fake",
                        },
                        "labels": labels,
                    },
                    "spec": {"taints": [taint.manifest() for taint in pool.taints]},
                    "status": {"allocatable": resources, "capacity": resources},
                }
            )
    return manifests
