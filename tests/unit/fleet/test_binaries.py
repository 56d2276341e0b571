"""Binary resolution honours TIERRA_BIN_DIR and KUBEBUILDER_ASSETS before the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierra.fleet import binaries


def make_bins(directory: Path, names: tuple[str, ...]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)


def test_prebuilt_directories_take_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIERRA_CACHE_DIR", str(tmp_path / "cache"))
    make_bins(tmp_path / "envtest", ("etcd", "kube-apiserver", "kubectl"))
    make_bins(tmp_path / "tierra", binaries.ALL_BINARIES)
    make_bins(binaries.versioned_bin_dir(), binaries.ALL_BINARIES)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path / "envtest"))
    assert binaries.find_binary("etcd") == tmp_path / "envtest" / "etcd"
    assert binaries.find_binary("kwok") == binaries.versioned_bin_dir() / "kwok"
    monkeypatch.setenv("TIERRA_BIN_DIR", str(tmp_path / "tierra"))
    assert binaries.find_binary("etcd") == tmp_path / "tierra" / "etcd"


def test_missing_binaries_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERRA_CACHE_DIR", str(tmp_path / "empty"))
    monkeypatch.delenv("TIERRA_BIN_DIR", raising=False)
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    with pytest.raises(binaries.BinaryError, match="kube-apiserver"):
        binaries.resolve_binaries()


def test_cache_directory_is_versioned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERRA_CACHE_DIR", str(tmp_path))
    path = binaries.versioned_bin_dir()
    assert binaries.KUBERNETES_VERSION in path.name and binaries.KWOK_VERSION in path.name
