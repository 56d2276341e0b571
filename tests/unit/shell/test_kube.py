"""The operator's clients keep every certificate and key in memory, never in a file."""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tierra.localfleet.pki import write_pki
from tierra.shell.kube import (
    KubeconfigContextError,
    client_from_kubeconfig,
    credentials_in_memory,
    operator_kubeconfig,
    sync_api_client,
)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    write_pki(directory)
    return directory


def embedded(pki: Path) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:1",
                    "certificate-authority-data": _b64(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {
                    "client-certificate-data": _b64(pki / "admin.crt"),
                    "client-key-data": _b64(pki / "admin.key"),
                },
            },
            {"name": "t", "user": {"token": "a-token"}},
        ],
        "contexts": [
            {"name": "cert", "context": {"cluster": "c", "user": "u"}},
            {"name": "token", "context": {"cluster": "c", "user": "t"}},
        ],
        "current-context": "cert",
    }


def test_embedded_credentials_move_to_memory_files_that_close_with_the_stack(pki: Path) -> None:
    config = embedded(pki)
    original = yaml.safe_dump(config)
    with contextlib.ExitStack() as files:
        moved = credentials_in_memory(config, files)
        cluster = moved["clusters"][0]["cluster"]
        user = moved["users"][0]["user"]
        assert not any(k.endswith("-data") for k in {**cluster, **user})
        paths = [cluster["certificate-authority"], user["client-certificate"], user["client-key"]]
        assert all(p.startswith("/proc/self/fd/") for p in paths)
        assert Path(user["client-key"]).read_bytes() == (pki / "admin.key").read_bytes()
        assert Path(cluster["certificate-authority"]).read_bytes() == (pki / "ca.crt").read_bytes()
        assert moved["users"][1] == config["users"][1]  # a token stays where it is
        descriptor = int(user["client-key"].rsplit("/", 1)[1])
    with pytest.raises(OSError):
        os.fstat(descriptor)
    assert yaml.safe_dump(config) == original  # the caller's config is not changed


async def test_a_client_sets_up_tls_from_memory_and_leaves_no_file(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    client = await client_from_kubeconfig(embedded(pki), "x")
    try:
        ssl_context = client.api_client.rest_client.pool_manager.connector._ssl
        issuers = [dict(c["issuer"][0])["commonName"] for c in ssl_context.get_ca_certs()]
        assert issuers == ["tierra-local-ca"]
        assert client.api_client.configuration.key_file.startswith("/proc/self/fd/")
        assert list(temporary.iterdir()) == []
    finally:
        await client.close()


def test_a_command_s_client_reads_its_credentials_from_memory_and_leaves_no_file(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tierra tier connect`` and ``tierra explain``: the synchronous library would keep the
    key in a temporary file until the command exits (a kill -9 would leave it)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    with contextlib.ExitStack() as files:
        configuration = sync_api_client(embedded(pki), "cert", "", files).configuration
        assert configuration.host == "https://127.0.0.1:1"
        assert configuration.key_file.startswith("/proc/self/fd/")
        assert Path(configuration.key_file).read_bytes() == (pki / "admin.key").read_bytes()
        assert Path(configuration.ssl_ca_cert).read_bytes() == (pki / "ca.crt").read_bytes()
        assert list(temporary.iterdir()) == []
        token = sync_api_client(embedded(pki), "token", "", files).configuration
        assert token.api_key == {"authorization": "Bearer a-token"}
    assert not Path(configuration.key_file).exists()


def test_the_operator_s_kubeconfig_takes_the_named_context(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(embedded(pki)))
    monkeypatch.setenv("KUBECONFIG", f"{path}{os.pathsep}/elsewhere")
    assert operator_kubeconfig().config["current-context"] == "cert"
    own = operator_kubeconfig("token")
    assert (own.config["current-context"], own.base_path) == ("token", str(tmp_path))
    with pytest.raises(KubeconfigContextError, match=r"no context .nowhere. in .*config"):
        operator_kubeconfig("nowhere")


def test_an_unreadable_kubeconfig_is_named_and_never_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config"
    path.write_text("token: s3cr3t: [")
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(KubeconfigContextError) as raised:
        operator_kubeconfig("any")
    assert str(path) in str(raised.value) and "s3cr3t" not in str(raised.value)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(KubeconfigContextError, match=r"cannot read kubeconfig .*absent"):
        operator_kubeconfig()


async def test_kopf_logs_in_to_the_named_context_from_memory(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kopf

    from tierra.handlers import login
    from tierra.settings import Settings

    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(embedded(pki)))
    monkeypatch.setenv("KUBECONFIG", str(path))
    settings = kopf.OperatorSettings()
    cert = await login(memo=kopf.Memo(settings=Settings(context="cert")), settings=settings)
    assert cert.server == "https://127.0.0.1:1" and cert.token is None
    assert cert.private_key_path is not None
    assert Path(str(cert.private_key_path)).read_bytes() == (pki / "admin.key").read_bytes()
    token = await login(memo=kopf.Memo(settings=Settings(context="token")), settings=settings)
    assert (token.scheme, token.token, token.private_key_path) == ("Bearer", "a-token", None)
    assert not Path(str(cert.private_key_path)).exists()  # the last login's files are closed


async def test_kopf_logs_in_with_the_pod_s_service_account_in_a_cluster(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a pod (the chart), with no context named: the mounted token and CA, as they are."""
    import kopf
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import incluster_config

    from tierra.handlers import login
    from tierra.settings import Settings

    token = tmp_path / "token"
    token.write_text("pod-token")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(pki / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setattr(Configuration, "_default", None)  # (the library sets its default)
    info = await login(memo=kopf.Memo(settings=Settings()), settings=kopf.OperatorSettings())
    assert (info.server, info.scheme, info.token) == (
        "https://10.96.0.1:443",
        "Bearer",
        "pod-token",
    )
    assert info.ca_path == str(pki / "ca.crt") and info.private_key_path is None
