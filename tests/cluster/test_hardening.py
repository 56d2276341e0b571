"""Untrusted input and failure paths, on the local fleet with the operator running.

Kubeconfig Secrets that would run commands, read files or redirect traffic are refused with no
command run and no file read; nothing from a Secret reaches a status, an Event or the log;
revoked credentials are noticed and rotated ones picked up; deleting a Tier leaks nothing;
another controller's finalizer never leaves a service Terminating; a name taken by someone
else's object is reported, not taken over; a deleted member namespace is recreated.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_helpers import (
    GROUP,
    OPERATOR_NAMESPACE,
    PLURAL,
    VERSION,
    Clients,
    Kubectl,
    OperatorProcess,
    WaitFor,
    children,
    condition,
    create,
    get_service,
    running_operator,
    wait_event,
    wait_placed,
)
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tierra.controllers.finalizer import FINALIZER
from tierra.controllers.tiers import TIER_FINALIZER
from tierra.localfleet.runner import context_kubeconfig
from tierra_testing.builders import pool, service_manifest, tier_manifest, variant

pytestmark = pytest.mark.cluster

CLEANUP_TIMEOUT = 20
"""The operator's --tier-cleanup-timeout in this module (seconds)."""


@pytest.fixture(scope="module")
def operator(
    fleet_kubeconfig: Path,
    crds_installed: None,
    member_secrets: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    env = {
        "TIERRA_TIER_CLEANUP_TIMEOUT": str(CLEANUP_TIMEOUT),
        "TMPDIR": str(tmp_path_factory.mktemp("operator-tmp")),
    }
    with running_operator(fleet_kubeconfig, tmp_path_factory.mktemp("operator"), env) as process:
        yield process


def _custom(clients: Clients) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(clients["central"])


def _tier(clients: Clients, name: str) -> dict[str, Any] | None:
    try:
        body: dict[str, Any] = _custom(clients).get_cluster_custom_object(
            GROUP, VERSION, "tiers", name
        )
        return body
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _reachable(clients: Clients, name: str) -> dict[str, Any]:
    return condition(_tier(clients, name), "Reachable")


def _tier_manifest(name: str, secret: str | None, residency: str = "zz") -> dict[str, Any]:
    """A regional Tier in the made-up region zz-north with one cpu pool, on the cluster the
    kubeconfig in the Secret ``secret`` reaches (None: the operator's own)."""
    cpu = pool("cpu", "cpu", None, per_node=32, selector={"tierra.dev/pool": "cpu"}, price=0.04)
    return tier_manifest(
        name,
        "regional",
        region="zz-north",
        residency=[residency],
        latency={"zz-north": 5},
        pools=[cpu],
        kubeconfig_secret=secret,
    )


def _put_secret(clients: Clients, name: str, data: bytes) -> None:
    core = client.CoreV1Api(clients["central"])
    body = {
        "metadata": {"name": name},
        "data": {"kubeconfig": base64.b64encode(data).decode()},
    }
    try:
        core.create_namespaced_secret(OPERATOR_NAMESPACE, body)
    except ApiException as error:
        if error.status != 409:
            raise
        core.patch_namespaced_secret(name, OPERATOR_NAMESPACE, body)


def _delete_tier(clients: Clients, wait_for: WaitFor, name: str) -> None:
    """Delete a Tier and wait until the operator has released it."""
    try:
        _custom(clients).delete_cluster_custom_object(GROUP, VERSION, "tiers", name)
    except ApiException as error:
        if error.status != 404:
            raise
    wait_for(
        lambda: _tier(clients, name) is None, timeout=CLEANUP_TIMEOUT + 30, what=f"{name} gone"
    )


def _delete_tier_and_secret(clients: Clients, wait_for: WaitFor, name: str, secret: str) -> None:
    _delete_tier(clients, wait_for, name)
    try:
        client.CoreV1Api(clients["central"]).delete_namespaced_secret(secret, OPERATOR_NAMESPACE)
    except ApiException as error:
        if error.status != 404:
            raise


def _everything_said_about(clients: Clients, operator: OperatorProcess, tier: str) -> str:
    """The Tier's status, every Event in the management cluster and the operator's log."""
    events = client.CoreV1Api(clients["central"]).list_event_for_all_namespaces().items
    said = [json.dumps((_tier(clients, tier) or {}).get("status") or {})]
    said += [f"{e.reason} {e.message}" for e in events]
    said.append(operator.log_path.read_text(errors="replace"))
    return "\n".join(said)


def _member_kubeconfig(
    fleet_kubeconfig: Path, cluster: str, user: dict[str, Any]
) -> dict[str, Any]:
    """A real member's cluster entry (server, CA) with ``user`` as its credentials."""
    config = context_kubeconfig(fleet_kubeconfig, f"tierra-{cluster}")
    config["users"][0]["user"] = user
    return config


# ------------------------------------------------------------------------- kubeconfig Secrets
@pytest.mark.parametrize("case", ["exec", "tokenFile", "file-path", "auth-provider", "proxy-url"])
def test_kubeconfigs_that_would_run_read_or_redirect_are_rejected(
    case: str,
    operator: OperatorProcess,
    fleet_kubeconfig: Path,
    clients: Clients,
    kubectl: Kubectl,
    wait_for: WaitFor,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "command-ran"
    fifo = tmp_path / "token-pipe"
    os.mkfifo(fifo)  # opening it for reading is what we watch for
    command = f"touch {marker}; echo {{}}"
    user: dict[str, Any] = {
        "exec": {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "sh",
                "args": ["-c", command],
                "interactiveMode": "Never",
            }
        },
        "tokenFile": {"tokenFile": str(fifo)},
        "file-path": {"client-certificate": str(fifo), "client-key": str(fifo)},
        "auth-provider": {
            "auth-provider": {
                "name": "gcp",
                "config": {"cmd-path": "sh", "cmd-args": f"-c '{command}'"},
            }
        },
        "proxy-url": {"token": "unused-token-123"},
    }[case]
    config = _member_kubeconfig(fleet_kubeconfig, "edge", user)
    if case == "proxy-url":
        config["clusters"][0]["cluster"]["proxy-url"] = "http://127.0.0.1:1"
    name = f"evil-{case.lower()}-{uuid.uuid4().hex[:4]}"
    _put_secret(clients, name, yaml.safe_dump(config).encode())
    opened = threading.Event()
    stop = threading.Event()

    def watch_fifo() -> None:
        # Opening a FIFO for writing without blocking fails (ENXIO) while nobody reads it.
        while not stop.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                opened.set()
                return
            except OSError as error:
                assert error.errno == errno.ENXIO
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_fifo, daemon=True)
    watcher.start()
    kubectl("apply", "-f", "-", input=json.dumps(_tier_manifest(name, name)))
    try:
        wait_for(
            lambda: _reachable(clients, name).get("reason") == "KubeconfigRejected",
            timeout=45,
            what=f"{name} KubeconfigRejected",
        )
        message = _reachable(clients, name)["message"]
        field = {
            "exec": "user.exec",
            "tokenFile": "user.tokenFile",
            "file-path": "user.client-certificate",
            "auth-provider": "user.auth-provider",
            "proxy-url": "cluster.proxy-url",
        }[case]
        assert field in message, message
        time.sleep(3)  # a few more probe and resolve rounds
        assert not marker.exists(), "a command from the Secret ran in the operator"
        assert not opened.is_set(), "a file named by the Secret was opened"
        said = _everything_said_about(clients, operator, name)
        for value in (str(fifo), "touch", "127.0.0.1:1", "unused-token-123"):
            assert value not in said
    finally:
        stop.set()
        _delete_tier_and_secret(clients, wait_for, name, name)


def test_a_token_on_a_malformed_line_appears_nowhere(
    operator: OperatorProcess, clients: Clients, kubectl: Kubectl, wait_for: WaitFor
) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9." + uuid.uuid4().hex + uuid.uuid4().hex
    raw = (
        "apiVersion: v1\nclusters:\n- name: x\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        f"users:\n- name: x\n  user:\n    token: {token}: [unclosed\n"
    ).encode()
    name = f"malformed-{uuid.uuid4().hex[:4]}"
    _put_secret(clients, name, raw)
    kubectl("apply", "-f", "-", input=json.dumps(_tier_manifest(name, name)))
    try:
        wait_for(
            lambda: _reachable(clients, name).get("reason") == "KubeconfigRejected",
            timeout=45,
            what=f"{name} KubeconfigRejected",
        )
        assert "not valid YAML at line 8" in _reachable(clients, name)["message"]
        assert token not in _everything_said_about(clients, operator, name)
        assert token[-12:] not in _everything_said_about(clients, operator, name)
    finally:
        _delete_tier_and_secret(clients, wait_for, name, name)


# ----------------------------------------------------------------------- member credentials
def _service_account_token(kubectl: Kubectl, cluster: str, account: str) -> str:
    kubectl("create", "serviceaccount", account, "-n", "default", context=cluster)
    kubectl(
        "create",
        "clusterrolebinding",
        account,
        "--clusterrole=cluster-admin",
        f"--serviceaccount=default:{account}",
        context=cluster,
    )
    return str(
        kubectl(
            "create", "token", account, "-n", "default", "--duration=1h", context=cluster
        ).stdout.strip()
    )


def test_revoked_credentials_are_unauthorized_and_rotated_ones_are_picked_up(
    operator: OperatorProcess,
    fleet_kubeconfig: Path,
    clients: Clients,
    kubectl: Kubectl,
    wait_for: WaitFor,
) -> None:
    name = f"rotating-{uuid.uuid4().hex[:4]}"
    first, second = f"{name}-a", f"{name}-b"
    token = _service_account_token(kubectl, "edge", first)
    config = _member_kubeconfig(fleet_kubeconfig, "edge", {"token": token})
    _put_secret(clients, name, yaml.safe_dump(config).encode())
    kubectl("apply", "-f", "-", input=json.dumps(_tier_manifest(name, name)))
    try:
        wait_for(
            lambda: _reachable(clients, name).get("status") == "True",
            timeout=45,
            what=f"{name} Reachable",
        )
        # Revoke: the token's ServiceAccount is deleted, so the apiserver rejects the token.
        kubectl("delete", "serviceaccount", first, "-n", "default", context="edge")
        revoked = time.monotonic()
        wait_for(
            lambda: _reachable(clients, name).get("reason") == "Unauthorized",
            timeout=30,
            what=f"{name} Unauthorized",
        )
        print(f"\nrevoked credentials reported after {time.monotonic() - revoked:.1f}s")
        assert _reachable(clients, name)["status"] == "False"
        assert token not in _everything_said_about(clients, operator, name)
        # Rotate: a new token in the same Secret, no restart.
        fresh = _service_account_token(kubectl, "edge", second)
        config["users"][0]["user"] = {"token": fresh}
        _put_secret(clients, name, yaml.safe_dump(config).encode())
        rotated = time.monotonic()
        wait_for(
            lambda: _reachable(clients, name).get("status") == "True",
            timeout=30,
            what=f"{name} Reachable again",
        )
        print(f"rotated credentials picked up after {time.monotonic() - rotated:.1f}s")
        assert operator.metric("tierra_member_watch_failures_total") is not None
    finally:
        _delete_tier_and_secret(clients, wait_for, name, name)
        for account in (first, second):
            kubectl(
                "delete",
                "serviceaccount",
                account,
                "-n",
                "default",
                "--ignore-not-found",
                context="edge",
                check=False,
            )
            kubectl(
                "delete",
                "clusterrolebinding",
                account,
                "--ignore-not-found",
                context="edge",
                check=False,
            )


# ---------------------------------------------------------------------------- Tier deletion
def _cpu_service(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return service_manifest(
        name,
        namespace,
        [variant("cpu", "cpu", startup=0)],
        placement={"levels": ["regional"], "residency": "zz", "userRegions": {"zz-north": 1.0}},
        **spec,
    )


def test_deleting_a_tier_with_running_services_leaves_no_deployment(
    operator: OperatorProcess,
    clients: Clients,
    kubectl: Kubectl,
    wait_for: WaitFor,
    namespace: str,
) -> None:
    name = f"doomed-{uuid.uuid4().hex[:4]}"
    # The regional cluster, through the fleet's own kubeconfig Secret.
    kubectl("apply", "-f", "-", input=json.dumps(_tier_manifest(name, "tier-regional-kubeconfig")))
    try:
        wait_for(
            lambda: (
                TIER_FINALIZER in ((_tier(clients, name) or {})["metadata"].get("finalizers") or [])
            ),
            timeout=45,
            what=f"{name} usable and holding its finalizer",
        )
        for index in range(3):
            create(clients, _cpu_service(f"svc-{index}", namespace))
        for index in range(3):
            wait_placed(clients, wait_for, namespace, f"svc-{index}")

        def labelled() -> list[Any]:
            return list(
                client.AppsV1Api(clients["regional"])
                .list_deployment_for_all_namespaces(label_selector=f"tierra.dev/tier={name}")
                .items
            )

        assert len(labelled()) == 3
        _custom(clients).delete_cluster_custom_object(GROUP, VERSION, "tiers", name)
        wait_for(lambda: _tier(clients, name) is None, timeout=60, what=f"{name} released")
        for cluster in ("central", "regional", "edge"):
            left = (
                client.AppsV1Api(clients[cluster])
                .list_deployment_for_all_namespaces(label_selector=f"tierra.dev/tier={name}")
                .items
            )
            assert left == [], f"{cluster} still runs {[d.metadata.name for d in left]}"
        # With nowhere else to go, the services say so.
        wait_placed(clients, wait_for, namespace, "svc-0", status="False")
    finally:
        _delete_tier(clients, wait_for, name)


# -------------------------------------------------------------------------------- finalizers
def test_another_controllers_finalizer_never_leaves_a_service_terminating(
    operator: OperatorProcess,
    clients: Clients,
    kubectl: Kubectl,
    wait_for: WaitFor,
    namespace: str,
) -> None:
    """Services whose children live in another cluster carry our finalizer beside another
    controller's, which that controller drops the moment deletion starts (racing ours)."""
    foreign = "example.com/hold"
    kubectl(
        "apply", "-f", "-", input=json.dumps(_tier_manifest("hold-zz", "tier-regional-kubeconfig"))
    )
    names = [f"held-{index}" for index in range(4)]
    try:
        for name in names:
            manifest = _cpu_service(name, namespace)
            manifest["metadata"]["finalizers"] = [foreign]
            create(clients, manifest)
        for name in names:
            wait_for(
                lambda n=name: (
                    FINALIZER
                    in (
                        (get_service(clients, namespace, n) or {})["metadata"].get("finalizers")
                        or []
                    )
                ),
                timeout=60,
                what=f"{name} carries our finalizer",
            )
        custom = _custom(clients)

        def release_when_deleted() -> None:
            released: set[str] = set()
            stream = watch.Watch()
            for event in stream.stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                timeout_seconds=60,
            ):
                meta = event["object"]["metadata"]
                finalizers = meta.get("finalizers") or []
                if meta.get("deletionTimestamp") and foreign in finalizers:
                    patch = [
                        {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                        {
                            "op": "replace",
                            "path": "/metadata/finalizers",
                            "value": [f for f in finalizers if f != foreign],
                        },
                    ]
                    answer = kubectl(
                        "patch",
                        "inferenceservice",
                        meta["name"],
                        "-n",
                        namespace,
                        "--type=json",
                        "-p",
                        json.dumps(patch),
                        check=False,
                    )
                    if answer.returncode == 0:
                        released.add(meta["name"])
                    # else: lost the race with the operator; the next event retries
                if released >= set(names):
                    stream.stop()

        releaser = threading.Thread(target=release_when_deleted, daemon=True)
        releaser.start()
        time.sleep(0.5)
        for name in names:
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        wait_for(
            lambda: all(get_service(clients, namespace, n) is None for n in names),
            timeout=60,
            what="every service deleted",
        )
        for name in names:
            assert children(clients, "regional", name) == []
    finally:
        _delete_tier(clients, wait_for, "hold-zz")


# ---------------------------------------------------------------------------- name conflicts
def test_a_name_taken_by_someone_elses_object_is_reported_and_left_alone(
    operator: OperatorProcess,
    clients: Clients,
    kubectl: Kubectl,
    wait_for: WaitFor,
    namespace: str,
) -> None:
    kubectl(
        "apply", "-f", "-", input=json.dumps(_tier_manifest("taken-zz", "tier-regional-kubeconfig"))
    )
    apps = client.AppsV1Api(clients["regional"])
    core = client.CoreV1Api(clients["regional"])
    try:
        core.create_namespace({"metadata": {"name": namespace}})
    except ApiException as error:
        if error.status != 409:
            raise
    child = "squatted-cpu-taken-zz"
    theirs = {
        "metadata": {"name": child, "labels": {"team": "someone-else"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "theirs"}},
            "template": {
                "metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
        },
    }
    before = apps.create_namespaced_deployment(namespace, theirs)
    try:
        create(clients, _cpu_service("squatted", namespace))
        body = wait_placed(clients, wait_for, namespace, "squatted", status="False", timeout=60)
        placed = condition(body, "Placed")
        assert placed["reason"] == "NameConflict", placed
        assert f"Deployment {namespace}/{child}" in placed["message"]
        after = apps.read_namespaced_deployment(child, namespace)
        # (its own controller updates its status; nothing of ours touched it)
        assert after.metadata.generation == before.metadata.generation
        assert {f.manager for f in after.metadata.managed_fields} & {"tierra"} == set()
        assert after.metadata.labels == {"team": "someone-else"}
        assert after.spec.template.spec.containers[0].image == "nginx:1.27"
        wait_event(clients, wait_for, namespace, "squatted", "NameConflict")
        # Once the name is free, the service is placed.
        apps.delete_namespaced_deployment(child, namespace)
        wait_placed(clients, wait_for, namespace, "squatted", status="True", timeout=90)
        labels = apps.read_namespaced_deployment(child, namespace).metadata.labels
        assert labels["app.kubernetes.io/managed-by"] == "tierra"
    finally:
        _delete_tier(clients, wait_for, "taken-zz")


# -------------------------------------------------------------------------- namespace cache
def test_a_member_namespace_deleted_and_recreated_is_recovered(
    operator: OperatorProcess,
    clients: Clients,
    kubectl: Kubectl,
    wait_for: WaitFor,
    namespace: str,
) -> None:
    kubectl(
        "apply", "-f", "-", input=json.dumps(_tier_manifest("ns-zz", "tier-regional-kubeconfig"))
    )
    try:
        # kwok removes a deleted pod once its grace period (drainSeconds + 30 s) has run out,
        # and the namespace goes only after its pods: keep the grace short.
        create(clients, _cpu_service("homeless", namespace, migration={"drainSeconds": 0}))
        wait_placed(clients, wait_for, namespace, "homeless")
        wait_for(
            lambda: children(clients, "regional", "homeless"), timeout=30, what="child applied"
        )
        core = client.CoreV1Api(clients["regional"])
        uid = core.read_namespace(namespace).metadata.uid
        core.delete_namespace(namespace)
        deleted = time.monotonic()
        # (by its uid: the operator may recreate the namespace between two polls, and a poll
        # by name alone then never sees it gone)
        wait_for(
            lambda: not any(n.metadata.uid == uid for n in core.list_namespace().items),
            timeout=120,
            what="member namespace gone",
        )
        wait_for(
            lambda: children(clients, "regional", "homeless"),
            timeout=90,
            what="child re-applied into a recreated namespace",
        )
        print(f"\nchild back {time.monotonic() - deleted:.1f}s after the namespace was deleted")
    finally:
        _delete_tier(clients, wait_for, "ns-zz")


# ------------------------------------------------------------------------------- pagination
async def test_lists_are_read_in_pages_and_miss_nothing(
    fleet_kubeconfig: Path, clients: Clients
) -> None:
    from tierra.shell.kube import client_from_kubeconfig

    core = client.CoreV1Api(clients["regional"])
    made = [f"paged-{uuid.uuid4().hex[:6]}" for _ in range(5)]
    for name in made:
        core.create_namespace({"metadata": {"name": name}})
    kube = await client_from_kubeconfig(
        context_kubeconfig(fleet_kubeconfig, "tierra-regional"), name="regional"
    )
    try:
        first = await kube.request("GET", "/api/v1/namespaces", {"limit": "2"})
        assert first["metadata"].get("continue"), "the apiserver should have paged this"
        listed = await kube.list("Namespace", page_size=2)
        names = [n["metadata"]["name"] for n in listed["items"]]
        assert len(names) == len(set(names)) > 2  # several pages, nothing twice
        assert set(made) | {"default", "kube-system"} <= set(names)
        assert listed["metadata"]["resourceVersion"]
    finally:
        await kube.close()
        for name in made:
            core.delete_namespace(name)


def test_the_operator_writes_no_credential_to_disk_even_when_killed(
    operator: OperatorProcess, fleet_kubeconfig: Path, tmp_path: Path
) -> None:
    """``tierra run --context`` with a kubeconfig that embeds a client key (the fleet's admin
    one): neither its clients nor kopf's login write the key, the certificates or a copy of
    the kubeconfig to a file, so a kill -9 leaves nothing behind."""
    operator.stop()  # one operator at a time
    admin = OperatorProcess(fleet_kubeconfig, tmp_path / "log")
    admin.kubeconfig = fleet_kubeconfig
    assert "client-key-data" in fleet_kubeconfig.read_text()
    temporary = Path(admin.env["TMPDIR"])
    try:
        admin.start()
        deadline = time.monotonic() + 30
        while "kopf logs in with kube context 'tierra-central'" not in admin.log_tail(10**6):
            assert time.monotonic() < deadline, f"kopf did not log in: {admin.log_tail()}"
            time.sleep(0.2)
        time.sleep(2)  # (kopf warns a moment later if the credentials were not taken)
        assert "Authentication has failed" not in admin.log_tail(10**6)
        assert "Handler 'login'" not in admin.log_tail(10**6)
        assert admin.process is not None
        admin.process.kill()
        admin.process.wait()
        assert [str(p.relative_to(temporary)) for p in temporary.rglob("*")] == []
    finally:
        admin.stop()
        operator.start()
