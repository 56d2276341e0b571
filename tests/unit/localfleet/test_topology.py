"""The fleet's fake accelerator nodes carry the real conventions."""

from __future__ import annotations

from tierra.localfleet.topology import default_fleet, node_manifests


def nodes(cluster: str, scale: int = 1) -> list[dict]:  # type: ignore[type-arg]
    return node_manifests({c.name: c for c in default_fleet(scale)}[cluster])


def by_pool(cluster: str) -> dict[str, list[dict]]:  # type: ignore[type-arg]
    pools: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for node in nodes(cluster):
        pools.setdefault(node["metadata"]["labels"]["tierra.dev/pool"], []).append(node)
    return pools


def test_three_clusters_with_their_pools() -> None:
    assert [c.name for c in default_fleet()] == ["central", "regional", "edge"]
    assert set(by_pool("central")) == {"h100", "tpu-v5e", "cpu"}
    assert set(by_pool("regional")) == {"l4", "cpu"}
    assert set(by_pool("edge")) == {"orin", "npu"}


def test_h100_nodes() -> None:
    node = by_pool("central")["h100"][0]
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert node["status"]["capacity"] == node["status"]["allocatable"]
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert {"key": "nvidia.com/gpu", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_tpu_nodes() -> None:
    node = by_pool("central")["tpu-v5e"][0]
    labels = node["metadata"]["labels"]
    assert node["status"]["allocatable"]["google.com/tpu"] == "4"
    assert labels["cloud.google.com/gke-tpu-accelerator"] == "tpu-v5-lite-podslice"
    assert labels["cloud.google.com/gke-tpu-topology"] == "2x2"
    assert {"key": "google.com/tpu", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_edge_nodes_are_tainted_and_labelled() -> None:
    for pool in by_pool("edge").values():
        for node in pool:
            assert "node-role.kubernetes.io/edge" in node["metadata"]["labels"]
            assert {"key": "node-role.kubernetes.io/edge", "effect": "NoSchedule"} in node["spec"][
                "taints"
            ]


def test_cpu_pool_is_untainted() -> None:
    assert all(not node["spec"]["taints"] for node in by_pool("central")["cpu"])


def test_scale_multiplies_nodes_and_names_are_unique() -> None:
    small, large = nodes("central"), nodes("central", scale=3)
    assert len(large) == 3 * len(small)
    assert len({n["metadata"]["name"] for n in large}) == len(large)
