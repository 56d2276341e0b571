"""Kubeconfig Secrets are untrusted: only inline credentials pass, and no refusal quotes a value."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierra.shell.kubeconfig import (
    KubeconfigPolicy,
    KubeconfigRejectedError,
    parse_kubeconfig,
    vet_kubeconfig,
)

SECRET = "s3cr3t-t0ken-value"
B64 = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...").decode()


def kubeconfig(user: dict[str, Any] | None = None, **cluster: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "other", "cluster": {"server": "https://other:6443"}},
            {
                "name": "edge",
                "cluster": {"server": "https://10.0.0.1:6443", "certificate-authority-data": B64}
                | cluster,
            },
        ],
        "users": [{"name": "tierra", "user": {"token": SECRET} if user is None else user}],
        "contexts": [{"name": "edge", "context": {"cluster": "edge", "user": "tierra"}}],
        "current-context": "edge",
    }


def refusal(config: Any, policy: KubeconfigPolicy | None = None) -> str:
    with pytest.raises(KubeconfigRejectedError) as caught:
        vet_kubeconfig(config, policy)
    return caught.value.message


def test_inline_token_and_ca_pass_reduced_to_the_current_context() -> None:
    vetted = vet_kubeconfig(kubeconfig() | {"preferences": {}})
    assert vetted["clusters"] == [
        {
            "name": "member",
            "cluster": {"server": "https://10.0.0.1:6443", "certificate-authority-data": B64},
        }
    ]
    assert vetted["users"] == [{"name": "member", "user": {"token": SECRET}}]
    assert vetted["current-context"] == "member"


def test_client_certificates_inline_pass_and_inert_fields_are_dropped() -> None:
    user = {"client-certificate-data": B64, "client-key-data": B64, "extensions": [{"x": 1}]}
    vetted = vet_kubeconfig(kubeconfig(user, **{"tls-server-name": "kubernetes"}))
    assert vetted["users"][0]["user"] == {"client-certificate-data": B64, "client-key-data": B64}
    assert vetted["clusters"][0]["cluster"]["tls-server-name"] == "kubernetes"


@pytest.mark.parametrize(
    ("user", "cluster", "field"),
    [
        ({"exec": {"command": "sh", "args": ["-c", f"touch /tmp/{SECRET}"]}}, {}, "user.exec"),
        ({"tokenFile": f"/var/run/{SECRET}"}, {}, "user.tokenFile"),
        (
            {"auth-provider": {"name": "gcp", "config": {"cmd-path": f"/bin/{SECRET}"}}},
            {},
            "user.auth-provider",
        ),
        ({"client-certificate": f"/{SECRET}", "client-key": "/k"}, {}, "user.client-certificate"),
        ({"username": "admin", "password": SECRET}, {}, "user.username"),
        ({"token": "t", "as": SECRET}, {}, "user.as"),
        (None, {"certificate-authority": f"/etc/{SECRET}"}, "cluster.certificate-authority"),
        (None, {"proxy-url": f"http://{SECRET}@evil:3128"}, "cluster.proxy-url"),
        (None, {"insecure-skip-tls-verify": True}, "cluster.insecure-skip-tls-verify"),
    ],
)
def test_fields_that_run_read_or_redirect_are_refused_by_name_never_by_value(
    user: dict[str, Any] | None, cluster: dict[str, Any], field: str
) -> None:
    message = refusal(kubeconfig(user, **cluster))
    assert field in message
    assert "not allowed" in message
    assert SECRET not in message


def test_exec_and_insecure_tls_pass_only_with_the_operator_flags() -> None:
    exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "x"}}
    assert "--insecure-kubeconfig-exec" in refusal(kubeconfig(exec_user))
    vetted = vet_kubeconfig(kubeconfig(exec_user), KubeconfigPolicy(allow_exec=True))
    assert vetted["users"][0]["user"]["exec"]["command"] == "x"
    insecure = kubeconfig(**{"insecure-skip-tls-verify": True})
    assert "--insecure-kubeconfig-tls" in refusal(insecure)
    vetted = vet_kubeconfig(insecure, KubeconfigPolicy(allow_insecure_tls=True))
    assert vetted["clusters"][0]["cluster"]["insecure-skip-tls-verify"] is True
    # allowing exec allows nothing else
    assert "tokenFile" in refusal(kubeconfig({"tokenFile": "/x"}), KubeconfigPolicy(True, True))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["clusters"][1]["cluster"].update(server=f"https://u:{SECRET}@h"), "URL"),
        (lambda c: c["clusters"][1]["cluster"].update(server="file:///etc/passwd"), "http(s)"),
        (lambda c: c["clusters"][1]["cluster"].pop("server"), "server is missing"),
        (lambda c: c["users"][0].update(user={}), "no credentials"),
        (lambda c: c["users"][0]["user"].update(token=""), "non-empty"),
        (lambda c: c.update(contexts=[]), "no contexts"),
        (lambda c: c.update({"current-context": "nowhere"}), "does not list"),
        (lambda c: c["users"][0].update(user={"client-key-data": B64}), "needs both"),
        (
            lambda c: c["users"][0].update(user={"client-certificate-data": SECRET + "!"}),
            "not valid base64",
        ),
    ],
)
def test_malformed_kubeconfigs_are_refused_with_a_reason(mutate: Any, expected: str) -> None:
    config = kubeconfig()
    mutate(config)
    message = refusal(config)
    assert expected in message
    assert SECRET not in message


def test_a_yaml_error_gives_the_position_not_the_text() -> None:
    raw = f"clusters:\n- name: a\n  token: {SECRET}: [unclosed\n".encode()
    with pytest.raises(KubeconfigRejectedError) as caught:
        parse_kubeconfig(raw)
    assert "line 3" in caught.value.message
    assert SECRET not in caught.value.message


def test_oversized_and_binary_secrets_are_refused() -> None:
    with pytest.raises(KubeconfigRejectedError, match="larger"):
        parse_kubeconfig(b"a" * (300 * 1024))
    with pytest.raises(KubeconfigRejectedError, match="UTF-8"):
        parse_kubeconfig(b"\xff\xfe" + SECRET.encode())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "cluster",
                    "user",
                    "context",
                    "server",
                    "token",
                    "exec",
                    "clusters",
                    "users",
                    "contexts",
                    "current-context",
                    "tokenFile",
                    "certificate-authority-data",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_document_is_vetted_or_refused_never_crashes(config: Any) -> None:
    try:
        vetted = vet_kubeconfig(config)
    except KubeconfigRejectedError:
        return
    user = vetted["users"][0]["user"]
    assert set(user) <= {"token", "client-certificate-data", "client-key-data"}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["users", "clusters"]), st.text(min_size=1, max_size=12))
def test_any_unknown_field_is_refused_and_its_value_never_shown(where: str, field: str) -> None:
    config = kubeconfig()
    target = config["users"][0]["user"] if where == "users" else config["clusters"][1]["cluster"]
    if field in target or field in ("extensions", "disable-compression", "tls-server-name"):
        return
    mutated = copy.deepcopy(config)
    body = mutated["users"][0]["user"] if where == "users" else mutated["clusters"][1]["cluster"]
    body[field] = SECRET
    message = refusal(mutated)
    assert SECRET not in message
