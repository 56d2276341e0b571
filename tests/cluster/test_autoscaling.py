"""SLO autoscaling end to end: the closed loop on the local fleet.

A real Prometheus (Debian's package) scrapes the load twin, which simulates the model servers of
every Deployment the operator writes, with as many servers as the Deployment has ready pods on
the kwok nodes; the operator (``tierra run``, its own process) queries that Prometheus. Nothing
in the loop is mocked: a load step reaches the operator only through the twin's metrics, a real
scrape and a real PromQL query, and its decision reaches the twin only through real Deployments.
"""

from __future__ import annotations

import datetime
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import (
    GROUP,
    PLURAL,
    VERSION,
    Clients,
    OperatorProcess,
    WaitFor,
    children,
    condition,
    create,
    events,
    get_service,
    running_operator,
    running_pods,
    service_manifest,
    wait_condition,
    wait_event,
    wait_placed,
    wait_pool_free,
)
from kubernetes import client

from tierra.lab.twin import TwinProcess
from tierra.localfleet.prometheus import PrometheusServer, ScrapeTarget

pytestmark = pytest.mark.cluster

SCRAPE_SECONDS = 1.0
METRICS_INTERVAL_SECONDS = 1.0


@pytest.fixture(scope="module")
def twin(fleet_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinProcess]:
    process = TwinProcess(fleet_kubeconfig, tmp_path_factory.mktemp("twin") / "log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def prometheus(
    twin: TwinProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"),
        [ScrapeTarget(twin.address)],
        scrape_interval=SCRAPE_SECONDS,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def operator(
    fleet_kubeconfig: Path,
    crds_installed: None,
    member_secrets: None,
    prometheus: PrometheusServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator, with the twin's Prometheus as its default metrics source."""
    env = {
        "TIERRA_PROMETHEUS_URL": prometheus.url,
        "TIERRA_METRICS_INTERVAL": str(METRICS_INTERVAL_SECONDS),
    }
    with running_operator(fleet_kubeconfig, tmp_path_factory.mktemp("operator"), env) as process:
        yield process


# ----------------------------------------------------------------------------------- helpers
def fast_variant(
    name: str, type_: str, model: str | None = None, **capacity: Any
) -> dict[str, Any]:
    """A replica serves a 500-token prompt and 100 output tokens in 0.31 s alone: about 3
    requests/s. Starts in 5 s (the twin delays a new Ready pod's serving by this much)."""
    accelerator: dict[str, Any] = {"type": type_, "count": 1}
    if model:
        accelerator["model"] = model
    return {
        "name": name,
        "accelerator": accelerator,
        "capacity": {
            "maxConcurrency": 8,
            "prefillTokensPerSecond": 8000,
            "decodeTokensPerSecond": 400,
            **capacity,
        },
        "startupSeconds": 5,
    }


def scaled_service(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    manifest = service_manifest(
        name,
        namespace,
        spec.pop("variants", [fast_variant("h100", "nvidia-gpu", "H100")]),
        placement=spec.pop("placement", {"levels": ["central"]}),
        slo=spec.pop("slo", {"latencyP95Ms": 2000, "maxQueuePerReplica": 4}),
        scaling=spec.pop(
            "scaling", {"minReplicas": 1, "maxReplicas": 6, "scaleDownDelaySeconds": 20}
        ),
        **spec,
    )
    return manifest


def status(clients: Clients, namespace: str, name: str) -> dict[str, Any]:
    body = get_service(clients, namespace, name) or {}
    return dict(body.get("status") or {})


def recommended(clients: Clients, namespace: str, name: str) -> int | None:
    value = (status(clients, namespace, name).get("autoscaling") or {}).get("recommendedReplicas")
    return None if value is None else int(value)


def kept(clients: Clients, namespace: str, name: str) -> int:
    """What the autoscaler's last sample keeps against a scale-down (its needs at the top of
    the deadband)."""
    value = (status(clients, namespace, name).get("autoscaling") or {}).get("keeps")
    return 0 if value is None else int(value)


def step_scale_up(
    clients: Clients, namespace: str, name: str, since: float
) -> dict[str, Any] | None:
    """The last scale decision if it is a scale-up at or after ``since`` (epoch seconds) on a
    sample with requests waiting or more than one running."""
    last = status(clients, namespace, name).get("lastScale") or {}
    signals = last.get("signals") or {}
    at = datetime.datetime.fromisoformat(str(last.get("time", "1970-01-01T00:00:00Z")))
    return (
        last
        if int(last.get("to", 0)) > int(last.get("from", 0))
        # (the decision's time is cut to whole seconds)
        and at.timestamp() >= int(since)
        and (signals.get("queueDepth", 0) > 0 or signals.get("running", 0) > 1)
        else None
    )


def state_kept(clients: Clients, namespace: str, name: str) -> dict[str, Any]:
    """``status.autoscaling.state``."""
    return dict((status(clients, namespace, name).get("autoscaling") or {}).get("state") or {})


def window_kept(clients: Clients, namespace: str, name: str) -> dict[str, Any]:
    """The scale-down window's steps in ``status.autoscaling.state``, with its time."""
    autoscaling = status(clients, namespace, name).get("autoscaling") or {}
    state = autoscaling.get("state") or {}
    steps = {k: v for k, v in state.items() if k.startswith("state.window")}
    return {"stateTime": autoscaling.get("stateTime"), **steps}


def observed_at(clients: Clients, namespace: str, name: str) -> float:
    """When the sample behind the needs in status was observed (epoch seconds)."""
    at = sample_time(status(clients, namespace, name))
    assert at is not None, "status.metrics.observedAt is missing"
    return at


def sample_time(service_status: dict[str, Any]) -> float | None:
    """``status.metrics.observedAt`` of a service's status, in epoch seconds (None: unset)."""
    stamp = (service_status.get("metrics") or {}).get("observedAt")
    if not stamp:
        return None
    return datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def desired_in_members(clients: Clients, name: str) -> int:
    return sum(
        d.spec.replicas or 0
        for cluster in ("central", "regional", "edge")
        for d in children(clients, cluster, name)
    )


def serving_on_the_edge(
    clients: Clients,
    wait_for: WaitFor,
    twin: TwinProcess,
    namespace: str,
    name: str,
    orin: dict[str, Any] | None = None,
    **spec: Any,
) -> None:
    """A service that runs on an Orin at the edge or an L4 in regional, edge first (the
    latency objective from eu-central), placed on the edge and serving there."""
    create(
        clients,
        scaled_service(
            name,
            namespace,
            variants=[
                fast_variant("orin", "edge-gpu", **(orin or {})),
                fast_variant("l4", "nvidia-gpu", "L4"),
            ],
            placement={
                "levels": ["edge", "regional"],
                "objective": "latency",
                "userRegions": {"eu-central": 1.0},
            },
            **spec,
        ),
    )
    body = wait_placed(clients, wait_for, namespace, name)
    assert {p["tier"] for p in body["status"]["placements"]} == {"edge"}
    wait_serving(twin, wait_for, namespace, name, 1)


# ------------------------------------------------------------------------------------- tests
def test_the_operator_times_its_autoscaling_passes(
    fleet_tiers: None, operator: OperatorProcess, wait_for: WaitFor
) -> None:
    """A pass starts every --metrics-interval and is timed: what the chart's
    TierraAutoscalingBehind alert compares."""
    passes = "tierra_autoscaling_pass_duration_seconds_count"
    first = wait_for(lambda: operator.metric(passes), timeout=30, what="a timed pass")
    time.sleep(4 * METRICS_INTERVAL_SECONDS)
    count = operator.metric(passes) or 0.0
    assert count >= first + 2, (first, count)
    assert operator.metric("tierra_autoscaling_interval_seconds") == METRICS_INTERVAL_SECONDS
    spent = operator.metric("tierra_autoscaling_pass_duration_seconds_sum") or 0.0
    assert 0 < spent / count < METRICS_INTERVAL_SECONDS, (spent, count)
    assert operator.metric("tierra_autoscaling_services") is not None


def test_load_step_scales_up_at_once_and_down_after_the_delay(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
) -> None:
    wait_pool_free(clients, wait_for, "central", "h100", 6)
    create(clients, scaled_service("step", namespace))
    wait_placed(clients, wait_for, namespace, "step")
    wait_serving(twin, wait_for, namespace, "step", 1)
    twin.set_load(namespace, "step", rate=1.0, prompt_tokens=500, output_tokens=100)
    wait_for(
        lambda: (
            condition(get_service(clients, namespace, "step"), "SLOMet").get("status") == "True"
        ),
        timeout=90,
        what="SLOMet=True at 1 request/s",
    )
    assert condition(get_service(clients, namespace, "step"), "MetricsAvailable")["status"] == (
        "True"
    )
    # The first requests queue while the first replica starts, and the autoscaler plans for
    # replicas 30 % slower than profiled until it has seen them serve: a transient ask for a
    # few more must come back down after the scale-down delay (20 s) at a steady 1 request/s.
    # (steady for longer than the delay, so the first change after the step is the step's and
    # not a scale-down still pending)
    before = wait_settled(clients, namespace, "step", quiet=25.0, at_most=2)

    stepped_at, stepped_wall = time.monotonic(), time.time()
    twin.set_load(namespace, "step", rate=10.0, prompt_tokens=500, output_tokens=100)
    # The first scale-up on a sample that shows the step: as waiting or (processor sharing:
    # before anything waits) as more running. (At 1 request/s the count can still move by one
    # on noise; such a change is not the step's.)
    first = wait_for(
        lambda: step_scale_up(clients, namespace, "step", since=stepped_wall),
        timeout=30,
        interval=0.1,
        what="a scale-up decision on a sample that shows the load step",
    )
    decided = time.monotonic() - stepped_at
    assert int(first["from"]) >= before
    # 10 requests/s at about 3 per replica needs 4 or more: reached as the backlog's growth
    # shows the arrivals (the runtime only exports completions), not one replica per tick.
    wait_for(
        lambda: (recommended(clients, namespace, "step") or 0) >= 4,
        timeout=15,
        what="4 or more replicas for 10 requests/s",
    )
    after = recommended(clients, namespace, "step")
    assert after is not None
    # Within a scrape, a sample and the reconcile, with slack for a loaded CI machine.
    assert decided <= SCRAPE_SECONDS + METRICS_INTERVAL_SECONDS + 8.0, decided
    wait_for(
        lambda: (
            desired_in_members(clients, "step") >= after
            and len(running_pods(clients, "central", "step")) >= after
        ),
        timeout=60,
        what=f"{after} pods Running in the member cluster",
    )
    wait_event(clients, wait_for, namespace, "step", "ScaledUp")
    # The SLO recovers once the new replicas serve and the overload leaves the 1-minute window.
    wait_for(
        lambda: (
            condition(get_service(clients, namespace, "step"), "SLOMet").get("status") == "True"
            and twin_waiting(twin, namespace, "step") <= 4 * after
        ),
        timeout=150,
        what="SLOMet=True again after the scale-up",
    )

    # A count set at the top of the step's backlog is trimmed once the lower need has lasted
    # the delay; wait until the count is settled at 10 requests/s, and drop the load after a
    # sample that still kept it (its needs at the top of the deadband: at 10 requests/s the
    # plain need can be one below a count the deadband keeps). Status carries the last sample
    # written (at least every 30 s, so possibly an older one) with its time: the delay runs
    # from the last sample that kept the count, which is that one or a later one.
    settled = wait_settled(clients, namespace, "step", quiet=25.0)
    wait_for(
        lambda: kept(clients, namespace, "step") >= settled,
        timeout=90,
        interval=0.1,
        what=f"a sample that keeps the settled {settled} replicas",
    )
    needed_at = observed_at(clients, namespace, "step")

    twin.set_load(namespace, "step", rate=1.0, prompt_tokens=500, output_tokens=100)
    wait_for(
        lambda: (recommended(clients, namespace, "step") or settled) < settled,
        timeout=180,
        what="a scale-down decision after the load fell",
    )
    waited = time.time() - needed_at
    # (observedAt is cut to whole seconds, which only lengthens the measured wait)
    assert waited >= 20.0, f"scaled down {waited:.1f}s after a sample needing {settled}"
    wait_for(
        lambda: desired_in_members(clients, "step") == recommended(clients, namespace, "step"),
        timeout=30,
        what="member Deployments follow the scale-down",
    )
    wait_event(clients, wait_for, namespace, "step", "ScaledDown")
    twin.clear_load(namespace, "step")


def test_a_restarted_operator_scales_down_when_the_window_status_kept_lets_it(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
    operator: Any,
) -> None:
    """8 requests/s, then 1, and the operator restarts (an upgrade, a failover) halfway
    through the 120 s scale-down delay: the count the 8 needed goes once the lower need has
    lasted the delay since the last sample that kept it, as without the restart. The
    window's steps are in status.autoscaling.state, so the restarted operator does not hold
    the count a whole delay more."""
    delay = 120.0
    scaling = {"minReplicas": 1, "maxReplicas": 8, "scaleDownDelaySeconds": int(delay)}
    wait_pool_free(clients, wait_for, "central", "h100", 8)
    create(clients, scaled_service("resumed", namespace, scaling=scaling))
    wait_placed(clients, wait_for, namespace, "resumed")
    wait_serving(twin, wait_for, namespace, "resumed", 1)
    # The status is merge-patched, which merges maps key by key: a key the operator no longer
    # writes (an older staircase's third step, an older version's) goes with its next write,
    # or a restart would read it beside the new ones.
    wait_for(
        lambda: "state.speed" in state_kept(clients, namespace, "resumed"),
        timeout=60,
        what="the recommender's state in status",
    )
    client.CustomObjectsApi(clients["central"]).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "resumed",
        {"status": {"autoscaling": {"state": {"state.window2At": 1.0, "state.retired": 1.0}}}},
    )

    def stray_gone() -> bool:
        kept_now = state_kept(clients, namespace, "resumed")
        return "state.retired" not in kept_now and kept_now.get("state.window2At") != 1.0

    # (within a status refresh: 30 s)
    wait_for(stray_gone, timeout=60, what="the keys the operator did not write gone from status")
    twin.set_load(namespace, "resumed", rate=8.0, prompt_tokens=500, output_tokens=100)
    loaded_at = time.time()
    rate_window = 60.0

    def needed() -> tuple[int, float] | None:
        """(what a sample keeps, when it was observed) once the rate window holds only the
        8 req/s and a sample keeps 3 or more: the window holds at least that count until a
        delay after the last sample that keeps it (the start's over-ask, more, goes on its
        own time), read from one status."""
        if time.time() < loaded_at + rate_window:
            return None
        now = status(clients, namespace, "resumed")
        keeps = int((now.get("autoscaling") or {}).get("keeps") or 0)
        at = sample_time(now)
        return (keeps, at) if keeps >= 3 and at is not None else None

    settled, needed_at = wait_for(
        needed, timeout=delay + 90, interval=0.1, what="a sample at 8 req/s keeping 3 or more"
    )

    twin.set_load(namespace, "resumed", rate=1.0, prompt_tokens=500, output_tokens=100)
    # (the state is written with the status: once one after the fall is, it holds the fall.
    # Below the 3 the load kept, not below ``settled``: at 8 req/s a noisy sample can keep
    # one fewer, and the 1-minute rate window shows the fall only as it passes.)
    wait_for(
        lambda: 0 < kept(clients, namespace, "resumed") < 3,
        timeout=120,
        what="a status written after the load fell",
    )
    fell_at = observed_at(clients, namespace, "resumed")
    # (halfway through the delay, while the window still holds what ``needed_at`` kept)
    time.sleep(max(0.0, min(fell_at + delay / 2, needed_at + delay - 15) - time.time()))
    assert (recommended(clients, namespace, "resumed") or 0) >= settled  # (the delay holds it)
    kept_before = window_kept(clients, namespace, "resumed")
    operator.restart()
    restarted = time.time()
    seen: list[str] = []

    def scaled_down() -> bool:
        autoscaling = status(clients, namespace, "resumed").get("autoscaling") or {}
        said = f"{autoscaling.get('recommendedReplicas')}: {autoscaling.get('reason')}"
        if not seen or seen[-1] != said:
            seen.append(said)
        return int(autoscaling.get("recommendedReplicas") or settled) < settled

    try:
        wait_for(scaled_down, timeout=delay + 60, what="a scale-down after the restart")
    except pytest.fail.Exception as failed:
        raise AssertionError(
            f"{failed}; the window status kept before the restart: {kept_before}; "
            f"the reasons after it: {seen}"
        ) from None
    scaled = time.time()
    print(
        f"\na sample needing {settled} replicas, and one needing fewer "
        f"{fell_at - needed_at:.0f} s after; restarted {restarted - needed_at:.0f} s after the "
        f"first, scaled down {scaled - needed_at:.0f} s after it and "
        f"{scaled - restarted:.0f} s after the restart (scaleDownDelaySeconds {delay:g}); the "
        f"window status kept before the restart: {kept_before}; the reasons after it: {seen}"
    )
    # (observedAt is cut to whole seconds, which only lengthens the measured wait)
    assert scaled - needed_at >= delay
    # (a window started afresh would hold the count the whole delay after the restart)
    assert scaled - restarted < delay - 25.0, (scaled - needed_at, scaled - restarted)
    twin.clear_load(namespace, "resumed")


def test_a_schedule_s_replicas_serve_from_its_start_and_leave_after_it(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
) -> None:
    """A launch at the next whole minute (UTC), known ahead: 4 replicas for 60 s. They are
    asked for the variant's start-up (5 s) before the minute, serve from it, and go once the
    window closes, while the load itself needs one replica throughout."""
    wait_pool_free(clients, wait_for, "central", "h100", 6)
    start = (int(time.time()) // 60 + 1) * 60
    if start - time.time() < 25:  # (time to place the service and see it serve first)
        start += 60
    at = datetime.datetime.fromtimestamp(start, datetime.UTC)
    launch = {
        "name": "launch",
        "start": f"{at.minute} {at.hour} {at.day} {at.month} *",
        "durationSeconds": 60,
        "minReplicas": 4,
    }
    scaling = {"minReplicas": 1, "maxReplicas": 6, "scaleDownDelaySeconds": 10}
    create(
        clients, scaled_service("planned", namespace, scaling={**scaling, "schedules": [launch]})
    )
    wait_placed(clients, wait_for, namespace, "planned")
    wait_serving(twin, wait_for, namespace, "planned", 1)
    # (well within one replica: at 0.5 req/s a noisy sample now and then asked for a second,
    # held past the close for the scale-down delay)
    twin.set_load(namespace, "planned", rate=0.25, prompt_tokens=500, output_tokens=100)
    time.sleep(max(0.0, start - 5 - 3 - time.time()))
    # (not yet the schedule's 4; a noisy sample may have asked for a second)
    assert (recommended(clients, namespace, "planned") or 0) < 4, "scaled before the lead"

    wait_for(
        lambda: (recommended(clients, namespace, "planned") or 0) >= 4,
        timeout=30,
        interval=0.2,
        what="the schedule's 4 replicas",
    )
    asked = time.time()
    # A start-up (5 s) ahead, within a metrics interval and a reconcile (slack for CI).
    assert start - 5 - 1.5 <= asked <= start - 5 + 6, asked - start
    last = status(clients, namespace, "planned").get("lastScale") or {}
    said = last.get("reason", "")
    assert re.match(r"scale up \d -> 4: schedule launch holds 4 from ", said), last
    # (what a restart needs of the recommender's state goes with every status: the real
    # apiserver's schema keeps it)
    scaled = status(clients, namespace, "planned").get("autoscaling") or {}
    assert "state.speed" in (scaled.get("state") or {}) and scaled.get("stateTime"), scaled
    wait_event(clients, wait_for, namespace, "planned", "ScaledUp", message="schedule launch")
    # Serving from the start: Ready on the kwok nodes, then the twin's 5 s start-up.
    wait_serving(twin, wait_for, namespace, "planned", 4)
    assert time.time() <= start + 8, time.time() - start

    wait_for(
        lambda: recommended(clients, namespace, "planned") == 1,
        timeout=60 + 40,
        interval=0.2,
        what="back to 1 replica after the window",
    )
    closed = time.time()
    assert start + 60 <= closed <= start + 60 + 10 + 8, closed - start
    twin.clear_load(namespace, "planned")

    # A line the schema lets through but cron's ranges do not: reported, nothing touched.
    wait_for(
        lambda: (
            desired_in_members(clients, "planned") == 1
            and len(running_pods(clients, "central", "planned")) == 1
        ),
        timeout=60,
        what="1 replica, its pods gone but one",
    )
    broken = {"spec": {"scaling": {**scaling, "schedules": [{**launch, "start": "61 * * * *"}]}}}
    client.CustomObjectsApi(clients["central"]).patch_namespaced_custom_object(
        "tierra.dev", "v1alpha1", namespace, "inferenceservices", "planned", broken
    )
    placed = wait_for(
        lambda: (
            c
            if (c := condition(get_service(clients, namespace, "planned"), "Placed")).get("reason")
            == "InvalidSpec"
            else None
        ),
        timeout=30,
        what="Placed=False, reason InvalidSpec",
    )
    assert placed["status"] == "False"
    assert "not a cron expression (Bad minute)" in placed["message"], placed
    wait_event(clients, wait_for, namespace, "planned", "InvalidSpec")
    time.sleep(3)
    assert desired_in_members(clients, "planned") == 1
    assert len(running_pods(clients, "central", "planned")) == 1


def wait_settled(
    clients: Clients, namespace: str, name: str, quiet: float, at_most: int | None = None
) -> int:
    """The recommended count once it has not changed for ``quiet`` seconds (at most 150 s),
    and is at most ``at_most`` if that is given."""
    value, since = recommended(clients, namespace, name), time.monotonic()
    deadline = since + 150.0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = recommended(clients, namespace, name)
        if now != value:
            value, since = now, time.monotonic()
        elif (
            value is not None
            and (at_most is None or value <= at_most)
            and time.monotonic() - since >= quiet
        ):
            return value
    bound = "" if at_most is None else f" at {at_most} or fewer"
    pytest.fail(f"{name}: the recommendation did not settle{bound} (last {value})")


def wait_serving(twin: TwinProcess, wait_for: WaitFor, namespace: str, name: str, n: int) -> None:
    """Wait until the twin's model servers of the service serve (ready pods, started)."""

    def serving() -> bool:
        pools = twin.state().get("pools", [])
        return sum(p["ready"] for p in pools if p.get("service") == f"{namespace}/{name}") >= n

    wait_for(serving, timeout=30, what=f"{n} model servers of {name} serving in the twin")


def twin_waiting(twin: TwinProcess, namespace: str, name: str) -> float:
    pools = [p for p in twin.state().get("pools", []) if p.get("service") == f"{namespace}/{name}"]
    return float(sum(p.get("waiting", 0) for p in pools))


def test_stopping_prometheus_holds_replicas_and_reports_metrics_unavailable(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
    prometheus: PrometheusServer,
) -> None:
    wait_pool_free(clients, wait_for, "central", "h100", 6)
    create(clients, scaled_service("held", namespace))
    wait_placed(clients, wait_for, namespace, "held")
    wait_serving(twin, wait_for, namespace, "held", 1)
    twin.set_load(namespace, "held", rate=8.0, prompt_tokens=500, output_tokens=100)
    wait_for(
        lambda: (recommended(clients, namespace, "held") or 0) >= 3,
        timeout=60,
        what="scaled up under load",
    )
    prometheus.stop()
    try:
        twin.set_load(namespace, "held", rate=0.0)  # the load goes away: with no metrics, unseen
        body = wait_condition(
            clients, wait_for, namespace, "held", "MetricsAvailable", status="False"
        )
        assert condition(body, "MetricsAvailable")["reason"] == "PrometheusUnavailable"
        assert body["status"]["autoscaling"]["mode"] == "hold"
        wait_event(clients, wait_for, namespace, "held", "MetricsUnavailable", "Warning")
        # Never scale down on missing data: the count holds for longer than the scale-down delay.
        held = recommended(clients, namespace, "held")
        assert held is not None and held >= 3
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            assert recommended(clients, namespace, "held") == held
            assert desired_in_members(clients, "held") == held
            time.sleep(1)
    finally:
        prometheus.start()
    wait_for(
        lambda: (
            condition(get_service(clients, namespace, "held"), "MetricsAvailable").get("status")
            == "True"
        ),
        timeout=30,
        what="MetricsAvailable=True once Prometheus is back",
    )
    wait_event(clients, wait_for, namespace, "held", "MetricsAvailable")


def test_a_prometheus_scraping_less_often_than_configured_is_measured_and_windowed_for(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The central Tier's own Prometheus scrapes every 70 s while the Tier says nothing (15 s
    assumed): a 1 m window would hold one sample, and no rate() answer. The operator measures
    the interval from the pods' samples, sizes the windows for it, and the status names the
    field that says so; set to 70 s, the remark goes."""
    custom = client.CustomObjectsApi(clients["central"])

    def tier_metrics(metrics: dict[str, Any] | None) -> None:
        custom.patch_cluster_custom_object(
            "tierra.dev", "v1alpha1", "tiers", "central", {"spec": {"metrics": metrics}}
        )

    slow = PrometheusServer(
        tmp_path_factory.mktemp("slow-prometheus"), [ScrapeTarget(twin.address)], 70.0
    )
    slow.start()
    try:
        tier_metrics({"prometheusURL": slow.url})
        wait_pool_free(clients, wait_for, "central", "h100", 6)
        create(clients, scaled_service("slow", namespace))
        wait_placed(clients, wait_for, namespace, "slow")
        wait_serving(twin, wait_for, namespace, "slow", 1)
        twin.set_load(namespace, "slow", rate=2.0, prompt_tokens=500, output_tokens=100)
        body = wait_for(
            lambda: (
                (b := get_service(clients, namespace, "slow")) is not None
                and condition(b, "MetricsAvailable").get("reason") == "ScrapeIntervalMeasured"
                and ((b["status"].get("metrics") or {}).get("arrivalRate") or 0.0) >= 1.0
                and b
            ),
            timeout=330,
            what="MetricsAvailable reason ScrapeIntervalMeasured with the arrivals",
        )
        said = condition(body, "MetricsAvailable")
        assert said["status"] == "True"
        assert "every 70 s" in said["message"] and "not every 15 s" in said["message"]
        assert "[280s]" in said["message"]
        assert "spec.metrics.scrapeIntervalSeconds" in said["message"]
        assert body["status"]["metrics"]["arrivalRate"] <= 3.0
        said_by_events = [
            (e.reason, e.type)
            for e in wait_event(clients, wait_for, namespace, "slow", "ScrapeIntervalMeasured")
            if e.reason in ("ScrapeIntervalMeasured", "MetricsIncomplete")
        ]
        assert said_by_events == [("ScrapeIntervalMeasured", "Normal")]
        tier_metrics({"prometheusURL": slow.url, "scrapeIntervalSeconds": 70})
        wait_for(
            lambda: (
                condition(get_service(clients, namespace, "slow"), "MetricsAvailable").get("reason")
                == "MetricsObserved"
            ),
            timeout=90,
            what="the remark gone once the Tier says 70 s",
        )
    finally:
        twin.clear_load(namespace, "slow")
        tier_metrics(None)
        slow.stop()


def test_a_full_pool_spills_into_the_next_allowed_tier(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
) -> None:
    """Three Orin nodes at the edge; load that needs more than the five replicas it may have
    puts two on regional L4, and the ScalingLimited condition and a Warning say the count is
    held at maxReplicas."""
    wait_pool_free(clients, wait_for, "edge", "orin", 3)
    wait_pool_free(clients, wait_for, "regional", "l4", 2)
    serving_on_the_edge(
        clients,
        wait_for,
        twin,
        namespace,
        "spill",
        scaling={"minReplicas": 1, "maxReplicas": 5, "scaleDownDelaySeconds": 300},
    )
    twin.set_load(namespace, "spill", rate=30.0, prompt_tokens=500, output_tokens=100)
    body = wait_for(
        lambda: (
            (b := get_service(clients, namespace, "spill")) is not None
            and (b["status"].get("autoscaling") or {}).get("recommendedReplicas") == 5
            and {p["tier"] for p in b["status"].get("placements", [])} == {"edge", "regional"}
            # (a status can carry the new count beside the placements of the one before)
            and sum(p["replicas"] for p in b["status"]["placements"]) == 5
            and b
        ),
        timeout=60,
        what="five replicas recommended, spilling into regional",
    )
    placed = {(p["tier"], p["pool"]): p["replicas"] for p in body["status"]["placements"]}
    assert placed == {("edge", "orin"): 3, ("regional", "l4"): 2}
    assert condition(body, "Placed")["status"] == "True"
    limited = wait_for(
        lambda: (
            (c := condition(get_service(clients, namespace, "spill"), "ScalingLimited"))
            and c["status"] == "True"
            and c
        ),
        timeout=30,
        what="ScalingLimited=True",
    )
    assert limited["reason"] == "MaxReplicas"
    assert "held at maxReplicas 5" in limited["message"]
    warnings = wait_for(
        lambda: [e for e in events(clients, namespace, "spill") if e.reason == "ScalingLimited"],
        timeout=30,
        what="a ScalingLimited Event",
    )
    assert len(warnings) == 1 and warnings[0].type == "Warning"
    assert "held at maxReplicas 5" in warnings[0].message
    wait_for(
        lambda: (
            len(running_pods(clients, "edge", "spill")) == 3
            and len(running_pods(clients, "regional", "spill")) == 2
        ),
        what="3 pods at the edge and 2 in regional Running (none left Pending)",
    )
    twin.clear_load(namespace, "spill")


def test_scaled_to_zero_wakes_on_the_first_requests_through_a_gateway_signal(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
) -> None:
    """At zero there are no pods and no runtime series: the gateway that holds the requests
    (the twin plays it) exports how many wait, and ``custom`` queries add it to the queue."""
    wait_pool_free(clients, wait_for, "central", "h100", 3)
    waiting = (
        "(sum(vllm:num_requests_waiting{{selector}}) or vector(0))"
        " + (sum(tierra_gateway_requests_waiting{{selector}}) or vector(0))"
    )
    create(
        clients,
        scaled_service(
            "wake",
            namespace,
            runtime={
                "image": "vllm/vllm-openai:v0.10.0",
                "metricsPreset": "custom",
                "customQueries": {
                    "queueDepth": waiting,
                    "running": "sum(vllm:num_requests_running{{selector}})",
                    "arrivalRate": "sum(rate(vllm:request_success_total{{selector}}[1m]))",
                },
            },
            scaling={
                "minReplicas": 0,
                "maxReplicas": 3,
                "scaleToZero": True,
                # (idle this long goes to zero, whatever the scale-down delay)
                "scaleDownDelaySeconds": 600,
                "scaleToZeroIdleSeconds": 15,
            },
        ),
    )
    wait_for(
        lambda: (
            (status(clients, namespace, "wake").get("autoscaling") or {}).get("reason", "")
            == "keep 0: idle at zero"
        ),
        timeout=60,
        what="idle at zero",
    )
    assert desired_in_members(clients, "wake") == 0

    twin.set_load(namespace, "wake", rate=2.0, prompt_tokens=500, output_tokens=100)
    woken = wait_for(
        lambda: (
            (scaled := status(clients, namespace, "wake").get("autoscaling") or {})
            and (scaled.get("recommendedReplicas") or 0) >= 1
            and scaled
        ),
        timeout=30,
        what="activation by the first requests",
    )
    assert "activation" in woken["reason"], woken
    wait_for(
        lambda: len(running_pods(clients, "central", "wake")) >= 1,
        timeout=60,
        what="a pod Running after the wake-up",
    )
    wait_for(
        lambda: (
            twin.state()["loads"][f"{namespace}/wake"]["held"] == 0
            and any(
                p["completed"] > 0
                for p in twin.state()["pools"]
                if p["service"] == f"{namespace}/wake"
            )
        ),
        timeout=60,
        what="the held requests served",
    )

    twin.clear_load(namespace, "wake")
    wait_for(
        lambda: (
            recommended(clients, namespace, "wake") == 0
            and desired_in_members(clients, "wake") == 0
        ),
        timeout=180,
        what="back to zero once idle for scaleToZeroIdleSeconds",
    )
    assert "scale to zero" in (status(clients, namespace, "wake").get("lastScale") or {}).get(
        "reason", ""
    )


def p95_recovery(
    prometheus: PrometheusServer, name: str, slo_ms: float, started: float, span: float
) -> float | None:
    """Seconds from ``started`` (wall clock) until the p95 latency of the requests completed
    in each trailing 5 s window is within the SLO and stays there for the rest of ``span``;
    None when it never does. From Prometheus's own samples (a subquery at 1 s)."""
    selector = f'tierra_dev_inference_service="{name}"'
    expr = (
        "histogram_quantile(0.95, sum by (le) (increase("
        f"vllm:e2e_request_latency_seconds_bucket{{{selector}}}[5s])))[{int(span)}s:1s]"
    )
    series = prometheus.query(expr)
    points = sorted(
        (float(t), float(v))
        for s in series
        for t, v in s.get("values", [])
        if float(t) >= started and v not in ("NaN", "+Inf")
    )
    late = [t for t, v in points if v * 1000 > slo_ms]
    if not points or (late and late[-1] >= points[-1][0]):
        return None
    return (late[-1] if late else started) - started


def test_a_prefill_heavy_burst_is_back_within_the_slo_after_one_startup(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
    prometheus: PrometheusServer,
) -> None:
    """Code completion: 4,000-token prompts, 20-token answers (0.55 s alone on a replica).
    From 1 request/s to a burst of 12/s: the first decision after it asks for what the burst
    needs (the arrivals now: completions plus the growth of what is in the system, even
    though under processor sharing the overload shows as running, not waiting), so the p95
    latency of what completes is back within the 2 s SLO after the 5 s start-up, one
    decision, the backlog of those seconds drained (the queue signal drains it within the
    start-up time), the 5 s window the p95 is measured over (and the scrape its range may
    span), a scrape and a reconcile.
    (Issue 14 asks for start-up + one decision; what completes in that time includes the
    requests that queued before the new replicas served, so this test bounds the figure with
    the drain; benchmarks/autoscale.py --burst prints it.)"""
    wait_pool_free(clients, wait_for, "central", "h100", 12)
    create(
        clients,
        scaled_service(
            "burst",
            namespace,
            scaling={"minReplicas": 1, "maxReplicas": 12, "scaleDownDelaySeconds": 60},
        ),
    )
    wait_placed(clients, wait_for, namespace, "burst")
    wait_serving(twin, wait_for, namespace, "burst", 1)
    twin.set_load(namespace, "burst", rate=1.0, prompt_tokens=4000, output_tokens=20)
    wait_for(
        lambda: (
            condition(get_service(clients, namespace, "burst"), "SLOMet").get("status") == "True"
        ),
        timeout=90,
        what="SLOMet=True at 1 request/s",
    )
    time.sleep(10)
    started = time.time()
    twin.set_load(namespace, "burst", rate=12.0, prompt_tokens=4000, output_tokens=20)
    time.sleep(45)
    recovered = p95_recovery(prometheus, "burst", 2000.0, started, 45)
    print(f"burst -> p95 (5 s window) back within the SLO for good: {recovered} s")
    twin.clear_load(namespace, "burst")
    # (slack: a scrape, and the twin, Prometheus and the operator sharing a loaded CI machine's
    # cores; measured 16.8-20.5 s here)
    startup, decision, slack = 5.0, METRICS_INTERVAL_SECONDS, SCRAPE_SECONDS + 5.0
    # The backlog builds until the new replicas serve (decision + start-up) and the queue
    # signal drains it within one start-up; increase()[5s] over 1 s scrapes spans up to 6 s.
    drain = decision + startup
    window = 5.0 + SCRAPE_SECONDS
    assert recovered is not None, "the p95 never came back within the SLO"
    assert recovered <= startup + decision + drain + window + slack, recovered
    # and it stayed: the count asked for was enough (no second wave of scale-ups needed)
    assert (recommended(clients, namespace, "burst") or 0) >= 7


def test_a_ttft_goal_the_variant_cannot_meet_is_a_condition_and_a_warning(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
) -> None:
    """A variant profiled at 1,000 prompt tokens/s serving 2,000-token prompts: the mean
    prompt alone takes 2 s to prefill, so a 1 s TTFT goal is out of reach there at any
    count. The status says so (SLOReachable False, with the floor), a Warning Event says it
    once, and the p95 TTFT over the goal is not fed back into more replicas."""
    wait_pool_free(clients, wait_for, "central", "h100", 6)
    create(
        clients,
        scaled_service(
            "long-prompts",
            namespace,
            variants=[fast_variant("h100", "nvidia-gpu", "H100", prefillTokensPerSecond=1000)],
            slo={"latencyP95Ms": 20000, "ttftP95Ms": 1000, "maxQueuePerReplica": 4},
        ),
    )
    wait_placed(clients, wait_for, namespace, "long-prompts")
    wait_serving(twin, wait_for, namespace, "long-prompts", 1)
    twin.set_load(namespace, "long-prompts", rate=1.0, prompt_tokens=2000, output_tokens=20)

    def floor_ms(c: dict[str, Any]) -> int | None:
        found = re.search(r"p95 TTFT floor ([\d,]+) ms", c.get("message") or "")
        return int(found[1].replace(",", "")) if found else None

    # About 2 s once the size is measured (the token counters' ratio less what requests in
    # flight added). It is measured over a minute of completions: the first verdict can come
    # from a size still on its way up, already over the goal but short of 2,000 tokens, and
    # the message follows the size at the next status refresh.
    said = wait_for(
        lambda: (
            (c := condition(get_service(clients, namespace, "long-prompts"), "SLOReachable")).get(
                "status"
            )
            == "False"
            and (floor_ms(c) or 0) >= 1600
            and c
        ),
        timeout=150,
        what="SLOReachable=False with a floor of about 2 s",
    )
    assert said["reason"] == "OutOfReach"
    assert (floor_ms(said) or 0) <= 2500, said["message"]
    assert "on h100 in central > SLO 1,000 ms" in said["message"], said["message"]
    wait_for(
        lambda: (
            "not chased: out of reach on h100"
            in (status(clients, namespace, "long-prompts").get("autoscaling") or {}).get(
                "reason", ""
            )
        ),
        timeout=60,
        what="the p95 TTFT over the goal said in the reason, not chased",
    )
    said_by_events = wait_event(clients, wait_for, namespace, "long-prompts", "SLOOutOfReach")
    warnings = [e for e in said_by_events if e.reason == "SLOOutOfReach"]
    assert len(warnings) == 1 and warnings[0].type == "Warning", warnings
    twin.clear_load(namespace, "long-prompts")


def tail_prompt_trace(path: Path, seconds: float = 1200.0) -> Path:
    """Poisson arrivals at 2 req/s, one prompt in ten of 4,000 tokens and the others of 300,
    20 output tokens each, in the Azure trace's CSV."""
    rng = random.Random(7)
    start = datetime.datetime(2026, 1, 1)
    lines, t = ["TIMESTAMP,ContextTokens,GeneratedTokens"], 0.0
    while (t := t + rng.expovariate(2.0)) < seconds:
        prompt = 4000 if rng.random() < 0.1 else 300
        stamp = start + datetime.timedelta(seconds=t)
        lines.append(f"{stamp:%Y-%m-%d %H:%M:%S.%f},{prompt},20")
    path.write_text("\n".join(lines) + "\n")
    return path


# (a round is a start-up and two latency windows, about 2 min: the start's over-ask, the
# feedback's doubling, its verdict; more when a dip or the arrivals' noise defer it)
@pytest.mark.timeout(1260)
def test_a_ttft_the_longest_prompts_alone_miss_is_not_chased_with_replicas(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
    tmp_path: Path,
    operator: Any,
) -> None:
    """One prompt in ten has 4,000 tokens: 1 s of prefill alone at the profiled 4,000 tokens/s,
    over a 400 ms TTFT goal at any count, while the mean prompt's floor (670 tokens, 170 ms)
    is within reach. The p95 TTFT at about twice the goal, the feedback doubles the replicas
    (a test of 1.5x per request arriving that the arrival rate's own noise does not defer);
    once they serve and the p95 TTFT is where it was, the reason says the goal is not chased,
    and the count falls back from the feedback's to what the arrivals need (it went on
    doubling to maxReplicas). A restarted operator keeps the verdict (from the scale
    decision's status signals) instead of testing it again with more replicas."""
    wait_pool_free(clients, wait_for, "central", "h100", 16)
    create(
        clients,
        scaled_service(
            "tail-prompts",
            namespace,
            variants=[fast_variant("h100", "nvidia-gpu", "H100", prefillTokensPerSecond=4000)],
            slo={"latencyP95Ms": 20000, "ttftP95Ms": 400, "maxQueuePerReplica": 16},
            scaling={"minReplicas": 1, "maxReplicas": 16, "scaleDownDelaySeconds": 20},
        ),
    )
    wait_placed(clients, wait_for, namespace, "tail-prompts")
    wait_serving(twin, wait_for, namespace, "tail-prompts", 1)
    twin.replay_trace(
        namespace, "tail-prompts", loop=True, path=tail_prompt_trace(tmp_path / "t.csv")
    )

    decisions: list[str] = []

    def reason() -> str:
        autoscaling = status(clients, namespace, "tail-prompts").get("autoscaling") or {}
        why = str(autoscaling.get("reason", ""))
        if why.startswith("scale") and (not decisions or decisions[-1] != why):
            decisions.append(why)
        return why

    # (the size is measured over a minute; feedback waits for the new replicas and two latency
    # windows, 5 s + 120 s, after each scale-up and 120 s after a backlog, and the p95 TTFT is
    # judged then: about 4.5 min on a quiet machine)
    try:
        said = wait_for(
            lambda: "more replicas did not bring it closer" in (why := reason()) and why,
            what="the p95 TTFT not chased: more replicas did not bring it closer",
            timeout=900,
        )
    except pytest.fail.Exception as failed:
        raise AssertionError(f"{failed}; the scale decisions: {decisions}") from None
    assert "p95 TTFT" in said and "not chased" in said, said
    tested = recommended(clients, namespace, "tail-prompts") or 0
    counts = []
    for _ in range(10):
        reason()
        counts.append(recommended(clients, namespace, "tail-prompts") or 0)
        time.sleep(3.0)
    print(f"tail prompts: {said!r}; counts after {counts}; the scale decisions: {decisions}")
    # (2 req/s of 0.7 s requests: the arrivals alone need a few replicas, not 16)
    assert max(counts) < 16 and counts[-1] <= 8, (counts, decisions)
    assert "latency:" not in decisions[-1] or counts[-1] < tested, decisions
    kept = (status(clients, namespace, "tail-prompts").get("lastScale") or {}).get("signals")
    assert "state.unhelped.ttft.ratio" in (kept or {}), kept

    operator.restart()
    before = len(decisions)
    said_after = []
    for _ in range(20):
        said_after.append(reason())
        time.sleep(3.0)
    # (without the verdict the first sample after the restart, settled and over the goal, asks
    # for replicas again; the p95 TTFT dips under the goal now and then, when fewer long
    # prompts came)
    again = [d for d in decisions[before:] if "latency:" in d]
    assert not again, decisions[before:]
    assert any("more replicas did not bring it closer" in why for why in said_after), said_after
    twin.clear_load(namespace, "tail-prompts")


def test_a_service_moves_off_a_variant_that_cannot_serve_its_requests_within_the_slo(
    fleet_tiers: None,
    clients: Clients,
    namespace: str,
    wait_for: WaitFor,
    twin: TwinProcess,
) -> None:
    """Edge first (the latency objective), on an Orin profiled at 900 prompt tokens/s, for an
    800 ms TTFT goal. Once the autoscaler has measured 800-token prompts (889 ms of prefill
    there), the Orin is out of reach at any count: status and a Warning say so, placement
    rules it out, and the service moves to a regional L4 make-before-break; with the Orin
    gone, the goal is within reach again, and an Event says that too."""
    wait_pool_free(clients, wait_for, "edge", "orin", 2)
    wait_pool_free(clients, wait_for, "regional", "l4", 2)
    serving_on_the_edge(
        clients,
        wait_for,
        twin,
        namespace,
        "orin-first",
        orin={"prefillTokensPerSecond": 900},
        slo={"latencyP95Ms": 20000, "ttftP95Ms": 800, "maxQueuePerReplica": 4},
        scaling={"minReplicas": 1, "maxReplicas": 2, "scaleDownDelaySeconds": 300},
    )
    twin.set_load(namespace, "orin-first", rate=0.5, prompt_tokens=800, output_tokens=20)
    moved = wait_for(
        lambda: (
            (b := get_service(clients, namespace, "orin-first")) is not None
            and {p["tier"] for p in b["status"].get("placements", [])} == {"regional"}
            and condition(b, "SLOReachable").get("status") == "True"
            and b
        ),
        timeout=180,
        what="moved to regional, SLOReachable=True",
    )
    wait_event(clients, wait_for, namespace, "orin-first", "SLOOutOfReach", "Warning")
    wait_event(clients, wait_for, namespace, "orin-first", "SLOWithinReach", "Normal")
    record = moved["status"]["migrations"][-1]
    assert record["trigger"] == "SLO", record
    assert record["from"] == ["edge/orin/orin"], record
    assert "p95 TTFT floor" in record["message"], record
    assert "-token prompt alone" in record["message"], record
    wait_for(
        lambda: not children(clients, "edge", "orin-first"),
        timeout=60,
        what="the Orin Deployment removed once the L4 serves",
    )
    twin.clear_load(namespace, "orin-first")
