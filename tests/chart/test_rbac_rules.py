"""The chart's RBAC, read offline: no wildcards, and the member-cluster rules that
``tierra tier connect`` grants are all held by the chart's ClusterRole too (a Tier without a
kubeconfig Secret uses the operator's own cluster as its member). Whether the rules are enough
and what they deny is proven on a cluster (tests/cluster/test_rbac.py and the e2e tests)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tierra.localfleet.chart import Helm
from tierra.onboarding import MEMBER_RULES, kubeconfig_for_token

from .test_chart import CHART


@pytest.fixture(scope="module")
def rbac(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    objects = Helm(tmp_path_factory.mktemp("helm")).template(CHART)
    return {o["kind"]: o for o in objects if o["kind"] in ("ClusterRole", "Role")}


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_no_wildcards(rbac: dict[str, dict[str, Any]]) -> None:
    for role in [*rbac.values(), {"rules": list(MEMBER_RULES)}]:
        assert not any("*" in triple for triple in _grants(role["rules"]))


def test_member_rules_are_held_by_the_chart_cluster_role(
    rbac: dict[str, dict[str, Any]],
) -> None:
    assert _grants(list(MEMBER_RULES)) <= _grants(rbac["ClusterRole"]["rules"])


def test_secrets_only_namespaced_and_only_get(rbac: dict[str, dict[str, Any]]) -> None:
    assert not any(r == "secrets" for _, r, _ in _grants(rbac["ClusterRole"]["rules"]))
    assert {t for t in _grants(rbac["Role"]["rules"]) if t[1] == "secrets"} == {
        ("", "secrets", "get")
    }
    assert ("tierra.dev", "inferenceservices/finalizers", "update") in _grants(
        rbac["ClusterRole"]["rules"]
    )


def test_connect_kubeconfig_is_inline_token_and_ca_only() -> None:
    config = kubeconfig_for_token("tierra-edge", "https://10.0.0.1:6443", b"PEM", "tok")
    [cluster], [user] = config["clusters"], config["users"]
    assert set(cluster["cluster"]) == {"server", "certificate-authority-data"}
    assert user["user"] == {"token": "tok"}
    assert yaml.safe_load(yaml.safe_dump(config)) == config


def test_replicas_can_elect_a_leader_in_the_release_namespace_only(
    rbac: dict[str, dict[str, Any]],
) -> None:
    lease_rights = {t for t in _grants(rbac["Role"]["rules"]) if t[1] == "leases"}
    assert {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")} <= (
        lease_rights
    )
    assert not any(r == "leases" for _, r, _ in _grants(rbac["ClusterRole"]["rules"]))
