"""Migration on the local fleet with the operator running: drains, cordons and tolerations,
a stopped and a frozen edge cluster, Tier deletion, manual policy, residency, and a kill -9 of
the operator in the middle of a move.

Ready capacity is sampled from the member clusters' Deployments every 0.25 s by a thread
while a move runs; a planned move must never let it drop below what the service needs. The
edge apiserver is always resumed and every taint removed afterwards, also on failure."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_helpers import (
    GROUP,
    VERSION,
    Clients,
    OperatorProcess,
    WaitFor,
    children,
    condition,
    create,
    get_service,
    wait_condition,
    wait_pool_free,
)
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tierra.localfleet.runner import Fleet
from tierra_testing.builders import service_manifest, variant

pytestmark = pytest.mark.cluster

EDGE_FIRST = {
    "levels": ["edge", "regional"],
    "objective": "latency",
    "userRegions": {"eu-central": 1},
}
DRAIN = {"key": "tierra.dev/maintenance", "effect": "NoExecute"}
CORDON = {"key": "tierra.dev/maintenance", "effect": "NoSchedule"}


def movable(
    name: str, namespace: str, replicas: int = 1, edge: str = "orin", **spec: Any
) -> dict[str, Any]:
    """A service that runs best at the edge (on Orin, or on ``edge="npu"``) and may move to
    regional (cpu); a short drain, so that kwok removes old pods quickly."""
    spec.setdefault("placement", EDGE_FIRST)
    spec.setdefault("migration", {"drainSeconds": 0})
    accelerator = "edge-gpu" if edge == "orin" else "edge-npu"
    return service_manifest(
        name,
        namespace,
        [variant(edge, accelerator, startup=0), variant("cpu", "cpu", startup=0)],
        replicas=replicas,
        **spec,
    )


def _custom(clients: Clients) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(clients["central"])


def set_taints(clients: Clients, tier: str, taints: list[dict[str, str]]) -> None:
    _custom(clients).patch_cluster_custom_object(
        GROUP, VERSION, "tiers", tier, {"spec": {"taints": taints or None}}
    )


def ready_in(clients: Clients, cluster: str, name: str) -> int | None:
    """Ready replicas of the service's Deployments in one cluster (None: it did not answer)."""
    try:
        found = children(clients, cluster, name)
    except Exception:  # an apiserver that is stopped or frozen
        return None
    return sum((d.status.ready_replicas or 0) for d in found)


def ready_by_tier(clients: Clients, name: str) -> dict[str, int]:
    """Ready replicas of the service's Deployments per tier label, over the clusters that
    answer."""
    out: dict[str, int] = {}
    for cluster in ("central", "regional", "edge"):
        with contextlib.suppress(Exception):
            for d in children(clients, cluster, name):
                tier = d.metadata.labels.get("tierra.dev/tier", "")
                out[tier] = out.get(tier, 0) + (d.status.ready_replicas or 0)
    return out


def edge_free(clients: Clients, pool: str) -> int:
    """Free units of an edge pool, counted from the edge's Pods (not the Tier status, which
    the operator stops writing while the edge is out of reach)."""
    core = client.CoreV1Api(clients["edge"])
    nodes = [
        n
        for n in core.list_node().items
        if (n.metadata.labels or {}).get("tierra.dev/pool") == pool
    ]
    names = {n.metadata.name for n in nodes}
    used = sum(
        1
        for p in core.list_pod_for_all_namespaces().items
        if p.spec.node_name in names and p.status.phase not in ("Succeeded", "Failed")
    )
    return len(nodes) - used


def tiers_of(body: dict[str, Any] | None) -> set[str]:
    return {p["tier"] for p in ((body or {}).get("status") or {}).get("placements") or []}


class ReadySampler:
    """Samples the Ready replicas of some services in some clusters every 0.25 s (one list
    per cluster); a cluster that does not answer counts nothing."""

    def __init__(self, clients: Clients, names: list[str], clusters: tuple[str, ...]) -> None:
        self.clients, self.names, self.clusters = clients, names, clusters
        self.samples: list[dict[str, int]] = []
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        selector = f"tierra.dev/inference-service in ({','.join(self.names)})"
        while not self._stop.is_set():
            started = time.monotonic()
            sample = dict.fromkeys(self.names, 0)
            for cluster in self.clusters:
                with contextlib.suppress(Exception):  # stopped or frozen: counts nothing
                    found = client.AppsV1Api(
                        self.clients[cluster]
                    ).list_deployment_for_all_namespaces(
                        label_selector=selector, _request_timeout=2
                    )
                    for d in found.items:
                        name = d.metadata.labels["tierra.dev/inference-service"]
                        sample[name] += d.status.ready_replicas or 0
            self.samples.append(sample)
            self.times.append(time.monotonic())
            self._stop.wait(max(0.0, 0.25 - (time.monotonic() - started)))

    def __enter__(self) -> ReadySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def minimum(self, name: str) -> int:
        assert len(self.samples) >= 2, "too few samples"
        gaps = sorted(b - a for a, b in zip(self.times, self.times[1:], strict=False))
        assert gaps[len(gaps) // 2] <= 0.5, f"sampled every {gaps[len(gaps) // 2]:.2f}s"
        return min(s[name] for s in self.samples)


@pytest.fixture
def edge_fleet(outage_fleet: Fleet, clients: Clients) -> Iterator[Fleet]:
    """The fleet whose edge apiserver a test may stop or freeze: always resumed (by
    ``outage_fleet``), and the edge Tier untainted."""
    try:
        yield outage_fleet
    finally:
        with contextlib.suppress(ApiException):
            set_taints(clients, "edge", [])


@pytest.fixture
def untainted(clients: Clients) -> Iterator[None]:
    try:
        yield
    finally:
        for tier in ("edge", "regional"):
            with contextlib.suppress(ApiException):
                set_taints(clients, tier, [])


def wait_on(
    clients: Clients, wait_for: WaitFor, namespace: str, name: str, tiers: set[str], **kw: Any
) -> dict[str, Any]:
    """Placed where expected, Ready, no move in progress and nothing left elsewhere."""

    def done() -> dict[str, Any] | bool:
        body = get_service(clients, namespace, name)
        if tiers_of(body) != tiers or condition(body, "Ready").get("status") != "True":
            return False
        if condition(body, "Migrating").get("reason") not in ("Settled", None):
            return False
        leftover = [t for t, n in ready_by_tier(clients, name).items() if n and t not in tiers]
        return not leftover and body is not None and body

    result: dict[str, Any] = wait_for(done, what=f"{name} settled on {tiers}", **kw)
    return result


# ---------------------------------------------------------------------------- drain, cordon
def test_a_noexecute_taint_empties_the_edge_make_before_break(
    fleet_tiers: None,
    operator: OperatorProcess,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    untainted: None,
) -> None:
    wait_pool_free(clients, wait_for, "edge", "orin", 3)
    moved_before = operator.metric("tierra_migrations_total") or 0.0
    names = ["drain-a", "drain-b"]
    for name in names:
        create(clients, movable(name, namespace))
    create(
        clients,
        movable(
            "stays",
            namespace,
            placement={
                **EDGE_FIRST,
                "tolerations": [{"key": "tierra.dev/maintenance", "operator": "Exists"}],
            },
        ),
    )
    for name in [*names, "stays"]:
        wait_on(clients, wait_for, namespace, name, {"edge"}, timeout=60)
    with ReadySampler(clients, names, ("edge", "regional")) as sampler:
        set_taints(clients, "edge", [DRAIN])
        for name in names:
            body = wait_on(clients, wait_for, namespace, name, {"regional"}, timeout=60)
            record = body["status"]["migrations"][-1]
            assert (record["trigger"], record["outcome"]) == ("Drain", "Succeeded")
            assert record["from"] == ["edge/orin/orin"] and record["to"] == ["regional/cpu/cpu"]
    for name in names:
        assert sampler.minimum(name) >= 1, f"{name} had no Ready replica during its move"
        assert children(clients, "edge", name) == []
    assert (operator.metric("tierra_migrations_total") or 0.0) - moved_before == len(names)
    # The tolerating service stayed, and was never touched.
    stays = get_service(clients, namespace, "stays")
    assert tiers_of(stays) == {"edge"} and not (stays or {})["status"].get("migrations")
    # Lifting the drain moves nothing back (what runs is kept while feasible).
    set_taints(clients, "edge", [])
    time.sleep(3)
    for name in names:
        assert tiers_of(get_service(clients, namespace, name)) == {"regional"}


def test_a_noschedule_taint_stops_new_placements_only(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor, untainted: None
) -> None:
    wait_pool_free(clients, wait_for, "edge", "orin", 2)
    create(clients, movable("before", namespace))
    wait_on(clients, wait_for, namespace, "before", {"edge"}, timeout=60)
    set_taints(clients, "edge", [CORDON])
    create(clients, movable("after", namespace))
    wait_on(clients, wait_for, namespace, "after", {"regional"}, timeout=60)
    time.sleep(2)
    assert tiers_of(get_service(clients, namespace, "before")) == {"edge"}
    assert (ready_in(clients, "edge", "before") or 0) == 1


def test_manual_policy_reports_a_drain_and_stays(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor, untainted: None
) -> None:
    wait_pool_free(clients, wait_for, "edge", "orin", 1)
    create(clients, movable("pinned", namespace, migration={"policy": "manual", "drainSeconds": 0}))
    wait_on(clients, wait_for, namespace, "pinned", {"edge"}, timeout=60)
    set_taints(clients, "edge", [DRAIN])
    body = wait_condition(
        clients, wait_for, namespace, "pinned", "Migrating", status="False", reason="ManualPolicy"
    )
    assert "Drain" in condition(body, "Migrating")["message"]
    assert tiers_of(body) == {"edge"} and (ready_in(clients, "edge", "pinned") or 0) == 1


# ---------------------------------------------------------------------------- lost clusters
def _lose_the_edge(
    how: str,
    edge_fleet: Fleet,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
) -> None:
    # After an earlier outage the edge's garbage collector may take its next discovery round
    # (up to ~90 s) to remove the pods of deleted Deployments.
    wait_for(lambda: edge_free(clients, "orin") >= 3, timeout=180, what="3 Orin free")
    wait_for(lambda: edge_free(clients, "npu") >= 2, timeout=180, what="2 NPUs free")
    # (and the operator sees them free: the edge Tier's status, from its own informers)
    wait_pool_free(clients, wait_for, "edge", "orin", 3)
    wait_pool_free(clients, wait_for, "edge", "npu", 2)
    names = ["lost-a", "lost-b", "lost-c"]
    for name in names:
        create(clients, movable(name, namespace))
    manual = {"policy": "manual", "drainSeconds": 0}
    create(clients, movable("held", namespace, edge="npu", migration=manual))
    create(
        clients,
        movable("resident", namespace, edge="npu", placement={**EDGE_FIRST, "residency": "de"}),
    )
    for name in [*names, "held", "resident"]:
        wait_on(clients, wait_for, namespace, name, {"edge"}, timeout=60)
    started = time.monotonic()
    if how == "stop":
        edge_fleet.stop_apiserver("edge")
    else:
        edge_fleet.freeze_apiserver("edge")
    for name in names:
        wait_for(
            lambda name=name: (
                tiers_of(get_service(clients, namespace, name)) == {"regional"}
                and ready_in(clients, "regional", name) == 1
            ),
            timeout=45,
            what=f"{name} Ready on regional after the edge was lost",
        )
    recovered = time.monotonic() - started
    print(f"\nedge {how}: movable services Ready on regional after {recovered:.1f}s")
    assert recovered <= 30
    for name in ("held", "resident"):
        wait_condition(clients, wait_for, namespace, name, "Ready", timeout=20, status="Unknown")
        # (Ready turns Unknown as soon as the tier is unreachable; why it stays is said once
        # the tier counts as lost)
        body = wait_condition(
            clients,
            wait_for,
            namespace,
            name,
            "Migrating",
            timeout=30,
            reason="ManualPolicy" if name == "held" else "NoTarget",
        )
        assert tiers_of(body) == {"edge"}
    with ReadySampler(clients, names, ("regional",)) as sampler:
        edge_fleet.resume_apiserver("edge", log=lambda _: None)
        wait_for(
            lambda: all(children(clients, "edge", n) == [] for n in names),
            timeout=60,
            what="stale copies removed from the returned edge",
        )
        time.sleep(2)
    for name in names:
        assert sampler.minimum(name) >= 1, f"{name}'s replacement dipped when the edge returned"
        body = get_service(clients, namespace, name)
        assert tiers_of(body) == {"regional"}
        assert [r["trigger"] for r in (body or {})["status"]["migrations"]] == ["TierLost"]
        assert len(children(clients, "regional", name)) == 1
    for name in ("held", "resident"):
        wait_on(clients, wait_for, namespace, name, {"edge"}, timeout=60)
        assert children(clients, "regional", name) == []


def test_a_stopped_edge_is_failed_over_and_cleaned_up_on_return(
    fleet_tiers: None, edge_fleet: Fleet, clients: Clients, namespace: str, wait_for: WaitFor
) -> None:
    _lose_the_edge("stop", edge_fleet, clients, namespace, wait_for)


def test_a_frozen_edge_is_failed_over_and_cleaned_up_on_return(
    fleet_tiers: None, edge_fleet: Fleet, clients: Clients, namespace: str, wait_for: WaitFor
) -> None:
    _lose_the_edge("freeze", edge_fleet, clients, namespace, wait_for)


# ------------------------------------------------------------------------- pending replicas
@contextlib.contextmanager
def scheduler_frozen(fleet: Fleet, cluster: str) -> Iterator[None]:
    """The cluster's kube-scheduler SIGSTOPped: pods wait for a node while every pool shows
    room (a scheduler outage, or any reason the pool's counts do not show). Always resumed."""
    pid = fleet.load_state()[cluster].pids["kube-scheduler"]
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def moved(clients: Clients, wait_for: WaitFor, namespace: str, name: str, **kw: Any) -> Any:
    """The service's status once a move is on record."""

    def recorded() -> dict[str, Any] | bool:
        body = get_service(clients, namespace, name)
        records = ((body or {}).get("status") or {}).get("migrations") or []
        return bool(records) and body is not None and body

    return wait_for(recorded, what=f"a move of {name}", **kw)


def test_replicas_no_node_takes_move_after_the_threshold(
    fleet_tiers: None,
    outage_fleet: Fleet,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
) -> None:
    """With the edge's scheduler frozen, the service's pod is deleted (a node drain would
    do that): its replacement waits for a node while the pool shows room. After
    --pending-after (30 s by default) the service moves to regional, with a Capacity record,
    and the edge child goes once regional is Ready."""
    wait_pool_free(clients, wait_for, "edge", "orin", 3)
    create(clients, movable("stuck", namespace))
    wait_on(clients, wait_for, namespace, "stuck", {"edge"}, timeout=60)
    core = client.CoreV1Api(clients["edge"])
    with scheduler_frozen(outage_fleet, "edge"):
        selector = ",".join(
            f"tierra.dev/inference-service{suffix}={value}"
            for suffix, value in (("", "stuck"), ("-namespace", namespace))
        )
        pods = core.list_pod_for_all_namespaces(label_selector=selector).items
        assert pods
        for pod in pods:
            core.delete_namespaced_pod(
                pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
            )
        deleted_at = time.monotonic()
        body = moved(clients, wait_for, namespace, "stuck", timeout=90)
        started = time.monotonic() - deleted_at
        record = body["status"]["migrations"][-1]
        assert record["trigger"] == "Capacity", record
        assert record["from"] == ["edge/orin/orin"] and record["to"] == ["regional/cpu/cpu"]
        assert "Pending for" in record["message"] and "shows room" in record["message"]
        # it waited out the threshold (less the status write's whole seconds)
        assert started >= 30 - 2, started
        # (regional's scheduler runs: the replacement is Ready there, make-before-break)
        body = wait_on(clients, wait_for, namespace, "stuck", {"regional"}, timeout=60)
        assert body["status"]["migrations"][-1]["outcome"] == "Succeeded"
    wait_for(
        lambda: children(clients, "edge", "stuck") == [],
        timeout=30,
        what="the edge child of stuck removed",
    )
    print(f"\npending on the edge: moved after {started:.1f}s (threshold 30 s)")


# ---------------------------------------------------------------------------- Tier deletion
def test_deleting_a_tier_migrates_its_services_then_releases_it(
    fleet_tiers: None, clients: Clients, namespace: str, wait_for: WaitFor
) -> None:
    custom = _custom(clients)
    edge = custom.get_cluster_custom_object(GROUP, VERSION, "tiers", "edge")
    spec = dict(edge["spec"])
    spec["latencyMs"] = {**spec["latencyMs"], "eu-central": 2}  # closer than edge: preferred
    name = "edge-b"
    custom.create_cluster_custom_object(
        GROUP, VERSION, "tiers", {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tier",
                                  "metadata": {"name": name}, "spec": spec},
    )  # fmt: skip
    try:
        wait_for(
            lambda: (
                "tierra.dev/tier-cleanup"
                in (
                    custom.get_cluster_custom_object(GROUP, VERSION, "tiers", name)["metadata"].get(
                        "finalizers"
                    )
                    or []
                )
            ),
            timeout=45,
            what=f"{name} usable",
        )
        wait_pool_free(clients, wait_for, "edge", "orin", 1)
        create(clients, movable("tenant", namespace))
        wait_on(clients, wait_for, namespace, "tenant", {name}, timeout=60)
        with ReadySampler(clients, ["tenant"], ("edge", "regional")) as sampler:
            custom.delete_cluster_custom_object(GROUP, VERSION, "tiers", name)
            body = wait_on(clients, wait_for, namespace, "tenant", {"edge"}, timeout=60)

            def released() -> bool:
                try:
                    custom.get_cluster_custom_object(GROUP, VERSION, "tiers", name)
                except ApiException as error:
                    return error.status == 404
                return False

            wait_for(released, timeout=60, what=f"{name} released")
        assert sampler.minimum("tenant") >= 1
        assert body["status"]["migrations"][-1]["trigger"] == "TierDeleting"
    finally:
        with contextlib.suppress(ApiException):
            custom.delete_cluster_custom_object(GROUP, VERSION, "tiers", name)


# ---------------------------------------------------------------------------- restart safety
def test_an_operator_killed_mid_move_converges_after_restart(
    fleet_tiers: None,
    operator: OperatorProcess,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    untainted: None,
) -> None:
    wait_pool_free(clients, wait_for, "edge", "orin", 2)
    names = ["crash-a", "crash-b"]
    for name in names:
        create(clients, movable(name, namespace, replicas=1))
    for name in names:
        wait_on(clients, wait_for, namespace, name, {"edge"}, timeout=60)
    with ReadySampler(clients, names, ("edge", "regional")) as sampler:
        set_taints(clients, "edge", [DRAIN])
        wait_for(
            lambda: any(children(clients, "regional", n) for n in names),
            timeout=30,
            what="a move started",
        )
        assert operator.process is not None
        operator.process.kill()  # kill -9: no clean-up, no lease release
        operator.process.wait(timeout=10)
        operator.start()
        for name in names:
            wait_on(clients, wait_for, namespace, name, {"regional"}, timeout=90)
    for name in names:
        assert sampler.minimum(name) >= 1
        assert len(children(clients, "regional", name)) == 1  # nothing duplicated
        assert children(clients, "edge", name) == []
