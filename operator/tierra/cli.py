"""The ``tierra`` command: run | fleet | crds | explain | simulate | tier."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from collections.abc import Callable

    from tierra.settings import Settings


def _fleet(args: argparse.Namespace) -> int:
    from tierra.localfleet.binaries import ensure_binaries
    from tierra.localfleet.runner import Fleet, FleetError, UnknownClusterError
    from tierra.localfleet.topology import default_fleet, node_manifests

    if args.fleet_command == "build":
        from tierra.localfleet.prometheus import ensure_prometheus

        report = ensure_binaries()
        print(
            f"binaries in {report.directory} (built {list(report.built) or 'nothing'}, "
            f"{report.seconds:.0f}s)"
        )
        print(f"prometheus: {ensure_prometheus()}")
        return 0
    if args.fleet_command == "nodes":
        clusters = {c.name: c for c in default_fleet(args.scale)}
        print(yaml.safe_dump_all(node_manifests(clusters[args.cluster]), sort_keys=False), end="")
        return 0
    fleet = Fleet(Path(args.dir) if args.dir else None, default_fleet(getattr(args, "scale", 1)))
    if args.fleet_command == "up":
        ensure_binaries()
        try:
            seconds = fleet.up(timeout=args.timeout)
        except FleetError as error:
            print(f"fleet failed to start: {error}", file=sys.stderr)
            return 1
        print(
            f"fleet ready in {seconds:.1f}s: clusters {', '.join(c.name for c in fleet.clusters)}"
        )
        print(f"  export KUBECONFIG={fleet.kubeconfig}")
        for cluster in fleet.clusters:
            print(f"  kubectl --context {cluster.context} get nodes")
        print("  tierra fleet down   # stops every process")
        return 0
    if args.fleet_command == "down":
        fleet.down()
        return 0
    if args.fleet_command == "status":
        rows = fleet.status()
        print(f"{'CLUSTER':10} {'COMPONENT':25} {'PID':>8}  STATE")
        for row in rows:
            print(
                f"{row['cluster']:10} {row['component']:25} {row['pid'] or '-':>8}  {row['state']}"
            )
        return 0 if all(row["healthy"] for row in rows) else 1
    if args.fleet_command in ("stop", "freeze", "resume"):
        try:
            if args.fleet_command == "stop":
                fleet.stop_apiserver(args.cluster)
            elif args.fleet_command == "freeze":
                fleet.freeze_apiserver(args.cluster)
            else:
                fleet.resume_apiserver(args.cluster, timeout=args.timeout)
        except UnknownClusterError as error:
            print(f"tierra fleet {args.fleet_command}: {error}", file=sys.stderr)
            return 2
        except FleetError as error:
            print(f"tierra fleet {args.fleet_command}: {error}", file=sys.stderr)
            return 1
        return 0
    raise AssertionError(args.fleet_command)


def _crds(args: argparse.Namespace) -> int:
    from tierra.crdgen import stale_crds, write_crds

    root = Path(args.root)
    if args.crds_command == "generate":
        for path in write_crds(root):
            print(f"wrote {path}")
        return 0
    stale = stale_crds(root)
    for path in stale:
        print(f"stale: {path} (run `tierra crds generate`)", file=sys.stderr)
    return 1 if stale else 0


def settings_from(args: argparse.Namespace) -> Settings:
    """The operator's settings from ``tierra run``'s flags. (Imported here: the Kubernetes
    client libraries read KUBECONFIG when imported, so nothing that imports them may load
    before ``_run`` has set it.)"""
    from tierra.core.migration import MigrationSettings
    from tierra.settings import (
        AutoscalingSettings,
        ElectionSettings,
        MemberSettings,
        ServiceSettings,
        Settings,
        TierSettings,
    )
    from tierra.shell.kubeconfig import KubeconfigPolicy
    from tierra.shell.leader import LeaderElectionSettings

    return Settings(
        context=args.context,
        namespace=args.namespace,
        metrics_port=args.metrics_port,
        members=MemberSettings(
            kubeconfig_policy=KubeconfigPolicy(
                allow_exec=args.insecure_kubeconfig_exec,
                allow_insecure_tls=args.insecure_kubeconfig_tls,
            ),
            sync_timeout=args.member_sync_timeout,
        ),
        services=ServiceSettings(workers=args.workers),
        tiers=TierSettings(cleanup_timeout_seconds=args.tier_cleanup_timeout),
        migration=MigrationSettings(
            tier_lost_after_seconds=args.tier_lost_after,
            max_moves_per_target_tier=args.max_moves_per_tier,
            optimise_margin=args.optimise_margin,
            optimise_after_seconds=args.optimise_after,
            min_dwell_seconds=args.min_dwell,
            pending_after_seconds=args.pending_after,
        ),
        autoscaling=AutoscalingSettings(
            prometheus_url=args.prometheus_url,
            scrape_interval_seconds=args.prometheus_scrape_interval,
            interval_seconds=args.metrics_interval,
            status_refresh_seconds=args.status_refresh_seconds,
        ),
        leader_election=ElectionSettings(
            enabled=args.leader_elect,
            lease_name=args.leader_elect_lease_name,
            timing=LeaderElectionSettings(
                lease_duration=args.leader_elect_lease_duration,
                renew_deadline=args.leader_elect_renew_deadline,
                retry_period=args.leader_elect_retry_period,
            ),
        ),
    )


def _run(args: argparse.Namespace) -> int:
    import os

    # The Kubernetes client libraries read KUBECONFIG on import: set it before importing them.
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    if args.context:
        from tierra.shell.kube import KubeconfigContextError, operator_kubeconfig

        try:
            operator_kubeconfig(args.context)  # fail now, not in kopf's login retries
        except KubeconfigContextError as error:
            raise SystemExit(str(error)) from None
    return _run_operator(args)


def _run_operator(args: argparse.Namespace) -> int:
    import os

    settings = settings_from(args)

    # kopf logs in through ``handlers.login`` (kubernetes_asyncio, as the operator's clients),
    # but imports the synchronous kubernetes client for its fallback logins when it can.
    # Hiding it keeps ~40 MB of modules out of the process (kopf has no setting for this; a
    # None entry in sys.modules is Python's documented way to make an import fail).
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    import kopf

    from tierra import handlers

    handlers.configure_logging(os.environ.get("TIERRA_LOG_LEVEL", "INFO"))
    kopf.run(
        clusterwide=True,
        standalone=True,
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(settings=settings),
    )
    return 0


def _explain(args: argparse.Namespace) -> int:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from tierra.core.status import explain_status
    from tierra.shell.kube import KubeconfigContextError, operator_kubeconfig, sync_api_client

    namespace, _, name = args.target.rpartition("/")
    namespace = namespace or "default"
    try:
        own = operator_kubeconfig(args.context)
    except KubeconfigContextError as error:
        print(error, file=sys.stderr)
        return 1
    with contextlib.ExitStack() as files:  # the client's certificates, in memory
        api = client.CustomObjectsApi(sync_api_client(own.config, None, own.base_path, files))
        try:
            body = api.get_namespaced_custom_object(
                "tierra.dev", "v1alpha1", namespace, "inferenceservices", name
            )
        except ApiException as error:
            print(
                f"cannot read InferenceService {namespace}/{name}: {error.reason}", file=sys.stderr
            )
            return 1
    print(
        explain_status(
            f"{namespace}/{name}", body.get("spec", {}), body.get("status", {}), time.time()
        )
    )
    return 0


def _tier(args: argparse.Namespace) -> int:
    from tierra.onboarding import ConnectError, connect, tier_snippet

    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG", "~/.kube/config").split(":")[0]
    try:
        connection = connect(
            Path(kubeconfig).expanduser(),
            member_context=args.context,
            tier=args.name,
            management_context=args.management_context,
            operator_namespace=args.namespace,
            secret_name=args.secret_name,
            server=args.server,
            token_expiration=args.token_expiration,
        )
    except ConnectError as error:
        print(f"tier connect failed: {error}", file=sys.stderr)
        return 1
    print(
        f"Secret {connection.secret_namespace}/{connection.secret_name}: kubeconfig for "
        f"{connection.server} as ServiceAccount {connection.service_account} "
        f"({'expiring' if connection.token_expires else 'long-lived'} token). In Tier "
        f"{args.name}:\n{tier_snippet(connection)}",
        end="",
    )
    return 0


def _tunable(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: Callable[[str], float],
    default: float,
    text: str,
) -> None:
    """A numeric flag whose default a deployment can also set as ``$TIERRA_<FLAG>``. The
    default goes to argparse as a string, so a malformed environment value is a usage error
    naming the flag, not a traceback."""
    env = "TIERRA_" + flag.removeprefix("--").replace("-", "_").upper()
    parser.add_argument(
        flag,
        type=kind,
        default=os.environ.get(env, str(default)),
        help=f"{text} (default {default:g}, or ${env})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierra", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    fleet = commands.add_parser(
        "fleet", help="the local multi-cluster fleet of real control planes"
    )
    fleet_commands = fleet.add_subparsers(dest="fleet_command", required=True)
    for name, text in (
        ("up", "start central, regional and edge; return when all are ready"),
        ("down", "stop every fleet process (also frozen or restarted ones)"),
        ("status", "report each component of each cluster (healthy/running/frozen/stopped)"),
        ("stop", "outage: end CLUSTER's kube-apiserver (clients are refused)"),
        ("freeze", "outage: SIGSTOP CLUSTER's kube-apiserver (clients time out)"),
        ("resume", "end an outage: continue or restart CLUSTER's kube-apiserver, wait for ready"),
    ):
        sub = fleet_commands.add_parser(name, help=text, description=text)
        sub.add_argument(
            "--dir", help="fleet state directory (default .tierra/fleet or $TIERRA_FLEET_DIR)"
        )
        if name == "up":
            sub.add_argument("--timeout", type=float, default=180.0)
            sub.add_argument("--scale", type=int, default=1, help="multiply node counts")
        if name in ("stop", "freeze", "resume"):
            sub.add_argument("cluster", metavar="CLUSTER", help="e.g. central, regional, edge")
        if name == "resume":
            sub.add_argument(
                "--timeout", type=float, default=60.0, help="seconds to wait for /readyz"
            )
    fleet_commands.add_parser(
        "build", help="build or locate the control-plane binaries and Prometheus"
    )
    nodes = fleet_commands.add_parser("nodes", help="print a cluster's kwok Node manifests")
    nodes.add_argument("--cluster", required=True, choices=["central", "regional", "edge"])
    nodes.add_argument("--scale", type=int, default=1)

    run = commands.add_parser("run", help="run the operator against the current kube context")
    run.add_argument(
        "--namespace",
        default="tierra-system",
        help="operator namespace (kubeconfig Secrets are read only from here)",
    )
    run.add_argument("--metrics-port", type=int, default=8080, help="Prometheus metrics; 0: off")
    run.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8081/healthz")
    _tunable(run, "--workers", int, 16, "concurrent reconciles")
    run.add_argument(
        "--prometheus-url",
        default=os.environ.get("TIERRA_PROMETHEUS_URL"),
        help="Prometheus for tiers without spec.metrics (default $TIERRA_PROMETHEUS_URL)",
    )
    _tunable(
        run,
        "--prometheus-scrape-interval",
        float,
        15,
        "seconds between that Prometheus' scrapes of the model servers (rate windows hold four)",
    )
    _tunable(run, "--metrics-interval", float, 5, "seconds between metric samples of each service")
    _tunable(
        run,
        "--status-refresh-seconds",
        float,
        30,
        "seconds between status writes of a service's observed metrics while its decision "
        "holds (each write costs the apiserver CPU: about 30 writes/s at 1,000 services)",
    )
    run.add_argument(
        "--insecure-kubeconfig-exec",
        action="store_true",
        help="allow exec credential plugins in Tier kubeconfig Secrets. RISK: whoever can "
        "write a Secret in the operator's namespace can then run any command inside the "
        "operator, with its identity (off by default: only inline tokens and certificates)",
    )
    run.add_argument(
        "--insecure-kubeconfig-tls",
        action="store_true",
        help="allow insecure-skip-tls-verify in Tier kubeconfig Secrets. RISK: a man in the "
        "middle can read the credentials and workloads sent to that cluster",
    )
    _tunable(
        run,
        "--member-sync-timeout",
        float,
        10,
        "seconds a reconcile waits for a new member cluster's first listing before it moves "
        "on; services wait on while it is syncing",
    )
    _tunable(
        run,
        "--tier-lost-after",
        float,
        10,
        "seconds a Tier's cluster must keep failing its probes before what runs there is "
        "placed elsewhere",
    )
    _tunable(
        run,
        "--max-moves-per-tier",
        int,
        25,
        "moves into one tier in progress at once; more wait their turn",
    )
    run.add_argument(
        "--optimise-margin",
        type=float,
        default=0.25,
        help="a placement better by the objective by at least this fraction is worth a move "
        "(default 0.25)",
    )
    run.add_argument(
        "--optimise-after",
        type=float,
        default=300.0,
        help="seconds a better placement must hold before the service moves to it (default 300)",
    )
    run.add_argument(
        "--min-dwell",
        type=float,
        default=900.0,
        help="seconds after a move during which no optimisation moves the service again "
        "(default 900)",
    )
    _tunable(
        run,
        "--pending-after",
        float,
        30,
        "seconds a replica's pod may wait for a node in a pool that seems to have room before "
        "the replica moves to the next allowed pool or tier",
    )
    _tunable(
        run,
        "--tier-cleanup-timeout",
        float,
        300,
        "seconds a deleted Tier whose cluster is out of reach is held before it is released "
        "with a Warning Event naming what is left behind",
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the controllers only while holding the operator's Lease, so that several "
        "replicas can run (default on)",
    )
    run.add_argument("--leader-elect-lease-name", default="tierra-operator")
    for name, default, text in (
        ("lease-duration", 15.0, "how long a standby waits after the Lease last changed"),
        ("renew-deadline", 10.0, "how long the leader keeps trying to renew before it stops"),
        ("retry-period", 2.0, "time between attempts to acquire or renew"),
    ):
        run.add_argument(
            f"--leader-elect-{name}",
            type=float,
            default=default,
            metavar="SECONDS",
            help=f"{text} (default {default:g})",
        )
    run.add_argument("--kubeconfig", default=None)
    run.add_argument("--context", default=None, help="kube context of the management cluster")

    explain = commands.add_parser("explain", help="why an InferenceService runs where it runs")
    explain.add_argument("target", help="NAMESPACE/NAME")
    explain.add_argument("--context", default=None)

    # These two load their own (heavier) modules only when asked for; see ``main``.
    for name, text in (
        ("simulate", "replay a request trace offline against tierra, HPA, KEDA, static, oracle"),
        ("twin", "the load twin: simulated vLLM servers for the fleet's Deployments"),
    ):
        sub = commands.add_parser(name, help=text, add_help=False)
        sub.add_argument("args", nargs=argparse.REMAINDER)

    tier = commands.add_parser("tier", help="connect member clusters")
    tier_commands = tier.add_subparsers(dest="tier_command", required=True)
    connect = tier_commands.add_parser(
        "connect",
        help="least-privilege ServiceAccount in a member cluster, and the Tier's kubeconfig "
        "Secret (inline token and CA) in the management cluster",
    )
    connect.add_argument("--context", required=True, help="kube context of the member cluster")
    connect.add_argument("--name", required=True, help="the Tier's name")
    connect.add_argument("--kubeconfig", default=None, help="default $KUBECONFIG")
    connect.add_argument(
        "--management-context", default=None, help="management cluster (default: current)"
    )
    connect.add_argument(
        "--namespace", default="tierra-system", help="the operator's namespace (management)"
    )
    connect.add_argument("--secret-name", default=None, help="default tier-<name>-kubeconfig")
    connect.add_argument("--server", default=None, help="member API URL as the operator reaches it")
    connect.add_argument(
        "--token-expiration",
        type=int,
        default=None,
        metavar="SECONDS",
        help="an expiring TokenRequest token instead of a long-lived token Secret",
    )

    crds = commands.add_parser("crds", help="generate or check CRD YAML from the typed models")
    crds.add_argument("crds_command", choices=["generate", "check"])
    crds.add_argument("--root", default=".", help="repository root")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "simulate":
        from tierra.lab import simulate

        return simulate.main(argv[1:])
    if argv and argv[0] == "twin":
        from tierra.lab import twin

        return twin.main(argv[1:])
    args = build_parser().parse_args(argv)
    handlers = {"fleet": _fleet, "crds": _crds, "run": _run, "explain": _explain, "tier": _tier}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
