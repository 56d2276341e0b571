"""The SLO autoscaler's shell: sample each service's metrics, ask the pure recommender.

Every ``interval`` seconds the reconciler hands each placed service to :meth:`Autoscaler.step`,
all of them in one :meth:`Autoscaler.sampling_pass`. A step samples the Prometheus of every
tier the service runs in (``Tier.spec.metrics``, else the operator-wide default) with the
runtime's preset queries -- in a pass, from one query per metric and Prometheus for every
service, which the first step to need it asks (a fleet of a thousand services costs a dozen
queries per pass, not twelve thousand) -- combines the tiers' samples, and
calls :func:`tierra.core.autoscale.recommend` with the state it kept from the last call (after
a restart, the state :func:`tierra.core.autoscale.restore_state` rebuilds from the service's
status: the recommendation, the last scale decision and the state it carries in its signals). The
outcome says whether the reconciler should act (a new count, a mode or availability change)
and which Events to post. Placement of the count -- including spilling into another pool or
tier when the current ones are full -- is the reconciler's job, through the same ``place``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tierra.api.inference_service import InferenceService, MetricsPreset
from tierra.api.tier import Tier
from tierra.core.autoscale import (
    API_MAX_REPLICAS,
    DEFAULT_PARAMS,
    Recommendation,
    RunningPlacement,
    ScalerParams,
    ScalerState,
    ScalingInputs,
    ServiceSample,
    Signals,
    TierSample,
    combine_samples,
    primary_variant,
    recommend,
    restore_state,
    scheduled_floor,
    service_scaling_inputs,
    status_signals,
)
from tierra.core.metrics_presets import (
    DEFAULT_SCRAPE_INTERVAL_SECONDS,
    EveryService,
    every_service_queries,
    queries_for,
    rate_queries_for,
    rate_window,
    rate_window_seconds,
    service_key,
)
from tierra.core.scrape_timing import interval_in_effect, measured_interval, timing_query
from tierra.core.slo_reach import reach_verdict
from tierra.core.status import ScalingReport, epoch_seconds, limit_verdict, slo_verdict
from tierra.settings import AutoscalingSettings
from tierra.shell.prometheus import (
    MetricSample,
    MetricsUnavailable,
    PrometheusClient,
    metric_sample,
)

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 5.0
"""How often each service's metrics are sampled (``--metrics-interval``)."""
LIMITED_EVENT_GAP_SECONDS = 600.0
"""A ScalingLimited Warning is posted when the need goes above maxReplicas, at most once in
this long."""
LIMITED_CLEAR_SECONDS = 60.0
"""ScalingLimited turns False once the need has stayed within maxReplicas this long: a need
that hovers about the bound would otherwise turn it (a status write) at every sample."""
SCRAPE_MEASURE_SECONDS = 600.0
"""How often the pods' scrape interval is measured again (``tierra.core.scrape_timing``)."""
SCRAPE_MEASURE_RETRY_SECONDS = 15.0
"""How soon a measurement that found too few samples (pods just scraped once) is tried again."""
SCRAPE_MEASURE_ERROR_RETRY_SECONDS = 60.0
"""How soon a measurement whose query failed is tried again: the sample's own queries say what
is wrong meanwhile, and a Prometheus that times out would hold up every step's sample."""


def _rfc3339(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(frozen=True)
class ScaleEvent:
    reason: str
    message: str
    type: str = "Normal"


@dataclass(frozen=True)
class StepOutcome:
    """What one step decided: reconcile the service? post which Events?"""

    recommendation: Recommendation
    reconcile: bool
    events: tuple[ScaleEvent, ...] = ()
    report_only: bool = False
    """The reconcile is only to write what the status says (e.g. why there are no metrics,
    now that the service is placed): nothing to act on, it can wait behind urgent work."""


@dataclass
class _ServiceScaling:
    state: ScalerState = field(default_factory=ScalerState)
    recommendation: Recommendation | None = None
    problem: tuple[str, str] | None = None
    unmetered: Hashable | None = None
    """The step's inputs when it last found no metrics source: until they change, a step would
    hold the same count again, so it is skipped (1,000 unmetered services cost the operator
    about a tenth of its CPU, idle or not)."""
    metrics: dict[str, Any] | None = None
    last_scale: dict[str, Any] | None = None
    kept_state: tuple[dict[str, float], float] | None = None
    """What a restart needs of the recommender's state (``status_signals``) and when: written
    with every status (``status.autoscaling.state``), not only with a scale decision, so a
    burst that moved no count is not forgotten by a restart."""
    status_written_at: float = 0.0
    slo_met: bool | None = None
    reach: tuple[bool | None, str, str] | None = None
    """The SLOReachable condition last judged (None: not yet)."""
    unreachable: frozenset[tuple[str, str, str]] | None = None
    """(metric, variant, tier) out of reach when last judged (None: not judged since start)."""
    reach_was_false: bool = False
    """SLOReachable was False when last judged, or in status at start: an Event was posted."""
    limit: tuple[bool | None, str, str] | None = None
    """The ScalingLimited condition last judged (None: not yet)."""
    limited_event_at: float | None = None
    """When the last ScalingLimited Warning was posted (at start: when status said True)."""
    within_max_since: float | None = None
    """Since when the need has been within maxReplicas while ScalingLimited is True."""
    measured_scrape: float | None = None
    """The pods' scrape interval as last measured from their samples' timestamps."""
    scrape_measure_at: float = 0.0
    """When the scrape interval is to be measured next."""
    scrape_note: str | None = None
    """Why the windows are sized for a measured interval rather than the configured one."""
    rates_missing_since: float | None = None
    """Since when the samples have had requests running but no windowed value at all."""
    incomplete: str | None = None
    """Why the metrics are incomplete (the MetricsAvailable message), None when they are not."""


class Autoscaler:
    """Per-service recommender state and the Prometheus clients (one per URL)."""

    def __init__(
        self,
        default_url: str | None = None,
        *,
        timeout_seconds: float = 2.0,
        clock: Callable[[], float] = time.time,
        default_scrape_interval: float = DEFAULT_SCRAPE_INTERVAL_SECONDS,
        status_refresh_seconds: float = AutoscalingSettings.status_refresh_seconds,
    ) -> None:
        self.default_url = default_url
        self.default_scrape_interval = default_scrape_interval
        self.status_refresh_seconds = status_refresh_seconds
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self._services: dict[str, _ServiceScaling] = {}
        self._clients: dict[str, PrometheusClient] = {}
        self._session: aiohttp.ClientSession | None = None
        self._batches: dict[tuple[str, str, bool, str], asyncio.Future[_Answer]] | None = None
        """Within a pass (``sampling_pass``): the answer for every service, per Prometheus,
        preset, tier split and rate window."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._clients.clear()

    def forget(self, key: str) -> None:
        self._services.pop(key, None)

    def recommended(self, key: str) -> int | None:
        """The replicas last recommended for ``key`` (None before its first step)."""
        scaling = self._services.get(key)
        if scaling is None or scaling.recommendation is None:
            return None
        return scaling.recommendation.replicas

    def _client(self, url: str) -> PrometheusClient:
        client = self._clients.get(url)
        if client is None:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            client = PrometheusClient(
                url,
                self.timeout_seconds,
                session=self._session,
                # (a sample's time on the autoscaler's own clock, which staleness is judged by)
                clock=lambda: datetime.datetime.fromtimestamp(self.clock(), datetime.UTC),
            )
            self._clients[url] = client
        return client

    def _url(self, tier: Tier | None) -> str | None:
        if tier is not None and tier.spec.metrics is not None:
            return tier.spec.metrics.prometheus_url
        return self.default_url

    def _scrape_interval(
        self, placements: list[RunningPlacement], tiers: Mapping[str, Tier]
    ) -> float:
        """The longest scrape interval of the Prometheus instances the service's tiers use
        (the windows of every query, and the recommender's, are sized for it)."""
        return max(
            (
                float(tier.spec.metrics.scrape_interval_seconds)
                if (tier := tiers.get(p.tier)) is not None and tier.spec.metrics is not None
                else self.default_scrape_interval
                for p in placements
            ),
            default=self.default_scrape_interval,
        )

    def _sources(
        self, placements: list[RunningPlacement], tiers: Mapping[str, Tier]
    ) -> tuple[dict[str, list[str]], tuple[str, str] | None]:
        """The Prometheus URLs to ask and for which of the placements' tiers (the default URL
        for none: all of the service's pods), or why there is no source (reason, message)."""
        by_url: dict[str, list[str]] = {}
        unconfigured = []
        for name in dict.fromkeys(p.tier for p in placements):
            url = self._url(tiers.get(name))
            if url is None:
                unconfigured.append(name)
            else:
                by_url.setdefault(url, []).append(name)
        if unconfigured:
            return {}, (
                "NoMetricsSource",
                f"no Prometheus for tier(s) {', '.join(unconfigured)}: set the Tier's "
                "spec.metrics.prometheusURL or run the operator with --prometheus-url",
            )
        if not by_url:
            if self.default_url is None:
                return {}, ("NoMetricsSource", "not placed, and no default Prometheus")
            by_url[self.default_url] = []
        return by_url, None

    def placed(
        self, key: str, placements: list[RunningPlacement], tiers: Mapping[str, Tier]
    ) -> None:
        """The reconciler has just placed ``key`` on ``placements``. A missing metrics source
        is known without asking anyone, so the status written now says why for these
        placements (not "not placed"), and no second write follows to reword it."""
        scaling = self._services.get(key)
        if scaling is None or scaling.problem is None or scaling.problem[0] != "NoMetricsSource":
            return
        _, problem = self._sources(placements, tiers)
        if problem is not None:
            scaling.problem = problem

    async def observe(
        self,
        service: InferenceService,
        placements: list[RunningPlacement],
        tiers: Mapping[str, Tier],
        scrape: float,
    ) -> tuple[ServiceSample | None, tuple[str, str] | None]:
        """The service's metrics over its tiers, or why there are none (reason, message), by
        windowed queries that hold four ``scrape`` intervals."""
        jobs, problem = self._jobs(placements, tiers)
        if problem is not None:
            return None, problem
        try:
            samples = await asyncio.gather(
                *(self._sample(url, service, tier, scrape) for url, tier in jobs)
            )
        except MetricsUnavailable as error:
            return None, ("PrometheusUnavailable", error.reason)
        combined = combine_samples(list(samples))
        if combined is None:
            return None, ("NoData", "Prometheus returned nothing")
        return combined, None

    def _jobs(
        self, placements: list[RunningPlacement], tiers: Mapping[str, Tier]
    ) -> tuple[list[tuple[str, str | None]], tuple[str, str] | None]:
        """The (Prometheus URL, tier or None for all the service's pods) pairs to query, or why
        there are none. One Prometheus sees every tier: one query over all the service's pods.
        Several: each tier's pods from its own, combined."""
        by_url, problem = self._sources(placements, tiers)
        if problem is not None:
            return [], problem
        if len(by_url) == 1:
            return [(next(iter(by_url)), None)], None
        return [(url, tier) for url, names_ in by_url.items() for tier in names_], None

    async def _measure_scrape(
        self,
        scaling: _ServiceScaling,
        service: InferenceService,
        placements: list[RunningPlacement],
        tiers: Mapping[str, Tier],
    ) -> None:
        """Measure how often the pods are scraped when it is due; a failed query leaves the
        last measurement (the sample's own queries say what is wrong)."""
        now = self.clock()
        if now < scaling.scrape_measure_at:
            return
        jobs, _ = self._jobs(placements, tiers)
        queries = [(url, q) for url, tier in jobs if (q := timing_query(service, tier))]
        if not queries:
            scaling.scrape_measure_at = now + SCRAPE_MEASURE_SECONDS
            return
        results = await asyncio.gather(
            *(self._client(url).sample_times(q) for url, q in queries), return_exceptions=True
        )
        failed = False
        for error in results:
            if isinstance(error, BaseException) and not isinstance(error, MetricsUnavailable):
                raise error
            failed = failed or isinstance(error, MetricsUnavailable)
        # (each Prometheus its own: the slowest sizes the windows, as a configured one would)
        measured = max(
            (m for r in results if isinstance(r, list) and (m := measured_interval(r))),
            default=None,
        )
        if measured is not None:
            scaling.measured_scrape = measured
        scaling.scrape_measure_at = now + (
            SCRAPE_MEASURE_ERROR_RETRY_SECONDS
            if failed
            else SCRAPE_MEASURE_SECONDS
            if measured is not None
            else SCRAPE_MEASURE_RETRY_SECONDS
        )

    @contextlib.asynccontextmanager
    async def sampling_pass(self) -> AsyncIterator[None]:
        """A pass over the services: within it, the services of a built-in preset are sampled
        together, one query per metric and Prometheus (``every_service_queries``), asked by
        the first step that needs it; outside one, each step asks for its own service."""
        self._batches = {}
        try:
            yield
        finally:
            batches, self._batches = self._batches, None
            for batch in batches.values():
                batch.cancel()  # (only one that no step awaited is still running)

    async def _sample(
        self, url: str, service: InferenceService, tier: str | None, scrape: float
    ) -> TierSample:
        """The preset's queries and the rate signals' (token rates, mean running, completions
        now), at once, with rate windows for pods scraped every ``scrape`` seconds: the
        pass's answer for every service when there is one, else the service's own."""
        client = self._client(url)
        preset = service.spec.runtime.metrics_preset
        by_tier = tier is not None
        batches = self._batches
        if batches is not None and preset != "custom":
            group = (url, preset, by_tier, rate_window(scrape))
            batch = batches.get(group)
            if batch is None:
                batch = asyncio.ensure_future(_every_service(client, preset, by_tier, scrape))
                batches[group] = batch
            # (shielded: one step cancelled does not cancel the others' answer)
            answer, observed_at = await asyncio.shield(batch)
            meta = service.metadata
            key = service_key(meta.namespace or "default", meta.name, tier)
            picked = {name: series.get(key) for name, series in answer.items()}
            return _tier_sample(metric_sample(picked, observed_at), picked)
        named = rate_queries_for(service, tier, scrape).named()
        sample, values = await asyncio.gather(
            client.sample_metrics(queries_for(service, tier, scrape)),
            asyncio.gather(*(client.query(query) for query in named.values())),
        )
        extra = dict(zip(named, values, strict=True))
        return _tier_sample(sample, extra)

    async def step(
        self,
        key: str,
        service: InferenceService,
        placements: list[RunningPlacement],
        ready_replicas: int,
        tiers: Mapping[str, Tier],
    ) -> StepOutcome:
        """Sample and recommend for one service."""
        scaling = self._services.get(key)
        if scaling is None:  # a new service, or the operator restarted: what status kept
            scaling = self._services[key] = _started(service, self.clock())
        inputs_key = self._inputs_key(service, placements, ready_replicas, tiers)
        if scaling.recommendation is not None and scaling.unmetered == inputs_key:
            return StepOutcome(scaling.recommendation, reconcile=False)
        configured = self._scrape_interval(placements, tiers)
        await self._measure_scrape(scaling, service, placements, tiers)
        scrape = interval_in_effect(configured, scaling.measured_scrape)
        sample, problem = await self.observe(service, placements, tiers, scrape)
        now = self.clock()
        latency = {name: tier.spec.latency_ms for name, tier in tiers.items()}
        inputs = service_scaling_inputs(
            service, placements, latency, ready_replicas=ready_replicas, sample=sample, now=now
        )
        params = DEFAULT_PARAMS.for_scrapes(scrape, rate_window_seconds(scrape)).for_service(
            service
        )
        rec = recommend(inputs, scaling.state, now, params)
        if problem is None and not rec.metrics_available:
            problem = (
                "NoData",
                "Prometheus answered, but with no waiting, running or arrival series for the "
                "service's pods (are they scraped, with the pod labels the preset selects?)",
            )
        before = scaling.recommendation
        sampling_events, sampling_turned = self._judge_sampling(
            scaling, service, sample, configured, scrape, now
        )
        kept, scale_events = self._record_decision(
            scaling, rec, before, inputs, sample, now, DEFAULT_PARAMS.for_service(service)
        )
        events = [*sampling_events, *scale_events, *_source_events(problem, scaling.problem, rec)]
        if rec.mode == "manual" and (before is None or before.mode != "manual"):
            events.append(ScaleEvent("ManualScaling", rec.reason))
        reach_changed, reach_event = self._judge_reach(scaling, rec)
        if reach_event is not None:
            events.append(reach_event)
        limit_changed, limit_event = self._judge_limit(scaling, rec, inputs.max_replicas, now)
        if limit_event is not None:
            events.append(limit_event)
        slo = service.spec.slo
        slo_met = slo_verdict(scaling.metrics, slo.latency_p95_ms, slo.ttft_p95_ms)[0]
        changed = (
            before is None
            or rec.replicas != before.replicas
            or rec.mode != before.mode
            or rec.metrics_available != before.metrics_available
            or _reason(problem) != _reason(scaling.problem)
            or slo_met != scaling.slo_met
            or reach_changed
            or limit_changed
            or sampling_turned
        )
        scaling.slo_met = slo_met
        stale_status = (
            sample is not None and now - scaling.status_written_at >= self.status_refresh_seconds
        )
        reworded = problem != scaling.problem  # same reason, a new message
        scaling.problem = problem
        scaling.unmetered = (
            inputs_key if problem is not None and problem[0] == "NoMetricsSource" else None
        )
        scaling.state = rec.state
        scaling.recommendation = rec
        act = changed or stale_status
        # (the state's time moves when its values do, or with a status written anyway: a
        # restart that finds them as status says writes nothing)
        if (
            scaling.kept_state is None
            or scaling.kept_state[0] != kept
            or (act and before is not None)
        ):
            scaling.kept_state = (kept, now)
        return StepOutcome(
            rec,
            reconcile=act or reworded,
            events=tuple(events),
            report_only=reworded and not act,
        )

    def _inputs_key(
        self,
        service: InferenceService,
        placements: list[RunningPlacement],
        ready_replicas: int,
        tiers: Mapping[str, Tier],
    ) -> Hashable:
        """What a step without a metrics source decides from: while it is unchanged, the step
        would hold the same count again (``_ServiceScaling.unmetered``)."""
        meta = service.metadata
        return (
            meta.uid,
            meta.generation,
            tuple(placements),
            ready_replicas,
            tuple(
                (p.tier, tier.metadata.generation if (tier := tiers.get(p.tier)) else None)
                for p in placements
            ),
            self.default_url,
            # (a schedule's window opening or closing is a new count to hold)
            scheduled_floor(
                service.spec.scaling.schedules,
                self.clock(),
                primary_variant(service, placements)[0].startup_seconds,
            ),
        )

    def _judge_sampling(
        self,
        scaling: _ServiceScaling,
        service: InferenceService,
        sample: ServiceSample | None,
        configured: float,
        scrape: float,
        now: float,
    ) -> tuple[list[ScaleEvent], bool]:
        """(the Events, whether either verdict turned) of the metrics being incomplete and of
        the windows sized for a measured scrape interval rather than the configured one."""
        events: list[ScaleEvent] = []
        incomplete = self._incomplete(scaling, service, sample, scrape, now)
        incomplete_turned = (incomplete is None) != (scaling.incomplete is None)
        if incomplete is not None and scaling.incomplete is None:
            events.append(ScaleEvent("MetricsIncomplete", incomplete, "Warning"))
        scaling.incomplete = incomplete
        note = _scrape_note(configured, scrape)
        note_turned = (note is None) != (scaling.scrape_note is None)
        if note is not None and scaling.scrape_note is None:
            events.append(ScaleEvent("ScrapeIntervalMeasured", note))
        scaling.scrape_note = note
        return events, incomplete_turned or note_turned

    @staticmethod
    def _record_decision(
        scaling: _ServiceScaling,
        rec: Recommendation,
        before: Recommendation | None,
        inputs: ScalingInputs,
        sample: ServiceSample | None,
        now: float,
        restart_params: ScalerParams,
    ) -> tuple[dict[str, float], list[ScaleEvent]]:
        """(what a restart needs of the recommender's state, the scale Event): the observed
        metrics, and a count change in effect as ``last_scale`` with the signals behind it.
        ``restart_params`` are the ones ``_restored`` reads them with."""
        previous = before.replicas if before is not None else inputs.desired_replicas
        values: dict[str, float] = {}
        if sample is not None:
            scaling.metrics = _observed(sample, rec.state.sizes)
            values = {
                k: float(v)
                for k, v in scaling.metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        values.update({f"need.{name}": float(n) for name, n in rec.needs.items()})
        # (what a restart needs of the state goes with the decision into status.lastScale)
        token_rates = (inputs.prefill_tokens_per_second, inputs.decode_tokens_per_second)
        kept = status_signals(
            rec.state, inputs.startup_seconds, restart_params, token_rates=token_rates
        )
        values.update(kept)
        # A decision is news when it changes a count in effect: not a service's first count
        # before it was ever placed, nor a manual count. (A hold moves a count only with a
        # floor: a schedule's window, a new minReplicas.)
        in_effect = before is not None or inputs.desired_replicas > 0
        if not (in_effect and rec.replicas != previous and rec.mode in ("auto", "hold")):
            return kept, []
        scaling.last_scale = {
            "time": _rfc3339(now),
            "from": str(previous),
            "to": str(rec.replicas),
            "reason": rec.reason[:1000],
            "signals": values,
        }
        if rec.cancels:
            # (replicas paid for through part of a start-up and removed before they served:
            # a scale-down delay shorter than the start-up, most often)
            return kept, [ScaleEvent("ScaledDownBeforeServing", rec.reason, "Warning")]
        up = rec.replicas > previous
        return kept, [ScaleEvent("ScaledUp" if up else "ScaledDown", rec.reason)]

    @staticmethod
    def _judge_reach(
        scaling: _ServiceScaling, rec: Recommendation
    ) -> tuple[bool, ScaleEvent | None]:
        """Update the SLOReachable verdict from an automatic decision: whether it changed
        (status to write), and the Event to post when a goal went out of reach (or another
        did), or came back within it."""
        if rec.mode != "auto" or not rec.metrics_available:
            return False, None
        found = rec.state.out_of_reach
        verdict = reach_verdict(found)
        keys = None if found is None else frozenset(o.key for o in found)
        before = scaling.unreachable
        others = keys is not None and before is not None and keys != before
        changed = scaling.reach is None or verdict[0] != scaling.reach[0] or others
        scaling.reach = verdict
        if keys is not None:
            scaling.unreachable = keys
        event = None
        if verdict[0] is False and (not scaling.reach_was_false or others):
            event = ScaleEvent("SLOOutOfReach", verdict[2], "Warning")
        elif verdict[0] is True and scaling.reach_was_false:
            event = ScaleEvent("SLOWithinReach", verdict[2])
        if verdict[0] is not None:
            scaling.reach_was_false = verdict[0] is False
        return changed, event

    @staticmethod
    def _incomplete(
        scaling: _ServiceScaling,
        service: InferenceService,
        sample: ServiceSample | None,
        scrape: float,
        now: float,
    ) -> str | None:
        """Why the metrics are incomplete: a preset's windowed queries (arrivals, request
        sizes, p95 latency) have answered nothing for two windows while requests ran, though
        the gauges answer. A window that holds fewer than two scrapes does that (a scrape
        interval longer than the one configured), and so do histograms Prometheus does not
        scrape. None when they are complete, or it is too early to say.

        The two windows count from the first sample with requests in the gauges: counters a
        runtime creates with its first request are not missing before it. Idle samples after
        it do not restart them, as light load is idle at many scrape instants."""
        signals = sample.signals if sample is not None else None
        if (
            signals is None
            or service.spec.runtime.metrics_preset == "custom"
            or signals.arrival_rate is not None
            or signals.p95_latency_ms is not None
        ):
            scaling.rates_missing_since = None
            return None
        since = scaling.rates_missing_since
        if since is None:
            if (signals.running or 0) + (signals.queue_depth or 0) <= 0:
                return None
            scaling.rates_missing_since = since = now
        window = rate_window(scrape)
        if now - since < 2 * rate_window_seconds(scrape):
            return scaling.incomplete
        measured = scaling.measured_scrape
        if measured is not None and rate_window_seconds(scrape) >= 2 * measured:
            return (
                f"the waiting and running gauges answer, but no rate over [{window}] (arrivals, "
                f"request sizes, p95 latency) for {now - since:.0f} s while requests run, "
                f"though the pods' samples come every {measured:.0f} s: scaling on the queue "
                "alone. Does Prometheus keep the counters and histograms the metrics preset "
                "reads (a metric_relabel_configs that drops them)?"
            )
        return (
            f"the waiting and running gauges answer, but no rate over [{window}] (arrivals, "
            f"request sizes, p95 latency) for {now - since:.0f} s while requests run: scaling "
            f"on the queue alone. A [{window}] window holds fewer than two scrapes when "
            f"Prometheus scrapes less often than every {rate_window_seconds(scrape) / 2:g} s: "
            "set the Tier's spec.metrics.scrapeIntervalSeconds (or the operator's "
            "--prometheus-scrape-interval) to its scrape interval"
        )

    @staticmethod
    def _judge_limit(
        scaling: _ServiceScaling, rec: Recommendation, max_replicas: int, now: float
    ) -> tuple[bool, ScaleEvent | None]:
        """Update the ScalingLimited verdict: whether it turned (status to write), and the
        Warning to post when the need went above maxReplicas (``LIMITED_EVENT_GAP_SECONDS``
        apart at most). A True verdict stands until the need has been within the bound for
        ``LIMITED_CLEAR_SECONDS``."""
        verdict = limit_verdict(rec.mode, rec.beyond_max, rec.signal, max_replicas)
        if verdict is None:
            return False, None
        before = scaling.limit
        if verdict[0] is True or rec.mode != "auto":
            scaling.within_max_since = None
        elif before is not None and before[0] is True:
            since = scaling.within_max_since
            if since is None:
                scaling.within_max_since = since = now
            if now - since < LIMITED_CLEAR_SECONDS:
                return False, None
            scaling.within_max_since = None
        scaling.limit = verdict
        turned = before is None or before[0] != verdict[0]
        last = scaling.limited_event_at
        if verdict[0] is not True or (last is not None and now - last < LIMITED_EVENT_GAP_SECONDS):
            return turned, None
        if before is not None and before[0] is True:
            return turned, None
        scaling.limited_event_at = now
        return turned, ScaleEvent("ScalingLimited", f"{verdict[2]}; {rec.reason}", "Warning")

    def report(self, key: str) -> ScalingReport | None:
        """The status the autoscaler has to write for ``key`` (None before its first step);
        marks the metrics as written."""
        scaling = self._services.get(key)
        if scaling is None or scaling.recommendation is None:
            return None
        scaling.status_written_at = self.clock()
        rec = scaling.recommendation
        problem = scaling.problem
        return ScalingReport(
            mode=rec.mode,
            recommended=rec.replicas,
            reason=rec.reason,
            metrics_available=problem is None,
            metrics_reason=problem[0]
            if problem is not None
            else "RatesMissing"
            if scaling.incomplete is not None
            else "ScrapeIntervalMeasured"
            if scaling.scrape_note is not None
            else "MetricsObserved",
            metrics_message=problem[1]
            if problem is not None
            else scaling.incomplete
            or scaling.scrape_note
            or "sampled from Prometheus (status.metrics)",
            signal=rec.signal,
            needs=dict(rec.needs),
            keeps=rec.keeps,
            metrics=scaling.metrics,
            last_scale=scaling.last_scale,
            reach=scaling.reach,
            limit=scaling.limit,
            state=scaling.kept_state[0] if scaling.kept_state else {},
            state_time=_rfc3339(scaling.kept_state[1])
            if scaling.kept_state and scaling.kept_state[0]
            else None,
        )


def _started(service: InferenceService, now: float) -> _ServiceScaling:
    """A service's scaling as its status left it: a new service, or the operator restarted."""
    conditions = service.status.conditions
    return _ServiceScaling(
        state=_restored(service, now),
        kept_state=_kept_in_status(service),
        reach_was_false=any(c.type == "SLOReachable" and c.status == "False" for c in conditions),
        limited_event_at=now
        if any(c.type == "ScalingLimited" and c.status == "True" for c in conditions)
        else None,
    )


def _source_events(
    problem: tuple[str, str] | None, before: tuple[str, str] | None, rec: Recommendation
) -> list[ScaleEvent]:
    """The Event of the metrics source's problem turning (``problem``, from ``before``)."""
    reason_before = _reason(before)
    if _reason(problem) == reason_before:
        return []
    # (no Prometheus configured at all is a standing configuration, said by the condition
    # alone: one Warning per service would be noise)
    if problem is not None and problem[0] != "NoMetricsSource":
        return [ScaleEvent("MetricsUnavailable", f"{problem[1]}; {rec.reason}", "Warning")]
    if problem is None and reason_before not in (None, "NoMetricsSource"):
        return [ScaleEvent("MetricsAvailable", "metrics are back: " + rec.reason)]
    return []


def _reason(problem: tuple[str, str] | None) -> str | None:
    """The reason of a metrics source's problem (None: no problem)."""
    return problem[0] if problem else None


def _scrape_note(configured: float, in_effect: float) -> str | None:
    """What the MetricsAvailable message says when the windows are sized for a measured
    scrape interval longer than the configured one (None when they are not)."""
    if in_effect <= configured:
        return None
    return (
        f"sampled from Prometheus (status.metrics), which scrapes the pods every "
        f"{in_effect:g} s (the gaps between their samples of the last 10 minutes), not every "
        f"{configured:g} s as configured: the windows are sized for {in_effect:g} s "
        f"([{rate_window(in_effect)}]). Set the Tier's spec.metrics.scrapeIntervalSeconds "
        f"(or the operator's --prometheus-scrape-interval) to {in_effect:g} to say so"
    )


def _kept_in_status(service: InferenceService) -> tuple[dict[str, float], float] | None:
    """``status.autoscaling.state`` and its time, as the last operator wrote them."""
    scaled = service.status.autoscaling
    at = epoch_seconds(scaled.state_time) if scaled and scaled.state_time else None
    return (dict(scaled.state), at) if scaled and scaled.state and at is not None else None


def _restored(service: InferenceService, now: float) -> ScalerState:
    """The recommender's state from the service's status (see ``restore_state``). A service
    the autoscaler never decided for had its first replicas asked for when it was created:
    they count as a scale-up's, starting for ``startupSeconds`` (load that arrives meanwhile
    waits for them, and is not an overload to answer). The state signals are the newer of
    ``status.autoscaling.state`` (written with every status) and the last scale decision's."""
    status = service.status
    recommended = status.autoscaling.recommended_replicas if status.autoscaling else None
    last = status.last_scale
    at: float | None = None
    scaled_up_by = 0
    signals: dict[str, float] = {}
    if last is not None:
        at = epoch_seconds(last.time)
        try:
            scaled_up_by = max(0, int(last.to) - int(last.from_))
        except ValueError:
            at = None
        signals = dict(last.signals)
    elif recommended is None and service.metadata.creation_timestamp is not None:
        at = epoch_seconds(service.metadata.creation_timestamp)
        # (all of its first replicas, however many placement gave it)
        scaled_up_by = API_MAX_REPLICAS if at is not None else 0
    signals_at = at
    kept = status.autoscaling.state if status.autoscaling else {}
    kept_at = (
        epoch_seconds(status.autoscaling.state_time)
        if status.autoscaling and status.autoscaling.state_time
        else None
    )
    if kept and kept_at is not None and (signals_at is None or kept_at >= signals_at):
        signals, signals_at = dict(kept), kept_at
    return restore_state(
        recommended,
        now,
        last_scale_at=at,
        scaled_up_by=scaled_up_by,
        signals=signals,
        signals_at=signals_at,
        scale_down_delay=float(service.spec.scaling.scale_down_delay_seconds),
        params=DEFAULT_PARAMS.for_service(service),
    )


_Answer = tuple[dict[str, dict[tuple[str, ...], float | None]], datetime.datetime]
"""Every service's values of a preset's queries (name -> service key -> value), and when."""


async def _every_service(
    client: PrometheusClient, preset: MetricsPreset, by_tier: bool, scrape: float
) -> _Answer:
    """Every service's values of ``preset``'s queries (name -> service key -> value) on
    ``client``'s Prometheus, and when they were taken."""
    queries = every_service_queries(preset, by_tier, scrape)
    assert queries is not None  # (not asked for custom queries)
    named = {name: query for part in queries for name, query in part.named().items()}
    labels = EveryService(by_tier=by_tier).labels
    return await client.sample_series(named, labels), client.now()


def _tier_sample(
    sample: MetricSample, rates: Mapping[str, float | None] | None = None
) -> TierSample:
    rates = rates or {}
    return TierSample(
        signals=Signals(
            queue_depth=sample.queue_depth,
            running=sample.running,
            arrival_rate=sample.arrival_rate,
            p95_latency_ms=sample.p95_latency_ms,
            ttft_p95_ms=sample.ttft_p95_ms,
            observed_at=sample.observed_at.timestamp(),
            prompt_tokens_rate=rates.get("prompt_tokens_rate"),
            output_tokens_rate=rates.get("output_tokens_rate"),
            mean_running=rates.get("mean_running"),
            recent_completion_rate=rates.get("recent_completion_rate"),
            scraped_at=rates.get("scraped_at"),
        ),
        mean_prompt_tokens=sample.mean_prompt_tokens,
        mean_output_tokens=sample.mean_output_tokens,
    )


def _observed(
    sample: ServiceSample, sizes: tuple[float, float, float, float] | None
) -> dict[str, Any]:
    """``status.metrics``: the sample, and the recommender's smoothed request size once it
    stands for enough requests to size replicas by."""
    s = sample.signals
    known = sizes is not None and sizes[2] >= DEFAULT_PARAMS.min_size_requests
    return {
        "observedAt": _rfc3339(s.observed_at) if s.observed_at is not None else None,
        "queueDepth": _round(s.queue_depth),
        "running": _round(s.running),
        "arrivalRate": _round(s.arrival_rate),
        "p95LatencyMs": _round(s.p95_latency_ms),
        "ttftP95Ms": _round(s.ttft_p95_ms),
        "meanPromptTokens": round(sizes[0], 1) if known and sizes else None,
        "meanOutputTokens": round(sizes[1], 1) if known and sizes else None,
    }
