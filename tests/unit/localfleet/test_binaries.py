"""Binary resolution honours TIERRA_BIN_DIR and KUBEBUILDER_ASSETS before the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierra.localfleet import binaries


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


FAKE_GO = """#!/bin/sh
# go mod download -json: point at a go.mod; go install: write a helm that prints its version.
if [ "$1" = mod ]; then
  printf 'module helm.sh/helm/v4\\nrequire k8s.io/client-go v0.34.1\\n' > "$FAKE_GOMOD.$$"
  printf '{"GoMod": "%s"}' "$FAKE_GOMOD.$$"  # one per build: they run side by side
  exit 0
fi
sleep 0.3
printf '#!/bin/sh\\necho %s\\n' "$FAKE_HELM_VERSION" > "$GOBIN/helm.part"
chmod +x "$GOBIN/helm.part"
mv "$GOBIN/helm.part" "$GOBIN/helm"
echo "$*" >> "$FAKE_GO_CALLS"
"""


def test_helm_builds_race_safely_into_the_versioned_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two concurrent builds: both return a complete binary, the cache entry is whole and no
    staging directory is left behind; a warm cache builds nothing."""
    import threading

    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    (fake_bin / "go").write_text(FAKE_GO)
    (fake_bin / "go").chmod(0o755)
    calls = tmp_path / "calls"
    monkeypatch.setenv("PATH", f"{fake_bin}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_GOMOD", str(tmp_path / "go.mod"))
    monkeypatch.setenv("FAKE_HELM_VERSION", binaries.HELM_VERSION)
    monkeypatch.setenv("FAKE_GO_CALLS", str(calls))
    monkeypatch.setenv("TIERRA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TIERRA_BIN_DIR", raising=False)
    monkeypatch.delenv("TIERRA_HELM_BIN", raising=False)
    assert binaries.find_helm() is None

    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(binaries.build_helm())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    expected = binaries.helm_bin_dir() / "helm"
    assert results == [expected, expected]
    assert binaries.find_helm() == expected
    assert [p.name for p in binaries.helm_bin_dir().parent.iterdir()] == [expected.parent.name]
    assert len(calls.read_text().splitlines()) == 2
    assert "-X helm.sh/helm/v4/pkg/chart/common.k8sVersionMinor=34" in calls.read_text()

    assert binaries.ensure_helm() == expected
    assert len(calls.read_text().splitlines()) == 2  # warm: nothing built


def test_a_failed_helm_build_leaves_no_cache_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    (fake_bin / "go").write_text(FAKE_GO)
    (fake_bin / "go").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_GOMOD", str(tmp_path / "go.mod"))
    monkeypatch.setenv("FAKE_HELM_VERSION", "v0.0.1")  # the built binary is not the pin
    monkeypatch.setenv("FAKE_GO_CALLS", str(tmp_path / "calls"))
    monkeypatch.setenv("TIERRA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TIERRA_BIN_DIR", raising=False)
    monkeypatch.delenv("TIERRA_HELM_BIN", raising=False)
    with pytest.raises(binaries.BinaryError, match=r"v0\.0\.1"):
        binaries.build_helm()
    assert list(binaries.helm_bin_dir().parent.iterdir()) == []
