"""PromQL for a service's pods, one small preset per model-server runtime (pure, no I/O).

Each preset is a function of a selector that returns the :class:`PresetQueries` the operator
samples; like KEDA's scalers, each query measures one unit and can be explained alone. Every
query aggregates over the selected pods: over one service's (:class:`Selector`), it returns at
most one sample; over every service's (:class:`EveryService`), one per service, so that the
operator samples a whole fleet with one query per metric (``every_service_queries``).

Label names. The operator labels pods ``tierra.dev/inference-service=<name>`` and
``tierra.dev/inference-service-namespace=<namespace>`` (see :mod:`tierra.core.render`). We assume
the Prometheus scrape config for pods copies pod labels with::

    - action: labelmap
      regex: __meta_kubernetes_pod_label_(.+)

Kubernetes service discovery sanitises label names (every character outside ``[a-zA-Z0-9_]``
becomes ``_``), so the series carry ``tierra_dev_inference_service`` and
``tierra_dev_inference_service_namespace`` (and ``tierra_dev_tier``). The names are derived from
the render module's constants with that same rule and exported below.

Injection. Label values are written into double-quoted PromQL string literals; :func:`escape`
escapes backslash, double quote and line breaks, so no service name can close the literal and
append PromQL of its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Literal

from tierra.api.inference_service import CustomQueries, InferenceService, MetricsPreset
from tierra.core.render import LABEL_SERVICE, LABEL_SERVICE_NAMESPACE, LABEL_TIER

#: Window of the ``rate()`` in every preset at the usual 15 s scrapes: short enough to react.
RATE_WINDOW = "1m"
#: The scrape interval assumed where a Tier does not say (Prometheus' own default is 1 m; the
#: kube-prometheus ServiceMonitors' 30 s; vLLM's examples 15 s).
DEFAULT_SCRAPE_INTERVAL_SECONDS = 15.0
#: A ``rate()`` window holds at least this many scrape intervals, so that a missed or late
#: scrape still leaves two samples in it (Prometheus' own advice).
SCRAPES_PER_WINDOW = 4


def rate_window_seconds(scrape_interval_seconds: float) -> float:
    """The presets' rate window for pods scraped this often: 1 m, or four scrapes if longer."""
    return max(60.0, SCRAPES_PER_WINDOW * scrape_interval_seconds)


def rate_window(scrape_interval_seconds: float) -> str:
    """``rate_window_seconds`` as a PromQL duration (``1m``, ``2m``, ``100s``)."""
    seconds = math.ceil(rate_window_seconds(scrape_interval_seconds))
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


#: The placeholder a custom query writes where the pods' label matchers go.
SELECTOR_PLACEHOLDER = "{selector}"


def prometheus_label_name(kubernetes_label: str) -> str:
    """The Prometheus label name a pod label gets through ``labelmap`` (non-[a-zA-Z0-9_] -> _)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", kubernetes_label)


PROM_LABEL_SERVICE = prometheus_label_name(LABEL_SERVICE)  # tierra_dev_inference_service
PROM_LABEL_SERVICE_NAMESPACE = prometheus_label_name(
    LABEL_SERVICE_NAMESPACE
)  # tierra_dev_inference_service_namespace
PROM_LABEL_TIER = prometheus_label_name(LABEL_TIER)  # tierra_dev_tier

_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def escape(value: str) -> str:
    """Escape a value for a double-quoted PromQL string literal (backslash, quote, line breaks)."""
    return value.translate(_ESCAPES)


@dataclass(frozen=True)
class Selector:
    """The pods of one InferenceService, optionally only those in one tier."""

    namespace: str
    name: str
    tier: str | None = None
    window: str = RATE_WINDOW
    """The ``rate()`` window (``rate_window``)."""

    def matcher(self) -> str:
        """The label matchers, without braces: ``a="x",b="y"``, every value escaped."""
        pairs = [(PROM_LABEL_SERVICE_NAMESPACE, self.namespace), (PROM_LABEL_SERVICE, self.name)]
        if self.tier is not None:
            pairs.append((PROM_LABEL_TIER, self.tier))
        return ",".join(f'{label}="{escape(value)}"' for label, value in pairs)

    def grouping(self, *labels: str) -> str:
        """The ``by`` clause of an aggregation over the pods: one value for the service (per
        ``labels``, if any)."""
        return f" by ({', '.join(labels)})" if labels else ""


@dataclass(frozen=True)
class EveryService:
    """The pods of every InferenceService on a Prometheus, each query one series per service
    (per tier too with ``by_tier``): one query samples a thousand services, where a query per
    service would cost the operator and Prometheus a thousand times as many round trips."""

    by_tier: bool = False
    window: str = RATE_WINDOW

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels that tell the series apart, in the order of ``service_key``."""
        service = (PROM_LABEL_SERVICE_NAMESPACE, PROM_LABEL_SERVICE)
        return (*service, PROM_LABEL_TIER) if self.by_tier else service

    def matcher(self) -> str:
        return f'{PROM_LABEL_SERVICE}!=""'

    def grouping(self, *labels: str) -> str:
        return f" by ({', '.join((*labels, *self.labels))})"


def service_key(namespace: str, name: str, tier: str | None) -> tuple[str, ...]:
    """The key of a service's (or one tier's of it) series in an ``EveryService`` answer."""
    return (namespace, name) if tier is None else (namespace, name, tier)


PodSelector = Selector | EveryService
"""One service's pods, or every service's."""


@dataclass(frozen=True)
class PresetQueries:
    """The PromQL to sample for one service; ``None`` where the runtime has no such metric.

    ``latency_statistic`` says what ``latency_p95_seconds`` really measures: ``"p95"`` for the
    histogram presets, ``"mean"`` for Triton, whose default metrics have no latency histogram.
    """

    queue_depth: str | None
    running: str | None
    arrival_rate: str | None
    latency_p95_seconds: str | None
    ttft_p95_seconds: str | None
    latency_statistic: Literal["p95", "mean"] = "p95"
    mean_prompt_tokens: str | None = None
    """Mean prompt tokens per request over the window (the arrival signal's request size)."""
    mean_output_tokens: str | None = None
    """Mean generated tokens per request over the window."""

    def named(self) -> dict[str, str]:
        """The queries the runtime has, by field name."""
        return {name: q for name in PRESET_QUERY_NAMES if (q := getattr(self, name)) is not None}


PRESET_QUERY_NAMES = tuple(f.name for f in fields(PresetQueries) if f.name != "latency_statistic")
"""The fields of ``PresetQueries`` that hold a query."""


def _gauge(metric: str, sel: PodSelector) -> str:
    return f"sum{sel.grouping()}({metric}{{{sel.matcher()}}})"


def _rate(metric: str, sel: PodSelector) -> str:
    return f"sum{sel.grouping()}(rate({metric}{{{sel.matcher()}}}[{sel.window}]))"


def _ratio(numerator: str, denominator: str, sel: PodSelector) -> str:
    """Per-request mean over the window: NaN (no value) when nothing completed."""
    return f"{_rate(numerator, sel)} / {_rate(denominator, sel)}"


def _irate(metric: str, sel: PodSelector) -> str:
    return f"sum{sel.grouping()}(irate({metric}{{{sel.matcher()}}}[{sel.window}]))"


def _mean_gauge(metric: str, sel: PodSelector) -> str:
    """The gauge's sum over the pods, averaged over the rate window (a subquery at 5 s)."""
    return f"avg_over_time(sum{sel.grouping()}({metric}{{{sel.matcher()}}})[{sel.window}:5s])"


def _p95(bucket_metric: str, sel: PodSelector) -> str:
    return (
        f"histogram_quantile(0.95, sum{sel.grouping('le')} "
        f"(rate({bucket_metric}{{{sel.matcher()}}}[{sel.window}])))"
    )


def vllm(sel: PodSelector) -> PresetQueries:
    """vLLM's ``/metrics``.

    Arrival rate is the rate of *completed* requests (``vllm:request_success_total``): vLLM has no
    arrivals counter, and in steady state completions equal arrivals; during a ramp they lag,
    which the queue-depth signal covers.
    """
    return PresetQueries(
        queue_depth=_gauge("vllm:num_requests_waiting", sel),
        running=_gauge("vllm:num_requests_running", sel),
        arrival_rate=_rate("vllm:request_success_total", sel),
        latency_p95_seconds=_p95("vllm:e2e_request_latency_seconds_bucket", sel),
        ttft_p95_seconds=_p95("vllm:time_to_first_token_seconds_bucket", sel),
        mean_prompt_tokens=_ratio("vllm:prompt_tokens_total", "vllm:request_success_total", sel),
        mean_output_tokens=_ratio(
            "vllm:generation_tokens_total", "vllm:request_success_total", sel
        ),
    )


def tgi(sel: PodSelector) -> PresetQueries:
    """Hugging Face text-generation-inference's ``/metrics``.

    ``tgi_request_count`` is incremented when a request arrives, so its rate is the arrival rate.
    TGI exports no time-to-first-token histogram (``tgi_request_queue_duration`` is queueing time
    only, not prefill), so TTFT is ``None`` rather than a misleading proxy.
    """
    return PresetQueries(
        queue_depth=_gauge("tgi_queue_size", sel),
        running=_gauge("tgi_batch_current_size", sel),
        arrival_rate=_rate("tgi_request_count", sel),
        latency_p95_seconds=_p95("tgi_request_duration_bucket", sel),
        ttft_p95_seconds=None,
        mean_prompt_tokens=_ratio(
            "tgi_request_input_length_sum", "tgi_request_input_length_count", sel
        ),
        mean_output_tokens=_ratio(
            "tgi_request_generated_tokens_sum", "tgi_request_generated_tokens_count", sel
        ),
    )


def triton(sel: PodSelector) -> PresetQueries:
    """NVIDIA Triton Inference Server's default ``/metrics``.

    * queue: ``nv_inference_pending_request_count`` (requests received and not yet executing).
    * running: ``None``. Triton exports no in-flight gauge; ``nv_inference_exec_count`` counts
      batch executions, which is neither a concurrency nor a request count.
    * arrivals: rate of ``nv_inference_request_success`` (completions approximate arrivals in
      steady state, as for vLLM).
    * latency: Triton's default latency metrics are cumulative microsecond counters
      (``nv_inference_request_duration_us``), not histograms, so the best available is the
      *mean* latency over the window: rate(duration_us) / rate(success) / 1e6 seconds. The
      result is marked ``latency_statistic="mean"``; compare it with a p95 SLO knowing it
      understates the tail. (When there were no requests the division is NaN, i.e. no value.)
    * TTFT: ``None`` (no default metric).
    """
    mean_latency = (
        f"{_rate('nv_inference_request_duration_us', sel)} / "
        f"{_rate('nv_inference_request_success', sel)} / 1e6"
    )
    return PresetQueries(
        queue_depth=_gauge("nv_inference_pending_request_count", sel),
        running=None,
        arrival_rate=_rate("nv_inference_request_success", sel),
        latency_p95_seconds=mean_latency,
        ttft_p95_seconds=None,
        latency_statistic="mean",
    )


def custom(sel: Selector, queries: CustomQueries) -> PresetQueries:
    """The user's queries with every literal ``{selector}`` replaced by the escaped matchers.

    The matchers come without braces so they can be combined with the user's own, e.g.
    ``sum(my_queue{{selector},job="llm"})``. Only the placeholder is substituted (no
    ``str.format``), so other braces in the query are left alone.
    """
    body = sel.matcher()

    def fill(query: str | None) -> str | None:
        return None if query is None else query.replace(SELECTOR_PLACEHOLDER, body)

    return PresetQueries(
        queue_depth=fill(queries.queue_depth),
        running=fill(queries.running),
        arrival_rate=fill(queries.arrival_rate),
        latency_p95_seconds=fill(queries.latency_p95_seconds),
        ttft_p95_seconds=fill(queries.ttft_p95_seconds),
    )


@dataclass(frozen=True)
class RateQueries:
    """The queries behind the recommender's rate signals (the online service-rate estimate and
    the arrivals now); ``None`` where the runtime has no such metric. Kept apart from
    ``PresetQueries``: they are sampled with it, and their absence only disables the signals
    that need them."""

    prompt_tokens_rate: str | None = None
    """Prompt tokens processed per second over the window."""
    output_tokens_rate: str | None = None
    """Generated tokens per second over the window."""
    mean_running: str | None = None
    """Requests running, averaged over the same window."""
    recent_completion_rate: str | None = None
    """Completions per second between the last two scrapes (``irate``): with the growth of
    what is in the system, the arrival rate now."""
    scraped_at: str | None = None
    """Unix time of the latest scrape of the pods' gauges."""

    def named(self) -> dict[str, str]:
        """The queries the runtime has, by field name."""
        return {f.name: q for f in fields(self) if (q := getattr(self, f.name)) is not None}


def vllm_rates(sel: PodSelector) -> RateQueries:
    """vLLM counts prompt and generation tokens per iteration: their rates are the work done in
    the window, also by requests that have not completed (which is why the token ratios of
    :func:`vllm` can be +Inf or NaN)."""
    return RateQueries(
        prompt_tokens_rate=_rate("vllm:prompt_tokens_total", sel),
        output_tokens_rate=_rate("vllm:generation_tokens_total", sel),
        mean_running=_mean_gauge("vllm:num_requests_running", sel),
        recent_completion_rate=_irate("vllm:request_success_total", sel),
        scraped_at=f"max{sel.grouping()}(timestamp(vllm:num_requests_running{{{sel.matcher()}}}))",
    )


RATE_PRESETS: dict[MetricsPreset, Callable[[PodSelector], RateQueries]] = {"vllm": vllm_rates}
"""The presets with rate queries (the others' token counters grow at completion, not per
iteration)."""


def _selector(service: InferenceService, tier: str | None, scrape_interval: float) -> Selector:
    meta = service.metadata
    return Selector(
        namespace=meta.namespace or "default",
        name=meta.name,
        tier=tier,
        window=rate_window(scrape_interval),
    )


def rate_queries_for(
    service: InferenceService,
    tier: str | None = None,
    scrape_interval: float = DEFAULT_SCRAPE_INTERVAL_SECONDS,
) -> RateQueries:
    """The rate queries for a service's pods; only the vLLM preset has them (the others'
    token counters grow at completion, not per iteration)."""
    rates = RATE_PRESETS.get(service.spec.runtime.metrics_preset)
    return rates(_selector(service, tier, scrape_interval)) if rates is not None else RateQueries()


PRESETS: dict[MetricsPreset, Callable[[PodSelector], PresetQueries]] = {
    "vllm": vllm,
    "tgi": tgi,
    "triton": triton,
}


def queries_for(
    service: InferenceService,
    tier: str | None = None,
    scrape_interval: float = DEFAULT_SCRAPE_INTERVAL_SECONDS,
) -> PresetQueries:
    """The queries for a service's pods (in one tier, if given), by its runtime's metrics
    preset, with rate windows for pods scraped every ``scrape_interval`` seconds."""
    sel = _selector(service, tier, scrape_interval)
    runtime = service.spec.runtime
    if runtime.metrics_preset == "custom":
        if runtime.custom_queries is None:  # the CRD's CEL rule forbids this; be explicit anyway
            raise ValueError("metricsPreset custom requires runtime.customQueries")
        return custom(sel, runtime.custom_queries)
    return PRESETS[runtime.metrics_preset](sel)


def every_service_queries(
    preset: MetricsPreset, by_tier: bool, scrape_interval: float
) -> tuple[PresetQueries, RateQueries] | None:
    """The queries of ``preset`` over every service's pods (``EveryService``), with rate
    windows for pods scraped every ``scrape_interval`` seconds; None for ``custom``, whose
    queries are the user's, one service's each."""
    if preset == "custom":
        return None
    sel = EveryService(by_tier=by_tier, window=rate_window(scrape_interval))
    rates = RATE_PRESETS.get(preset)
    return PRESETS[preset](sel), rates(sel) if rates is not None else RateQueries()
