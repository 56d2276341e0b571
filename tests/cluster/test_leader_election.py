"""Leader election between two processes on the fleet's central apiserver (a real Lease).

Each candidate is its own process (``leader_child.py``) running ``LeaderElector`` with the
default timing (15 s lease, 10 s renew deadline, 2 s retry period) and attempting a gated write
(a ConfigMap) every 0.25 s. Writes are ordered against the takeover by the resourceVersion the
apiserver gave them: on one etcd it is the store's revision, so "after the takeover" is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_helpers import Clients
from kubernetes import client
from leader_child import LABEL, WRITER_LABEL, Candidate, first_leader

pytestmark = pytest.mark.cluster

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 15.0, 10.0, 2.0


@pytest.fixture
def lease_namespace(api_clients: Clients) -> Iterator[str]:
    name = f"leader-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_clients["central"])
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def pair(fleet_kubeconfig: Path, lease_namespace: str, tmp_path: Path) -> Iterator[list[Candidate]]:
    candidates = [
        Candidate(fleet_kubeconfig, lease_namespace, "tierra", tag, tmp_path / f"{tag}.log")
        for tag in ("a", "b")
    ]
    try:
        for candidate in candidates:
            candidate.start()
        yield candidates
    finally:
        for candidate in candidates:
            candidate.stop()
        for candidate in candidates:
            tail = candidate.log_path.read_text()[-2000:]
            print(f"--- candidate {candidate.tag} stderr ---\n{tail}")


def lease(api_clients: Clients, namespace: str) -> client.V1Lease:
    return client.CoordinationV1Api(api_clients["central"]).read_namespaced_lease(
        "tierra", namespace
    )


def writes_of(api_clients: Clients, namespace: str, tag: str) -> list[int]:
    """resourceVersions of the ConfigMaps the candidate ``tag`` wrote."""
    items = (
        client.CoreV1Api(api_clients["central"])
        .list_namespaced_config_map(
            namespace, label_selector=f"{LABEL}=tierra,{WRITER_LABEL}={tag}"
        )
        .items
    )
    return sorted(int(item.metadata.resource_version) for item in items)


def leader_and_standby(pair: list[Candidate]) -> tuple[Candidate, Candidate]:
    leader = first_leader(pair, timeout=30)
    standby = next(c for c in pair if c is not leader)
    time.sleep(2 * RETRY_PERIOD)  # both have campaigned by now
    assert [len(c.of("started")) for c in pair].count(1) == 1, "exactly one leads"
    assert not standby.of("started")
    assert not standby.of("write"), "the standby's gate refuses writes"
    assert leader.of("write"), "the leader's gate lets writes through"
    return leader, standby


def test_one_leads_and_a_standby_takes_over_from_a_killed_leader(
    pair: list[Candidate], api_clients: Clients, lease_namespace: str
) -> None:
    leader, standby = leader_and_standby(pair)
    before = lease(api_clients, lease_namespace).spec
    assert before.holder_identity == leader.identity
    assert before.lease_duration_seconds == 15

    killed_at = leader.send(signal.SIGKILL)
    started = standby.wait_for("started", LEASE_DURATION + RETRY_PERIOD + 10, after=killed_at)
    takeover = started["t"] - killed_at
    print(f"takeover after kill -9: {takeover:.2f} s")
    assert takeover <= LEASE_DURATION + RETRY_PERIOD

    after = lease(api_clients, lease_namespace).spec
    assert after.holder_identity == standby.identity
    assert after.lease_transitions == before.lease_transitions + 1
    takeover_rv = int(started["rv"])
    assert not [
        rv for rv in writes_of(api_clients, lease_namespace, leader.tag) if rv > takeover_rv
    ]
    assert not [
        rv for rv in writes_of(api_clients, lease_namespace, standby.tag) if rv < takeover_rv
    ]
    standby.wait_for("write", 5, after=started["t"])  # the new leader writes


def test_a_frozen_leader_is_replaced_and_makes_no_write_when_resumed(
    pair: list[Candidate], api_clients: Clients, lease_namespace: str
) -> None:
    leader, standby = leader_and_standby(pair)

    frozen_at = leader.send(signal.SIGSTOP)
    started = standby.wait_for("started", LEASE_DURATION + RETRY_PERIOD + 10, after=frozen_at)
    print(f"takeover after SIGSTOP: {started['t'] - frozen_at:.2f} s")
    assert started["t"] - frozen_at <= LEASE_DURATION + RETRY_PERIOD
    takeover_rv = int(started["rv"])
    assert lease(api_clients, lease_namespace).spec.holder_identity == standby.identity

    resumed_at = leader.send(signal.SIGCONT)
    resumed = leader.wait_for("resumed", 5, after=resumed_at)
    assert resumed["leader"] is False, "a resumed leader knows at once that it does not lead"
    leader.wait_for("stopped", 5, after=resumed_at)
    time.sleep(3 * RETRY_PERIOD)  # it keeps ticking, gate closed, and campaigns again

    # No write *sent* after it resumed (one in flight at the freeze may report after it: the
    # apiserver's resourceVersions below show it landed before the takeover), no new term.
    assert not [e for e in leader.of("write") + leader.of("write-failed") if e["sent"] >= frozen_at]
    assert not leader.of("started", after=resumed_at)
    assert not [
        rv for rv in writes_of(api_clients, lease_namespace, leader.tag) if rv > takeover_rv
    ]
    assert lease(api_clients, lease_namespace).spec.holder_identity == standby.identity
    assert standby.of("write", after=started["t"])


def test_a_leader_shutting_down_releases_the_lease_at_once(
    pair: list[Candidate], api_clients: Clients, lease_namespace: str
) -> None:
    leader, standby = leader_and_standby(pair)
    stopped_at = time.time()
    leader.stop()
    assert leader.of("exit")[-1]["leader"] is False
    started = standby.wait_for("started", LEASE_DURATION, after=stopped_at)
    print(f"takeover after a clean shutdown: {started['t'] - stopped_at:.2f} s")
    # Released: the standby sees it (watch, else its next look) instead of waiting 15 s.
    assert started["t"] - stopped_at <= 1.2 * RETRY_PERIOD + 0.5
    spec = lease(api_clients, lease_namespace).spec
    assert spec.holder_identity == standby.identity
    assert spec.lease_duration_seconds == 15


@pytest.mark.parametrize("meanwhile", ["our renewal landed unseen", "another holder took it"])
async def test_a_release_after_a_write_it_did_not_see_reads_the_lease_again(
    fleet_kubeconfig: Path, api_clients: Clients, lease_namespace: str, meanwhile: str
) -> None:
    """A shutdown that cancels a renewal in flight may leave the leader one write behind:
    the release then meets 409 Conflict, reads the Lease again and releases it only if it
    still holds it. Here the apiserver gets a write the leader did not see, on purpose."""
    from tierra.localfleet.runner import context_kubeconfig
    from tierra.shell.kube import client_from_kubeconfig
    from tierra.shell.leader import LeaderElector

    kube = await client_from_kubeconfig(context_kubeconfig(fleet_kubeconfig, "tierra-central"))
    elector = LeaderElector(kube, lease_namespace, identity="leader-under-test", watch=False)
    leading = asyncio.Event()

    async def started() -> None:
        leading.set()
        await asyncio.Event().wait()

    campaign = asyncio.create_task(elector.run(started))
    try:
        await asyncio.wait_for(leading.wait(), 30)
        holder = "leader-under-test" if meanwhile.startswith("our") else "someone-else"
        leases = client.CoordinationV1Api(api_clients["central"])
        leases.patch_namespaced_lease(
            "tierra",
            lease_namespace,
            {"metadata": {"labels": {"touched": "yes"}}, "spec": {"holderIdentity": holder}},
        )
        seen = elector.observation
        assert seen is not None
        assert (
            lease(api_clients, lease_namespace).metadata.resource_version != seen.resource_version
        )
        campaign.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await campaign
    finally:
        campaign.cancel()
        await kube.close()
    spec = lease(api_clients, lease_namespace).spec
    if holder == "leader-under-test":
        assert spec.holder_identity in (None, ""), "released despite the conflict"
        assert spec.lease_duration_seconds == 1
    else:
        assert spec.holder_identity == "someone-else", "a release never takes from another"
